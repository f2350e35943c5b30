//! The async drivers, on two executors: every scenario runs on `futures::executor::block_on`
//! and on tokio's current-thread runtime. The kernels are copies of this test binary
//! ([`helper_kernel_argv`]), registering with the blocking or the async kernel side.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use jupyter_handshake::{
    Evidence, ExitStatus, Failure, KernelEvent, KernelState, LauncherState, RegistrationFile,
    SignatureScheme, Transport, Waiting,
};
use serde_json::json;

use super::{Client, launch, start_kernel};
use crate::blocking::testkit::{
    CLASSIC_TRIES, Guard, HandLauncher, Seen, answers_or_races, helper_kernel_argv, observe,
    options,
};
use crate::client::Channel;
use crate::error::{Error, LaunchError};
use crate::files::{random_key, write_private_atomic};
use crate::kernel::KernelOptions;
use crate::kernelspec::LaunchMode;
use crate::launch::{ChildStdio, LaunchOptions};
use crate::temp::TempDir;

/// Runs the scenario `make()` builds on both executors, one after the other.
fn on_both_executors<F: Future<Output = ()>>(make: impl Fn() -> F) {
    futures_executor::block_on(make());
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(make());
}

/// Talks to a launched helper kernel with the async client, shuts it down, and checks it
/// exited cleanly.
async fn use_and_shut_down(ctx: &zmq::Context, launched: &mut Guard) {
    let mut client = Client::connect(ctx, &launched.0.connection).unwrap();
    let info = client
        .wait_for_ready(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(info["implementation"], "helper");
    assert!(client.heartbeat(Duration::from_secs(10)).await.unwrap());
    let reply = client
        .request(
            Channel::Shell,
            "comm_info_request",
            json!({}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply["status"], "error");
    let reply = client.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply["status"], "ok");
    assert!(launched.0.child.wait().unwrap().success());
    launched.0.remove_file().unwrap();
}

#[test]
fn forged_and_garbage_messages_are_dropped_and_the_launch_succeeds() {
    on_both_executors(|| async {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut seen = Seen::default();
        let argv = helper_kernel_argv("forge");
        let launched = launch(&ctx, &argv, &options(&dir), &mut observe(&mut seen)).await;
        let mut launched = Guard(launched.unwrap());
        assert_eq!(launched.0.evidence, Evidence::Request);
        assert_eq!(
            seen.states,
            [LauncherState::Bound, LauncherState::Connected]
        );
        assert_eq!(seen.rejected, 2, "garbage and forgery");
        assert_eq!(seen.refused, 1, "signed request with unusable ports");
        use_and_shut_down(&ctx, &mut launched).await;
    });
}

#[test]
fn the_async_kernel_side_registers_with_the_async_launcher() {
    on_both_executors(|| async {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let argv = helper_kernel_argv("async");
        let launched = launch(&ctx, &argv, &options(&dir), &mut |_, _| {}).await;
        let mut launched = Guard(launched.unwrap());
        assert_eq!(launched.0.evidence, Evidence::Request);
        use_and_shut_down(&ctx, &mut launched).await;
    });
}

#[test]
fn the_async_kernel_side_registers_in_the_upstream_dialect() {
    on_both_executors(|| async {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut seen = Seen::default();
        // The kernel forges first (upstream-framed), then registers from a DEALER.
        let argv = helper_kernel_argv("forge");
        let options = LaunchOptions {
            mode: LaunchMode::Upstream,
            ..options(&dir)
        };
        let launched = launch(&ctx, &argv, &options, &mut observe(&mut seen)).await;
        let mut launched = Guard(launched.unwrap());
        assert_eq!(launched.0.evidence, Evidence::Request);
        assert_eq!((seen.rejected, seen.refused), (2, 1));
        use_and_shut_down(&ctx, &mut launched).await;
        // And the async kernel side itself, in the upstream dialect.
        let argv = helper_kernel_argv("async");
        let launched = launch(&ctx, &argv, &options, &mut |_, _| {}).await;
        let mut launched = Guard(launched.unwrap());
        use_and_shut_down(&ctx, &mut launched).await;
    });
}

#[test]
fn classic_mode_writes_a_connection_file_and_the_kernel_binds_it() {
    on_both_executors(|| async {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let argv = helper_kernel_argv("plain");
        let options = LaunchOptions {
            mode: LaunchMode::Classic,
            ..options(&dir)
        };
        for _ in 0..CLASSIC_TRIES {
            let launched = launch(&ctx, &argv, &options, &mut |_, _| {}).await;
            let mut launched = Guard(launched.unwrap());
            assert_eq!(launched.0.evidence, Evidence::Classic);
            assert_eq!(launched.0.registered_after, Duration::ZERO);
            // The probe is the blocking one (the helper kernel exits when a bind fails); the
            // async client is what `use_and_shut_down` exercises.
            if answers_or_races(&ctx, &mut launched.0, &|| false) {
                use_and_shut_down(&ctx, &mut launched).await;
                return;
            }
        }
        panic!("no classic kernel of {CLASSIC_TRIES} bound its ports");
    });
}

#[test]
fn a_kernel_that_dies_mid_handshake_is_reported_at_once() {
    on_both_executors(|| async {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut seen = Seen::default();
        let options = LaunchOptions {
            // Far away: the death must be reported when it happens, not at the deadline.
            timeout: Duration::from_secs(600),
            ..options(&dir)
        };
        let argv = helper_kernel_argv("die");
        let error = launch(&ctx, &argv, &options, &mut observe(&mut seen))
            .await
            .unwrap_err();
        let LaunchError::Failed {
            failure,
            last_rejection,
        } = &error
        else {
            panic!("expected a failure, got {error}");
        };
        assert_eq!(*failure, Failure::KernelExited(ExitStatus::Code(7)));
        assert!(last_rejection.is_some(), "it was mid-handshake");
        assert_eq!((seen.rejected, seen.refused), (2, 1));
        assert_eq!(seen.states, [LauncherState::Bound, LauncherState::Failed]);
        assert_eq!(
            std::fs::read_dir(&dir.0).unwrap().count(),
            0,
            "file removed"
        );
    });
}

/// A registration socket that never answers, and the registration file pointing at it.
fn silent_launcher(ctx: &zmq::Context, dir: &TempDir) -> (zmq::Socket, PathBuf) {
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    let port =
        crate::sockets::bind(&router, "registration", Transport::Tcp, "127.0.0.1", 0).unwrap();
    let file = RegistrationFile::new(
        Transport::Tcp,
        "127.0.0.1",
        SignatureScheme::HmacSha256,
        random_key(),
        port,
    );
    let path = dir.0.join("registration.json");
    write_private_atomic(&path, &file.to_json_pretty()).unwrap();
    (router, path)
}

#[test]
fn the_kernel_side_fails_at_the_ack_timeout() {
    on_both_executors(|| async {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let (router, path) = silent_launcher(&ctx, &dir);
        let options = KernelOptions {
            ack_timeout: Duration::from_millis(200),
            ..KernelOptions::default()
        };
        let mut states = Vec::new();
        let result = start_kernel(&ctx, &path, &options, &mut |_, e| {
            if let KernelEvent::StateChanged { to, .. } = e {
                states.push(*to);
            }
        })
        .await;
        let Err(Error::Handshake(Failure::Timeout { waiting_for, .. })) = result else {
            panic!("expected a timeout");
        };
        assert_eq!(waiting_for, Waiting::Reply);
        assert_eq!(states.last(), Some(&KernelState::Failed));
        // The request did arrive.
        assert!(router.poll(zmq::POLLIN, 0).unwrap() > 0);
    });
}

#[test]
fn the_kernel_side_waits_for_the_first_iopub_subscription() {
    on_both_executors(|| async {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut launcher = HandLauncher::new(&ctx, &dir.0);
        let file = launcher.file.clone();
        // The launcher side is served by hand in a thread; when it is done, a subscriber
        // connects to the kernel's IOPub.
        let thread_ctx = ctx.clone();
        let serving = std::thread::spawn(move || {
            launcher.serve();
            let connection = launcher.connection().clone();
            let sub = thread_ctx.socket(zmq::SUB).unwrap();
            sub.set_subscribe(b"").unwrap();
            sub.connect(&connection.endpoint(connection.ports.iopub))
                .unwrap();
            (launcher, sub)
        });
        let options = KernelOptions {
            wait_for_iopub: Some(Duration::from_secs(30)),
            ..KernelOptions::default()
        };
        let mut states = Vec::new();
        let started = start_kernel(&ctx, &file, &options, &mut |_, e| {
            if let KernelEvent::StateChanged { to, .. } = e {
                states.push(*to);
            }
        })
        .await
        .unwrap();
        let (launcher, _sub) = serving.join().unwrap();
        assert_eq!(&started.connection, launcher.connection());
        assert_eq!(started.first_subscription.as_deref(), Some(&b""[..]));
        assert_eq!(
            states,
            [
                KernelState::Bound,
                KernelState::AwaitingReply,
                KernelState::Registered,
                KernelState::Connected
            ]
        );
    });
}

/// 100 launches at once, all awaited from one thread: each registers with its own ports, then
/// each is asked for kernel_info and shut down through its own async client.
#[test]
fn a_hundred_concurrent_launches_from_one_thread() {
    const N: usize = 100;
    on_both_executors(|| async {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let argv = helper_kernel_argv("plain");
        let options = LaunchOptions {
            stdout: ChildStdio::Null,
            timeout: Duration::from_secs(120),
            ..options(&dir)
        };
        let thread = std::thread::current().id();
        let one = |_| async {
            let launched = launch(&ctx, &argv, &options, &mut |_, _| {}).await;
            let mut launched = Guard(launched.unwrap());
            assert_eq!(std::thread::current().id(), thread);
            let mut client = Client::connect(&ctx, &launched.0.connection).unwrap();
            let info = client.kernel_info(Duration::from_secs(60)).await.unwrap();
            assert_eq!(info["implementation"], "helper");
            let reply = client.shutdown(Duration::from_secs(60)).await.unwrap();
            assert_eq!(reply["status"], "ok");
            drop(client);
            let ports = launched.0.connection.ports;
            // Reaped below, together, so that one slow exit does not serialise the others.
            let child = std::mem::replace(&mut launched.0.child, dummy_child());
            (ports, child, launched)
        };
        let results = futures_util::future::join_all((0..N).map(one)).await;
        let mut all_ports = Vec::new();
        for (ports, mut child, launched) in results {
            assert!(child.wait().unwrap().success());
            launched.0.remove_file().unwrap();
            assert_eq!(ports.validate(), Ok(()));
            all_ports.extend([
                ports.shell,
                ports.iopub,
                ports.stdin,
                ports.control,
                ports.hb,
            ]);
        }
        let count = all_ports.len();
        all_ports.sort_unstable();
        all_ports.dedup();
        assert_eq!(all_ports.len(), count, "every kernel has its own ports");
    });
}

/// An already-finished child, to leave in a [`Guard`] whose real child was taken out.
fn dummy_child() -> std::process::Child {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let _ = child.wait();
    child
}

/// The launcher's and the client's futures are `Send`: they run as tasks of tokio's
/// multi-thread runtime, which may move a task to another worker thread at any `.await`. A
/// single launch and a launch of three through one `Launcher` run at once, on two workers, then
/// a client task per kernel.
#[test]
fn launches_are_send_and_run_on_tokios_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let dir = TempDir::new();
    let ctx = zmq::Context::new();
    let single = runtime.spawn({
        let (ctx, options) = (ctx.clone(), options(&dir));
        async move {
            let mut seen = Seen::default();
            let argv = helper_kernel_argv("async");
            let launched = launch(&ctx, &argv, &options, &mut observe(&mut seen)).await;
            (launched, seen.states)
        }
    });
    let many = runtime.spawn({
        let (ctx, options) = (ctx.clone(), options(&dir));
        async move {
            let mut launcher = super::Launcher::new(&ctx, &options).unwrap();
            let argvs = vec![helper_kernel_argv("async"); 3];
            launcher.launch_all(&argvs, &mut |_, _| {}).await
        }
    });
    let (launched, states) = runtime.block_on(single).unwrap();
    let mut launched = vec![Guard(launched.unwrap())];
    assert_eq!(states, [LauncherState::Bound, LauncherState::Connected]);
    for result in runtime.block_on(many).unwrap().unwrap() {
        launched.push(Guard(result.unwrap()));
    }
    // The client's futures are Send too: each kernel is used and shut down from a task.
    let clients: Vec<_> = launched
        .into_iter()
        .map(|mut kernel| {
            let ctx = ctx.clone();
            runtime.spawn(async move {
                assert_eq!(kernel.0.evidence, Evidence::Request);
                use_and_shut_down(&ctx, &mut kernel).await;
            })
        })
        .collect();
    for client in clients {
        runtime.block_on(client).unwrap();
    }
}

/// The kernel side's future is `Send` too (its observer must be): it may be spawned on a
/// multi-thread runtime. Checked when this test compiles; the future is dropped unpolled.
#[test]
fn the_kernel_sides_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let ctx = zmq::Context::new();
    let options = KernelOptions::default();
    let mut states = Vec::new();
    let mut observer = |_: jupyter_handshake::Instant, event: &KernelEvent| {
        if let KernelEvent::StateChanged { to, .. } = event {
            states.push(*to);
        }
    };
    let start = start_kernel(
        &ctx,
        std::path::Path::new("/nonexistent/kernel.json"),
        &options,
        &mut observer,
    );
    assert_send(&start);
    // Never polled: it would fail to read the file; dropping it does nothing.
    drop(start);
    assert!(states.is_empty());
}
