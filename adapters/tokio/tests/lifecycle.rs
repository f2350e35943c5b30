//! The tokio launcher's process lifecycle, on tokio's multi-thread runtime: classic launches,
//! cancelling a launch in progress, and stopping a kernel's whole process group.

#![cfg(unix)]

mod common;

use std::time::Duration;

use common::{CLASSIC_TRIES, TempDir, answers_or_exits, options, round_trip, tokio_kernel_argv};
use jupyter_handshake::{Dialect, Evidence};
use jupyter_handshake_tokio::kernelspec::LaunchMode;
use jupyter_handshake_tokio::process::{Cancel, group_is_empty};
use jupyter_handshake_tokio::{Error, LaunchOptions, Launcher, launch};

/// A kernel command that never registers: a shell that writes its pid (its group's id) to
/// `pid_file`, leaves a grandchild in its group, and waits.
fn never_registers(pid_file: &std::path::Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo $$ > '{}'; sleep 60 & wait # {{connection_file}}",
            pid_file.display()
        ),
    ]
}

/// The pid a [`never_registers`] kernel wrote, once it has.
async fn read_pid(pid_file: &std::path::Path) -> u32 {
    for _ in 0..1000 {
        if let Ok(text) = std::fs::read_to_string(pid_file) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the kernel never wrote {}", pid_file.display());
}

/// The `kernel-*.json` files left in `dir`.
fn kernel_files(dir: &TempDir) -> Vec<String> {
    std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kernel-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_launch_starts_the_kernel_on_picked_ports_and_a_launcher_refuses_it() {
    let dir = TempDir::new("tokio-classic");
    let classic = LaunchOptions {
        mode: LaunchMode::Classic,
        kernel_name: Some("tokio-classic".into()),
        ..options(&dir, Dialect::Posit)
    };
    let mut launched = None;
    for _ in 0..CLASSIC_TRIES {
        let mut candidate = launch(&tokio_kernel_argv(), &classic).await.unwrap();
        if answers_or_exits(&mut candidate).await {
            launched = Some(candidate);
            break;
        }
    }
    let launched = launched.expect("a classic kernel that bound its ports");
    assert_eq!(launched.evidence, Evidence::Classic);
    assert_eq!(launched.launch_id, None);
    assert_eq!(
        launched.connection.kernel_name.as_deref(),
        Some("tokio-classic")
    );
    assert_eq!(
        round_trip(launched, "classic").await["implementation"],
        "tokio_kernel"
    );
    assert!(matches!(
        Launcher::bind(classic).await,
        Err(Error::ClassicCannotShare)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_launch_stops_the_kernels_process_group_and_removes_its_file() {
    let dir = TempDir::new("tokio-cancel");
    let pid_file = dir.join("pid");
    let cancel = Cancel::new();
    let options = LaunchOptions {
        cancel: Some(cancel.clone()),
        ..options(&dir, Dialect::Posit)
    };
    let argv = never_registers(&pid_file);
    let launching = tokio::spawn(async move { launch(&argv, &options).await });
    let pid = read_pid(&pid_file).await;
    assert_eq!(kernel_files(&dir).len(), 1, "the registration file exists");
    assert!(!group_is_empty(pid));
    cancel.cancel();
    let result = launching.await.unwrap();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(
        group_is_empty(pid),
        "the kernel and its grandchild are gone"
    );
    assert_eq!(kernel_files(&dir), Vec::<String>::new(), "no file left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_launched_kernel_stops_its_group_and_removes_its_file() {
    let dir = TempDir::new("tokio-stop");
    let pid_file = dir.join("pid");
    // Classic: "launched" at once, so the kernel can be anything.
    let classic = LaunchOptions {
        mode: LaunchMode::Classic,
        ..options(&dir, Dialect::Posit)
    };
    let mut launched = launch(&never_registers(&pid_file), &classic).await.unwrap();
    let pid = read_pid(&pid_file).await;
    assert_eq!(
        launched.child.id(),
        Some(pid),
        "the kernel leads its own group"
    );
    let status = launched.stop(Duration::from_secs(5)).await.unwrap();
    assert!(!status.success());
    assert!(group_is_empty(pid), "the grandchild went with it");
    assert!(
        !launched.file.exists(),
        "the file holding the key is removed"
    );
    assert_eq!(
        std::env::var("JPY_PARENT_PID").ok(),
        None,
        "the test itself was not started by a launcher"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernels_are_told_their_launchers_pid() {
    let dir = TempDir::new("tokio-parent-pid");
    let out = dir.join("env");
    let argv = vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo $JPY_PARENT_PID > '{}'; sleep 60 # {{connection_file}}",
            out.display()
        ),
    ];
    let classic = LaunchOptions {
        mode: LaunchMode::Classic,
        ..options(&dir, Dialect::Posit)
    };
    let mut launched = launch(&argv, &classic).await.unwrap();
    let pid = read_pid(&out).await;
    assert_eq!(pid, std::process::id());
    launched.kill().await.unwrap();
}
