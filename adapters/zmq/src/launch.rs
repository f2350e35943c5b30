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
    ConnectionFile, Dialect, Evidence, ExitStatus, Failure, Instant, KernelPorts, LauncherAction,
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
use jupyter_handshake::registrar::{
    LaunchConfig, LaunchId, Registrar, RegistrarAction, RegistrarConfig, RegistrarError,
    RegistrarEvent, RegistrarInput,
};

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
    /// The launch on a shared registration socket this kernel belongs to (to restart it
    /// through the same `Launcher`); `None` for a single launch.
    pub launch_id: Option<LaunchId>,
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

/// One kernel process as a launch sees it: its file, its child, and what the core said about it.
/// Shared by the single-launch engine [`Run`] and the many-launch engine [`Fleet`].
struct Kernel {
    file: PathBuf,
    child: Option<Child>,
    spawned_at: Option<Instant>,
    /// The file's bytes as last written or seen; `Some` once we have written it.
    file_bytes: Option<Vec<u8>>,
    registered: Option<(ConnectionFile, Evidence, Instant)>,
    failed: Option<Failure>,
    last_rejection: Option<Rejection>,
    /// Why the command could not be started (a fleet member; a single launch returns it).
    spawn_error: Option<LaunchError>,
}

impl Kernel {
    /// A kernel whose file will be `{dir}/kernel-{name}.json`.
    fn new(dir: &Path, name: &str) -> Self {
        Self {
            file: dir.join(format!("kernel-{name}.json")),
            child: None,
            spawned_at: None,
            file_bytes: None,
            registered: None,
            failed: None,
            last_rejection: None,
            spawn_error: None,
        }
    }

    fn write_and_spawn(
        &mut self,
        argv: &[String],
        options: &LaunchOptions,
        bytes: Vec<u8>,
        clock: &Clock,
    ) -> Result<(), LaunchError> {
        write_private_atomic(&self.file, &bytes).map_err(|source| Error::WriteFile {
            path: self.file.clone(),
            source,
        })?;
        self.file_bytes = Some(bytes);
        let argv = substitute_connection_file(argv, &self.file);
        let (program, args) = argv.split_first().ok_or(LaunchError::EmptyCommand)?;
        let child = Command::new(program)
            .args(args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(options.stdout.to_stdio())
            .stderr(options.stderr.to_stdio())
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                program: program.clone(),
                source,
            })?;
        self.spawned_at = Some(clock.now());
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

    /// How the child ended, if it has.
    fn exited(&mut self) -> Result<Option<ExitStatus>, LaunchError> {
        match &mut self.child {
            Some(child) => Ok(child
                .try_wait()
                .map_err(LaunchError::Wait)?
                .map(exit_status)),
            None => Ok(None),
        }
    }

    /// Remembers what the core said about this kernel.
    fn note(&mut self, event: &LauncherEvent, now: Instant) {
        match event {
            LauncherEvent::Registered {
                connection,
                evidence,
            } => self.registered = Some((connection.clone(), *evidence, now)),
            LauncherEvent::Failed(failure) => self.failed = Some(failure.clone()),
            LauncherEvent::Rejected(rejection) | LauncherEvent::Refused(rejection) => {
                self.last_rejection = Some(rejection.clone());
            }
            _ => {}
        }
    }

    /// The kernel, registered; or, having killed and reaped the child and removed the file, why
    /// not. `outcome` is the driver's own result.
    fn finish(
        &mut self,
        outcome: Result<(), LaunchError>,
        kernel_name: Option<&String>,
        launch_id: Option<LaunchId>,
    ) -> Result<Launched, LaunchError> {
        match (outcome, self.registered.take(), self.child.take()) {
            (Ok(()), Some((mut connection, evidence, at)), Some(child)) => {
                if connection.kernel_name.is_none() {
                    connection.kernel_name = kernel_name.cloned();
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
                    file: self.file.clone(),
                    registered_after,
                    launch_id,
                })
            }
            (outcome, _, child) => {
                if let Some(mut child) = child {
                    if matches!(child.try_wait(), Ok(None)) {
                        let _ = child.kill();
                    }
                    let _ = child.wait();
                }
                if self.file_bytes.take().is_some() {
                    let _ = std::fs::remove_file(&self.file);
                }
                Err(match (outcome, self.failed.take()) {
                    (Err(error), _) => error,
                    (Ok(()), Some(failure)) => LaunchError::Failed {
                        failure,
                        last_rejection: self.last_rejection.take(),
                    },
                    (Ok(()), None) => {
                        Error::Internal("the launch ended neither connected nor failed").into()
                    }
                })
            }
        }
    }
}

/// Binds a registration ROUTER on port 0; returns it and its port.
fn bind_registration(
    ctx: &zmq::Context,
    transport: Transport,
    ip: &str,
) -> Result<(zmq::Socket, u16), Error> {
    let router = socket(ctx, zmq::ROUTER, "registration")?;
    // Defence in depth: libzmq disconnects a peer that sends a frame larger than anything the
    // core would accept anyway.
    let max = i64::try_from(Limits::HANDSHAKE.max_frame_len).unwrap_or(i64::MAX);
    router
        .set_maxmsgsize(max)
        .map_err(|source| configure("registration", source))?;
    let port = bind(&router, "registration", transport, ip, 0)?;
    Ok((router, port))
}

/// Creates the directory for the launchers' files (private) and returns it.
fn file_dir(options: &LaunchOptions) -> Result<PathBuf, Error> {
    let dir = options.dir.clone().unwrap_or_else(runtime_dir);
    create_private_dir(&dir).map_err(|source| Error::WriteFile {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
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
    /// The registration socket, once bound.
    pub(crate) router: Option<S>,
    kernel: Kernel,
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
        let dir = file_dir(options)?;
        let session_id = new_session_id();
        let kernel = Kernel::new(&dir, &session_id);
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
            LaunchMode::Upstream => LauncherHandshake::new(LauncherConfig {
                dialect: Dialect::Upstream,
                kernel_id: new_session_id(),
                ..config
            }),
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
            router: None,
            kernel,
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
            if let Some(bytes) = self.kernel.file_change() {
                let now = self.clock.now();
                self.machine
                    .handle_input(now, LauncherInput::FileChanged(&bytes))?;
                self.drain()?;
            }
        }
        if !self.done() {
            if let Some(status) = self.kernel.exited()? {
                let now = self.clock.now();
                self.machine
                    .handle_input(now, LauncherInput::KernelExited(status))?;
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
                    let (router, port) = bind_registration(self.ctx, transport, &ip)?;
                    self.router = Some(S::wrap(router));
                    let now = self.clock.now();
                    self.machine
                        .handle_input(now, LauncherInput::RegistrationBound { port })?;
                }
                Output::Action(LauncherAction::WriteRegistrationFile(registration)) => {
                    let bytes = registration.to_json_pretty();
                    self.kernel
                        .write_and_spawn(self.argv, self.options, bytes, &self.clock)?;
                }
                Output::Action(LauncherAction::WriteConnectionFile(mut connection)) => {
                    if connection.kernel_name.is_none() {
                        connection.kernel_name.clone_from(&self.options.kernel_name);
                    }
                    let bytes = connection.to_json_pretty();
                    self.kernel
                        .write_and_spawn(self.argv, self.options, bytes, &self.clock)?;
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
                    self.kernel.note(&event, now);
                }
                Output::Timeout(deadline) => return Ok(deadline),
            }
        }
    }

    /// Ends the launch: closes the registration socket (its linger lets a queued reply go out)
    /// and returns the kernel, or kills and reaps the child, removes the file, and returns why.
    /// `outcome` is the driver loop's own result.
    pub(crate) fn finish(
        mut self,
        outcome: Result<(), LaunchError>,
    ) -> Result<Launched, LaunchError> {
        drop(self.router.take());
        self.kernel
            .finish(outcome, self.options.kernel_name.as_ref(), None)
    }
}

/// One launch of a [`Fleet`]: its command and its kernel.
struct Member {
    id: LaunchId,
    argv: Vec<String>,
    kernel: Kernel,
    /// Whether a caller waits for this launch's outcome now.
    awaited: bool,
}

/// The many-launch engine: one registration socket, one [`Registrar`], any number of kernels
/// launched at once and restarted later. Driven like [`Run`]: [`start`](Fleet::start) or
/// [`restart`](Fleet::restart), then until [`done`](Fleet::done): wait for at most
/// [`wait_for`](Fleet::wait_for), [`received`](Fleet::received), [`tick`](Fleet::tick); then
/// [`finish`](Fleet::finish).
pub(crate) struct Fleet<S> {
    clock: Clock,
    registrar: Registrar,
    options: LaunchOptions,
    dir: PathBuf,
    session_id: String,
    /// The shared registration socket.
    pub(crate) router: S,
    members: Vec<Member>,
}

impl<S: Wrap> Fleet<S> {
    /// Binds the shared registration socket. Classic mode cannot share a socket: it is refused.
    pub(crate) fn new(ctx: &zmq::Context, options: &LaunchOptions) -> Result<Self, LaunchError> {
        if options.mode.dialect().is_none() {
            return Err(LaunchError::ClassicCannotShare);
        }
        let dir = file_dir(options)?;
        let clock = Clock::new();
        let session_id = new_session_id();
        let mut registrar = Registrar::new(RegistrarConfig {
            transport: options.transport,
            ip: options.ip.clone(),
            session_id: session_id.clone(),
            ..RegistrarConfig::default()
        });
        let mut router = None;
        loop {
            match registrar.poll_output() {
                Output::Action(RegistrarAction::BindRegistration { transport, ip }) => {
                    let (socket, port) = bind_registration(ctx, transport, &ip)?;
                    router = Some(S::wrap(socket));
                    registrar
                        .handle_input(clock.now(), RegistrarInput::RegistrationBound { port })?;
                }
                Output::Timeout(_) => break,
                _ => {
                    return Err(
                        Error::Internal("the registrar asked for more than a socket").into(),
                    );
                }
            }
        }
        let router = router.ok_or(Error::Internal("the registrar never asked for its socket"))?;
        Ok(Self {
            clock,
            registrar,
            options: options.clone(),
            dir,
            session_id,
            router,
            members: Vec::new(),
        })
    }

    /// The shared registration socket's port.
    pub(crate) fn port(&self) -> Option<u16> {
        self.registrar.port()
    }

    /// The dialect of [`LaunchOptions::mode`] (never classic: refused in `new`).
    fn dialect(&self) -> Dialect {
        self.options.mode.dialect().unwrap_or_default()
    }

    /// Starts one launch per command; their files are written and their kernels spawned as the
    /// registrar asks. Returns their ids, in order (`Err` for a command that could not start:
    /// empty, or not spawnable, which fails its own launch only). The outer `Err` is the
    /// driver's own failure (its socket).
    pub(crate) fn start(
        &mut self,
        launches: &[(Vec<String>, Dialect)],
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<Vec<Result<LaunchId, LaunchError>>, LaunchError> {
        match self.start_each(launches, observer) {
            Ok(started) => Ok(started),
            // Stops every kernel started so far, and returns the error.
            Err(error) => self.finish(&[], Err(error)).map(|_| Vec::new()),
        }
    }

    /// Each command paired with the dialect of the options (`launch_all` launches them all so).
    pub(crate) fn same_dialect(&self, argvs: &[Vec<String>]) -> Vec<(Vec<String>, Dialect)> {
        let dialect = self.dialect();
        argvs.iter().map(|argv| (argv.clone(), dialect)).collect()
    }

    /// The outcome of each command [`start`](Self::start) was given, at its index, once the
    /// driver's loop ended with `outcome`.
    pub(crate) fn conclude(
        &mut self,
        started: Vec<Result<LaunchId, LaunchError>>,
        outcome: Result<(), LaunchError>,
    ) -> Result<Vec<Result<Launched, LaunchError>>, LaunchError> {
        let finished = self.finish(&started_ids(&started), outcome)?;
        Ok(in_order(started, finished))
    }

    /// The restarted kernel, once the driver's loop ended with `outcome`.
    pub(crate) fn conclude_restart(
        &mut self,
        id: LaunchId,
        outcome: Result<(), LaunchError>,
    ) -> Result<Launched, LaunchError> {
        self.finish(&[id], outcome)?
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("no outcome for the restart").into()))
    }

    fn start_each(
        &mut self,
        launches: &[(Vec<String>, Dialect)],
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<Vec<Result<LaunchId, LaunchError>>, LaunchError> {
        let mut ids = Vec::with_capacity(launches.len());
        for (argv, dialect) in launches {
            if argv.is_empty() {
                ids.push(Err(LaunchError::EmptyCommand));
                continue;
            }
            let config = LaunchConfig {
                registration_timeout: self.options.timeout,
                dialect: *dialect,
                kernel_id: new_session_id(),
                ..LaunchConfig::new(random_key())
            };
            let id = self.registrar.launch(self.clock.now(), config)?;
            let name = format!("{}-{}", self.session_id, id.get());
            self.members.push(Member {
                id,
                argv: argv.clone(),
                kernel: Kernel::new(&self.dir, &name),
                awaited: true,
            });
            self.drain(observer)?;
            ids.push(Ok(id));
        }
        Ok(ids)
    }

    /// Starts a registered or failed launch over, for a new process of the same kernel: the old
    /// process is killed if it still runs, the file is written again with the same key, and the
    /// command is spawned again.
    pub(crate) fn restart(
        &mut self,
        launched: &mut Launched,
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<LaunchId, LaunchError> {
        let id = launched.launch_id.ok_or(LaunchError::NotShared)?;
        let member = self
            .members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or(RegistrarError::UnknownLaunch(id))?;
        if matches!(launched.child.try_wait(), Ok(None)) {
            let _ = launched.child.kill();
        }
        let _ = launched.child.wait();
        member.awaited = true;
        member.kernel.registered = None;
        member.kernel.failed = None;
        member.kernel.last_rejection = None;
        self.registrar.rearm(self.clock.now(), id)?;
        self.drain(observer)?;
        Ok(id)
    }

    /// Forgets launch `id` (its kernel is gone for good): the registrar drops its key, and the
    /// fleet its record.
    pub(crate) fn forget(&mut self, id: LaunchId) -> Result<(), LaunchError> {
        self.registrar.remove(id)?;
        self.members.retain(|m| m.id != id);
        Ok(())
    }

    /// Whether every awaited launch is over.
    pub(crate) fn done(&self) -> bool {
        self.members.iter().filter(|m| m.awaited).all(|m| {
            self.registrar
                .launch_state(m.id)
                .is_none_or(|s| s.is_terminal())
        })
    }

    /// How long to wait at most for a message before the next [`tick`](Self::tick).
    pub(crate) fn wait_for(&self) -> Duration {
        self.registrar
            .poll_timeout()
            .map_or(TICK, |d| self.clock.until(d))
            .min(TICK)
    }

    /// Feeds one message received on the shared socket to the registrar.
    pub(crate) fn received(
        &mut self,
        frames: &[&[u8]],
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<(), LaunchError> {
        let now = self.clock.now();
        self.registrar
            .handle_input(now, RegistrarInput::Received(frames))?;
        self.drain(observer)
    }

    /// After each wake-up: reports every awaited kernel's file changes and exits, then the time.
    pub(crate) fn tick(
        &mut self,
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<(), LaunchError> {
        for i in 0..self.members.len() {
            let id = self.members[i].id;
            let pending = self
                .registrar
                .launch_state(id)
                .is_some_and(|s| !s.is_terminal());
            if !pending {
                continue;
            }
            if let Some(bytes) = self.members[i].kernel.file_change() {
                let now = self.clock.now();
                let input = RegistrarInput::FileChanged {
                    launch: id,
                    bytes: &bytes,
                };
                self.registrar.handle_input(now, input)?;
                self.drain(observer)?;
            }
            let still_pending = self
                .registrar
                .launch_state(id)
                .is_some_and(|s| !s.is_terminal());
            if still_pending {
                if let Some(status) = self.members[i].kernel.exited()? {
                    let now = self.clock.now();
                    let input = RegistrarInput::KernelExited { launch: id, status };
                    self.registrar.handle_input(now, input)?;
                    self.drain(observer)?;
                }
            }
        }
        let now = self.clock.now();
        self.registrar.handle_input(now, RegistrarInput::Timeout)?;
        self.drain(observer)
    }

    /// Does everything the registrar asks until it is drained.
    fn drain(
        &mut self,
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<(), LaunchError> {
        loop {
            match self.registrar.poll_output() {
                Output::Action(RegistrarAction::WriteRegistrationFile { launch, file }) => {
                    let Some(member) = self.members.iter_mut().find(|m| m.id == launch) else {
                        return Err(Error::Internal("a file for a launch we did not make").into());
                    };
                    // A command that cannot be spawned fails its own launch, not the others.
                    if let Err(error) = member.kernel.write_and_spawn(
                        &member.argv,
                        &self.options,
                        file.to_json_pretty(),
                        &self.clock,
                    ) {
                        member.kernel.spawn_error = Some(error);
                        let now = self.clock.now();
                        self.registrar
                            .handle_input(now, RegistrarInput::Abort { launch })?;
                    }
                }
                Output::Action(RegistrarAction::BindRegistration { .. }) => {
                    return Err(Error::Internal("the registrar asked for a second socket").into());
                }
                Output::Transmit(transmit) => {
                    send(self.router.raw(), "registration", transmit.frames)?;
                }
                Output::Event(event) => {
                    let now = self.clock.now();
                    observer(now, &event);
                    if let RegistrarEvent::Launch { launch, event } = &event {
                        if let Some(member) = self.members.iter_mut().find(|m| m.id == *launch) {
                            member.kernel.note(event, now);
                        }
                    }
                }
                Output::Timeout(_) => return Ok(()),
            }
        }
    }

    /// The outcome of each launch in `ids` (which the caller awaited): the kernel, or why not
    /// (its child killed and reaped, its file removed). When the driver itself failed
    /// (`outcome`), every awaited kernel is stopped and cleaned up, and that error is returned.
    pub(crate) fn finish(
        &mut self,
        ids: &[LaunchId],
        outcome: Result<(), LaunchError>,
    ) -> Result<Vec<Result<Launched, LaunchError>>, LaunchError> {
        let kernel_name = self.options.kernel_name.clone();
        let mut results = Vec::with_capacity(ids.len());
        for member in self.members.iter_mut().filter(|m| m.awaited) {
            member.awaited = false;
            let own = match (&outcome, member.kernel.spawn_error.take()) {
                (_, Some(error)) => Err(error),
                (Err(_), None) => Err(Error::Internal("stopped: the launcher failed").into()),
                (Ok(()), None) => Ok(()),
            };
            let result = member
                .kernel
                .finish(own, kernel_name.as_ref(), Some(member.id));
            results.push((member.id, result));
        }
        outcome?;
        Ok(ids
            .iter()
            .map(|id| match results.iter().position(|(r, _)| r == id) {
                Some(at) => results.swap_remove(at).1,
                None => Err(Error::Internal("an outcome for a launch not awaited").into()),
            })
            .collect())
    }
}

/// Puts the outcomes of the launches that started (`finished`, in order) back among the
/// commands that could not start (`started`), so each command's result is at its own index.
fn in_order(
    started: Vec<Result<LaunchId, LaunchError>>,
    finished: Vec<Result<Launched, LaunchError>>,
) -> Vec<Result<Launched, LaunchError>> {
    let mut finished = finished.into_iter();
    started
        .into_iter()
        .map(|started| match started {
            Ok(_) => finished
                .next()
                .unwrap_or_else(|| Err(Error::Internal("fewer outcomes than launches").into())),
            Err(error) => Err(error),
        })
        .collect()
}

/// The ids of the launches that started.
fn started_ids(started: &[Result<LaunchId, LaunchError>]) -> Vec<LaunchId> {
    started
        .iter()
        .filter_map(|s| s.as_ref().ok().copied())
        .collect()
}
