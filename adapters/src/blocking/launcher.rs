//! The launcher side: start a kernel and learn its ports without a race.
//!
//! ```no_run
//! use jupyter_handshake_zmq::blocking::launcher::{LaunchOptions, launch};
//! # fn main() -> Result<(), jupyter_handshake_zmq::LaunchError> {
//! let ctx = zmq::Context::new();
//! let argv: Vec<String> = ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
//!     .map(String::from)
//!     .to_vec();
//! let launched = launch(&ctx, &argv, &LaunchOptions::default(), &mut |_, _| {})?;
//! println!("shell port {} ({:?})", launched.connection.ports.shell, launched.evidence);
//! # Ok(()) }
//! ```
//!
//! ## Handshake mode ([`LaunchMode::Handshake`])
//!
//! Each step is the core's [`LauncherHandshake`] asking for it:
//!
//! 1. `BindRegistration`: a ROUTER is bound on port 0 (the port is read back from libzmq), before
//!    anything else exists, so no other process can take it.
//! 2. `WriteRegistrationFile`: the file is written atomically, mode 0600, as
//!    `{dir}/kernel-{session}.json`, `{connection_file}` in the kernel's argv is replaced by its
//!    path, and the kernel is spawned.
//! 3. The driver then waits on the ROUTER until the core's deadline, waking at least every
//!    10 ms to check whether the child has exited (reported at once as `KernelExited`, so a
//!    crashing kernel fails the launch immediately, not at the deadline) and whether the file's
//!    bytes changed (reported as `FileChanged`, which is how stock ipykernel registers: it
//!    rewrites the file with the ports it bound). Every message is fed to the core as received;
//!    the core drops forged or garbled ones and answers real requests; its replies are sent.
//! 4. On `Connected`, the launch returns the kernel's connection information; on `Failed`, the
//!    child is killed (if still running) and reaped, the file is removed, and the core's reason
//!    is returned.
//!
//! ## Classic mode ([`LaunchMode::Classic`]): racy on purpose
//!
//! Five ports are picked by binding port 0 with [`TcpListener`]s and closing them, exactly as
//! jupyter_client does, then written into a classic connection file. **This is racy**: between
//! the moment the listeners close and the moment the kernel binds, any process may take one of
//! those ports, and the kernel then dies with "Address already in use" (or worse, a client talks
//! to the thief). That race is the reason the handshake exists; classic mode is here for kernels
//! that cannot register, and to demonstrate the race. Nothing confirms the kernel's ports: the
//! launch "succeeds" as soon as the kernel is spawned (evidence [`Evidence::Classic`]).
//!
//! ## Files and cleanup
//!
//! The launcher removes nothing a running kernel needs. On success the file stays where it is
//! ([`Launched::file`]): a handshake kernel may still read it, and stock ipykernel has turned it
//! into its connection file (and may remove it itself when it exits). Remove it once the kernel
//! has exited, e.g. with [`Launched::remove_file`]. On failure the child is killed first, then
//! the file is removed, since it holds the key and nothing will use it.
//!
//! The kernel's stdin is `/dev/null`; its stdout and stderr follow [`LaunchOptions::stdout`]
//! and [`LaunchOptions::stderr`].

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jupyter_handshake::{
    ConnectionFile, Evidence, ExitStatus, Failure, Instant, KernelPorts, LauncherAction,
    LauncherConfig, LauncherEvent, LauncherHandshake, LauncherInput, Output, Rejection, Transport,
    wire::Limits,
};

use super::{as_slices, bind, configure, free_ipc_port, send, socket, try_recv};
use crate::clock::{Clock, poll_millis};
use crate::error::{Error, LaunchError};
use crate::files::{
    create_private_dir, new_session_id, random_key, runtime_dir, write_private_atomic,
};
use crate::kernelspec::LaunchMode;

/// The longest the driver sleeps before checking the child process and the file again.
const TICK: Duration = Duration::from_millis(10);

/// At most this many messages are handled per wake-up, so a flood on the registration socket
/// cannot keep the driver from noticing that the kernel exited. (A flood cannot postpone the
/// deadline either: the core checks it before every input.)
const MAX_BATCH: usize = 64;

/// Where the kernel's stdout or stderr go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChildStdio {
    /// The launcher's own stream (default).
    #[default]
    Inherit,
    /// Nowhere.
    Null,
    /// The launcher's stderr (so that the launcher's stdout stays clean, for a JSON report say).
    Stderr,
    /// A pipe, readable from [`Launched::child`]. Read it, or the kernel blocks once it is full.
    Piped,
}

impl ChildStdio {
    fn to_stdio(self) -> Stdio {
        match self {
            Self::Inherit => Stdio::inherit(),
            Self::Null => Stdio::null(),
            Self::Piped => Stdio::piped(),
            Self::Stderr => stderr_copy().unwrap_or_else(|_| Stdio::inherit()),
        }
    }
}

#[cfg(unix)]
fn stderr_copy() -> io::Result<Stdio> {
    use std::os::fd::AsFd;
    Ok(Stdio::from(io::stderr().as_fd().try_clone_to_owned()?))
}

#[cfg(windows)]
fn stderr_copy() -> io::Result<Stdio> {
    use std::os::windows::io::AsHandle;
    Ok(Stdio::from(io::stderr().as_handle().try_clone_to_owned()?))
}

#[cfg(not(any(unix, windows)))]
fn stderr_copy() -> io::Result<Stdio> {
    Ok(Stdio::inherit())
}

/// How [`launch`] behaves.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// Registration file (default) or classic connection file; see
    /// [`KernelSpec::launch_mode`](crate::KernelSpec::launch_mode) to choose from a kernelspec.
    pub mode: LaunchMode,
    /// How long to wait for the kernel to register, from the moment the registration socket is
    /// bound; includes the kernel's start-up time (default 30 s, as Kallichore).
    pub timeout: Duration,
    /// Address written into the file: the kernel binds its channels on it and reaches the
    /// registration socket at it (default `127.0.0.1`).
    pub ip: String,
    /// Transport (default tcp).
    pub transport: Transport,
    /// Directory for the file (default [`runtime_dir`]); created, private, if missing.
    pub dir: Option<PathBuf>,
    /// `kernel_name` to write into a classic connection file and to set in the returned
    /// connection information (a registration file is written exactly as the core makes it).
    pub kernel_name: Option<String>,
    /// Extra environment variables for the kernel (a kernelspec's `env`, say).
    pub env: Vec<(OsString, OsString)>,
    /// Where the kernel's stdout goes (default: inherited).
    pub stdout: ChildStdio,
    /// Where the kernel's stderr goes (default: inherited).
    pub stderr: ChildStdio,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            mode: LaunchMode::Handshake,
            timeout: Duration::from_secs(30),
            ip: "127.0.0.1".into(),
            transport: Transport::Tcp,
            dir: None,
            kernel_name: None,
            env: Vec::new(),
            stdout: ChildStdio::Inherit,
            stderr: ChildStdio::Inherit,
        }
    }
}

/// A kernel that registered (or, in classic mode, was started).
#[derive(Debug)]
pub struct Launched {
    /// How to connect to it (its `Debug` hides the key).
    pub connection: ConnectionFile,
    /// How the launcher knows its ports: a `handshake_request`, a rewrite of the file, or
    /// classic (it does not).
    pub evidence: Evidence,
    /// The kernel process. Dropping it does not stop the kernel.
    pub child: Child,
    /// The registration or connection file handed to the kernel; still on disk.
    pub file: PathBuf,
    /// From spawning the kernel to its registration (zero in classic mode).
    pub registered_after: Duration,
}

impl Launched {
    /// Removes [`file`](Self::file); a file already gone (ipykernel removes its connection
    /// file on exit) is not an error. Call it once the kernel has exited.
    pub fn remove_file(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// How the child ended, in the core's terms (a signal is only known on Unix).
pub fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return ExitStatus::Signal(signal);
        }
    }
    status.code().map_or(ExitStatus::Unknown, ExitStatus::Code)
}

/// `argv` with every `{connection_file}` replaced by `path`, as jupyter_client formats a
/// kernelspec's argv.
pub fn substitute_connection_file(argv: &[String], path: &Path) -> Vec<String> {
    let path = path.to_string_lossy();
    argv.iter()
        .map(|arg| arg.replace("{connection_file}", &path))
        .collect()
}

/// Five distinct free ports for a classic launch, picked the racy way (see the
/// [module docs](self)): tcp ports by binding port 0 on `ip` with five listeners at once and
/// closing them; ipc numbers `N` with no file `{ip}-{N}`.
pub fn pick_classic_ports(transport: Transport, ip: &str) -> io::Result<KernelPorts> {
    let ports: Vec<u16> = match transport {
        Transport::Tcp => {
            let listeners = (0..5)
                .map(|_| TcpListener::bind((ip, 0)))
                .collect::<io::Result<Vec<_>>>()?;
            listeners
                .iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect::<io::Result<_>>()?
            // The listeners close here: from now on anyone may take these ports.
        }
        Transport::Ipc => {
            let mut taken = Vec::with_capacity(5);
            for _ in 0..5 {
                let n = free_ipc_port(ip, &taken).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::AddrInUse, "no free ipc number left")
                })?;
                taken.push(n);
            }
            taken
        }
    };
    let [shell, iopub, stdin, control, hb] = ports[..] else {
        return Err(io::Error::other("expected five ports"));
    };
    Ok(KernelPorts {
        shell,
        iopub,
        stdin,
        control,
        hb,
    })
}

/// Launches the kernel `argv` (`{connection_file}` is replaced by the file's path) and waits
/// until it has registered.
///
/// `observer` sees every event of the core machine (state changes, dropped messages and file
/// changes, refusals, the outcome) with the instant it happened. See the [module docs](self)
/// for the sequence, classic mode, and what is left on disk.
pub fn launch(
    ctx: &zmq::Context,
    argv: &[String],
    options: &LaunchOptions,
    observer: &mut dyn FnMut(Instant, &LauncherEvent),
) -> Result<Launched, LaunchError> {
    if argv.is_empty() {
        return Err(LaunchError::EmptyCommand);
    }
    let dir = options.dir.clone().unwrap_or_else(runtime_dir);
    create_private_dir(&dir).map_err(|source| Error::WriteFile {
        path: dir.clone(),
        source,
    })?;
    let session_id = new_session_id();
    let file = dir.join(format!("kernel-{session_id}.json"));
    let config = LauncherConfig {
        transport: options.transport,
        ip: options.ip.clone(),
        key: random_key(),
        registration_timeout: options.timeout,
        session_id,
        ..LauncherConfig::default()
    };
    let machine = match options.mode {
        LaunchMode::Handshake => LauncherHandshake::new(config),
        LaunchMode::Classic => {
            let ports =
                pick_classic_ports(options.transport, &options.ip).map_err(LaunchError::Ports)?;
            LauncherHandshake::classic(config, ports)
        }
    };
    let mut run = Run {
        ctx,
        clock: Clock::new(),
        machine,
        options,
        argv,
        file,
        router: None,
        child: None,
        spawned_at: None,
        file_bytes: None,
        registered: None,
        failed: None,
        last_rejection: None,
        observer,
    };
    let outcome = run.run();
    // The registration socket is closed here; its linger lets a queued reply go out.
    drop(run.router.take());
    match (outcome, run.registered.take(), run.child.take()) {
        (Ok(()), Some((mut connection, evidence, at)), Some(child)) => {
            if connection.kernel_name.is_none() {
                connection.kernel_name.clone_from(&options.kernel_name);
            }
            let registered_after = match (evidence, run.spawned_at) {
                // Classic: the "registration" (we chose the ports) precedes the spawn.
                (Evidence::Classic, _) | (_, None) => Duration::ZERO,
                (_, Some(spawned)) => at.saturating_duration_since(spawned),
            };
            Ok(Launched {
                connection,
                evidence,
                child,
                file: run.file,
                registered_after,
            })
        }
        (outcome, _, child) => {
            if let Some(mut child) = child {
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                }
                let _ = child.wait();
            }
            if run.file_bytes.is_some() {
                let _ = std::fs::remove_file(&run.file);
            }
            Err(match (outcome, run.failed) {
                (Err(error), _) => error,
                (Ok(()), Some(failure)) => LaunchError::Failed {
                    failure,
                    last_rejection: run.last_rejection,
                },
                (Ok(()), None) => {
                    Error::Internal("the launch ended neither connected nor failed").into()
                }
            })
        }
    }
}

struct Run<'a> {
    ctx: &'a zmq::Context,
    clock: Clock,
    machine: LauncherHandshake,
    options: &'a LaunchOptions,
    argv: &'a [String],
    file: PathBuf,
    router: Option<zmq::Socket>,
    child: Option<Child>,
    spawned_at: Option<Instant>,
    /// The file's bytes as last written or seen; `Some` once we have written it.
    file_bytes: Option<Vec<u8>>,
    registered: Option<(ConnectionFile, Evidence, Instant)>,
    failed: Option<Failure>,
    last_rejection: Option<Rejection>,
    observer: &'a mut dyn FnMut(Instant, &LauncherEvent),
}

impl Run<'_> {
    fn run(&mut self) -> Result<(), LaunchError> {
        let mut deadline = self.drain()?;
        while !self.done() {
            let wait = deadline.map_or(TICK, |d| self.clock.until(d)).min(TICK);
            match &self.router {
                Some(router) => {
                    let mut items = [router.as_poll_item(zmq::POLLIN)];
                    super::poll(&mut items, poll_millis(wait), "registration")?;
                }
                None => std::thread::sleep(wait),
            }
            for _ in 0..MAX_BATCH {
                let Some(frames) = (match &self.router {
                    Some(router) if !self.done() => try_recv(router, "registration")?,
                    _ => None,
                }) else {
                    break;
                };
                let now = self.clock.now();
                self.machine
                    .handle_input(now, LauncherInput::Received(&as_slices(&frames)))?;
                self.drain()?;
            }
            if !self.done() {
                if let Some(bytes) = self.file_change() {
                    let now = self.clock.now();
                    self.machine
                        .handle_input(now, LauncherInput::FileChanged(&bytes))?;
                    self.drain()?;
                }
            }
            if !self.done() {
                let exited = match &mut self.child {
                    Some(child) => child.try_wait().map_err(LaunchError::Wait)?,
                    None => None,
                };
                if let Some(status) = exited {
                    let now = self.clock.now();
                    self.machine
                        .handle_input(now, LauncherInput::KernelExited(exit_status(status)))?;
                    self.drain()?;
                }
            }
            // Then the deadline, which may have passed meanwhile; this drain also yields the
            // deadline to sleep towards next (`poll_output` never changes it).
            let now = self.clock.now();
            self.machine.handle_input(now, LauncherInput::Timeout)?;
            deadline = self.drain()?;
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.machine.state().is_terminal()
    }

    /// Does everything the machine asks until it is drained; returns its deadline.
    fn drain(&mut self) -> Result<Option<Instant>, LaunchError> {
        loop {
            match self.machine.poll_output() {
                Output::Action(LauncherAction::BindRegistration { transport, ip }) => {
                    let router = socket(self.ctx, zmq::ROUTER, "registration")?;
                    // Defence in depth: libzmq disconnects a peer that sends a frame larger
                    // than anything the core would accept anyway.
                    let max = i64::try_from(Limits::HANDSHAKE.max_frame_len).unwrap_or(i64::MAX);
                    router
                        .set_maxmsgsize(max)
                        .map_err(|source| configure("registration", source))?;
                    let port = bind(&router, "registration", transport, &ip, 0)?;
                    self.router = Some(router);
                    let now = self.clock.now();
                    self.machine
                        .handle_input(now, LauncherInput::RegistrationBound { port })?;
                }
                Output::Action(LauncherAction::WriteRegistrationFile(registration)) => {
                    self.write_and_spawn(registration.to_json_pretty())?;
                }
                Output::Action(LauncherAction::WriteConnectionFile(mut connection)) => {
                    if connection.kernel_name.is_none() {
                        connection.kernel_name.clone_from(&self.options.kernel_name);
                    }
                    self.write_and_spawn(connection.to_json_pretty())?;
                }
                Output::Transmit(transmit) => match &self.router {
                    Some(router) => send(router, "registration", transmit.frames)?,
                    None => {
                        return Err(Error::Internal(
                            "the core sent a message before asking for a registration socket",
                        )
                        .into());
                    }
                },
                Output::Event(event) => {
                    let now = self.clock.now();
                    (self.observer)(now, &event);
                    match event {
                        LauncherEvent::Registered {
                            connection,
                            evidence,
                        } => self.registered = Some((connection, evidence, now)),
                        LauncherEvent::Failed(failure) => self.failed = Some(failure),
                        LauncherEvent::Rejected(rejection) | LauncherEvent::Refused(rejection) => {
                            self.last_rejection = Some(rejection);
                        }
                        _ => {}
                    }
                }
                Output::Timeout(deadline) => return Ok(deadline),
            }
        }
    }

    fn write_and_spawn(&mut self, bytes: Vec<u8>) -> Result<(), LaunchError> {
        write_private_atomic(&self.file, &bytes).map_err(|source| Error::WriteFile {
            path: self.file.clone(),
            source,
        })?;
        self.file_bytes = Some(bytes);
        let argv = substitute_connection_file(self.argv, &self.file);
        let (program, args) = argv.split_first().ok_or(LaunchError::EmptyCommand)?;
        let child = Command::new(program)
            .args(args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(self.options.stdout.to_stdio())
            .stderr(self.options.stderr.to_stdio())
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                program: program.clone(),
                source,
            })?;
        self.spawned_at = Some(self.clock.now());
        self.child = Some(child);
        Ok(())
    }

    /// The file's bytes, if they differ from the last ones written or seen. A file that cannot
    /// be read right now (being replaced, removed) is no news.
    fn file_change(&mut self) -> Option<Vec<u8>> {
        let last = self.file_bytes.as_ref()?;
        let bytes = std::fs::read(&self.file).ok()?;
        if &bytes == last {
            return None;
        }
        self.file_bytes = Some(bytes.clone());
        Some(bytes)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::blocking::client::Client;
    use crate::blocking::testkit::helper_kernel_argv;
    use crate::files::tests::TempDir;
    use jupyter_handshake::{LauncherState, Waiting};
    use serde_json::json;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn options(dir: &TempDir) -> LaunchOptions {
        LaunchOptions {
            dir: Some(dir.0.clone()),
            stdout: ChildStdio::Stderr,
            ..LaunchOptions::default()
        }
    }

    /// Kills the kernel when a test ends early (a failed assertion), so none is left behind.
    #[derive(Debug)]
    struct Guard(Launched);

    impl Drop for Guard {
        fn drop(&mut self) {
            if matches!(self.0.child.try_wait(), Ok(None)) {
                let _ = self.0.child.kill();
            }
            let _ = self.0.child.wait();
        }
    }

    impl std::ops::Deref for Guard {
        type Target = Launched;
        fn deref(&self) -> &Launched {
            &self.0
        }
    }

    impl std::ops::DerefMut for Guard {
        fn deref_mut(&mut self) -> &mut Launched {
            &mut self.0
        }
    }

    fn files_in(dir: &TempDir) -> usize {
        std::fs::read_dir(&dir.0).unwrap().count()
    }

    /// Whether `python3` can import `module`; tests that need it are skipped (with a note)
    /// otherwise.
    /// Fails the test (never skips it) when python3 cannot import `module`: `.ci/run` installs
    /// the pinned peers, so a missing one is a broken set-up, not a reason to pass.
    fn require_python(module: &str) {
        let ok = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "python3 cannot import {module}: pip install -r tests/python/requirements.txt"
        );
    }

    #[derive(Default)]
    struct Seen {
        states: Vec<LauncherState>,
        rejected: usize,
        refused: usize,
    }

    fn observe(seen: &mut Seen) -> impl FnMut(Instant, &LauncherEvent) + '_ {
        |_, event| match event {
            LauncherEvent::StateChanged { to, .. } => seen.states.push(*to),
            LauncherEvent::Rejected(_) => seen.rejected += 1,
            LauncherEvent::Refused(_) => seen.refused += 1,
            _ => {}
        }
    }

    #[test]
    fn a_kernel_that_exits_is_reported_with_its_status_and_the_file_removed() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut seen = Seen::default();
        let error = launch(
            &ctx,
            &argv(&["sh", "-c", "exit 3"]),
            &LaunchOptions {
                // Far away: the exit must be reported when it happens, not at the deadline.
                timeout: Duration::from_secs(600),
                ..options(&dir)
            },
            &mut observe(&mut seen),
        )
        .unwrap_err();
        assert!(
            matches!(
                error,
                LaunchError::Failed {
                    failure: Failure::KernelExited(ExitStatus::Code(3)),
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "the kernel exited before it registered (exit status 3)"
        );
        assert_eq!(seen.states, [LauncherState::Bound, LauncherState::Failed]);
        assert_eq!(files_in(&dir), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_silent_kernel_times_out_and_is_killed() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let pid_file = dir.0.join("pid");
        let script = format!("echo $$ > {}; exec sleep 600", pid_file.display());
        let error = launch(
            &ctx,
            &argv(&["sh", "-c", &script]),
            &LaunchOptions {
                timeout: Duration::from_millis(300),
                ..options(&dir)
            },
            &mut |_, _| {},
        )
        .unwrap_err();
        let LaunchError::Failed {
            failure: Failure::Timeout { waiting_for, .. },
            ..
        } = &error
        else {
            panic!("expected a timeout, got {error}");
        };
        assert_eq!(*waiting_for, Waiting::Registration);
        assert!(
            error.to_string().starts_with("timed out after 0."),
            "{error}"
        );
        // The child was killed and reaped, and only the pid file is left.
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists());
        }
        assert_eq!(files_in(&dir), usize::from(pid_file.exists()));
    }

    #[test]
    fn bad_commands_are_errors() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let error = launch(&ctx, &[], &options(&dir), &mut |_, _| {}).unwrap_err();
        assert!(matches!(error, LaunchError::EmptyCommand));
        let error = launch(
            &ctx,
            &argv(&["/nonexistent/kernel", "{connection_file}"]),
            &options(&dir),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot start the kernel `/nonexistent/kernel`: "),
            "{error}"
        );
        assert_eq!(files_in(&dir), 0);
    }

    #[test]
    fn substitutes_the_file_everywhere() {
        let path = Path::new("/run/k.json");
        assert_eq!(
            substitute_connection_file(
                &argv(&[
                    "k",
                    "-f",
                    "{connection_file}",
                    "--x={connection_file}",
                    "{other}"
                ]),
                path
            ),
            argv(&["k", "-f", "/run/k.json", "--x=/run/k.json", "{other}"])
        );
    }

    #[test]
    fn classic_ports_are_five_distinct_ports() {
        let ports = pick_classic_ports(Transport::Tcp, "127.0.0.1").unwrap();
        assert_eq!(ports.validate(), Ok(()));
    }

    /// Our launcher and our kernel side, end to end: a helper kernel (this test binary, run as a
    /// child) first sends garbage, a forged request and a well-signed request with unusable
    /// ports to the registration socket, then registers for real with `start_kernel`.
    #[test]
    fn forged_and_garbage_messages_are_dropped_and_the_launch_succeeds() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut seen = Seen::default();
        let mut launched = Guard(
            launch(
                &ctx,
                &helper_kernel_argv("forge"),
                &options(&dir),
                &mut observe(&mut seen),
            )
            .unwrap(),
        );
        eprintln!(
            "helper kernel registered after {:?}",
            launched.registered_after
        );
        assert_eq!(launched.evidence, Evidence::Request);
        assert_eq!(
            seen.states,
            [LauncherState::Bound, LauncherState::Connected]
        );
        assert_eq!(seen.rejected, 2, "garbage and forgery");
        assert_eq!(seen.refused, 1, "signed request with unusable ports");
        let key = launched.connection.key.expose_secret().to_string();
        assert!(!format!("{launched:?}").contains(&key));

        let mut client = Client::connect(&ctx, &launched.connection).unwrap();
        let info = client.wait_for_ready(Duration::from_secs(30)).unwrap();
        assert_eq!(info["implementation"], "helper");
        assert!(client.heartbeat(Duration::from_secs(10)).unwrap());
        let reply = client
            .request(
                Channel::Shell,
                "comm_info_request",
                json!({}),
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(reply["status"], "error");
        assert_eq!(
            client.shutdown(Duration::from_secs(10)).unwrap()["status"],
            "ok"
        );
        assert!(launched.child.wait().unwrap().success());
        assert!(
            launched.file.exists(),
            "the launcher removes nothing on success"
        );
        launched.remove_file().unwrap();
        launched.remove_file().unwrap();
    }

    use crate::blocking::client::Channel;

    #[test]
    fn stock_ipykernel_registers_by_rewriting_the_file() {
        require_python("ipykernel");
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut seen = Seen::default();
        let mut launched = Guard(
            launch(
                &ctx,
                &argv(&[
                    "python3",
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ]),
                &options(&dir),
                &mut observe(&mut seen),
            )
            .unwrap(),
        );
        eprintln!(
            "ipykernel (file rewrite) registered after {:?}",
            launched.registered_after
        );
        assert_eq!(launched.evidence, Evidence::FileRewrite);
        let mut client = Client::connect(&ctx, &launched.connection).unwrap();
        let info = client.wait_for_ready(Duration::from_secs(30)).unwrap();
        assert_eq!(info["status"], "ok");
        assert_eq!(info["implementation"], "ipython");
        let outcome = client
            .execute("print('hi'); 1 + 1", Duration::from_secs(30))
            .unwrap();
        assert_eq!(outcome.reply["status"], "ok");
        let types: Vec<&str> = outcome.iopub.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types.first(), Some(&"status"));
        assert_eq!(types.last(), Some(&"status"));
        let result = outcome
            .iopub
            .iter()
            .find(|(t, _)| t == "execute_result")
            .unwrap();
        assert_eq!(result.1["data"]["text/plain"], "2");
        let stream = outcome.iopub.iter().find(|(t, _)| t == "stream").unwrap();
        assert_eq!(stream.1["text"], "hi\n");
        assert!(client.heartbeat(Duration::from_secs(10)).unwrap());
        assert_eq!(
            client.shutdown(Duration::from_secs(10)).unwrap()["status"],
            "ok"
        );
        let _ = launched.child.wait();
        launched.remove_file().unwrap();
    }

    #[test]
    fn the_posit_ipykernel_wrapper_registers_with_a_handshake_request() {
        require_python("ipykernel");
        let wrapper =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/ipykernel_posit_kernel.py");
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let wrapper = wrapper.display().to_string();
        let mut launched = Guard(
            launch(
                &ctx,
                &argv(&["python3", &wrapper, "-f", "{connection_file}"]),
                &options(&dir),
                &mut |_, _| {},
            )
            .unwrap(),
        );
        eprintln!(
            "posit wrapper (request) registered after {:?}",
            launched.registered_after
        );
        assert_eq!(launched.evidence, Evidence::Request);
        let mut client = Client::connect(&ctx, &launched.connection).unwrap();
        let info = client.wait_for_ready(Duration::from_secs(30)).unwrap();
        assert_eq!(info["status"], "ok");
        assert_eq!(
            client.shutdown(Duration::from_secs(10)).unwrap()["status"],
            "ok"
        );
        let _ = launched.child.wait();
        launched.remove_file().unwrap();
    }

    #[test]
    fn classic_mode_launches_ipykernel_with_a_connection_file() {
        require_python("ipykernel");
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut launched = Guard(
            launch(
                &ctx,
                &argv(&[
                    "python3",
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ]),
                &LaunchOptions {
                    mode: LaunchMode::Classic,
                    kernel_name: Some("python3".into()),
                    ..options(&dir)
                },
                &mut |_, _| {},
            )
            .unwrap(),
        );
        assert_eq!(launched.evidence, Evidence::Classic);
        assert_eq!(launched.registered_after, Duration::ZERO);
        assert_eq!(launched.connection.kernel_name.as_deref(), Some("python3"));
        let on_disk = ConnectionFile::from_json(&std::fs::read(&launched.file).unwrap()).unwrap();
        assert_eq!(on_disk.ports, launched.connection.ports);
        assert_eq!(on_disk.kernel_name.as_deref(), Some("python3"));
        let mut client = Client::connect(&ctx, &launched.connection).unwrap();
        let info = client.wait_for_ready(Duration::from_secs(30)).unwrap();
        assert_eq!(info["status"], "ok");
        assert_eq!(
            client.shutdown(Duration::from_secs(10)).unwrap()["status"],
            "ok"
        );
        let _ = launched.child.wait();
        launched.remove_file().unwrap();
    }
}
