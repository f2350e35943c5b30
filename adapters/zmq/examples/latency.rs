//! How long one handshake takes with each way of driving the core, measured in one run:
//! the blocking driver, the async driver (on `futures::executor`), and a hand-written
//! `zmq::poll` loop (the `own_loop` example's code). Reports median, p90 and min.
//!
//! Each round is one complete in-process handshake over loopback tcp: the launcher's
//! registration ROUTER is bound, the kernel side binds its five channels on port 0, connects,
//! sends its signed `handshake_request`, the launcher verifies it and replies, and both sides
//! are `Connected`. No process is spawned, so the figures are the drivers' own cost (binding
//! six sockets dominates). The kinds are interleaved round by round, so drift in the machine's
//! load affects them alike.
//!
//! * blocking: `blocking::start_kernel_with` in this thread; the launcher machine served by a
//!   blocking `zmq::poll` loop in a second thread.
//! * async: `asynchronous::start_kernel_with` and the launcher machine on an `async_zmq`
//!   ROUTER, both awaited in one `block_on` (one thread, plus async_zmq's reactor thread and
//!   futures-timer's thread).
//! * own loop: both machines in one `zmq::poll` loop in this thread.
//!
//! `cargo run --release -p jupyter-handshake-zmq --features async --example latency [ROUNDS]`

mod common;

use std::error::Error;
use std::time::{Duration, Instant as StdInstant};

use futures_util::StreamExt;
use futures_util::future::{Either, select};
use jupyter_handshake::{
    KernelFile, LauncherAction, LauncherConfig, LauncherHandshake, LauncherInput, Output,
};
use jupyter_handshake_zmq::asynchronous::{self, Router};
use jupyter_handshake_zmq::files::random_key;
use jupyter_handshake_zmq::kernel::KernelOptions;
use jupyter_handshake_zmq::{Clock, blocking};

type Res<T> = Result<T, Box<dyn Error>>;

fn main() -> Res<()> {
    let rounds: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 300,
    };
    let ctx = zmq::Context::new();
    let options = KernelOptions::default();
    let kinds = ["blocking", "async", "own loop"];
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..rounds + 5 {
        let taken = [
            blocking_round(&ctx, &options)?,
            async_round(&ctx, &options)?,
            own_loop_round(&ctx)?,
        ];
        // The first rounds warm up libzmq, the reactor thread and the caches.
        if round >= 5 {
            for (sample, t) in samples.iter_mut().zip(taken) {
                sample.push(t);
            }
        }
    }
    println!("{rounds} in-process handshakes each over loopback tcp (bind → both Connected):");
    println!(
        "{:<10} {:>10} {:>10} {:>10}",
        "driver", "median", "p90", "min"
    );
    for (kind, sample) in kinds.iter().zip(&mut samples) {
        sample.sort_unstable();
        let at = |q: f64| sample[((sample.len() - 1) as f64 * q).round() as usize];
        println!(
            "{kind:<10} {:>8} µs {:>7} µs {:>7} µs",
            at(0.5).as_micros(),
            at(0.9).as_micros(),
            sample[0].as_micros()
        );
    }
    Ok(())
}

/// A launcher machine with its registration ROUTER bound, and the file it hands out.
fn bound_launcher(
    ctx: &zmq::Context,
    clock: &Clock,
) -> Res<(LauncherHandshake, zmq::Socket, KernelFile)> {
    let mut launcher = LauncherHandshake::new(LauncherConfig::new(random_key())?);
    let router = ctx.socket(zmq::ROUTER)?;
    router.set_linger(1000)?;
    let mut file = None;
    loop {
        match launcher.poll_output() {
            Output::Action(LauncherAction::BindRegistration { transport, ip }) => {
                router.bind(&transport.endpoint(&ip, 0))?;
                let endpoint = router.get_last_endpoint()?.map_err(|_| "not UTF-8")?;
                let port = endpoint.rsplit(':').next().ok_or("no port")?.parse()?;
                launcher.handle_input(clock.now(), LauncherInput::RegistrationBound { port })?;
            }
            Output::Action(LauncherAction::WriteRegistrationFile(f)) => {
                file = Some(KernelFile::Registration(f));
            }
            Output::Timeout(_) => break,
            Output::Event(_) => {}
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
    Ok((launcher, router, file.ok_or("no registration file")?))
}

/// Feeds one received message to the launcher and returns the frames it wants sent.
fn launcher_step(
    launcher: &mut LauncherHandshake,
    clock: &Clock,
    frames: &[&[u8]],
) -> Res<Vec<Vec<Vec<u8>>>> {
    launcher.receive(clock.now(), frames);
    let mut out = Vec::new();
    loop {
        match launcher.poll_output() {
            Output::Transmit(t) => out.push(t.frames),
            Output::Timeout(_) => return Ok(out),
            Output::Event(_) => {}
            other => return Err(format!("unexpected {other:?}").into()),
        }
    }
}

fn blocking_round(ctx: &zmq::Context, options: &KernelOptions) -> Res<Duration> {
    let started = StdInstant::now();
    let clock = Clock::new();
    let (mut launcher, router, file) = bound_launcher(ctx, &clock)?;
    let server = std::thread::spawn(move || -> Result<(), String> {
        while !launcher.state().is_terminal() {
            if router
                .poll(zmq::POLLIN, 10_000)
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("no request within 10 s".into());
            }
            let frames = router.recv_multipart(0).map_err(|e| e.to_string())?;
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            for reply in launcher_step(&mut launcher, &clock, &refs).map_err(|e| e.to_string())? {
                router.send_multipart(reply, 0).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    });
    let kernel = blocking::start_kernel_with(ctx, file, options, &mut |_, _| {})?;
    server.join().map_err(|_| "launcher thread panicked")??;
    let taken = started.elapsed();
    drop(kernel);
    Ok(taken)
}

fn async_round(ctx: &zmq::Context, options: &KernelOptions) -> Res<Duration> {
    let started = StdInstant::now();
    let clock = Clock::new();
    let (mut launcher, router, file) = bound_launcher(ctx, &clock)?;
    let mut router = Router::from(router);
    let serve = async {
        while !launcher.state().is_terminal() {
            let next = select(
                router.next(),
                futures_timer::Delay::new(Duration::from_secs(10)),
            );
            let frames = match next.await {
                Either::Left((Some(frames), _)) => frames?,
                Either::Left((None, _)) => return Err("registration socket closed".into()),
                Either::Right(_) => return Err("no request within 10 s".into()),
            };
            let refs: Vec<&[u8]> = frames.iter().map(|f| &**f).collect();
            for reply in launcher_step(&mut launcher, &clock, &refs)? {
                router.as_raw_socket().send_multipart(reply, 0)?;
            }
        }
        Res::Ok(())
    };
    let mut ignore = |_, _: &_| {};
    let kernel = asynchronous::start_kernel_with(ctx, file, options, &mut ignore);
    let (served, kernel) = futures_executor::block_on(futures_util::future::join(serve, kernel));
    served?;
    let kernel = kernel?;
    let taken = started.elapsed();
    drop(kernel);
    Ok(taken)
}

fn own_loop_round(ctx: &zmq::Context) -> Res<Duration> {
    let started = StdInstant::now();
    let clock = Clock::new();
    let mut pairs = [common::Pair::new(ctx)?];
    common::run(ctx, &mut pairs, &clock)?;
    let taken = started.elapsed();
    match pairs[0].connections() {
        (Some(a), Some(b)) if a.ports == b.ports => Ok(taken),
        _ => Err("the own-loop handshake did not connect".into()),
    }
}
