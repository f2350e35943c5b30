//! The launcher side: start a kernel and learn its ports without a race.
//!
//! What every launcher driver shares: the options, the result, the racy classic port pick, and
//! the engine that does what the core's [`LauncherHandshake`] asks. The
//! blocking and async drivers (`blocking::launch`, `asynchronous::launch`) only differ in how
//! they wait.
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

use crate::clock::Clock;
use crate::error::{Error, LaunchError};
use crate::files::{
    create_private_dir, free_ipc_port, new_session_id, random_key, runtime_dir,
    write_private_atomic,
};
use crate::kernelspec::LaunchMode;
use crate::sockets::{Wrap, bind, configure, send, socket};

/// The longest a driver sleeps before checking the child process and the file again.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// At most this many messages are handled per wake-up, so a flood on the registration socket
/// cannot keep the driver from noticing that the kernel exited. (A flood cannot postpone the
/// deadline either: the core checks it before every input.)
pub(crate) const MAX_BATCH: usize = 64;

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

/// How a launch (`launch`, blocking or async) behaves.
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

/// The launch engine: everything a launch does except waiting. A driver creates it, calls
/// [`drain`](Run::drain), then loops until [`done`](Run::done): wait on the registration socket
/// for at most [`wait_for`](Run::wait_for), hand each received message to
/// [`received`](Run::received) (at most [`MAX_BATCH`] per wake-up), then call
/// [`tick`](Run::tick); finally [`finish`](Run::finish).
pub(crate) struct Run<'a, S> {
    ctx: &'a zmq::Context,
    clock: Clock,
    machine: LauncherHandshake,
    options: &'a LaunchOptions,
    argv: &'a [String],
    file: PathBuf,
    /// The registration socket, once bound.
    pub(crate) router: Option<S>,
    child: Option<Child>,
    spawned_at: Option<Instant>,
    /// The file's bytes as last written or seen; `Some` once we have written it.
    file_bytes: Option<Vec<u8>>,
    registered: Option<(ConnectionFile, Evidence, Instant)>,
    failed: Option<Failure>,
    last_rejection: Option<Rejection>,
    observer: &'a mut dyn FnMut(Instant, &LauncherEvent),
}

impl<'a, S: Wrap> Run<'a, S> {
    /// Checks the command, creates the file's directory, picks the key, session id and (classic)
    /// ports, and creates the core's machine.
    pub(crate) fn new(
        ctx: &'a zmq::Context,
        argv: &'a [String],
        options: &'a LaunchOptions,
        observer: &'a mut dyn FnMut(Instant, &LauncherEvent),
    ) -> Result<Self, LaunchError> {
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
                let ports = pick_classic_ports(options.transport, &options.ip)
                    .map_err(LaunchError::Ports)?;
                LauncherHandshake::classic(config, ports)
            }
        };
        Ok(Self {
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
        })
    }

    /// Whether the launch is over (registered or failed).
    pub(crate) fn done(&self) -> bool {
        self.machine.state().is_terminal()
    }

    /// How long to wait at most for a message before the next [`tick`](Self::tick): until
    /// `deadline`, and never longer than [`TICK`], so the child and the file are watched.
    pub(crate) fn wait_for(&self, deadline: Option<Instant>) -> Duration {
        deadline.map_or(TICK, |d| self.clock.until(d)).min(TICK)
    }

    /// Feeds one message received on the registration socket to the core, and does what it
    /// asks. Nothing is fed once the launch is over.
    pub(crate) fn received(&mut self, frames: &[&[u8]]) -> Result<(), LaunchError> {
        if self.done() {
            return Ok(());
        }
        let now = self.clock.now();
        self.machine
            .handle_input(now, LauncherInput::Received(frames))?;
        self.drain()?;
        Ok(())
    }

    /// After each wake-up: reports a change of the file, then an exit of the child, then the
    /// deadline (which may have passed meanwhile); returns the deadline to wait towards next
    /// (`poll_output` never changes it).
    pub(crate) fn tick(&mut self) -> Result<Option<Instant>, LaunchError> {
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
        let now = self.clock.now();
        self.machine.handle_input(now, LauncherInput::Timeout)?;
        self.drain()
    }

    /// Does everything the machine asks until it is drained; returns its deadline.
    pub(crate) fn drain(&mut self) -> Result<Option<Instant>, LaunchError> {
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
                    self.router = Some(S::wrap(router));
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
                    // A ROUTER never blocks on send (it drops what it cannot route), so a plain
                    // send is right for the async driver too.
                    Some(router) => send(router.raw(), "registration", transmit.frames)?,
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

    /// Ends the launch: closes the registration socket (its linger lets a queued reply go out)
    /// and returns the kernel, or kills and reaps the child, removes the file, and returns why.
    /// `outcome` is the driver loop's own result.
    pub(crate) fn finish(
        mut self,
        outcome: Result<(), LaunchError>,
    ) -> Result<Launched, LaunchError> {
        drop(self.router.take());
        match (outcome, self.registered.take(), self.child.take()) {
            (Ok(()), Some((mut connection, evidence, at)), Some(child)) => {
                if connection.kernel_name.is_none() {
                    connection.kernel_name.clone_from(&self.options.kernel_name);
                }
                let registered_after = match (evidence, self.spawned_at) {
                    // Classic: the "registration" (we chose the ports) precedes the spawn.
                    (Evidence::Classic, _) | (_, None) => Duration::ZERO,
                    (_, Some(spawned)) => at.saturating_duration_since(spawned),
                };
                Ok(Launched {
                    connection,
                    evidence,
                    child,
                    file: self.file,
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
                if self.file_bytes.is_some() {
                    let _ = std::fs::remove_file(&self.file);
                }
                Err(match (outcome, self.failed) {
                    (Err(error), _) => error,
                    (Ok(()), Some(failure)) => LaunchError::Failed {
                        failure,
                        last_rejection: self.last_rejection,
                    },
                    (Ok(()), None) => {
                        Error::Internal("the launch ended neither connected nor failed").into()
                    }
                })
            }
        }
    }
}
