//! Shared by the tokio driver's integration tests: the example kernel's path, launch options,
//! and a round trip with a launched kernel.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use jupyter_handshake::Dialect;
use jupyter_handshake_tests::{TempDir, path_string, target_dir, workspace_root};
use jupyter_handshake_tokio::{ChildStdio, Client, LaunchOptions, Launched};

/// How long any one wait of a test may take (generous: CI has two cores).
pub const WAIT: Duration = Duration::from_secs(30);

/// The `tokio_kernel` example binary.
pub fn tokio_kernel() -> String {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    path_string(BUILT.get_or_init(|| example("tokio_kernel")))
}

/// The example `name`, built (`cargo test` builds the examples anyway, so this is normally a
/// no-op).
pub fn example(name: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "-p", "jupyter-handshake-tokio", "--example", name])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the {name} example failed");
    let exe = target_dir()
        .join("debug")
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(exe.is_file(), "{} missing", exe.display());
    exe
}

/// `[tokio_kernel, {connection_file}]`.
pub fn tokio_kernel_argv() -> Vec<String> {
    vec![tokio_kernel(), "{connection_file}".into()]
}

/// Launch options writing into `dir`, in `dialect`, kernels' output discarded unless
/// `JH_TEST_VERBOSE` is set.
pub fn options(dir: &TempDir, dialect: Dialect) -> LaunchOptions {
    let stdio = if std::env::var_os("JH_TEST_VERBOSE").is_some() {
        ChildStdio::Inherit
    } else {
        ChildStdio::Null
    };
    LaunchOptions {
        dialect,
        dir: Some(dir.path().to_path_buf()),
        timeout: Duration::from_secs(60),
        stdout: stdio,
        stderr: stdio,
        ..LaunchOptions::default()
    }
}

/// Talks to a launched kernel with the tokio client (kernel_info with live IOPub, one execute,
/// a shutdown), waits for its exit (status 0) and removes its file; returns the kernel_info.
pub async fn round_trip(mut launched: Launched, code: &str) -> serde_json::Value {
    let mut client = Client::connect(&launched.connection)
        .await
        .expect("client connects");
    let info = client.wait_for_ready(WAIT).await.expect("kernel_info");
    let outcome = client.execute(code, WAIT).await.expect("execute");
    assert_eq!(outcome.reply["status"], "ok", "{outcome:?}");
    let published = outcome.iopub.iter().any(|(t, c)| {
        (t == "stream"
            && c["text"]
                .as_str()
                .is_some_and(|s| s.contains(code.trim_matches('\''))))
            || t == "execute_result"
    });
    assert!(
        published,
        "the execution published its output on IOPub: {outcome:?}"
    );
    let reply = client.shutdown(WAIT).await.expect("shutdown_reply");
    assert_eq!(reply["status"], "ok");
    let status = tokio::time::timeout(WAIT, launched.child.wait())
        .await
        .expect("the kernel exits after shutdown")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
    launched.remove_file().expect("remove file");
    info
}
