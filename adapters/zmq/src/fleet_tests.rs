//! Many kernels through one registration socket (`Launcher`, blocking and async): healthy,
//! forging and dying kernels side by side, and restarts. The kernels are copies of this test
//! binary ([`helper_kernel_argv`]).

use std::collections::HashSet;
use std::time::Duration;

use jupyter_handshake::RegistrarEvent;
use jupyter_handshake::{Dialect, Evidence, ExitStatus, Failure, Instant, LauncherEvent};

use crate::blocking::testkit::helper_kernel_argv;
use crate::error::LaunchError;
use crate::launch::{ChildStdio, LaunchOptions, Launched};
use crate::temp::TempDir;
use crate::{asynchronous, blocking};

/// What each kernel of a fleet does, by index: every 20th dies mid-handshake (5 %), every 10th
/// otherwise sends garbage and a forged request first (10 %, minus the dying ones), the rest
/// just register.
fn role(i: usize) -> &'static str {
    if i % 20 == 7 {
        "die"
    } else if i % 10 == 3 {
        "forge"
    } else {
        "plain"
    }
}

fn options(dir: &TempDir) -> LaunchOptions {
    LaunchOptions {
        dir: Some(dir.0.clone()),
        stdout: ChildStdio::Null,
        stderr: ChildStdio::Null,
        timeout: Duration::from_secs(120),
        ..LaunchOptions::default()
    }
}

#[derive(Default)]
struct Seen {
    /// Messages no launch's key verified (garbage, forgeries).
    unattributed: usize,
    /// Per launch: refusals (a signed request with unusable ports).
    refused: usize,
}

fn observe(seen: &mut Seen) -> impl FnMut(Instant, &RegistrarEvent) + '_ {
    |_, event| match event {
        RegistrarEvent::Rejected(_) => seen.unattributed += 1,
        RegistrarEvent::Launch {
            event: LauncherEvent::Refused(_),
            ..
        } => seen.refused += 1,
        _ => {}
    }
}

/// Checks a fleet's outcomes against the roles, talks to every registered kernel (its ports are
/// its own: kernel_info answers there), shuts them down.
fn check_fleet(results: Vec<Result<Launched, LaunchError>>, seen: &Seen, n: usize) {
    assert_eq!(results.len(), n);
    let ctx = zmq::Context::new();
    let mut ports = HashSet::new();
    let mut children = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match (role(i), result) {
            ("die", Err(error)) => assert!(
                matches!(
                    error,
                    LaunchError::Failed {
                        failure: Failure::KernelExited(ExitStatus::Code(7)),
                        ..
                    }
                ),
                "kernel {i}: {error}"
            ),
            ("die", Ok(_)) => panic!("kernel {i} should have died"),
            (_, Err(error)) => panic!("kernel {i} ({}) failed: {error}", role(i)),
            (_, Ok(launched)) => {
                assert_eq!(launched.evidence, Evidence::Request);
                assert!(launched.launch_id.is_some());
                let p = launched.connection.ports;
                for port in [p.shell, p.iopub, p.stdin, p.control, p.hb] {
                    assert!(ports.insert(port), "kernel {i}: port {port} seen twice");
                }
                let mut client = blocking::Client::connect(&ctx, &launched.connection).unwrap();
                let info = client.kernel_info(Duration::from_secs(60)).unwrap();
                assert_eq!(info["implementation"], "helper", "kernel {i}");
                client.shutdown(Duration::from_secs(60)).unwrap();
                launched.remove_file().unwrap();
                children.push(launched.child);
            }
        }
    }
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let forgers = (0..n)
        .filter(|&i| role(i) == "forge" || role(i) == "die")
        .count();
    // Each forger and dying kernel sends garbage and a forgery (dropped unattributed) and a
    // well-signed request with unusable ports (refused by its own launch).
    assert_eq!(seen.unattributed, 2 * forgers);
    assert_eq!(seen.refused, forgers);
}

fn argvs(n: usize) -> Vec<Vec<String>> {
    (0..n).map(|i| helper_kernel_argv(role(i))).collect()
}

#[test]
fn two_hundred_kernels_through_one_socket_blocking() {
    const N: usize = 200;
    let ctx = zmq::Context::new();
    let dir = TempDir::new();
    let mut launcher = blocking::Launcher::new(&ctx, &options(&dir)).unwrap();
    let mut seen = Seen::default();
    let results = launcher
        .launch_all(&argvs(N), &mut observe(&mut seen))
        .unwrap();
    check_fleet(results, &seen, N);
}

/// Half of the kernels in each dialect (even indexes Posit, odd upstream), the same roles.
#[test]
fn two_hundred_kernels_of_both_dialects_through_one_socket() {
    const N: usize = 200;
    let ctx = zmq::Context::new();
    let dir = TempDir::new();
    let mut launcher = blocking::Launcher::new(&ctx, &options(&dir)).unwrap();
    let launches: Vec<(Vec<String>, Dialect)> = argvs(N)
        .into_iter()
        .enumerate()
        .map(|(i, argv)| {
            (
                argv,
                if i % 2 == 0 {
                    Dialect::Posit
                } else {
                    Dialect::Upstream
                },
            )
        })
        .collect();
    let mut seen = Seen::default();
    let results = launcher
        .launch_mixed(&launches, &mut observe(&mut seen))
        .unwrap();
    check_fleet(results, &seen, N);
}

#[test]
fn two_hundred_kernels_through_one_socket_async() {
    const N: usize = 200;
    let ctx = zmq::Context::new();
    let dir = TempDir::new();
    let mut launcher = asynchronous::Launcher::new(&ctx, &options(&dir)).unwrap();
    let mut seen = Seen::default();
    let results =
        futures_executor::block_on(launcher.launch_all(&argvs(N), &mut observe(&mut seen)))
            .unwrap();
    check_fleet(results, &seen, N);
}

/// Launches one kernel, kills it, restarts it through the same socket: the client reconnects to
/// the new ports. Then once more, to show the socket outlives any number of restarts.
fn restart_scenario(
    launch_one: &mut dyn FnMut() -> Launched,
    restart: &mut dyn FnMut(&mut Launched) -> Result<(), LaunchError>,
) {
    let ctx = zmq::Context::new();
    let mut launched = launch_one();
    let id = launched.launch_id;
    for round in 0..2 {
        let before = launched.connection.clone();
        let mut client = blocking::Client::connect(&ctx, &before).unwrap();
        assert_eq!(
            client.kernel_info(Duration::from_secs(30)).unwrap()["implementation"],
            "helper"
        );
        drop(client);
        launched.child.kill().unwrap();
        launched.child.wait().unwrap();
        restart(&mut launched).unwrap();
        assert_eq!(launched.launch_id, id, "the same launch");
        assert_ne!(
            launched.connection.ports, before.ports,
            "round {round}: new ports"
        );
        assert!(launched.connection.key.ct_eq(&before.key), "same key");
        let mut client = blocking::Client::connect(&ctx, &launched.connection).unwrap();
        let info = client.kernel_info(Duration::from_secs(30)).unwrap();
        assert_eq!(info["implementation"], "helper");
    }
    let mut client = blocking::Client::connect(&ctx, &launched.connection).unwrap();
    client.shutdown(Duration::from_secs(30)).unwrap();
    assert!(launched.child.wait().unwrap().success());
    launched.remove_file().unwrap();
}

#[test]
fn a_killed_kernel_restarts_through_the_same_socket_blocking() {
    let ctx = zmq::Context::new();
    let dir = TempDir::new();
    let launcher = std::cell::RefCell::new(blocking::Launcher::new(&ctx, &options(&dir)).unwrap());
    let port = launcher.borrow().port();
    restart_scenario(
        &mut || {
            let mut results = launcher
                .borrow_mut()
                .launch_all(&[helper_kernel_argv("plain")], &mut |_, _| {})
                .unwrap();
            results.pop().unwrap().unwrap()
        },
        &mut |launched| launcher.borrow_mut().restart(launched, &mut |_, _| {}),
    );
    assert_eq!(launcher.borrow().port(), port);
}

#[test]
fn a_forgotten_kernel_cannot_be_restarted_and_its_record_is_gone() {
    let ctx = zmq::Context::new();
    let dir = TempDir::new();
    let mut launcher = blocking::Launcher::new(&ctx, &options(&dir)).unwrap();
    let mut results = launcher
        .launch_all(&[helper_kernel_argv("plain")], &mut |_, _| {})
        .unwrap();
    let mut launched = results.pop().unwrap().unwrap();
    launcher.forget(&launched).unwrap();
    let error = launcher.restart(&mut launched, &mut |_, _| {}).unwrap_err();
    assert!(error.to_string().contains("no launch"), "{error}");
    assert!(
        matches!(launched.child.try_wait(), Ok(None)),
        "a refused restart leaves the process alone"
    );
    assert!(launcher.forget(&launched).is_err(), "already forgotten");
    let _ = launched.child.kill();
    let _ = launched.child.wait();
    launched.remove_file().unwrap();
}

#[test]
fn a_killed_kernel_restarts_through_the_same_socket_async() {
    let ctx = zmq::Context::new();
    let dir = TempDir::new();
    let launcher =
        std::cell::RefCell::new(asynchronous::Launcher::new(&ctx, &options(&dir)).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    restart_scenario(
        &mut || {
            let mut launcher = launcher.borrow_mut();
            let argvs = [helper_kernel_argv("async")];
            let mut results = runtime
                .block_on(launcher.launch_all(&argvs, &mut |_, _| {}))
                .unwrap();
            results.pop().unwrap().unwrap()
        },
        &mut |launched| {
            let mut launcher = launcher.borrow_mut();
            runtime.block_on(launcher.restart(launched, &mut |_, _| {}))
        },
    );
}

#[test]
fn classic_mode_cannot_share_and_bad_commands_fail_alone() {
    let ctx = zmq::Context::new();
    let dir = TempDir::new();
    let classic = LaunchOptions {
        mode: crate::LaunchMode::Classic,
        ..options(&dir)
    };
    assert!(matches!(
        blocking::Launcher::new(&ctx, &classic),
        Err(LaunchError::ClassicCannotShare)
    ));
    let mut launcher = blocking::Launcher::new(&ctx, &options(&dir)).unwrap();
    let argvs = vec![
        vec![],
        vec![
            "/nonexistent/kernel".to_string(),
            "{connection_file}".into(),
        ],
        helper_kernel_argv("plain"),
    ];
    let mut results = launcher.launch_all(&argvs, &mut |_, _| {}).unwrap();
    let mut good = results.pop().unwrap().unwrap();
    assert!(matches!(results[0], Err(LaunchError::EmptyCommand)));
    let Err(LaunchError::Spawn { program, .. }) = &results[1] else {
        panic!("expected a spawn error, got {:?}", results[1]);
    };
    assert_eq!(program, "/nonexistent/kernel");
    let client_ctx = zmq::Context::new();
    let mut client = blocking::Client::connect(&client_ctx, &good.connection).unwrap();
    client.shutdown(Duration::from_secs(30)).unwrap();
    assert!(good.child.wait().unwrap().success());
    good.remove_file().unwrap();
    // Only the good kernel's file was ever left, and it is gone now.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
    // A kernel not launched through a Launcher cannot be restarted through one.
    let mut single = blocking::launch(
        &ctx,
        &helper_kernel_argv("plain"),
        &options(&dir),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(matches!(
        launcher.restart(&mut single, &mut |_, _| {}),
        Err(LaunchError::NotShared)
    ));
    let _ = single.child.kill();
    let _ = single.child.wait();
    single.remove_file().unwrap();
}
