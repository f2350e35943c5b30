//! The launcher side: one registration ROUTER for many kernels, through the core's
//! [`Registrar`].
//!
//! A [`Launcher`] binds one ROUTER on port 0 (the OS picks the port, and it is held from then
//! on), and each launch through it gets its own key, its own registration file and its own
//! kernel process. For each launch the driver does what the registrar asks: write the file
//! (atomically, owner-only) as `{dir}/kernel-{session}-{n}.json`, replace `{connection_file}`
//! in the argv by its path, spawn the kernel with [`tokio::process`]; then it waits on the
//! ROUTER until the earliest deadline, waking at least every 10 ms to watch each kernel's
//! process (an exit is reported at once, so a crashing kernel fails at once, not at the
//! deadline) and its file (stat length and mtime first, read at most 64 KiB, regular files
//! only, never through a symlink; a rewrite is how stock ipykernel registers). Every message is
//! the core's to judge: forged, unsigned, garbled or stray messages are dropped by it and reach
//! no launch. A failed launch's child is killed and reaped and its file removed.
//!
//! Restarts ([`Launcher::restart`]) go through the same socket with the same key and file.
//!
//! **Cancellation.** The futures of [`Launcher::launch`], [`Launcher::launch_many`] and
//! [`Launcher::restart`] are `Send` and may be dropped (a lost `select!`, a timeout) without
//! leaking anything: kernels they started stay with the `Launcher`, which keeps judging them on
//! its next call and kills those it never handed over when it is dropped. They are not
//! cancellation-safe in the stricter sense: a kernel that registered while the future was being
//! dropped is not handed back (it is stopped with the `Launcher`).
//!
//! **Windows.** Exit detection is `tokio::process::Child::try_wait` (`GetExitCodeProcess`: a
//! code, never a signal; a killed process reads as exit code 1). The registration socket and
//! every file are opened non-inheritable (mio creates sockets with
//! `WSA_FLAG_NO_HANDLE_INHERIT` on Windows and `SOCK_CLOEXEC` on Unix; std opens files
//! non-inheritable / `O_CLOEXEC`), so the kernel inherits only its stdio, never the
//! registration socket (the way nteract's daemon lost ports to its kernels).

use std::path::PathBuf;
use std::time::Duration;

use jupyter_handshake::{
    ConnectionFile, Dialect, Evidence, Failure, Instant, LauncherEvent, Output, Rejection,
};
use jupyter_handshake::{
    LaunchConfig, LaunchId, Registrar, RegistrarAction, RegistrarConfig, RegistrarEvent,
    RegistrarInput,
};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::error::Error;
use crate::files::{
    FileWatch, create_private_dir, new_session_id, random_key, runtime_dir, write_private_atomic,
};
use crate::process::{self, Cancel};
pub use crate::process::{ChildStdio, exit_status, substitute_connection_file};
use crate::router::{Incoming, Router};
use jupyter_handshake_host::classic;
pub use jupyter_handshake_host::options::LaunchOptions;
use jupyter_handshake_host::process::STOP_GRACE;

/// The longest the launcher sleeps before looking at the kernels' processes and files again.
const TICK: Duration = Duration::from_millis(10);

/// At most this many messages per wake-up, so a flood cannot hide a kernel's exit.
const MAX_BATCH: usize = 64;

/// A kernel that registered (or, in classic mode, was started).
#[derive(Debug)]
pub struct Launched {
    /// How to connect to it (its `Debug` hides the key).
    pub connection: ConnectionFile,
    /// How the launcher knows the ports: a request, a rewrite of the file, or classic (it
    /// does not).
    pub evidence: Evidence,
    /// The kernel process, the leader of its own process group (on Unix). Dropping it does not
    /// stop the kernel: [`stop`](Self::stop) or [`kill`](Self::kill) do, with its group.
    pub child: Child,
    /// The registration or connection file handed to the kernel; still on disk (remove it once
    /// the kernel has exited: [`Launched::remove_file`]).
    pub file: PathBuf,
    /// From spawning the kernel to its registration (zero in classic mode).
    pub registered_after: Duration,
    /// Which launch of its [`Launcher`] this is (for [`Launcher::restart`]); `None` in classic
    /// mode.
    pub launch_id: Option<LaunchId>,
}

impl Launched {
    /// Removes [`file`](Self::file); a file already gone is not an error.
    pub fn remove_file(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Stops the kernel and its process group gracefully (SIGTERM to the group, up to `grace`
    /// for the kernel and its group to exit, then SIGKILL; elsewhere than Unix the kernel is
    /// killed), reaps it and removes its file, which holds the key. Returns how it ended.
    pub async fn stop(&mut self, grace: Duration) -> std::io::Result<std::process::ExitStatus> {
        let status = stop_child(&mut self.child, grace).await;
        let removed = self.remove_file();
        let status = status?;
        removed.map(|()| status)
    }

    /// Kills the kernel and its process group at once, reaps it and removes its file.
    pub async fn kill(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = kill_child(&mut self.child).await;
        let removed = self.remove_file();
        let status = status?;
        removed.map(|()| status)
    }
}

/// [`process::stop`](crate::process::stop) for tokio's child: SIGTERM to the group, up to
/// `grace` for it to empty, SIGKILL, reap.
async fn stop_child(
    child: &mut Child,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        process::terminate_group(pid)?;
        let group_gone = async {
            let _ = child.wait().await;
            while !process::group_is_empty(pid) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let _ = tokio::time::timeout(grace, group_gone).await;
    }
    kill_child(child).await
}

/// [`process::kill`](crate::process::kill) for tokio's child: SIGKILL to its group (even when
/// the child has exited, so nothing it left in its group outlives it), then the child, reaped.
async fn kill_child(child: &mut Child) -> std::io::Result<std::process::ExitStatus> {
    // `id` is `None` once the child was reaped: its pid may be reused, so no signal then.
    let signalled = child.id().map_or(Ok(()), process::kill_group);
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.start_kill();
    }
    let status = child.wait().await?;
    signalled.map(|()| status)
}

/// SIGKILL to the child's process group (what a wrapper left in it goes too) and to the child,
/// without waiting: where no `await` is possible (an outcome, a drop). tokio's orphan reaper
/// reaps it.
fn kill_now(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = process::kill_group(pid);
    }
    let _ = child.start_kill();
}

/// One launch: its command, process, file and what the core said.
struct Member {
    id: LaunchId,
    argv: Vec<String>,
    path: PathBuf,
    watch: Option<FileWatch>,
    child: Option<Child>,
    spawned_at: Option<Instant>,
    registered: Option<(ConnectionFile, Evidence, Instant)>,
    failed: Option<Failure>,
    last_rejection: Option<Rejection>,
    spawn_error: Option<Error>,
    /// A call of the launcher waits for this launch now.
    awaited: bool,
}

impl Member {
    fn pending(&self, registrar: &Registrar) -> bool {
        registrar
            .launch_state(self.id)
            .is_some_and(|s| !s.is_terminal())
    }

    /// Stops the child's process group (gracefully within `grace`, or at once with `None`)
    /// and reaps the child, removes the file.
    async fn stop(&mut self, grace: Option<Duration>) {
        if let Some(mut child) = self.child.take() {
            let _ = match grace {
                Some(grace) => stop_child(&mut child, grace).await,
                None => kill_child(&mut child).await,
            };
        }
        if self.watch.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One registration socket and the launches through it; see the [module docs](self).
pub struct Launcher {
    clock: Clock,
    registrar: Registrar,
    /// The registration socket ([`crate::router`]): replies go out through it.
    router: Router,
    /// The messages its peers sent, routing id first (at most [`crate::router::INCOMING`]).
    incoming: mpsc::Receiver<Incoming>,
    options: LaunchOptions,
    /// The dialect of `options.mode` (never classic: refused in `bind`).
    dialect: Dialect,
    dir: PathBuf,
    session_id: String,
    members: Vec<Member>,
    /// Messages the core rejected so far (each a strike against its connection).
    rejected: u64,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("port", &self.registrar.port())
            .field("launches", &self.members.len())
            .finish_non_exhaustive()
    }
}

/// Launches one kernel on a registration socket of its own (which closes once it registered),
/// or in classic mode ([`LaunchMode::Classic`](crate::kernelspec::LaunchMode::Classic)) with
/// five ports picked the racy way and no socket at all.
pub async fn launch(argv: &[String], options: &LaunchOptions) -> Result<Launched, Error> {
    if options.mode == crate::kernelspec::LaunchMode::Classic {
        return launch_classic(argv, options);
    }
    let mut launcher = Launcher::bind(options.clone()).await?;
    launcher.launch(argv).await
}

/// A classic launch, which makes no protocol decision and so needs no machine: picks five ports
/// ([`classic::pick_ports`]: racy), writes the connection file, spawns the kernel. It
/// "succeeds" once the kernel is spawned; nothing confirms its ports.
fn launch_classic(argv: &[String], options: &LaunchOptions) -> Result<Launched, Error> {
    if argv.is_empty() {
        return Err(Error::EmptyCommand);
    }
    let dir = options.dir.clone().unwrap_or_else(runtime_dir);
    create_private_dir(&dir).map_err(|source| Error::WriteFile {
        path: dir.clone(),
        source,
    })?;
    let ports = classic::pick_ports(options.transport, &options.ip).map_err(Error::Ports)?;
    let mut connection = ConnectionFile::new(
        options.transport,
        options.ip.clone(),
        jupyter_handshake::SignatureScheme::default(),
        random_key(),
        ports,
    );
    connection.kernel_name.clone_from(&options.kernel_name);
    let path = dir.join(format!("kernel-{}.json", new_session_id()));
    write_private_atomic(&path, &connection.to_json_pretty()).map_err(|source| {
        Error::WriteFile {
            path: path.clone(),
            source,
        }
    })?;
    let argv = substitute_connection_file(argv, &path);
    let program = argv.first().cloned().unwrap_or_default();
    let spawned = process::command(&argv, &options.env, options.stdout, options.stderr)
        .and_then(|command| Command::from(command).spawn());
    match spawned {
        Ok(child) => Ok(Launched {
            connection,
            evidence: Evidence::Classic,
            child,
            file: path,
            registered_after: Duration::ZERO,
            launch_id: None,
        }),
        Err(source) => {
            let _ = std::fs::remove_file(&path);
            Err(Error::Spawn { program, source })
        }
    }
}

impl Launcher {
    /// Binds the registration ROUTER on port 0 and creates the files' directory.
    ///
    /// Classic mode cannot share a socket (it has nothing to register): it is refused with
    /// [`Error::ClassicCannotShare`]; the free [`launch`] does classic launches.
    pub async fn bind(options: LaunchOptions) -> Result<Self, Error> {
        let Some(dialect) = options.mode.dialect() else {
            return Err(Error::ClassicCannotShare);
        };
        let dir = options.dir.clone().unwrap_or_else(runtime_dir);
        create_private_dir(&dir).map_err(|source| Error::WriteFile {
            path: dir.clone(),
            source,
        })?;
        let clock = Clock::new();
        let session_id = new_session_id();
        let mut registrar = Registrar::new(RegistrarConfig {
            transport: options.transport,
            ip: options.ip.clone(),
            // What the registration socket lets through, checked again before any HMAC.
            limits: crate::router::REGISTRATION_LIMITS,
            ..RegistrarConfig::default()
        });
        let mut router = None;
        loop {
            match registrar.poll_output() {
                Output::Action(RegistrarAction::BindRegistration { transport, ip }) => {
                    let (socket, received, port) = Router::bind(transport, &ip).await?;
                    router = Some((socket, received));
                    registrar
                        .handle_input(clock.now(), RegistrarInput::RegistrationBound { port })?;
                }
                Output::Timeout(_) => break,
                _ => {
                    return Err(Error::Internal(
                        "the registrar asked for more than its socket",
                    ));
                }
            }
        }
        let (router, incoming) =
            router.ok_or(Error::Internal("the registrar never asked for its socket"))?;
        Ok(Self {
            clock,
            registrar,
            router,
            incoming,
            options,
            dialect,
            dir,
            session_id,
            members: Vec::new(),
            rejected: 0,
        })
    }

    /// The registration socket's port.
    pub fn port(&self) -> u16 {
        self.registrar.port().unwrap_or(0)
    }

    /// How many launches are waiting for their kernel.
    pub fn pending(&self) -> usize {
        self.registrar.pending()
    }

    /// Launches one kernel and waits until it registered or failed.
    pub async fn launch(&mut self, argv: &[String]) -> Result<Launched, Error> {
        self.launch_many(&[argv.to_vec()])
            .await?
            .pop()
            .unwrap_or(Err(Error::Internal("no outcome for the launch")))
    }

    /// Launches every command at once and waits until each registered or failed; the outcome of
    /// each is at its index. The outer `Err` is the launcher's own failure (its socket).
    pub async fn launch_many(
        &mut self,
        argvs: &[Vec<String>],
    ) -> Result<Vec<Result<Launched, Error>>, Error> {
        self.launch_many_observed(argvs, &mut |_, _| {}).await
    }

    /// [`launch_many`](Self::launch_many), telling `observer` every event of the registrar.
    pub async fn launch_many_observed(
        &mut self,
        argvs: &[Vec<String>],
        observer: &mut (dyn FnMut(Instant, &RegistrarEvent) + Send),
    ) -> Result<Vec<Result<Launched, Error>>, Error> {
        let mut ids = Vec::with_capacity(argvs.len());
        for argv in argvs {
            if argv.is_empty() {
                ids.push(Err(Error::EmptyCommand));
                continue;
            }
            let config = LaunchConfig {
                registration_timeout: self.options.timeout,
                dialect: self.dialect,
                kernel_id: new_session_id(),
                ..LaunchConfig::new(random_key())
            };
            let id = self.registrar.launch(self.clock.now(), config)?;
            let path = self
                .dir
                .join(format!("kernel-{}-{}.json", self.session_id, id.get()));
            self.members.push(Member {
                id,
                argv: argv.clone(),
                path,
                watch: None,
                child: None,
                spawned_at: None,
                registered: None,
                failed: None,
                last_rejection: None,
                spawn_error: None,
                awaited: true,
            });
            self.drain(observer).await?;
            // The kernels started so far may have registered already: answer them now, not
            // after the whole fleet is spawned (spawning 200 on a loaded machine outlasts a
            // kernel's wait for its reply).
            self.serve_queued(MAX_BATCH, observer).await?;
            ids.push(Ok(id));
        }
        self.wait(observer).await?;
        self.reap_failed().await;
        Ok(ids
            .into_iter()
            .map(|id| id.and_then(|id| self.outcome(id)))
            .collect())
    }

    /// Restarts a launched kernel: stops the old process if it still runs, writes the file again
    /// (same key, same socket), spawns the command again, and waits for it to register; on
    /// success `launched` describes the new process.
    pub async fn restart(&mut self, launched: &mut Launched) -> Result<(), Error> {
        let id = launched
            .launch_id
            .ok_or(Error::Internal("a classic kernel has no launch to restart"))?;
        let member = self
            .members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or(jupyter_handshake::RegistrarError::UnknownLaunch(id))?;
        let _ = launched.child.kill().await;
        member.awaited = true;
        member.registered = None;
        member.failed = None;
        member.last_rejection = None;
        self.registrar.rearm(self.clock.now(), id)?;
        self.drain(&mut |_, _| {}).await?;
        self.wait(&mut |_, _| {}).await?;
        self.reap_failed().await;
        let new = self.outcome(id)?;
        *launched = new;
        Ok(())
    }

    /// Kills the process groups of the awaited launches that failed, and reaps them (and
    /// removes their files), before their outcome is handed back: a caller told "failed" finds
    /// no process of that kernel left, not even a zombie.
    async fn reap_failed(&mut self) {
        for member in &mut self.members {
            if member.awaited && member.failed.is_some() {
                member.stop(None).await;
            }
        }
    }

    /// Forgets a launch whose kernel is gone for good (its key may then be reused).
    pub fn forget(&mut self, launch: LaunchId) -> Result<(), Error> {
        self.registrar.remove(launch)?;
        self.members.retain(|m| m.id != launch);
        Ok(())
    }

    /// Waits until no awaited launch is pending.
    async fn wait(
        &mut self,
        observer: &mut (dyn FnMut(Instant, &RegistrarEvent) + Send),
    ) -> Result<(), Error> {
        loop {
            self.tick(observer).await?;
            if !self
                .members
                .iter()
                .any(|m| m.awaited && m.pending(&self.registrar))
            {
                return Ok(());
            }
            let sleep = self
                .registrar
                .deadline()
                .map_or(TICK, |d| self.clock.until(d.at))
                .min(TICK);
            let first = tokio::select! {
                message = self.incoming.recv() => Some(message),
                () = tokio::time::sleep(sleep) => None,
            };
            let Some(first) = first else { continue };
            let first = first.ok_or(Error::Internal(
                "the registration socket stopped delivering",
            ))?;
            self.receive(first, observer).await?;
            // At most MAX_BATCH messages, then the kernels and deadlines again.
            self.serve_queued(MAX_BATCH - 1, observer).await?;
        }
    }

    /// Hands the registrar at most `budget` messages the registration socket has queued
    /// already, without waiting. A message is taken off the queue only to be handled at once
    /// (one taken after the last of a batch used to be dropped unhandled: a burst of more than
    /// 64 lost a registration).
    async fn serve_queued(
        &mut self,
        budget: usize,
        observer: &mut (dyn FnMut(Instant, &RegistrarEvent) + Send),
    ) -> Result<(), Error> {
        for _ in 0..budget {
            match self.incoming.try_recv() {
                Ok(message) => self.receive(message, observer).await?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// One message of the registration socket to the registrar, and what it asks done.
    async fn receive(
        &mut self,
        message: Incoming,
        observer: &mut (dyn FnMut(Instant, &RegistrarEvent) + Send),
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let rejected = self.rejected;
        self.registrar.receive(now, &message.frames);
        let peer = message.frames.first().cloned();
        // Its place in its peer's queue is free again.
        drop(message);
        let drained = self.drain(observer).await;
        // A message no key verified is a strike against its connection (see `router::STRIKES`).
        if self.rejected != rejected {
            if let Some(peer) = peer {
                self.router.strike(&peer);
            }
        }
        drained
    }

    /// Reports every pending kernel's file change and exit, then the time; cleans up the
    /// launches no call waits for that failed.
    async fn tick(
        &mut self,
        observer: &mut (dyn FnMut(Instant, &RegistrarEvent) + Send),
    ) -> Result<(), Error> {
        if self
            .options
            .cancel
            .as_ref()
            .is_some_and(Cancel::is_cancelled)
        {
            self.stop_all().await;
            return Err(Error::Cancelled);
        }
        for i in 0..self.members.len() {
            if !self.members[i].pending(&self.registrar) {
                continue;
            }
            let id = self.members[i].id;
            if let Some(bytes) = self.members[i].watch.as_mut().and_then(FileWatch::changed) {
                let now = self.clock.now();
                let input = RegistrarInput::FileChanged {
                    launch: id,
                    bytes: &bytes,
                };
                self.registrar.handle_input(now, input)?;
                self.drain(observer).await?;
            }
            if !self.members[i].pending(&self.registrar) {
                continue;
            }
            let exited = match self.members[i].child.as_mut() {
                Some(child) => child.try_wait().map_err(Error::Wait)?,
                None => None,
            };
            if let Some(status) = exited {
                let now = self.clock.now();
                let input = RegistrarInput::KernelExited {
                    launch: id,
                    status: exit_status(status),
                };
                self.registrar.handle_input(now, input)?;
                self.drain(observer).await?;
            }
        }
        let now = self.clock.now();
        self.registrar.handle_input(now, RegistrarInput::Timeout)?;
        self.drain(observer).await?;
        // Launches of a cancelled call that failed since: nobody will take them.
        for member in &mut self.members {
            if !member.awaited && member.failed.is_some() {
                member.stop(None).await;
            }
        }
        Ok(())
    }

    /// Stops every kernel not handed over yet and removes its file: SIGTERM to every group at
    /// once, then together up to [`STOP_GRACE`] to exit, then SIGKILL to what is left.
    async fn stop_all(&mut self) {
        let until = tokio::time::Instant::now() + STOP_GRACE;
        for member in &self.members {
            if let Some(pid) = member.child.as_ref().and_then(Child::id) {
                let _ = process::terminate_group(pid);
            }
        }
        for member in &mut self.members {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            member.stop(Some(left)).await;
            member.awaited = false;
        }
    }

    /// Does everything the registrar asks until it is drained.
    async fn drain(
        &mut self,
        observer: &mut (dyn FnMut(Instant, &RegistrarEvent) + Send),
    ) -> Result<(), Error> {
        loop {
            match self.registrar.poll_output() {
                Output::Action(RegistrarAction::WriteRegistrationFile { launch, file }) => {
                    let Some(member) = self.members.iter_mut().find(|m| m.id == launch) else {
                        return Err(Error::Internal("a file for a launch we did not make"));
                    };
                    let spawned = write_and_spawn(member, &self.options, file.to_json_pretty());
                    match spawned {
                        Ok(child) => {
                            member.child = Some(child);
                            member.spawned_at = Some(self.clock.now());
                        }
                        // A command that cannot start fails its own launch, not the others.
                        Err(error) => {
                            member.spawn_error = Some(error);
                            let now = self.clock.now();
                            self.registrar
                                .handle_input(now, RegistrarInput::Abort { launch })?;
                        }
                    }
                }
                Output::Action(RegistrarAction::BindRegistration { .. }) => {
                    return Err(Error::Internal("the registrar asked for a second socket"));
                }
                // Undeliverable (the kernel is gone or does not read): dropped, as libzmq's
                // ROUTER would; the core's deadline or the exit decides the launch. Never waits.
                Output::Transmit(transmit) => {
                    let _delivered = self.router.send(&transmit.frames);
                }
                Output::Event(event) => {
                    let now = self.clock.now();
                    observer(now, &event);
                    // Rejected by the registrar, or by the one launch it was tried against.
                    if let RegistrarEvent::Rejected(_)
                    | RegistrarEvent::Launch {
                        event: LauncherEvent::Rejected(_),
                        ..
                    } = event
                    {
                        self.rejected += 1;
                    }
                    if let RegistrarEvent::Launch { launch, event } = event {
                        if let Some(m) = self.members.iter_mut().find(|m| m.id == launch) {
                            match event {
                                LauncherEvent::Registered {
                                    connection,
                                    evidence,
                                } => {
                                    m.registered = Some((connection, evidence, now));
                                }
                                LauncherEvent::Failed(failure) => m.failed = Some(failure),
                                LauncherEvent::Rejected(r) | LauncherEvent::Refused(r) => {
                                    m.last_rejection = Some(r);
                                }
                                _ => {}
                            }
                        }
                    }
                }
                Output::Timeout(_) => return Ok(()),
            }
        }
    }

    /// The outcome of an awaited launch that is over: the kernel, or (its child killed and
    /// reaped, its file removed) why not.
    fn outcome(&mut self, id: LaunchId) -> Result<Launched, Error> {
        let kernel_name = self.options.kernel_name.clone();
        let member = self
            .members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or(Error::Internal("an outcome for a launch we do not have"))?;
        member.awaited = false;
        if let Some(error) = member.spawn_error.take() {
            if member.watch.take().is_some() {
                let _ = std::fs::remove_file(&member.path);
            }
            return Err(error);
        }
        match (member.registered.take(), member.child.take()) {
            (Some((mut connection, evidence, at)), Some(child)) => {
                if connection.kernel_name.is_none() {
                    connection.kernel_name = kernel_name;
                }
                Ok(Launched {
                    connection,
                    evidence,
                    child,
                    file: member.path.clone(),
                    registered_after: member
                        .spawned_at
                        .map_or(Duration::ZERO, |s| at.saturating_duration_since(s)),
                    launch_id: Some(id),
                })
            }
            (_, child) => {
                if let Some(mut child) = child {
                    kill_now(&mut child);
                    // Reaped by tokio's orphan reaper once it exits.
                    drop(child);
                }
                if member.watch.take().is_some() {
                    let _ = std::fs::remove_file(&member.path);
                }
                Err(match member.failed.take() {
                    Some(failure) => Error::Failed {
                        failure,
                        last_rejection: member.last_rejection.take(),
                    },
                    None => Error::Internal("the launch ended neither registered nor failed"),
                })
            }
        }
    }
}

impl Drop for Launcher {
    /// Kills the kernels that were never handed over and removes their files.
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                kill_now(&mut child);
            }
            if member.watch.take().is_some() {
                let _ = std::fs::remove_file(&member.path);
            }
        }
    }
}

/// Writes the launch's file and spawns its command with the file's path.
fn write_and_spawn(
    member: &mut Member,
    options: &LaunchOptions,
    bytes: Vec<u8>,
) -> Result<Child, Error> {
    write_private_atomic(&member.path, &bytes).map_err(|source| Error::WriteFile {
        path: member.path.clone(),
        source,
    })?;
    member.watch = Some(FileWatch::new(member.path.clone(), bytes));
    let argv = substitute_connection_file(&member.argv, &member.path);
    let program = argv.first().cloned().ok_or(Error::EmptyCommand)?;
    // Its own process group, `JPY_PARENT_PID`, stdin null: as every launcher starts a kernel.
    process::command(&argv, &options.env, options.stdout, options.stderr)
        .and_then(|command| Command::from(command).spawn())
        .map_err(|source| Error::Spawn { program, source })
}
