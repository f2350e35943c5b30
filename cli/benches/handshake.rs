//! Handshakes over real loopback sockets, and launch throughput through one Registrar.
//!
//! * `loopback`: the blocking kernel side (`blocking::start_kernel_with`) registering with a
//!   launcher machine served on a ROUTER by a second thread, ≥ 1000 times. Measured from the
//!   kernel's `Bound` (its five ports are bound) to both sides `Connected`, with one monotonic
//!   clock read in the observers.
//! * `loopback_floor`: what ZeroMQ alone costs for the same exchange, interleaved with the
//!   loopback rounds: a fresh REQ socket connecting to a ROUTER served by a second thread, one
//!   request and one reply with the frame sizes of the handshake's own (recorded from its
//!   first round), no protocol. The handshake is then reported as a ratio to it (median and
//!   p99), which is what the loopback figure means on a machine of any speed or load.
//! * `launch`: N copies of the demo kernel (`jupyter-handshake kernel`) through one
//!   `blocking::Launcher` (one registration socket), N = 1, 10, 100: launches per second (N over
//!   the wall time of `launch_all`) and each kernel's time to `Connected` from the start.
//!
//! Prints a table, then one JSON line per measurement (for `bench/run.sh`).
//! `cargo bench -p jupyter-handshake-cli --bench handshake [-- ROUNDS]`

use std::time::{Duration, Instant as StdInstant};

use jupyter_handshake::RegistrarEvent;
use jupyter_handshake::{
    KernelEvent, KernelFile, KernelState, LauncherAction, LauncherConfig, LauncherEvent,
    LauncherHandshake, LauncherInput, Output,
};
use jupyter_handshake_zmq::Clock;
use jupyter_handshake_zmq::blocking::{self, ChildStdio, LaunchOptions, Launcher};
use jupyter_handshake_zmq::files::random_key;
use jupyter_handshake_zmq::kernel::KernelOptions;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let ctx = zmq::Context::new();
    let mut loopback = Vec::with_capacity(rounds);
    let mut floor = Vec::with_capacity(rounds);
    let (_, sizes) = loopback_round(&ctx)?;
    for round in 0..rounds + 20 {
        let (taken, _) = loopback_round(&ctx)?;
        let bare = floor_round(&ctx, &sizes)?;
        if round >= 20 {
            loopback.push(taken);
            floor.push(bare);
        }
    }
    let (handshake_median, handshake_p99) = report("loopback", &mut loopback, None);
    let (floor_median, floor_p99) = report("loopback_floor", &mut floor, None);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "loopback / floor: median {:.2}x, p99 {:.2}x (request {} B, reply {} B in frames)",
        ratio(handshake_median, floor_median),
        ratio(handshake_p99, floor_p99),
        sizes.request.iter().sum::<usize>(),
        sizes.reply.iter().sum::<usize>(),
    );
    println!(
        "JSON {{\"bench\":\"loopback_over_floor\",\"median_ratio\":{:.3},\"p99_ratio\":{:.3}}}",
        ratio(handshake_median, floor_median),
        ratio(handshake_p99, floor_p99)
    );

    let dir = std::env::temp_dir().join(format!("jh-bench-{}", std::process::id()));
    let argv: Vec<String> = [
        env!("CARGO_BIN_EXE_jupyter-handshake"),
        "kernel",
        "-f",
        "{connection_file}",
    ]
    .map(String::from)
    .to_vec();
    // At least 100 samples of the time to Connected per N, so that a p99 is more than the
    // maximum of a handful.
    for (n, repeats) in [(1usize, 100usize), (10, 10), (100, 3)] {
        let mut to_connected = Vec::new();
        let mut walls = Vec::new();
        for _ in 0..repeats {
            let (wall, mut times) = launch_round(&ctx, &dir, &argv, n)?;
            walls.push(wall);
            to_connected.append(&mut times);
        }
        walls.sort_unstable();
        let wall = walls[walls.len() / 2];
        let per_second = n as f64 / wall.as_secs_f64();
        report(&format!("launch_{n}"), &mut to_connected, Some(per_second));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Prints median and p99 (and launches per second) as a table line and a JSON line; returns the
/// median and the p99.
fn report(name: &str, samples: &mut [Duration], per_second: Option<f64>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let (median, p99) = (at(0.5), at(0.99));
    let rate = per_second.map_or(String::new(), |r| format!(", {r:.0} launches/s"));
    println!(
        "{name:<12} n={:<5} median {:>9.1} µs  p99 {:>9.1} µs{rate}",
        samples.len(),
        median.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    println!(
        "JSON {{\"bench\":\"{name}\",\"samples\":{},\"median_ns\":{},\"p99_ns\":{},\"per_second\":{}}}",
        samples.len(),
        median.as_nanos(),
        p99.as_nanos(),
        per_second.map_or("null".to_string(), |r| format!("{r:.1}"))
    );
    (median, p99)
}

/// The frame sizes of a handshake as the registration ROUTER saw them: the request's frames
/// after the REQ envelope (routing identity and empty delimiter), and the reply's.
#[derive(Clone, Debug, Default)]
struct Sizes {
    request: Vec<usize>,
    reply: Vec<usize>,
}

/// The frames after a REQ envelope (everything up to and including the first empty frame).
fn after_envelope(frames: &[Vec<u8>]) -> Vec<usize> {
    let body = frames
        .iter()
        .position(Vec::is_empty)
        .map_or(frames, |at| &frames[at + 1..]);
    body.iter().map(Vec::len).collect()
}

/// One exchange with no protocol, for the floor: the ROUTER is bound first (as the launcher's
/// is before the kernel starts), then timed: a fresh REQ connects, sends frames of the
/// request's sizes, and the ROUTER's thread answers with frames of the reply's sizes; until both
/// are done.
fn floor_round(ctx: &zmq::Context, sizes: &Sizes) -> Res<Duration> {
    let router = ctx.socket(zmq::ROUTER)?;
    router.set_linger(1000)?;
    router.bind("tcp://127.0.0.1:0")?;
    let endpoint = router.get_last_endpoint()?.map_err(|_| "not UTF-8")?;
    let reply: Vec<Vec<u8>> = sizes.reply.iter().map(|&n| vec![b'r'; n]).collect();
    let request: Vec<Vec<u8>> = sizes.request.iter().map(|&n| vec![b'q'; n]).collect();
    let server = std::thread::spawn(move || -> Result<StdInstant, String> {
        if router
            .poll(zmq::POLLIN, 10_000)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("no request within 10 s".into());
        }
        let frames = router.recv_multipart(0).map_err(|e| e.to_string())?;
        // The envelope back, then the reply.
        let envelope = frames.iter().position(Vec::is_empty).map_or(1, |at| at + 1);
        let mut out: Vec<Vec<u8>> = frames[..envelope].to_vec();
        out.extend(reply);
        router.send_multipart(out, 0).map_err(|e| e.to_string())?;
        Ok(StdInstant::now())
    });
    let start = StdInstant::now();
    let req = ctx.socket(zmq::REQ)?;
    req.set_linger(1000)?;
    req.connect(&endpoint)?;
    req.send_multipart(request, 0)?;
    if req.poll(zmq::POLLIN, 10_000)? == 0 {
        return Err("no reply within 10 s".into());
    }
    let _reply = req.recv_multipart(0)?;
    let received = StdInstant::now();
    let sent = server.join().map_err(|_| "floor thread panicked")??;
    Ok(received.max(sent).saturating_duration_since(start))
}

/// One loopback handshake; the time from the kernel's ports bound to both sides Connected, and
/// the sizes of its request and reply.
fn loopback_round(ctx: &zmq::Context) -> Res<(Duration, Sizes)> {
    let clock = Clock::new();
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
            Output::Action(LauncherAction::WriteRegistrationFile(f)) => file = Some(f),
            Output::Timeout(_) => break,
            _ => {}
        }
    }
    let file = KernelFile::Registration(file.ok_or("no file")?);
    let server = std::thread::spawn(move || -> Result<(StdInstant, Sizes), String> {
        let mut sizes = Sizes::default();
        loop {
            if router
                .poll(zmq::POLLIN, 10_000)
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("no request within 10 s".into());
            }
            let frames = router.recv_multipart(0).map_err(|e| e.to_string())?;
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            launcher.receive(clock.now(), &refs);
            sizes.request = after_envelope(&frames);
            let mut connected = None;
            loop {
                match launcher.poll_output() {
                    Output::Transmit(t) => {
                        sizes.reply = after_envelope(&t.frames);
                        router
                            .send_multipart(t.frames, 0)
                            .map_err(|e| e.to_string())?
                    }
                    Output::Event(LauncherEvent::Registered { .. }) => {
                        connected = Some(StdInstant::now())
                    }
                    Output::Timeout(_) => break,
                    _ => {}
                }
            }
            if let Some(at) = connected {
                return Ok((at, sizes));
            }
        }
    });
    let mut bound_at = None;
    let mut connected_at = None;
    let options = KernelOptions::default();
    let started = blocking::start_kernel_with(ctx, file, &options, &mut |_, event| match event {
        KernelEvent::StateChanged {
            to: KernelState::Bound,
            ..
        } => bound_at = Some(StdInstant::now()),
        KernelEvent::Connected(_) => connected_at = Some(StdInstant::now()),
        _ => {}
    })?;
    let (launcher_at, sizes) = server.join().map_err(|_| "launcher thread panicked")??;
    drop(started);
    let (Some(bound), Some(kernel)) = (bound_at, connected_at) else {
        return Err("the kernel side did not report Bound and Connected".into());
    };
    Ok((
        kernel.max(launcher_at).saturating_duration_since(bound),
        sizes,
    ))
}

/// Launches `n` demo kernels through one Launcher; returns the wall time of `launch_all` and
/// each kernel's time to Connected from its start. The kernels are then killed.
fn launch_round(
    ctx: &zmq::Context,
    dir: &std::path::Path,
    argv: &[String],
    n: usize,
) -> Res<(Duration, Vec<Duration>)> {
    let options = LaunchOptions {
        dir: Some(dir.to_path_buf()),
        stdout: ChildStdio::Null,
        stderr: ChildStdio::Null,
        timeout: Duration::from_secs(120),
        ..LaunchOptions::default()
    };
    let mut launcher = Launcher::new(ctx, &options)?;
    let start = StdInstant::now();
    let mut times = Vec::with_capacity(n);
    let argvs = vec![argv.to_vec(); n];
    let results = launcher.launch_all(&argvs, &mut |_, event| {
        if let RegistrarEvent::Launch {
            event: LauncherEvent::Registered { .. },
            ..
        } = event
        {
            times.push(start.elapsed());
        }
    })?;
    let wall = start.elapsed();
    for result in results {
        let mut launched = result?;
        let _ = launched.child.kill();
        let _ = launched.child.wait();
        let _ = launched.remove_file();
    }
    if times.len() != n {
        return Err(format!("{} of {n} kernels registered", times.len()).into());
    }
    Ok((wall, times))
}
