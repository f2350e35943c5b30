//! Hostile and failing kernels against the tokio launcher, on tokio's multi-thread runtime:
//! forged, unsigned and garbage registrations, dying and silent kernels, 200 kernels through
//! one socket (10 % forging first, 5 % dying), a restart through the same socket, and no
//! registration socket inherited by a kernel.

#![cfg(unix)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{TempDir, python_script, python_str};
use common::{WAIT, options, round_trip, tokio_kernel, tokio_kernel_argv};
use jupyter_handshake::RegistrarEvent;
use jupyter_handshake::{Dialect, Evidence, ExitStatus, Failure, Waiting};
use jupyter_handshake_tokio::{Client, Error, Launcher};

/// `hostile_then_exec.py` sends a forged, an unsigned and two garbage registrations, then
/// becomes the tokio kernel.
fn hostile_argv() -> Vec<String> {
    vec![
        python_str(),
        python_script("hostile_then_exec.py"),
        "{connection_file}".into(),
        "--".into(),
        tokio_kernel(),
        "{connection_file}".into(),
    ]
}

fn dying_argv() -> Vec<String> {
    vec!["sh".into(), "-c".into(), "exit 7".into()]
}

fn assert_exited_7(result: &Result<jupyter_handshake_tokio::Launched, Error>) {
    assert!(
        matches!(
            result,
            Err(Error::Failed {
                failure: Failure::KernelExited(ExitStatus::Code(7)),
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unsigned_and_garbage_registrations_change_nothing() {
    let dir = TempDir::new("tokio-hostile");
    let mut launcher = Launcher::bind(options(&dir, Dialect::Posit)).await.unwrap();
    let mut unattributed = 0;
    let mut results = launcher
        .launch_many_observed(&[hostile_argv()], &mut |_, event| {
            if let RegistrarEvent::Rejected(_) = event {
                unattributed += 1;
            }
        })
        .await
        .unwrap();
    let launched = results.pop().unwrap().expect("the real kernel registers");
    assert!(
        unattributed >= 4,
        "every hostile message is dropped unattributed ({unattributed})"
    );
    assert_eq!(launched.evidence, Evidence::Request);
    assert!(launched.connection.ports.shell > 5, "not the forged ports");
    round_trip(launched, "after the attack").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_kernel_fails_its_launch_and_leaves_no_file() {
    let dir = TempDir::new("tokio-dying");
    let mut launcher = Launcher::bind(options(&dir, Dialect::Posit)).await.unwrap();
    let result = launcher.launch(&dying_argv()).await;
    assert_exited_7(&result);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the file (with its key) is removed"
    );
    assert_eq!(launcher.pending(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_kernel_times_out_and_is_killed() {
    let dir = TempDir::new("tokio-silent");
    let mut opts = options(&dir, Dialect::Upstream);
    opts.timeout = Duration::from_millis(500);
    let mut launcher = Launcher::bind(opts).await.unwrap();
    let result = launcher.launch(&["sleep".into(), "60".into()]).await;
    assert!(
        matches!(
            result,
            Err(Error::Failed {
                failure: Failure::Timeout {
                    waiting_for: Waiting::Registration,
                    ..
                },
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_missing_command_fails_only_its_own_launch() {
    let dir = TempDir::new("tokio-bad-cmd");
    let mut launcher = Launcher::bind(options(&dir, Dialect::Posit)).await.unwrap();
    let results = launcher
        .launch_many(&[
            vec![],
            vec!["/nonexistent/kernel".into()],
            tokio_kernel_argv(),
        ])
        .await
        .unwrap();
    assert!(
        matches!(results[0], Err(Error::EmptyCommand)),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(results[1], Err(Error::Spawn { .. })),
        "{:?}",
        results[1]
    );
    let mut results = results;
    round_trip(results.pop().unwrap().unwrap(), "still fine").await;
}

/// `n` kernels launched at once through one registration socket: every 20th dies (5 %), every
/// 10th otherwise attacks the socket first (10 %); every other one registers with ports of its
/// own and answers kernel_info there (every 10th is asked), and one is restarted through the
/// same socket.
async fn fleet(n: usize) {
    let role = |i: usize| match (i % 20, i % 10) {
        (7, _) => "die",
        (_, 3) => "forge",
        _ => "plain",
    };
    let dir = TempDir::new("tokio-fleet");
    let mut opts = options(&dir, Dialect::Posit);
    opts.timeout = Duration::from_secs(120);
    let mut launcher = Launcher::bind(opts).await.unwrap();
    let argvs: Vec<Vec<String>> = (0..n)
        .map(|i| match role(i) {
            "die" => dying_argv(),
            "forge" => hostile_argv(),
            _ => tokio_kernel_argv(),
        })
        .collect();
    let mut unattributed = 0;
    let results = launcher
        .launch_many_observed(&argvs, &mut |_, event| {
            if let RegistrarEvent::Rejected(_) = event {
                unattributed += 1;
            }
        })
        .await
        .unwrap();
    assert_eq!(results.len(), n);
    let forgers = (0..n).filter(|&i| role(i) == "forge").count();
    let mut ports = HashSet::new();
    let mut launched = Vec::new();
    let mut failed = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        if role(i) == "die" {
            assert_exited_7(&result);
            continue;
        }
        match result {
            Ok(kernel) => {
                for port in kernel.connection.ports.as_array() {
                    assert!(
                        ports.insert(port),
                        "kernel {i}: port {port} is another kernel's"
                    );
                }
                launched.push(kernel);
            }
            Err(e) => failed.push(format!("kernel {i} ({}): {e}", role(i))),
        }
    }
    if !failed.is_empty() || unattributed < 4 * forgers {
        // Stop the kernels that did register, so that a failure leaves no process behind.
        for kernel in &mut launched {
            let _ = kernel.child.kill().await;
        }
    }
    assert!(
        unattributed >= 4 * forgers,
        "{unattributed} dropped for {forgers} forgers"
    );
    assert!(
        failed.is_empty(),
        "{} of {n} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    for kernel in launched.iter().step_by(10) {
        let mut client = Client::connect(&kernel.connection).await.unwrap();
        let info = client.wait_for_ready(WAIT).await.unwrap();
        assert_eq!(info["implementation"], "tokio_kernel");
    }
    let mut first = launched.swap_remove(0);
    let old_ports = first.connection.ports;
    launcher.restart(&mut first).await.expect("restart");
    assert_ne!(first.connection.ports, old_ports);
    for mut kernel in launched {
        let _ = kernel.child.kill().await;
    }
    round_trip(first, "restarted").await;
}

/// 40 kernels at once through one registration socket (the driver's own ROUTER, `router`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_kernels_through_one_socket_with_forgers_and_dying_ones() {
    fleet(40).await;
}

/// The issue's size: 200 kernels, 10 % forging first, 5 % dying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_kernels_through_one_socket_with_forgers_and_dying_ones() {
    fleet(200).await;
}

/// The kernel inherits no socket from the launcher (Linux: its open descriptors are listed
/// before it becomes the real kernel).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kernel_inherits_no_socket_from_the_launcher() {
    let dir = TempDir::new("tokio-fds");
    let mut launcher = Launcher::bind(options(&dir, Dialect::Posit)).await.unwrap();
    let argv = vec![
        "sh".into(),
        "-c".into(),
        r#"ls -l /proc/$$/fd > "$0.fds"; exec "$1" "$0""#.into(),
        "{connection_file}".into(),
        tokio_kernel(),
    ];
    let launched = launcher.launch(&argv).await.unwrap();
    let listing = std::fs::read_to_string(format!("{}.fds", launched.file.display())).unwrap();
    assert!(
        !listing.contains("socket:"),
        "inherited sockets:\n{listing}"
    );
    assert!(!listing.contains(".json\n"), "inherited a file:\n{listing}");
    round_trip(launched, "no leaks").await;
}
