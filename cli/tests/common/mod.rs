//! Shared helpers of the integration tests in `cli/tests/` (each test file includes this module
//! with `mod common;`, so not every helper is used by every file).
//!
//! The tests drive real processes over real loopback sockets: the `jupyter-handshake` tool (the
//! binary cargo built for this package's tests, `CARGO_BIN_EXE_jupyter-handshake`), and the
//! pinned Python peers of `tests/python/requirements.txt` (jupyter_client, ipykernel, pyzmq).
//! Three rules hold for every helper here:
//!
//! * **Nothing is skipped.** A missing `python3`, a missing Python package, a missing binary:
//!   each is a test *failure* with a message saying what to install, never a silent pass.
//! * **Nothing hangs.** Every process runs under a hard timeout ([`HARD_TIMEOUT`] unless a test
//!   says otherwise), after which its whole process group is killed and the test fails with
//!   everything the process printed.
//! * **Nothing leaks into the user's Jupyter setup.** Tests run launchers with a private
//!   `JUPYTER_RUNTIME_DIR` (a [`TempDir`]), so connection files never land in `~/.local`.
//!
//! Tests never assert how long something took (benchmarks measure); the hard timeout only turns a
//! hang into a failure.

#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long any one process of a test may run before it is killed and the test fails.
pub const HARD_TIMEOUT: Duration = Duration::from_secs(120);

/// The Python packages the tests need, as `import` names.
const PYTHON_MODULES: [&str; 3] = ["jupyter_client", "ipykernel", "zmq"];

/// The names of the five kernel ports, as connection files spell them.
pub const PORT_NAMES: [&str; 5] = [
    "shell_port",
    "iopub_port",
    "stdin_port",
    "control_port",
    "hb_port",
];

/// The workspace root (the parent of the `cli/` package's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("cli/ has a parent directory")
        .to_path_buf()
}

/// The directory of the Python helper scripts, `tests/python/`.
pub fn python_dir() -> PathBuf {
    workspace_root().join("tests").join("python")
}

/// The path of the helper script `tests/python/{name}`; fails the test if it does not exist.
pub fn python_script(name: &str) -> String {
    let path = python_dir().join(name);
    assert!(path.is_file(), "missing helper script {}", path.display());
    path_string(&path)
}

/// The `jupyter-handshake` binary of this package, as cargo built it for these tests
/// (`CARGO_BIN_EXE_jupyter-handshake`), canonical, as `kernelspec install` writes it into
/// kernel.json.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_jupyter-handshake"));
        assert!(
            exe.is_file(),
            "cargo did not build the tool: {} does not exist",
            exe.display()
        );
        exe.canonicalize().unwrap_or(exe)
    })
}

/// [`binary`] as a string, for kernel command lines.
pub fn binary_str() -> String {
    path_string(binary())
}

/// A command running the `jupyter-handshake` tool with `args`.
pub fn tool<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(binary());
    command.args(args);
    command
}

/// The kernel command line of our own kernel, `[tool, "kernel", "-f", "{connection_file}"]`.
pub fn our_kernel_argv() -> Vec<String> {
    vec![
        binary_str(),
        "kernel".into(),
        "-f".into(),
        "{connection_file}".into(),
    ]
}

/// The Python interpreter that has the pinned Jupyter packages: the absolute path of
/// `python3`'s `sys.executable` (so that version-manager shims are resolved once).
///
/// Checked once per test process: `python3` must be on `PATH` and import jupyter_client,
/// ipykernel and zmq. If not, the calling test **fails** (CI installs them; nothing is skipped):
/// the message says how to install them.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let install = "install the pinned peers with `python3 -m pip install -r tests/python/requirements.txt` \
                       (.ci/run does this); these tests are never skipped";
        let mut probe = Command::new("python3");
        probe.arg("-c").arg(format!(
            "import sys, importlib\n\
             missing = []\n\
             versions = {{}}\n\
             for name in {PYTHON_MODULES:?}:\n\
             \x20   try:\n\
             \x20       versions[name] = getattr(importlib.import_module(name), '__version__', '?')\n\
             \x20   except Exception as e:\n\
             \x20       missing.append(f'{{name}} ({{type(e).__name__}}: {{e}})')\n\
             if missing:\n\
             \x20   print('missing Python packages: ' + ', '.join(missing), file=sys.stderr)\n\
             \x20   sys.exit(3)\n\
             print(sys.executable)\n\
             print(versions, file=sys.stderr)\n"
        ));
        let out = match spawn_with_timeout(probe, Duration::from_secs(60)) {
            Ok(out) => out,
            Err(e) => return Err(format!("cannot run python3 ({e}): {install}")),
        };
        if !out.status.success() {
            return Err(format!(
                "python3 cannot import the Jupyter peers ({}): {}; {install}",
                out.status,
                out.stderr.trim()
            ));
        }
        let exe = PathBuf::from(out.stdout.trim());
        if !exe.is_file() {
            return Err(format!(
                "python3 reported sys.executable {:?}, which is not a file",
                out.stdout.trim()
            ));
        }
        eprintln!(
            "python peers: {} {}",
            exe.display(),
            out.stderr.trim()
        );
        Ok(exe)
    });
    match found {
        Ok(path) => path,
        Err(why) => panic!("{why}"),
    }
}

/// [`python`] as a string, for kernel command lines.
pub fn python_str() -> String {
    path_string(python())
}

/// A private temporary directory (mode 0700 on Unix), removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<system temp>/jh-tests-<label>-<pid>-<n>-<nanos>`.
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "jh-tests-{label}-{}-{n}-{nanos}",
            std::process::id()
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes `bytes` to a new file `path` that only its owner can read (mode 0600 on Unix), as
/// connection files must be.
pub fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    file.write_all(bytes)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A launcher that never replies: a ROUTER bound on a loopback port, and a registration file
/// `dir/registration.json` (signed with `key`) pointing a kernel at it. Returns the context,
/// the socket (to take the kernel's request from) and the file.
pub fn silent_registration(dir: &Path, key: &str) -> (zmq::Context, zmq::Socket, PathBuf) {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.bind("tcp://127.0.0.1:0").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let file = dir.join("registration.json");
    let registration = serde_json::json!({
        "transport": "tcp",
        "ip": "127.0.0.1",
        "signature_scheme": "hmac-sha256",
        "key": key,
        "registration_port": port,
    });
    write_private(&file, registration.to_string().as_bytes());
    (ctx, router, file)
}

/// What a finished process printed, and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote on stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote on stderr (lossy UTF-8).
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

impl Finished {
    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    /// Asserts that the process exited with status 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "expected success\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that the process failed (exited non-zero by itself, not killed by a signal).
    pub fn assert_failure(&self) -> &Self {
        assert!(
            matches!(self.code(), Some(code) if code != 0),
            "expected a non-zero exit status\n{}",
            self.describe()
        );
        self
    }

    /// The lines of stderr that the tool printed as its error (`jupyter-handshake: error: …`).
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("jupyter-handshake: error: "))
            .collect()
    }

    /// The single line of JSON on stdout, parsed; fails the test unless stdout is exactly one
    /// line holding a JSON object.
    pub fn json_line(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stdout\n{}",
            self.describe()
        );
        let value: Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.describe()));
        assert!(
            value.is_object(),
            "stdout is not a JSON object\n{}",
            self.describe()
        );
        value
    }
}

/// Runs `command` to completion (stdin `/dev/null`, stdout and stderr captured) under
/// [`HARD_TIMEOUT`]. See [`run_with_timeout`].
pub fn run(command: Command) -> Finished {
    run_with_timeout(command, HARD_TIMEOUT)
}

/// Runs `command` to completion under a hard `timeout`.
///
/// The process is put in a new process group (Unix). If it has not exited, and closed its output,
/// within `timeout`, the whole group (it and the kernels it started) is killed and the test
/// fails with everything it printed. A command that cannot be started fails the test too.
pub fn run_with_timeout(command: Command, timeout: Duration) -> Finished {
    let description = describe_command(&command);
    match spawn_with_timeout(command, timeout) {
        Ok(finished) => finished,
        Err(e) => panic!("cannot run {description}: {e}"),
    }
}

/// [`run_with_timeout`], but a command that cannot be started is an `Err`, not a panic.
fn spawn_with_timeout(mut command: Command, timeout: Duration) -> std::io::Result<Finished> {
    let description = describe_command(&command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let start = Instant::now();
    let mut child = command.spawn()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    let mut readers = Vec::new();
    for (is_stdout, stream) in [
        (
            true,
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
        (
            false,
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
    ] {
        let Some(mut stream) = stream else { continue };
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            let _ = tx.send((is_stdout, bytes));
        }));
    }
    drop(tx);

    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut status = None;
    let mut streams_left = readers.len();
    let mut timed_out = false;
    while status.is_none() || streams_left > 0 {
        if start.elapsed() >= timeout {
            timed_out = true;
            break;
        }
        if status.is_none() {
            status = child.try_wait()?;
        }
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok((true, bytes)) => {
                stdout = bytes;
                streams_left -= 1;
            }
            Ok((false, bytes)) => {
                stderr = bytes;
                streams_left -= 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => streams_left = 0,
        }
    }
    if timed_out {
        kill_group(pid);
        let _ = child.kill();
        let status = child.wait()?;
        // With the group dead the pipes close; collect what was printed, briefly.
        while streams_left > 0 {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok((true, bytes)) => stdout = bytes,
                Ok((false, bytes)) => stderr = bytes,
                Err(_) => break,
            }
            streams_left -= 1;
        }
        panic!(
            "hard timeout: still running after {timeout:?}; killed its process group\ncommand: {description}\nstatus: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = match status {
        Some(status) => status,
        None => child.wait()?,
    };
    Ok(Finished {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        command: description,
    })
}

/// Kills the process group `pgid` (one started by [`run_with_timeout`]), ignoring errors.
fn kill_group(pgid: u32) {
    #[cfg(unix)]
    {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    #[cfg(not(unix))]
    let _ = pgid;
}

/// `program arg arg…`, for messages.
fn describe_command(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// A path as a `String`; fails the test if it is not UTF-8 (kernel argvs are JSON strings).
pub fn path_string(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("path {} is not UTF-8", path.display()))
        .to_owned()
}

/// The five ports of a `connection` object (from a `launch --json` report or a connection file),
/// in [`PORT_NAMES`] order; fails the test unless each is an integer in 1..=65535.
pub fn ports_of(connection: &Value) -> [u16; 5] {
    PORT_NAMES.map(|name| {
        connection[name]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0)
            .unwrap_or_else(|| panic!("{name} is not a port in {connection}"))
    })
}

/// Checks a successful `launch --json` run and returns its report: exit 0, exactly one JSON
/// line on stdout, the documented shape, `kernel_info.status` "ok", the expected `mode`, five
/// distinct ports, and no key anywhere in the report.
pub fn successful_launch(finished: &Finished, mode: &str) -> Value {
    finished.assert_success();
    let report = finished.json_line();
    let why = finished.describe();
    let object = report.as_object().expect("an object");
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    for key in ["mode", "connection", "kernel_info", "timings_us"] {
        assert!(keys.contains(&key), "report lacks {key:?}\n{why}");
    }
    assert_eq!(report["mode"], mode, "mode\n{why}");
    assert_eq!(report["kernel_info"]["status"], "ok", "kernel_info\n{why}");
    let connection = &report["connection"];
    assert_eq!(connection["transport"], "tcp", "{why}");
    assert_eq!(connection["ip"], "127.0.0.1", "{why}");
    assert_eq!(connection["signature_scheme"], "hmac-sha256", "{why}");
    assert!(
        connection.get("key").is_none(),
        "the report must never carry the key\n{why}"
    );
    let mut ports = ports_of(connection).to_vec();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 5, "five distinct ports\n{why}");
    for timing in ["register", "kernel_info", "total"] {
        assert!(
            report["timings_us"][timing].is_u64(),
            "timings_us.{timing} is not a number\n{why}"
        );
    }
    report
}

/// A `jupyter-handshake launch --json [extra…] -- argv…` command whose runtime dir (where the
/// launcher writes its file) is `runtime`.
pub fn launch_command(runtime: &Path, extra: &[&str], argv: &[String]) -> Command {
    let mut command = tool(["launch", "--json"]);
    command
        .args(extra)
        .arg("--")
        .args(argv)
        .env("JUPYTER_RUNTIME_DIR", runtime);
    command
}

/// How many times [`classic_launch`] and [`run_classic`] try.
pub const CLASSIC_TRIES: usize = 3;

/// `launch --json --mode classic -- argv…` in `runtime`, through [`run_classic`].
pub fn classic_launch(runtime: &Path, argv: &[String]) -> Finished {
    run_classic(|| launch_command(runtime, &["--mode", "classic"], argv))
}

/// Runs the command `make` builds, a classic launch of some kind, and runs it again (at most
/// [`CLASSIC_TRIES`] times in all) only when it failed because the kernel could not bind a port
/// picked for it ("Address already in use").
///
/// That is the race this project removes and classic mode keeps by design: the launcher picks
/// five free ports and releases them, and the kernel binds them a moment later. Tests run in
/// parallel, each starting kernels on port 0, so one of them can be handed such a port first;
/// CI has seen it. Any other failure is returned at once.
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

/// Whether `text` contains `needle`, ignoring ASCII case.
pub fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.to_ascii_lowercase()
        .contains(&needle.to_ascii_lowercase())
}
