//! The tokio driver beside the blocking zmq driver, in one run.
//!
//! * `loopback`: one handshake over real loopback sockets, both sides in this process: the
//!   driver's kernel side (`start_kernel_with`) registering with a launcher machine served on a
//!   ROUTER of the same stack (tokio: a zeromq ROUTER in a task; zmq: a libzmq ROUTER on a
//!   thread). Measured from the kernel's `Bound` to both sides `Connected`.
//! * `launch_N`: N copies of our zmq kernel (`jupyter-handshake kernel`) through one
//!   launcher (one registration socket) of each driver: each kernel's time to `Registered` from
//!   the start, and launches per second.
//!
//! `cargo bench -p jupyter-handshake-tokio --bench handshake [-- ROUNDS]`; prints a table, the
//! tokio/zmq ratio of each median, and one JSON line per measurement.

#[cfg(unix)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    bench::main()
}

#[cfg(not(unix))]
fn main() {}

#[cfg(unix)]
#[path = "../tests/common/mod.rs"]
mod common;

#[cfg(unix)]
mod bench {
    use std::time::{Duration, Instant as StdInstant};

    use jupyter_handshake::RegistrarEvent;
    use jupyter_handshake::{
        KernelEvent, KernelFile, KernelState, LauncherAction, LauncherConfig, LauncherEvent,
        LauncherHandshake, LauncherInput, Output,
    };
    use jupyter_handshake_tokio::zeromq::{RouterSocket, Socket, SocketSend};
    use jupyter_handshake_tokio::{Clock, files};
    use jupyter_handshake_zmq::zmq;

    type Res<T> = Result<T, Box<dyn std::error::Error>>;

    pub(super) fn main() -> Res<()> {
        let rounds: usize = std::env::args()
            .skip(1)
            .find_map(|a| a.parse().ok())
            .unwrap_or(300);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let ctx = zmq::Context::new();
        let (mut t, mut z) = (Vec::new(), Vec::new());
        for round in 0..rounds + 20 {
            let a = runtime.block_on(tokio_loopback())?;
            let b = zmq_loopback(&ctx)?;
            if round >= 20 {
                t.push(a);
                z.push(b);
            }
        }
        compare("loopback", &mut t, &mut z, None);
        let argv = super::common::our_kernel_argv();
        let dir = std::env::temp_dir().join(format!("jh-tokio-bench-{}", std::process::id()));
        for (n, repeats) in [(1usize, 30usize), (10, 5)] {
            let (mut t, mut z, mut tw, mut zw) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..repeats {
                let (w, mut times) = runtime.block_on(tokio_launch(&dir, &argv, n))?;
                tw.push(w);
                t.append(&mut times);
                let (w, mut times) = zmq_launch(&ctx, &dir, &argv, n)?;
                zw.push(w);
                z.append(&mut times);
            }
            tw.sort_unstable();
            zw.sort_unstable();
            let rates = (
                n as f64 / tw[tw.len() / 2].as_secs_f64(),
                n as f64 / zw[zw.len() / 2].as_secs_f64(),
            );
            compare(&format!("launch_{n}"), &mut t, &mut z, Some(rates));
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    fn stats(samples: &mut [Duration]) -> (Duration, Duration) {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.99))
    }

    fn compare(
        name: &str,
        tokio: &mut [Duration],
        zmq: &mut [Duration],
        rates: Option<(f64, f64)>,
    ) {
        let (tm, tp) = stats(tokio);
        let (zm, zp) = stats(zmq);
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let ratio = tm.as_secs_f64() / zm.as_secs_f64();
        let rate = rates.map_or(String::new(), |(t, z)| {
            format!("  launches/s tokio {t:.0} zmq {z:.0}")
        });
        println!(
            "{name:<10} n={:<4} tokio median {:>8.1} µs p99 {:>8.1} µs | zmq median {:>8.1} µs p99 {:>8.1} µs | ratio {ratio:.2}{rate}",
            tokio.len(),
            us(tm),
            us(tp),
            us(zm),
            us(zp)
        );
        println!(
            "JSON {{\"bench\":\"{name}\",\"samples\":{},\"tokio_median_ns\":{},\"zmq_median_ns\":{},\"tokio_p99_ns\":{},\"zmq_p99_ns\":{},\"ratio\":{ratio:.3}}}",
            tokio.len(),
            tm.as_nanos(),
            zm.as_nanos(),
            tp.as_nanos(),
            zp.as_nanos()
        );
    }

    /// A launcher machine whose registration socket is bound on `port` already, and its file.
    fn launcher_machine(clock: &Clock, port: u16) -> Res<(LauncherHandshake, KernelFile)> {
        let mut launcher = LauncherHandshake::new(LauncherConfig::new(files::random_key())?);
        let mut file = None;
        loop {
            match launcher.poll_output() {
                Output::Action(LauncherAction::BindRegistration { .. }) => {
                    launcher
                        .handle_input(clock.now(), LauncherInput::RegistrationBound { port })?;
                }
                Output::Action(LauncherAction::WriteRegistrationFile(f)) => file = Some(f),
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        Ok((launcher, KernelFile::Registration(file.ok_or("no file")?)))
    }

    /// Feeds one received message, collects the replies; whether the launcher registered.
    fn feed(
        launcher: &mut LauncherHandshake,
        clock: &Clock,
        frames: &[&[u8]],
        out: &mut Vec<Vec<Vec<u8>>>,
    ) -> Res<bool> {
        launcher.receive(clock.now(), frames);
        let mut registered = false;
        loop {
            match launcher.poll_output() {
                Output::Transmit(t) => out.push(t.frames),
                Output::Event(LauncherEvent::Registered { .. }) => registered = true,
                Output::Timeout(_) => return Ok(registered),
                _ => {}
            }
        }
    }

    /// Bound → both Connected, tokio driver against a zeromq ROUTER served in a task.
    async fn tokio_loopback() -> Res<Duration> {
        let clock = Clock::new();
        let mut router = RouterSocket::new();
        let port = match router.bind("tcp://127.0.0.1:0").await? {
            jupyter_handshake_tokio::zeromq::Endpoint::Tcp(_, port) => port,
            _ => return Err("not tcp".into()),
        };
        let (mut launcher, file) = launcher_machine(&clock, port)?;
        let server = tokio::spawn(async move {
            loop {
                let message = jupyter_handshake_tokio::recv(&mut router)
                    .await
                    .map_err(|e| e.to_string())?;
                let frames = jupyter_handshake_tokio::frames(&message);
                let mut out = Vec::new();
                let registered =
                    feed(&mut launcher, &clock, &frames, &mut out).map_err(|e| e.to_string())?;
                for reply in out {
                    let reply = jupyter_handshake_tokio::message(reply).ok_or("empty reply")?;
                    router.send(reply).await.map_err(|e| e.to_string())?;
                }
                if registered {
                    return Ok::<_, String>((StdInstant::now(), router));
                }
            }
        });
        let (mut bound, mut connected) = (None, None);
        let options = jupyter_handshake_tokio::KernelOptions::default();
        let started = jupyter_handshake_tokio::start_kernel_with(
            file,
            &options,
            &mut |_, event| match event {
                KernelEvent::StateChanged {
                    to: KernelState::Bound,
                    ..
                } => bound = Some(StdInstant::now()),
                KernelEvent::Connected(_) => connected = Some(StdInstant::now()),
                _ => {}
            },
        )
        .await?;
        let (launcher_at, router) = server.await??;
        drop((started, router));
        let (Some(bound), Some(kernel)) = (bound, connected) else {
            return Err("no Bound and Connected".into());
        };
        Ok(kernel.max(launcher_at).saturating_duration_since(bound))
    }

    /// The same with the blocking zmq driver against a libzmq ROUTER served on a thread.
    fn zmq_loopback(ctx: &zmq::Context) -> Res<Duration> {
        let clock = Clock::new();
        let router = ctx.socket(zmq::ROUTER)?;
        router.set_linger(1000)?;
        router.bind("tcp://127.0.0.1:0")?;
        let endpoint = router.get_last_endpoint()?.map_err(|_| "not UTF-8")?;
        let port = endpoint.rsplit(':').next().ok_or("no port")?.parse()?;
        let (mut launcher, file) = launcher_machine(&clock, port)?;
        let server = std::thread::spawn(move || -> Result<StdInstant, String> {
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
                let mut out = Vec::new();
                let registered =
                    feed(&mut launcher, &clock, &refs, &mut out).map_err(|e| e.to_string())?;
                for reply in out {
                    router.send_multipart(reply, 0).map_err(|e| e.to_string())?;
                }
                if registered {
                    return Ok(StdInstant::now());
                }
            }
        });
        let (mut bound, mut connected) = (None, None);
        let options = jupyter_handshake_zmq::kernel::KernelOptions::default();
        let started = jupyter_handshake_zmq::blocking::start_kernel_with(
            ctx,
            file,
            &options,
            &mut |_, event| match event {
                KernelEvent::StateChanged {
                    to: KernelState::Bound,
                    ..
                } => bound = Some(StdInstant::now()),
                KernelEvent::Connected(_) => connected = Some(StdInstant::now()),
                _ => {}
            },
        )?;
        let launcher_at = server.join().map_err(|_| "launcher thread panicked")??;
        drop(started);
        let (Some(bound), Some(kernel)) = (bound, connected) else {
            return Err("no Bound and Connected".into());
        };
        Ok(kernel.max(launcher_at).saturating_duration_since(bound))
    }

    /// `n` kernels through one tokio `Launcher`: wall time, and each one's time to Registered.
    async fn tokio_launch(
        dir: &std::path::Path,
        argv: &[String],
        n: usize,
    ) -> Res<(Duration, Vec<Duration>)> {
        use jupyter_handshake_tokio::{ChildStdio, LaunchOptions, Launcher};
        let options = LaunchOptions {
            dir: Some(dir.to_path_buf()),
            stdout: ChildStdio::Null,
            stderr: ChildStdio::Null,
            ..LaunchOptions::default()
        };
        let mut launcher = Launcher::bind(options).await?;
        let start = StdInstant::now();
        let mut times = Vec::with_capacity(n);
        let results = launcher
            .launch_many_observed(&vec![argv.to_vec(); n], &mut |_, event| {
                if let RegistrarEvent::Launch {
                    event: LauncherEvent::Registered { .. },
                    ..
                } = event
                {
                    times.push(start.elapsed());
                }
            })
            .await?;
        let wall = start.elapsed();
        for result in results {
            let mut launched = result?;
            let _ = launched.child.kill().await;
            launched.remove_file()?;
        }
        Ok((wall, times))
    }

    /// The same through one blocking zmq `Launcher`.
    fn zmq_launch(
        ctx: &zmq::Context,
        dir: &std::path::Path,
        argv: &[String],
        n: usize,
    ) -> Res<(Duration, Vec<Duration>)> {
        use jupyter_handshake_zmq::blocking::{ChildStdio, LaunchOptions, Launcher};
        let options = LaunchOptions {
            dir: Some(dir.to_path_buf()),
            stdout: ChildStdio::Null,
            stderr: ChildStdio::Null,
            ..LaunchOptions::default()
        };
        let mut launcher = Launcher::new(ctx, &options)?;
        let start = StdInstant::now();
        let mut times = Vec::with_capacity(n);
        let results = launcher.launch_all(&vec![argv.to_vec(); n], &mut |_, event| {
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
            launched.remove_file()?;
        }
        Ok((wall, times))
    }
}
