//! Shared by the tokio driver's integration tests: the example kernel's path, launch options,
//! and a round trip with a launched kernel.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use jupyter_handshake::{Dialect, LaunchMode};
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
    let mode = match dialect {
        Dialect::Posit => LaunchMode::Handshake,
        Dialect::Upstream => LaunchMode::Upstream,
    };
    LaunchOptions {
        mode,
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

/// How many times a test tries a classic launch before it fails.
///
/// A classic kernel binds ports the launcher picked and released a moment earlier; a kernel
/// of a test running in parallel can be handed one of them first, and the classic kernel dies
/// with "Address already in use". That is the race this project removes, which classic mode
/// keeps by design, so a classic test retries exactly that (a kernel that exits before it
/// answers), and nothing else.
pub const CLASSIC_TRIES: usize = 3;

/// Whether a launched kernel answers `kernel_info` (`true`) or exits first (`false`: see
/// [`CLASSIC_TRIES`]); one that does neither within [`WAIT`] fails the test.
pub async fn answers_or_exits(launched: &mut Launched) -> bool {
    let mut client = Client::connect(&launched.connection)
        .await
        .expect("client connects");
    let started = tokio::time::Instant::now();
    while started.elapsed() < WAIT {
        match client.wait_for_ready(Duration::from_secs(1)).await {
            Ok(_) => return true,
            Err(jupyter_handshake_tokio::Error::Timeout { .. }) => {}
            Err(e) => panic!("waiting for kernel_info: {e}"),
        }
        if let Some(status) = launched.child.try_wait().expect("try_wait") {
            assert!(
                !status.success(),
                "a kernel that exits before it answers failed"
            );
            return false;
        }
    }
    panic!("the kernel neither answered nor exited within {WAIT:?}");
}

/// Runs the command `make` builds, a classic launch of some kind (jupyter_client's
/// `KernelManager` picking the ports), and runs it again (at most [`CLASSIC_TRIES`] times in
/// all) only when it failed because the kernel could not bind a picked port ("Address already
/// in use"; see [`CLASSIC_TRIES`]). Any other failure is returned at once.
pub fn run_classic(make: impl Fn() -> Command) -> Finished {
    let mut tries = 1;
    loop {
        let out = run(make());
        let raced = !out.status.success() && out.stderr.contains("Address already in use");
        if !raced || tries == CLASSIC_TRIES {
            return out;
        }
        tries += 1;
    }
}

/// The workspace root (`adapters/tokio/../..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Cargo's target directory (`$CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// A path as a string for a command line.
pub fn path_string(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_string()
}

/// `tests/python/{name}`.
pub fn python_script(name: &str) -> String {
    let path = workspace_root().join("tests").join("python").join(name);
    assert!(path.is_file(), "missing helper script {}", path.display());
    path_string(&path)
}

/// The `python3` that has the pinned peers (`python3 -m pip install -r
/// tests/python/requirements.txt`): its `sys.executable`. A missing peer fails the test.
pub fn python_str() -> String {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import sys, jupyter_client, ipykernel, zmq; print(sys.executable)",
                ])
                .output()
                .expect("python3 runs");
            assert!(
                out.status.success(),
                "python3 lacks the pinned peers (pip install -r tests/python/requirements.txt): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .clone()
}

/// Our zmq kernel, `[jupyter-handshake, kernel, -f, {connection_file}]` (the tool is built once
/// per test process).
pub fn our_kernel_argv() -> Vec<String> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let tool = BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "-p",
                "jupyter-handshake-cli",
                "--bin",
                "jupyter-handshake",
            ])
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the jupyter-handshake tool failed"
        );
        target_dir().join("debug").join("jupyter-handshake")
    });
    vec![
        path_string(tool),
        "kernel".into(),
        "-f".into(),
        "{connection_file}".into(),
    ]
}

/// A private temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh one labelled `label`.
    pub fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "jh-tokio-{label}-{}",
            jupyter_handshake_tokio::files::new_session_id()
        ));
        jupyter_handshake_tokio::files::create_private_dir(&dir).expect("temp dir");
        Self(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A finished process: status and output.
pub struct Finished {
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Finished {
    /// Status and output, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// Fails the test unless it exited 0.
    pub fn assert_success(&self) {
        assert!(self.status.success(), "{}", self.describe());
    }

    /// The last line of stdout as JSON.
    pub fn json_line(&self) -> serde_json::Value {
        let line = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.describe()))
    }
}

/// Runs `command` to its end (stdin closed), killed after two minutes.
pub fn run(mut command: Command) -> Finished {
    command.stdin(std::process::Stdio::null());
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => {
            let out = out.expect("wait");
            Finished {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("hard timeout: the process ran for more than two minutes");
        }
    }
}
