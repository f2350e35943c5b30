//! The launcher side: start a kernel and learn its ports without a race.
//!
//! What every launcher driver shares: the options, the result, the racy classic launch, the
//! one [`Launcher`] type, and the one engine that does what the core's [`Registrar`] asks. A
//! single launch (`blocking::launch`, `asynchronous::launch`) is a launch of one through that
//! engine, on a registration socket of its own. The blocking and async drivers only differ in
//! how they wait.
//!
//! ## Handshake mode ([`LaunchMode::Handshake`](crate::LaunchMode::Handshake), [`LaunchMode::Upstream`](crate::LaunchMode::Upstream))
//!
//! Each step is the core's [`Registrar`] (one
//! [`LauncherHandshake`](jupyter_handshake::LauncherHandshake) per launch) asking for it:
//!
//! 1. `BindRegistration`: a ROUTER is bound on port 0 (the port is read back from libzmq), before
//!    anything else exists, so no other process can take it.
//! 2. `WriteRegistrationFile`: the file is written atomically, mode 0600, as
//!    `{dir}/kernel-{session}-{n}.json`, `{connection_file}` in the kernel's argv is replaced by its
//!    path, and the kernel is spawned.
//! 3. The driver then waits on the ROUTER until the core's deadline, waking at least every
//!    10 ms to check whether the child has exited (reported at once as `KernelExited`, so a
//!    crashing kernel fails the launch immediately, not at the deadline) and whether the file's
//!    bytes changed (reported as `FileChanged`, which is how stock ipykernel registers: it
//!    rewrites the file with the ports it bound). The file is only read when one `stat` says
//!    its length or modification time changed. Every message is fed to the core as received;
//!    the core drops forged or garbled ones and answers real requests; its replies are sent.
//! 4. On `Connected`, the launch returns the kernel's connection information; on `Failed`, the
//!    child is killed (if still running) and reaped, the file is removed, and the core's reason
//!    is returned.
//!
//! ## Classic mode ([`LaunchMode::Classic`](crate::LaunchMode::Classic)): racy on purpose
//!
//! Five ports are picked by binding port 0 with [`TcpListener`](std::net::TcpListener)s and closing them, exactly as
//! jupyter_client does, then written into a classic connection file. **This is racy**: between
//! the moment the listeners close and the moment the kernel binds, any process may take one of
//! those ports, and the kernel then dies with "Address already in use" (or worse, a client talks
//! to the thief). That race is the reason the handshake exists; classic mode is here for kernels
//! that cannot register, and to demonstrate the race. Nothing confirms the kernel's ports: the
//! launch "succeeds" as soon as the kernel is spawned (evidence [`Evidence::Classic`]). Since
//! nothing is decided, no machine is involved and no event is reported: pick the ports, write
//! the file, spawn.
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

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use jupyter_handshake::{
    ConnectionFile, Dialect, Evidence, ExitStatus, Instant, LauncherEvent, LauncherState, Output,
    Rejection, SignatureScheme, Transport, wire::Limits,
};

use crate::clock::Clock;
use crate::error::{Error, LaunchError};
use crate::files::{
    FileWatch, create_private_dir, new_session_id, random_key, runtime_dir, write_private_atomic,
};
use crate::process::{self, Cancel, STOP_GRACE};
pub use crate::process::{ChildStdio, exit_status, substitute_connection_file};
use crate::sockets::{IpcFile, Wrap, bind, configure, ipc_file, send, socket};
use crate::wait::{Engine, Interest, Watch};
use jupyter_handshake::{
    LaunchConfig, LaunchId, Registrar, RegistrarAction, RegistrarConfig, RegistrarError,
    RegistrarEvent, RegistrarInput,
};
use jupyter_handshake_host::classic;
pub use jupyter_handshake_host::options::LaunchOptions;

/// The longest a driver sleeps before checking the child process and the file again.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// A kernel that registered (or, in classic mode, was started).
#[derive(Debug)]
pub struct Launched {
    /// How to connect to it (its `Debug` hides the key).
    pub connection: ConnectionFile,
    /// How the launcher knows its ports: a `handshake_request`, a rewrite of the file, or
    /// classic (it does not).
    pub evidence: Evidence,
    /// The kernel process, the leader of its own process group. Dropping it does not stop the
    /// kernel: [`stop`](Self::stop) or [`kill`](Self::kill) do, with everything in its group.
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

    /// Stops the kernel and everything in its process group, gracefully ([`process::stop`]:
    /// SIGTERM, up to `grace` to exit, then SIGKILL), reaps it, and removes its file (which
    /// holds the key). For a kernel that does not answer a `shutdown_request`, or for a program
    /// that is itself stopping (on SIGINT or SIGTERM, say). Returns how the kernel ended.
    pub fn stop(&mut self, grace: Duration) -> io::Result<std::process::ExitStatus> {
        let status = process::stop(&mut self.child, grace);
        let removed = self.remove_file();
        let status = status?;
        removed.map(|()| status)
    }

    /// Kills the kernel and everything in its process group at once (SIGKILL), reaps it, and
    /// removes its file. Returns how the kernel ended.
    pub fn kill(&mut self) -> io::Result<std::process::ExitStatus> {
        let status = process::kill(&mut self.child);
        let removed = self.remove_file();
        let status = status?;
        removed.map(|()| status)
    }
}

/// A classic launch, which makes no protocol decision and so needs no machine: picks five ports
/// (racily, see the [module docs](self)), writes the connection file, spawns the kernel. The
/// launch "succeeds" once the kernel is spawned; nothing confirms its ports.
pub(crate) fn launch_classic(
    argv: &[String],
    options: &LaunchOptions,
) -> Result<Launched, LaunchError> {
    if argv.is_empty() {
        return Err(LaunchError::EmptyCommand);
    }
    let dir = file_dir(options)?;
    let ports = classic::pick_ports(options.transport, &options.ip).map_err(LaunchError::Ports)?;
    let mut connection = ConnectionFile::new(
        options.transport,
        options.ip.clone(),
        SignatureScheme::default(),
        random_key(),
        ports,
    );
    connection.kernel_name.clone_from(&options.kernel_name);
    let mut process = Process::new(&dir, &new_session_id());
    if let Err(error) = process.write_and_spawn(argv, options, connection.to_json_pretty()) {
        process.stop(None);
        return Err(error);
    }
    let child = process
        .child
        .take()
        .ok_or(Error::Internal("spawned without a child"))?;
    Ok(Launched {
        connection,
        evidence: Evidence::Classic,
        child,
        file: process.file,
        // The "registration" (we chose the ports) precedes the spawn.
        registered_after: Duration::ZERO,
        launch_id: None,
    })
}

/// One kernel process of a launch: its file and its child. What the core says about the launch
/// (its state, its connection, its failure) is read from the core, not kept here.
struct Process {
    file: PathBuf,
    child: Option<Child>,
    spawned_at: Option<Instant>,
    /// The watch on the file; `Some` once we have written it.
    watch: Option<FileWatch>,
}

impl Process {
    /// A process whose file will be `{dir}/kernel-{name}.json`.
    fn new(dir: &Path, name: &str) -> Self {
        Self {
            file: dir.join(format!("kernel-{name}.json")),
            child: None,
            spawned_at: None,
            watch: None,
        }
    }

    /// Writes the file, then spawns `argv` with `{connection_file}` replaced by its path.
    fn write_and_spawn(
        &mut self,
        argv: &[String],
        options: &LaunchOptions,
        bytes: Vec<u8>,
    ) -> Result<(), LaunchError> {
        write_private_atomic(&self.file, &bytes).map_err(|source| Error::WriteFile {
            path: self.file.clone(),
            source,
        })?;
        self.watch = Some(FileWatch::new(self.file.clone(), bytes));
        let argv = substitute_connection_file(argv, &self.file);
        let program = argv.first().cloned().unwrap_or_default();
        let child = process::command(&argv, &options.env, options.stdout, options.stderr)
            .and_then(|mut command| command.spawn())
            .map_err(|source| LaunchError::Spawn { program, source })?;
        self.child = Some(child);
        Ok(())
    }

    /// The file's bytes, if they changed ([`FileWatch::changed`]).
    fn file_change(&mut self) -> Option<Vec<u8>> {
        self.watch.as_mut()?.changed()
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

    /// Stops the child's process group and reaps the child, and removes the file (if we wrote
    /// it). With `until`, gracefully ([`process::stop`], SIGTERM already sent by the caller or
    /// sent now, SIGKILL at `until`); without, at once ([`process::kill`]).
    fn stop(&mut self, until: Option<std::time::Instant>) {
        if let Some(mut child) = self.child.take() {
            let _ = match until {
                Some(until) => process::stop(
                    &mut child,
                    until.saturating_duration_since(std::time::Instant::now()),
                ),
                None => process::kill(&mut child),
            };
        }
        if self.watch.take().is_some() {
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

/// One launch of a [`Fleet`]: its command, its process, and what only the driver knows.
struct Member {
    id: LaunchId,
    argv: Vec<String>,
    process: Process,
    /// When the core reported the registration (the driver's clock), and its evidence.
    registered: Option<(Instant, Evidence)>,
    /// The last message or file change dropped while waiting: its reason, for the error.
    last_rejection: Option<Rejection>,
    /// Why the command could not be started (that launch fails alone).
    spawn_error: Option<LaunchError>,
    /// Whether a caller waits for this launch's outcome now.
    awaited: bool,
}

/// The launcher engine: one registration socket, one [`Registrar`], any number of kernels
/// launched at once and restarted later; a single launch is a launch of one. It does
/// everything but waiting, and is driven through [`Engine`] (see [`crate::wait`]):
/// [`start`](Fleet::start) or [`restart`](Fleet::restart), then [`Fleet::driving`] handed to a
/// driver until it is done, then [`conclude`](Fleet::conclude).
pub(crate) struct Fleet<S> {
    clock: Clock,
    registrar: Registrar,
    options: LaunchOptions,
    dir: PathBuf,
    session_id: String,
    /// The shared registration socket.
    router: S,
    /// Its socket file over ipc, removed with the fleet (after the socket: fields drop in
    /// order).
    _router_file: Option<IpcFile>,
    members: Vec<Member>,
    /// How many messages no launch's key verified ([`RegistrarEvent::Rejected`]) so far.
    rejected: u64,
    /// The peers of the registration socket that sent them, and those no longer heard.
    strangers: Strangers,
    /// How many messages of peers no longer heard were dropped unverified so far.
    ignored: u64,
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
            limits: Limits::REGISTRATION,
            ..RegistrarConfig::default()
        });
        let mut router = None;
        let mut router_file = None;
        loop {
            match registrar.poll_output() {
                Output::Action(RegistrarAction::BindRegistration { transport, ip }) => {
                    let (socket, port) = bind_registration(ctx, transport, &ip)?;
                    router = Some(S::wrap(socket));
                    router_file = ipc_file(transport, &ip, port);
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
            _router_file: router_file,
            members: Vec::new(),
            rejected: 0,
            strangers: Strangers::default(),
            ignored: 0,
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

    /// Each command paired with the dialect of the options (`launch_all` launches them all so).
    pub(crate) fn same_dialect(&self, argvs: &[Vec<String>]) -> Vec<(Vec<String>, Dialect)> {
        let dialect = self.dialect();
        argvs.iter().map(|argv| (argv.clone(), dialect)).collect()
    }

    /// Starts one launch per command; their files are written and their kernels spawned as the
    /// registrar asks. Returns their ids, in order (`Err` for a command that could not start:
    /// empty, or not spawnable, which fails its own launch only). The outer `Err` is the
    /// driver's own failure (its socket); every kernel started so far is then stopped.
    pub(crate) fn start(
        &mut self,
        launches: &[(Vec<String>, Dialect)],
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<Vec<Result<LaunchId, LaunchError>>, LaunchError> {
        match self.start_each(launches, observer) {
            Ok(started) => Ok(started),
            Err(error) => self.finish(&[], Err(error)).map(|_| Vec::new()),
        }
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
                process: Process::new(&self.dir, &name),
                registered: None,
                last_rejection: None,
                spawn_error: None,
                awaited: true,
            });
            self.drain(observer)?;
            ids.push(Ok(id));
            // Spawning many kernels takes seconds: serve the registrations that arrived
            // meanwhile, so that an early kernel gets its reply before its own ack timeout.
            self.serve_queued(observer)?;
        }
        Ok(ids)
    }

    /// Hands the registrar the messages already queued on the registration socket (at most one
    /// wake-up's batch, as the driver's loop would), without waiting.
    fn serve_queued(
        &mut self,
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<(), LaunchError> {
        crate::wait::take_queued(&mut self.driving(observer), 0, crate::wait::MAX_BATCH)
    }

    /// Hands the registrar one message from the registration socket. A peer whose message no
    /// launch's key verified gets a strike (see [`Strangers`]).
    fn receive<F: AsRef<[u8]>>(
        &mut self,
        frames: &[F],
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<(), LaunchError> {
        let rejected = self.rejected;
        let now = self.clock.now();
        self.registrar.receive(now, frames);
        let drained = self.drain(observer);
        if self.rejected != rejected {
            // A ROUTER puts the peer's routing id first.
            if let Some(peer) = frames.first() {
                self.strangers.strike(peer.as_ref());
            }
        }
        drained
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
        let _ = process::kill(&mut launched.child);
        member.awaited = true;
        member.registered = None;
        member.last_rejection = None;
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

    /// Whether launch `id` is still waiting for its kernel.
    fn pending(&self, id: LaunchId) -> bool {
        self.registrar
            .launch_state(id)
            .is_some_and(|s| !s.is_terminal())
    }

    /// The engine for the driver's loop, reporting every event to `observer`.
    pub(crate) fn driving<'a, O>(&'a mut self, observer: &'a mut O) -> Driving<'a, S, O>
    where
        O: FnMut(Instant, &RegistrarEvent) + ?Sized,
    {
        Driving {
            fleet: self,
            observer,
        }
    }

    /// After each wake-up: reports every pending kernel's file change and exit, then the time,
    /// all at one instant: facts of one wake-up are facts of one instant, whose outcome the
    /// core defines whatever their order.
    fn tick(
        &mut self,
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<(), LaunchError> {
        if self
            .options
            .cancel
            .as_ref()
            .is_some_and(Cancel::is_cancelled)
        {
            return Err(LaunchError::Cancelled);
        }
        let now = self.clock.now();
        for i in 0..self.members.len() {
            let id = self.members[i].id;
            if !self.pending(id) {
                continue;
            }
            if let Some(bytes) = self.members[i].process.file_change() {
                let input = RegistrarInput::FileChanged {
                    launch: id,
                    bytes: &bytes,
                };
                self.registrar.handle_input(now, input)?;
                self.drain(observer)?;
            }
            if self.pending(id) {
                if let Some(status) = self.members[i].process.exited()? {
                    let input = RegistrarInput::KernelExited { launch: id, status };
                    self.registrar.handle_input(now, input)?;
                    self.drain(observer)?;
                }
            }
        }
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
                    let bytes = file.to_json_pretty();
                    match member
                        .process
                        .write_and_spawn(&member.argv, &self.options, bytes)
                    {
                        Ok(()) => member.process.spawned_at = Some(self.clock.now()),
                        Err(error) => {
                            member.spawn_error = Some(error);
                            let now = self.clock.now();
                            self.registrar
                                .handle_input(now, RegistrarInput::Abort { launch })?;
                        }
                    }
                }
                Output::Action(RegistrarAction::BindRegistration { .. }) => {
                    return Err(Error::Internal("the registrar asked for a second socket").into());
                }
                Output::Transmit(transmit) => {
                    // A ROUTER never blocks on send (it drops what it cannot route), so a plain
                    // send is right for the async driver too.
                    send(self.router.raw(), "registration", transmit.frames)?;
                }
                Output::Event(event) => {
                    let now = self.clock.now();
                    observer(now, &event);
                    self.note(&event, now);
                }
                Output::Timeout(_) => return Ok(()),
            }
        }
    }

    /// Keeps what only the driver knows from an event: when a launch registered, and the last
    /// reason something was dropped. A message no key verified belongs to no launch, unless
    /// only one is waiting (a single launch): then it is that launch's.
    fn note(&mut self, event: &RegistrarEvent, now: Instant) {
        let (id, event) = match event {
            RegistrarEvent::Launch { launch, event } => (Some(*launch), event),
            RegistrarEvent::Rejected(rejection) => {
                self.rejected += 1;
                let mut waiting = self.members.iter_mut().filter(|m| m.awaited);
                if let (Some(only), None) = (waiting.next(), waiting.next()) {
                    only.last_rejection = Some(rejection.clone());
                }
                return;
            }
            _ => return,
        };
        let Some(member) = self.members.iter_mut().find(|m| Some(m.id) == id) else {
            return;
        };
        match event {
            LauncherEvent::Registered { evidence, .. } => {
                member.registered = Some((now, *evidence));
            }
            LauncherEvent::Rejected(rejection) | LauncherEvent::Refused(rejection) => {
                member.last_rejection = Some(rejection.clone());
            }
            _ => {}
        }
    }

    /// The outcome of each command [`start`](Self::start) was given, at its index, once the
    /// driver's loop ended with `outcome`.
    pub(crate) fn conclude(
        &mut self,
        started: Vec<Result<LaunchId, LaunchError>>,
        outcome: Result<(), LaunchError>,
    ) -> Result<Vec<Result<Launched, LaunchError>>, LaunchError> {
        let ids: Vec<LaunchId> = started
            .iter()
            .filter_map(|s| s.as_ref().ok().copied())
            .collect();
        let mut finished = self.finish(&ids, outcome)?.into_iter();
        Ok(started
            .into_iter()
            .map(|started| match started {
                Ok(_) => finished
                    .next()
                    .unwrap_or_else(|| Err(Error::Internal("fewer outcomes than launches").into())),
                Err(error) => Err(error),
            })
            .collect())
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

    /// The outcome of each launch in `ids` (which the caller awaited): the kernel, or why not
    /// (its child killed and reaped, its file removed). When the driver itself failed
    /// (`outcome`), every awaited kernel is stopped and cleaned up, and that error is returned.
    fn finish(
        &mut self,
        ids: &[LaunchId],
        outcome: Result<(), LaunchError>,
    ) -> Result<Vec<Result<Launched, LaunchError>>, LaunchError> {
        let mut results = Vec::with_capacity(ids.len());
        // When the driver failed (or was cancelled), every awaited kernel is stopped: SIGTERM
        // to all of them first, so that they share one grace period, SIGKILL after it.
        let stopping = outcome.is_err().then(|| {
            for member in self.members.iter().filter(|m| m.awaited) {
                if let Some(child) = &member.process.child {
                    let _ = process::terminate(child);
                }
            }
            std::time::Instant::now() + STOP_GRACE
        });
        for i in 0..self.members.len() {
            if !self.members[i].awaited {
                continue;
            }
            self.members[i].awaited = false;
            let id = self.members[i].id;
            let result = self.outcome(i, stopping);
            results.push((id, result));
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

    /// Member `i`'s outcome, from the core's state, connection and failure; `stopping` (when
    /// to kill what SIGTERM did not stop) when the driver failed and every kernel is stopped.
    fn outcome(
        &mut self,
        i: usize,
        stopping: Option<std::time::Instant>,
    ) -> Result<Launched, LaunchError> {
        let stopped = stopping.is_some();
        let member = &mut self.members[i];
        let id = member.id;
        let connected = self.registrar.launch_state(id) == Some(LauncherState::Connected);
        let error = match (member.spawn_error.take(), stopped, connected) {
            (Some(error), _, _) => error,
            (None, true, _) => Error::Internal("stopped: the launcher failed").into(),
            (None, false, true) => {
                let connection = self.registrar.connection(id).cloned();
                match (connection, member.registered, member.process.child.take()) {
                    (Some(mut connection), Some((at, evidence)), Some(child)) => {
                        if connection.kernel_name.is_none() {
                            connection.kernel_name.clone_from(&self.options.kernel_name);
                        }
                        let registered_after =
                            member.process.spawned_at.map_or(Duration::ZERO, |spawned| {
                                at.saturating_duration_since(spawned)
                            });
                        return Ok(Launched {
                            connection,
                            evidence,
                            child,
                            file: member.process.file.clone(),
                            registered_after,
                            launch_id: Some(id),
                        });
                    }
                    (_, _, child) => {
                        member.process.child = child;
                        Error::Internal("connected without a connection or a child").into()
                    }
                }
            }
            (None, false, false) => match self.registrar.failure(id) {
                Some(failure) => LaunchError::Failed {
                    failure: failure.clone(),
                    last_rejection: member.last_rejection.take(),
                },
                None => Error::Internal("the launch ended neither connected nor failed").into(),
            },
        };
        member.process.stop(stopping);
        Err(error)
    }
}

/// A [`Fleet`] being driven, with the observer that sees its events: the [`Engine`] the
/// blocking and async drivers wait for.
pub(crate) struct Driving<'a, S, O: ?Sized> {
    fleet: &'a mut Fleet<S>,
    observer: &'a mut O,
}

impl<S: Wrap, O> Engine for Driving<'_, S, O>
where
    O: FnMut(Instant, &RegistrarEvent) + ?Sized,
{
    type Socket = S;
    type Error = LaunchError;

    fn done(&self) -> bool {
        let fleet = &self.fleet;
        fleet
            .members
            .iter()
            .filter(|m| m.awaited)
            .all(|m| !fleet.pending(m.id))
    }

    /// The registration socket, until the earliest deadline, and never longer than [`TICK`]:
    /// children and files are watched by polling.
    fn interest(&mut self) -> Interest<'_, S> {
        let fleet = &mut self.fleet;
        let timeout = fleet
            .registrar
            .deadline()
            .map(|d| d.at)
            .map_or(TICK, |d| fleet.clock.until(d))
            .min(TICK);
        Interest {
            sockets: vec![Watch {
                tag: 0,
                name: "registration",
                socket: &mut fleet.router,
            }],
            timeout,
        }
    }

    fn socket(&self, _tag: usize) -> Option<(&'static str, &S)> {
        Some(("registration", &self.fleet.router))
    }

    fn received<F: AsRef<[u8]>>(&mut self, _tag: usize, frames: &[F]) -> Result<(), LaunchError> {
        let mut observer = |at: Instant, event: &RegistrarEvent| (self.observer)(at, event);
        self.fleet.receive(frames, &mut observer)
    }

    /// A message from a peer that sent [`STRIKES`] messages no key verified is dropped unread:
    /// it costs a lookup, not a verification against every pending key.
    fn ignores<F: AsRef<[u8]>>(&mut self, _tag: usize, frames: &[F]) -> bool {
        let fleet = &mut self.fleet;
        let ignored = frames
            .first()
            .is_some_and(|peer| fleet.strangers.ignored(peer.as_ref()));
        fleet.ignored += u64::from(ignored);
        ignored
    }

    fn woke(&mut self) -> Result<(), LaunchError> {
        let mut observer = |at: Instant, event: &RegistrarEvent| (self.observer)(at, event);
        self.fleet.tick(&mut observer)
    }
}

/// Launches many kernels through **one** registration socket (the core's
/// [`Registrar`]), at once, and restarts them through it: JEP 66's long-lived registration
/// socket. Each kernel gets its own key and file; a request is attributed by the key that
/// signs it, so one kernel's garbage, forgery, death or timeout never affects another's launch.
///
/// One type for both kinds of callers, by the socket it waits on:
/// [`blocking::Launcher`](crate::blocking::Launcher) (`Launcher<zmq::Socket>`) has the blocking
/// methods, `asynchronous::Launcher` (feature `async`, `Launcher<AsyncSocket>`) the same
/// methods as `async fn`s; everything but the waiting is written once, in one engine.
///
/// **Floods.** Anyone on the host can connect to the registration socket. Frames over 2 KiB
/// disconnect their sender; at most 4 complete messages wait
/// per peer (`ZMQ_RCVHWM`); the core rejects a message of more than 16 frames before any HMAC;
/// a peer whose 4 messages no key verified is no longer heard (its further messages are read
/// and dropped unverified). What remains is libzmq's: one I/O thread reads every connection, so
/// under a flood new connections (the kernels') wait behind it. Give the context two I/O
/// threads before its first socket (`ctx.set_io_threads(2)`, as the `jupyter-handshake` tool
/// does): with 300 flooding connections on 2 cores it halved the flooded launch time (README,
/// "Security of the drivers").
///
/// ```no_run
/// use jupyter_handshake_zmq::blocking::{LaunchOptions, Launcher};
/// # fn main() -> Result<(), jupyter_handshake_zmq::LaunchError> {
/// let ctx = zmq::Context::new();
/// ctx.set_io_threads(2).expect("a fresh context"); // before its first socket: see "Floods"
/// let argv: Vec<String> = ["my-kernel", "-f", "{connection_file}"].map(String::from).to_vec();
/// let mut launcher = Launcher::new(&ctx, &LaunchOptions::default())?;
/// let launched = launcher.launch_all(&vec![argv; 10], &mut |_, _| {})?;
/// for kernel in launched {
///     let mut kernel = kernel?;
///     println!("shell port {}", kernel.connection.ports.shell);
///     launcher.restart(&mut kernel, &mut |_, _| {})?; // new process, new ports, same socket
/// }
/// # Ok(()) }
/// ```
pub struct Launcher<S = zmq::Socket> {
    pub(crate) fleet: Fleet<S>,
}

#[allow(private_bounds)]
impl<S: Wrap> Launcher<S> {
    /// Binds the shared registration socket. `options` apply to every launch (classic mode is
    /// refused: it has nothing to register).
    pub fn new(ctx: &zmq::Context, options: &LaunchOptions) -> Result<Self, LaunchError> {
        Ok(Self {
            fleet: Fleet::new(ctx, options)?,
        })
    }

    /// The shared registration socket's port.
    pub fn port(&self) -> Option<u16> {
        self.fleet.port()
    }

    /// Forgets `launched` for good: its key can no longer register here, and the launcher no
    /// longer keeps anything for it (a supervisor that launches kernels for days calls this when
    /// one is gone). It neither stops the process nor removes the file.
    pub fn forget(&mut self, launched: &Launched) -> Result<(), LaunchError> {
        self.fleet
            .forget(launched.launch_id.ok_or(LaunchError::NotShared)?)
    }
}

/// A single launch's observer, which sees the launch's own events (and, as that launch's, the
/// drops of messages no key verified) as a launch on its own socket would.
pub(crate) fn single<'a, O>(observer: &'a mut O) -> impl FnMut(Instant, &RegistrarEvent) + 'a
where
    O: FnMut(Instant, &LauncherEvent) + ?Sized,
{
    move |at, event| match event {
        RegistrarEvent::Launch { event, .. } => observer(at, event),
        RegistrarEvent::Rejected(rejection) => {
            observer(at, &LauncherEvent::Rejected(rejection.clone()));
        }
        _ => {}
    }
}

/// The one outcome of a single launch; its launch id goes (its socket closes with it).
pub(crate) fn only(
    results: Result<Vec<Result<Launched, LaunchError>>, LaunchError>,
) -> Result<Launched, LaunchError> {
    let mut launched = results?
        .pop()
        .unwrap_or_else(|| Err(Error::Internal("no outcome for the launch").into()))?;
    launched.launch_id = None;
    Ok(launched)
}

/// The largest frame the registration socket accepts (`ZMQ_MAXMSGSIZE`): the registrar's own
/// bound, [`Limits::REGISTRATION`] (2 KiB, checked by the core before any HMAC). A peer sending
/// a larger frame is disconnected by libzmq before anything of it reaches the launcher.
pub(crate) const REGISTRATION_MAX_FRAME: usize = Limits::REGISTRATION.max_frame_len;

/// How many messages no launch's key verified a peer of the registration socket may send before
/// it is no longer heard: a kernel sends one request per connection (a restarted kernel
/// connects anew), so a peer past this many is a flooder, and each more message of it costs a
/// receive and a lookup instead of a verification against every pending key.
pub(crate) const STRIKES: u32 = 4;

/// How many peers [`Strangers`] remembers; past this the one struck longest ago is forgotten
/// (and heard again, for [`STRIKES`] more messages). Routing ids are at most 255 bytes, so this
/// bounds its memory to about 2 MiB, whatever the number of connections.
pub(crate) const STRANGERS_REMEMBERED: usize = 4096;

/// The peers (routing ids) of the registration socket that sent messages no launch's key
/// verified, with their number of strikes; a peer with [`STRIKES`] is ignored
/// ([`Engine::ignores`]). At most [`STRANGERS_REMEMBERED`] of them, oldest forgotten first.
#[derive(Debug, Default)]
pub(crate) struct Strangers {
    strikes: HashMap<Vec<u8>, u32>,
    /// The peers in `strikes`, first struck first.
    order: VecDeque<Vec<u8>>,
}

impl Strangers {
    /// One more message of `peer` that no launch's key verified.
    pub(crate) fn strike(&mut self, peer: &[u8]) {
        if let Some(strikes) = self.strikes.get_mut(peer) {
            *strikes = strikes.saturating_add(1);
            return;
        }
        if self.order.len() >= STRANGERS_REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.strikes.remove(&oldest);
            }
        }
        self.order.push_back(peer.to_vec());
        self.strikes.insert(peer.to_vec(), 1);
    }

    /// Whether `peer` is no longer heard.
    pub(crate) fn ignored(&self, peer: &[u8]) -> bool {
        self.strikes.get(peer).is_some_and(|&n| n >= STRIKES)
    }
}

/// How many complete messages libzmq queues per peer of the registration socket
/// (`ZMQ_RCVHWM`; libzmq's default is 1000, which lets a few hundred flooding connections park
/// gigabytes in the launcher).
pub(crate) const REGISTRATION_RCVHWM: i32 = 4;

/// The registration socket's listen backlog (`ZMQ_BACKLOG`; libzmq's default is 100, and Linux
/// caps it at `net.core.somaxconn`, 4096 by default).
///
/// When more connections arrive at once than the backlog holds, the OS drops the SYNs of the
/// rest, and their clients try again only after TCP's initial retransmission timeout, one
/// second. A fleet's kernels connect together, and so do a few hundred hostile connections:
/// with the default, 300 flooding connections delayed the last of 20 kernels by that second
/// (1.1 s to the last registration against 0.04 s alone; `bench/flood.py`). tokio's
/// `TcpListener` (the tokio driver) listens with 1024.
pub(crate) const REGISTRATION_BACKLOG: i32 = 4096;

/// Binds a registration ROUTER on port 0; returns it and its port.
fn bind_registration(
    ctx: &zmq::Context,
    transport: Transport,
    ip: &str,
) -> Result<(zmq::Socket, u16), Error> {
    let router = socket(ctx, zmq::ROUTER, "registration")?;
    // libzmq disconnects a peer that sends a frame larger than this, before it reaches us.
    let max = i64::try_from(REGISTRATION_MAX_FRAME).unwrap_or(i64::MAX);
    router
        .set_maxmsgsize(max)
        .map_err(|source| configure("registration", source))?;
    // A kernel sends one request: a peer with more queued than this waits in the kernel's
    // socket buffers (libzmq stops reading its connection), not in our memory.
    router
        .set_rcvhwm(REGISTRATION_RCVHWM)
        .map_err(|source| configure("registration", source))?;
    router
        .set_backlog(REGISTRATION_BACKLOG)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp::TempDir;

    /// The registration socket listens with [`REGISTRATION_BACKLOG`] (as far as the OS allows),
    /// not libzmq's 100: a burst of connections larger than the backlog has its excess SYNs
    /// dropped, and those kernels connect a second later. Read with `ss` (iproute2), which
    /// shows a listening socket's backlog as its Send-Q.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_registration_socket_listens_with_a_deep_backlog() {
        let ctx = zmq::Context::new();
        let (router, port) = bind_registration(&ctx, Transport::Tcp, "127.0.0.1").unwrap();
        let somaxconn: i32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let out = std::process::Command::new("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) runs");
        let listing = String::from_utf8_lossy(&out.stdout);
        // State, Recv-Q, Send-Q (the backlog), local address, peer address.
        let backlog: i32 = listing
            .split_whitespace()
            .nth(2)
            .and_then(|q| q.parse().ok())
            .unwrap_or_else(|| panic!("no listening socket on port {port}: {listing:?}"));
        assert_eq!(backlog, REGISTRATION_BACKLOG.min(somaxconn), "{listing}");
        drop(router);
    }

    /// One connection sends 50 garbage messages while a launch waits: the registrar sees its
    /// first [`STRIKES`], the rest are dropped unverified; a second connection is still heard.
    #[cfg(unix)]
    #[test]
    fn a_flooding_peer_is_verified_strikes_times_then_dropped_and_others_are_heard() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let options = LaunchOptions {
            dir: Some(dir.0.clone()),
            stdout: ChildStdio::Null,
            stderr: ChildStdio::Null,
            ..LaunchOptions::default()
        };
        let mut fleet = Fleet::<zmq::Socket>::new(&ctx, &options).unwrap();
        let mut quiet = |_: Instant, _: &RegistrarEvent| {};
        // A launch whose kernel never registers keeps the fleet waiting (and verifying).
        let launches = fleet.same_dialect(&[vec!["sleep".into(), "60".into()]]);
        let started = fleet.start(&launches, &mut quiet).unwrap();
        let endpoint = Transport::Tcp.endpoint("127.0.0.1", fleet.port().unwrap());
        let flooder = ctx.socket(zmq::DEALER).unwrap();
        flooder.set_linger(0).unwrap();
        flooder.connect(&endpoint).unwrap();
        for _ in 0..50 {
            flooder
                .send_multipart([&b"garbage"[..], b"<IDS|MSG>"], 0)
                .unwrap();
        }
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while fleet.rejected + fleet.ignored < 50 {
            assert!(
                std::time::Instant::now() < until,
                "the 50 messages never came"
            );
            fleet.serve_queued(&mut quiet).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            fleet.rejected,
            u64::from(STRIKES),
            "verified until the last strike"
        );
        assert_eq!(fleet.ignored, 50 - u64::from(STRIKES));
        let stranger = ctx.socket(zmq::DEALER).unwrap();
        stranger.set_linger(0).unwrap();
        stranger.connect(&endpoint).unwrap();
        stranger
            .send_multipart([&b"garbage"[..], b"<IDS|MSG>"], 0)
            .unwrap();
        while fleet.rejected == u64::from(STRIKES) {
            assert!(
                std::time::Instant::now() < until,
                "the other peer was not heard"
            );
            fleet.serve_queued(&mut quiet).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(fleet.ignored, 50 - u64::from(STRIKES));
        // Stops the sleeper and removes its file.
        let _ = fleet.conclude(started, Err(LaunchError::Cancelled));
        assert_eq!(
            std::fs::read_dir(&dir.0).unwrap().count(),
            0,
            "no file left"
        );
    }

    #[test]
    fn a_stranger_is_ignored_after_its_strikes_and_the_record_stays_bounded() {
        let mut strangers = Strangers::default();
        let flooder = [0u8, 0, 0, 0, 7];
        for _ in 1..STRIKES {
            strangers.strike(&flooder);
            assert!(!strangers.ignored(&flooder), "heard until its last strike");
        }
        strangers.strike(&flooder);
        assert!(strangers.ignored(&flooder));
        assert!(
            !strangers.ignored(&[0, 0, 0, 0, 8]),
            "another peer is heard"
        );
        // A peer per message (a flooder reconnecting each time) fills the record: it keeps at
        // most STRANGERS_REMEMBERED peers, forgetting the oldest first.
        for n in 0..u32::try_from(2 * STRANGERS_REMEMBERED).unwrap() {
            strangers.strike(&n.to_be_bytes());
        }
        assert_eq!(strangers.strikes.len(), STRANGERS_REMEMBERED);
        assert_eq!(strangers.order.len(), STRANGERS_REMEMBERED);
        assert!(!strangers.ignored(&flooder), "forgotten: heard again");
        let last = u32::try_from(2 * STRANGERS_REMEMBERED - 1).unwrap();
        assert_eq!(strangers.strikes.get(&last.to_be_bytes()[..]), Some(&1));
        assert_eq!(strangers.strikes.get(&0u32.to_be_bytes()[..]), None);
    }
}
