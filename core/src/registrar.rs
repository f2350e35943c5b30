//! One long-lived registration socket for many launches: the launcher side that JEP 66
//! recommends for a launcher running many kernels, and keeps for their restarts.
//!
//! A [`LauncherHandshake`] serves one kernel on its own registration socket. A [`Registrar`]
//! owns **one** registration socket (a ROUTER: it serves REQ and DEALER peers alike) and any
//! number of launches, each a [`LauncherHandshake`] with **its own key**. A message on the
//! shared socket is attributed by verifying it against the pending launches' keys: only the
//! holder of a key can sign with it, so the signature proves which launch it belongs to. The
//! message then goes to that launch alone, and the reply goes back through the routing
//! identities it came with. A message no key verifies (garbage, a forgery, a stranger) is
//! dropped with one [`RegistrarEvent::Rejected`] and reaches no launch: one kernel's garbage,
//! forgery or timeout never touches another launch.
//!
//! ```text
//! Registrar: Init ─RegistrationBound(port)→ Bound
//!
//! each launch (a LauncherHandshake on the shared socket):
//!   launch() ─→ Bound ─verified request / rewritten file→ Connected ─rearm()→ Bound …
//!                 │                                                      (restart: same key,
//!                 └─timeout / kernel exited / abort→ Failed ─rearm()→ Bound   new ports)
//! ```
//!
//! **Restarts.** [`Registrar::rearm`] starts a launch over for a new process of the same kernel:
//! same socket, same key, same file, a fresh deadline. Until the new registration arrives,
//! [`Registrar::connection`] keeps answering with the previous connection information; the new
//! one supersedes it only when it is verified.
//!
//! **Replays.** A restarted launch keeps its key, so a recording of the previous run's
//! `handshake_request` would verify again. The registrar remembers the signature of every
//! request it accepted for a launch and drops a request that carries one of them
//! ([`Rejection::Replayed`]), as jupyter_client's digest history does. (A fresh Posit request
//! always has a fresh signature: its header has a new `msg_id` and `date`. An upstream request
//! has no header: it signs only `kernel_id` and the ports, so a restarted upstream kernel that
//! happens to bind the very same five ports sends a request identical to the recorded one, is
//! dropped as a replay and times out. With OS-chosen ports this is rare, and failing closed is
//! the safe side: the alternative would let a recording of the old run register a kernel that
//! has not bound anything yet.)
//!
//! ```
//! use core::time::Duration;
//! use jupyter_handshake::registrar::*;
//! use jupyter_handshake::{Instant, Key, Output};
//!
//! let now = Instant::from_micros(1_700_000_000_000_000);
//! let mut registrar = Registrar::new(RegistrarConfig::default());
//! let Output::Action(RegistrarAction::BindRegistration { .. }) = registrar.poll_output() else { panic!() };
//! registrar.handle_input(now, RegistrarInput::RegistrationBound { port: 5555 })?;
//!
//! // Two launches share the socket; each has its own key and its own file.
//! let a = registrar.launch(now, LaunchConfig::new(Key::new("key-of-a")))?;
//! let b = registrar.launch(now, LaunchConfig::new(Key::new("key-of-b")))?;
//! let mut files = Vec::new();
//! loop {
//!     match registrar.poll_output() {
//!         Output::Action(RegistrarAction::WriteRegistrationFile { launch, file }) => {
//!             files.push((launch, file.registration_port)); // write it, start the kernel
//!         }
//!         Output::Timeout(deadline) => {
//!             assert_eq!(deadline, Some(now + Duration::from_secs(30)));
//!             break;
//!         }
//!         _ => {}
//!     }
//! }
//! assert_eq!(files, [(a, 5555), (b, 5555)]);
//! assert_eq!(registrar.pending(), 2);
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::connection::{ConnectionFile, Dialect, RegistrationFile, Transport};
use crate::launcher::{
    LauncherAction, LauncherConfig, LauncherEvent, LauncherHandshake, LauncherInput, LauncherState,
};
use crate::output::{ExitStatus, Failure, Outbox, Output, Rejection, UsageError};
use crate::sign::{Key, SignatureScheme, Signer, VerifyError};
use crate::time::Instant;
use crate::wire::{self, Limits};

/// Names one launch of a [`Registrar`]. Ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaunchId(u64);

impl LaunchId {
    /// The id as a number (for logs; ids count up from 0 per registrar).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LaunchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "launch {}", self.0)
    }
}

/// How a [`Registrar`] binds its socket and signs its replies.
#[derive(Clone, Debug)]
pub struct RegistrarConfig {
    /// Transport for the registration socket and the kernels' channels (default tcp).
    pub transport: Transport,
    /// Address written into every file (default `127.0.0.1`).
    pub ip: alloc::string::String,
    /// Bounds on received frames.
    pub limits: Limits,
    /// Session id for the replies' headers; unique per registrar (a UUID, say). Each launch
    /// uses `{session_id}-{launch id}`.
    pub session_id: alloc::string::String,
    /// `username` of the replies' headers.
    pub username: alloc::string::String,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        let launcher = LauncherConfig::default();
        Self {
            transport: launcher.transport,
            ip: launcher.ip,
            limits: launcher.limits,
            session_id: launcher.session_id,
            username: launcher.username,
        }
    }
}

/// One launch's own settings.
#[derive(Clone, Debug)]
pub struct LaunchConfig {
    /// The launch's key: fresh and random per kernel, and different from every other pending
    /// launch's (the key is what attributes a request to its launch).
    pub key: Key,
    /// HMAC algorithm (default hmac-sha256).
    pub signature_scheme: SignatureScheme,
    /// How long to wait for the kernel after the file is ready (default 30 s); restarts get the
    /// same again.
    pub registration_timeout: Duration,
    /// Which dialect this kernel speaks (launches of both dialects share the socket).
    pub dialect: Dialect,
    /// Upstream dialect: the `kernel_id` written into its file and required in its request.
    pub kernel_id: alloc::string::String,
}

impl LaunchConfig {
    /// A launch with `key` and the defaults.
    pub fn new(key: Key) -> Self {
        let launcher = LauncherConfig::default();
        Self {
            key,
            signature_scheme: launcher.signature_scheme,
            registration_timeout: launcher.registration_timeout,
            dialect: Dialect::Posit,
            kernel_id: launcher.kernel_id,
        }
    }

    /// An upstream-dialect launch with `key`, naming the kernel `kernel_id`.
    pub fn upstream(key: Key, kernel_id: impl Into<alloc::string::String>) -> Self {
        Self {
            dialect: Dialect::Upstream,
            kernel_id: kernel_id.into(),
            ..Self::new(key)
        }
    }
}

/// The registrar's own states (each launch has its [`LauncherState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistrarState {
    /// Waiting for the driver to bind the registration socket.
    Init,
    /// The socket is bound: launches can be added.
    Bound,
}

/// What the registrar asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum RegistrarAction {
    /// Bind the registration socket (a ROUTER) on port 0, then report
    /// [`RegistrarInput::RegistrationBound`]. Asked once.
    BindRegistration {
        /// Transport.
        transport: Transport,
        /// Address to bind on.
        ip: alloc::string::String,
    },
    /// Write this launch's registration file (atomically, owner-only) and start its kernel
    /// (again, after [`Registrar::rearm`]).
    WriteRegistrationFile {
        /// Which launch.
        launch: LaunchId,
        /// The file.
        file: RegistrationFile,
    },
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RegistrarEvent {
    /// Something happened to one launch: its own [`LauncherEvent`] (state changes, drops,
    /// refusals, `Registered`, `Failed`).
    Launch {
        /// Which launch.
        launch: LaunchId,
        /// What.
        event: LauncherEvent,
    },
    /// A message on the shared socket that no launch's key verifies (garbage, a forgery, a
    /// stranger): dropped, no launch affected.
    Rejected(Rejection),
}

/// What the driver tells the registrar.
#[derive(Clone, Copy, Debug)]
pub enum RegistrarInput<'a> {
    /// The registration socket is bound on this port.
    RegistrationBound {
        /// The OS-chosen port.
        port: u16,
    },
    /// A multipart message arrived on the registration socket (ROUTER: identities first).
    Received(&'a [&'a [u8]]),
    /// A launch's registration file changed; these are its current bytes.
    FileChanged {
        /// Which launch's file.
        launch: LaunchId,
        /// Its bytes.
        bytes: &'a [u8],
    },
    /// A launch's kernel process ended.
    KernelExited {
        /// Which launch.
        launch: LaunchId,
        /// How.
        status: ExitStatus,
    },
    /// A deadline may have passed (spurious calls are harmless).
    Timeout,
    /// Give up on one launch now.
    Abort {
        /// Which launch.
        launch: LaunchId,
    },
}

/// The driver asked for something the registrar cannot do; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrarError {
    /// Launches need the bound socket: report `RegistrationBound` first.
    #[error("the registration socket is not bound yet")]
    NotBound,
    /// An empty key verifies anything, so it would capture every launch's messages.
    #[error("a launch on a shared registration socket needs a non-empty key")]
    EmptyKey,
    /// Another launch has this key, so requests could not be attributed.
    #[error("{0} already uses this key")]
    KeyInUse(LaunchId),
    /// No such launch (never made, or removed).
    #[error("no {0}")]
    UnknownLaunch(LaunchId),
    /// Only a finished launch (connected or failed) can be re-armed.
    #[error("{0} is still waiting for its kernel")]
    StillPending(LaunchId),
    /// An input the current state cannot take.
    #[error(transparent)]
    Usage(#[from] UsageError),
}

/// One launch: its machine, and what outlives a restart.
#[derive(Debug)]
struct Slot {
    id: LaunchId,
    config: LaunchConfig,
    signer: Signer,
    machine: LauncherHandshake,
    /// The latest verified connection information; kept through a restart until superseded.
    connection: Option<ConnectionFile>,
    /// Signatures of the requests accepted so far (replays are dropped).
    accepted: Vec<Vec<u8>>,
}

/// The launcher side for many kernels on one registration socket, as a sans-IO state machine.
/// See the [module docs](self).
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    state: RegistrarState,
    port: Option<u16>,
    next_id: u64,
    slots: Vec<Slot>,
    outbox: Outbox<RegistrarAction, RegistrarEvent>,
}

/// One `poll_output` result of the registrar.
pub type RegistrarOutput = Output<RegistrarAction, RegistrarEvent>;

impl Registrar {
    /// A registrar; its first output asks the driver to bind the registration socket.
    pub fn new(config: RegistrarConfig) -> Self {
        let mut outbox = Outbox::new();
        outbox.action(RegistrarAction::BindRegistration {
            transport: config.transport,
            ip: config.ip.clone(),
        });
        Self {
            config,
            state: RegistrarState::Init,
            port: None,
            next_id: 0,
            slots: Vec::new(),
            outbox,
        }
    }

    /// The registrar's state.
    pub fn state(&self) -> RegistrarState {
        self.state
    }

    /// The registration socket's port, once bound.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Starts a launch on the shared socket; the outputs then ask the driver to write its
    /// registration file (and start its kernel). Its deadline starts now.
    pub fn launch(
        &mut self,
        now: Instant,
        config: LaunchConfig,
    ) -> Result<LaunchId, RegistrarError> {
        let port = self.port.ok_or(RegistrarError::NotBound)?;
        if config.key.is_empty() {
            return Err(RegistrarError::EmptyKey);
        }
        if let Some(other) = self.slots.iter().find(|s| s.config.key.ct_eq(&config.key)) {
            return Err(RegistrarError::KeyInUse(other.id));
        }
        let id = LaunchId(self.next_id);
        self.next_id += 1;
        let machine = self.arm(now, id, &config, port)?;
        self.slots.push(Slot {
            id,
            signer: Signer::new(config.signature_scheme, &config.key),
            config,
            machine,
            connection: None,
            accepted: Vec::new(),
        });
        self.pump(id);
        Ok(id)
    }

    /// Starts a finished launch over for a new process of the same kernel (a restart): same
    /// socket, same key, a fresh deadline; the outputs ask the driver to write the file again
    /// (and start the kernel). [`connection`](Self::connection) keeps the previous information
    /// until the new registration arrives.
    pub fn rearm(&mut self, now: Instant, launch: LaunchId) -> Result<(), RegistrarError> {
        let port = self.port.ok_or(RegistrarError::NotBound)?;
        let slot = self.slot(launch)?;
        if !slot.machine.state().is_terminal() {
            return Err(RegistrarError::StillPending(launch));
        }
        let config = slot.config.clone();
        let machine = self.arm(now, launch, &config, port)?;
        self.slot_mut(launch)?.machine = machine;
        self.pump(launch);
        Ok(())
    }

    /// Forgets a launch (its kernel is gone for good) and returns its last connection
    /// information. Its key may then be used again.
    pub fn remove(&mut self, launch: LaunchId) -> Result<Option<ConnectionFile>, RegistrarError> {
        let at = self
            .slots
            .iter()
            .position(|s| s.id == launch)
            .ok_or(RegistrarError::UnknownLaunch(launch))?;
        Ok(self.slots.swap_remove(at).connection)
    }

    /// A launch's state.
    pub fn launch_state(&self, launch: LaunchId) -> Option<LauncherState> {
        self.slot(launch).ok().map(|s| s.machine.state())
    }

    /// Why a launch failed, while it is `Failed` (a [`rearm`](Self::rearm) clears it).
    ///
    /// ```
    /// use jupyter_handshake::registrar::*;
    /// use jupyter_handshake::{ExitStatus, Failure, Instant, Key, LauncherState};
    ///
    /// let now = Instant::from_micros(1_700_000_000_000_000);
    /// let mut registrar = Registrar::new(RegistrarConfig::default());
    /// registrar.handle_input(now, RegistrarInput::RegistrationBound { port: 5555 })?;
    /// let a = registrar.launch(now, LaunchConfig::new(Key::new("key-of-a")))?;
    /// assert_eq!(registrar.failure(a), None);
    /// let status = ExitStatus::Code(3);
    /// registrar.handle_input(now, RegistrarInput::KernelExited { launch: a, status })?;
    /// assert_eq!(registrar.launch_state(a), Some(LauncherState::Failed));
    /// assert_eq!(registrar.failure(a), Some(&Failure::KernelExited(status)));
    /// registrar.rearm(now, a)?;
    /// assert_eq!(registrar.failure(a), None);
    /// # Ok::<(), RegistrarError>(())
    /// ```
    pub fn failure(&self, launch: LaunchId) -> Option<&Failure> {
        self.slot(launch).ok()?.machine.failure()
    }

    /// A launch's latest verified connection information (through a restart, the previous
    /// one until the new registration arrives).
    pub fn connection(&self, launch: LaunchId) -> Option<&ConnectionFile> {
        self.slot(launch).ok()?.connection.as_ref()
    }

    /// How many launches are waiting for their kernel.
    pub fn pending(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| !s.machine.state().is_terminal())
            .count()
    }

    /// The earliest deadline of all launches. Changes only in `handle_input`, `launch` and
    /// `rearm`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.machine.poll_timeout())
            .min()
    }

    /// The next output; drain until [`Output::Timeout`]. Never changes any state.
    pub fn poll_output(&mut self) -> RegistrarOutput {
        let deadline = self.poll_timeout();
        self.outbox.pop(deadline)
    }

    /// Feeds one input at time `now`.
    ///
    /// Every launch whose deadline has passed fails first, before the input is looked at, so a
    /// flood on the shared socket cannot postpone anyone's deadline. Peer input never returns
    /// `Err`; `Err` means the driver fed an input that makes no sense, and changes nothing.
    pub fn handle_input(
        &mut self,
        now: Instant,
        input: RegistrarInput<'_>,
    ) -> Result<(), RegistrarError> {
        self.expire(now);
        match input {
            RegistrarInput::RegistrationBound { port } => {
                if self.state != RegistrarState::Init || port == 0 {
                    return Err(UsageError {
                        input: "RegistrationBound",
                        state: match self.state {
                            RegistrarState::Init => "Init (port 0)",
                            RegistrarState::Bound => "Bound",
                        },
                    }
                    .into());
                }
                self.port = Some(port);
                self.state = RegistrarState::Bound;
            }
            RegistrarInput::Received(frames) => self.route(now, frames),
            RegistrarInput::FileChanged { launch, bytes } => {
                self.feed(now, launch, LauncherInput::FileChanged(bytes))?;
            }
            RegistrarInput::KernelExited { launch, status } => {
                self.feed(now, launch, LauncherInput::KernelExited(status))?;
            }
            RegistrarInput::Abort { launch } => {
                self.feed(now, launch, LauncherInput::Abort)?;
            }
            RegistrarInput::Timeout => {}
        }
        Ok(())
    }

    /// A launcher machine for `launch`, already told the shared port.
    fn arm(
        &self,
        now: Instant,
        launch: LaunchId,
        config: &LaunchConfig,
        port: u16,
    ) -> Result<LauncherHandshake, RegistrarError> {
        let mut machine = LauncherHandshake::new(LauncherConfig {
            transport: self.config.transport,
            ip: self.config.ip.clone(),
            signature_scheme: config.signature_scheme,
            key: config.key.clone(),
            registration_timeout: config.registration_timeout,
            limits: self.config.limits,
            session_id: alloc::format!("{}-{}", self.config.session_id, launch.0),
            username: self.config.username.clone(),
            dialect: config.dialect,
            kernel_id: config.kernel_id.clone(),
        });
        machine.handle_input(now, LauncherInput::RegistrationBound { port })?;
        Ok(machine)
    }

    fn slot(&self, launch: LaunchId) -> Result<&Slot, RegistrarError> {
        self.slots
            .iter()
            .find(|s| s.id == launch)
            .ok_or(RegistrarError::UnknownLaunch(launch))
    }

    fn slot_mut(&mut self, launch: LaunchId) -> Result<&mut Slot, RegistrarError> {
        self.slots
            .iter_mut()
            .find(|s| s.id == launch)
            .ok_or(RegistrarError::UnknownLaunch(launch))
    }

    /// Fails every launch whose deadline has passed.
    fn expire(&mut self, now: Instant) {
        let due: Vec<LaunchId> = self
            .slots
            .iter()
            .filter(|s| s.machine.poll_timeout().is_some_and(|at| now >= at))
            .map(|s| s.id)
            .collect();
        for id in due {
            // A launch found by id a moment ago; the machine takes `Timeout` in every state.
            let _ = self.feed(now, id, LauncherInput::Timeout);
        }
    }

    fn feed(
        &mut self,
        now: Instant,
        launch: LaunchId,
        input: LauncherInput<'_>,
    ) -> Result<(), RegistrarError> {
        self.slot_mut(launch)?.machine.handle_input(now, input)?;
        self.pump(launch);
        Ok(())
    }

    /// Attributes a message to the launch whose key verifies it, and hands it to that launch
    /// alone.
    fn route(&mut self, now: Instant, frames: &[&[u8]]) {
        let limits = &self.config.limits;
        // Both dialects share the socket: a Posit request is a full message, an upstream one a
        // signature and a content frame. Each launch verifies the framing of its own dialect.
        let full = wire::split(frames, limits);
        let content_only = wire::split_content_only(frames, limits);
        let signature = match (&full, &content_only) {
            (Ok(m), _) => m.signature(),
            (_, Ok(m)) => m.signature(),
            (Err(e), Err(_)) => {
                self.outbox.event(RegistrarEvent::Rejected((*e).into()));
                return;
            }
        };
        let verified_by = |slot: &Slot| -> Result<(), VerifyError> {
            match slot.config.dialect {
                Dialect::Posit => match wire::split(frames, limits) {
                    Ok(m) => m.verify(&slot.signer).map(drop),
                    Err(_) => Err(VerifyError::Mismatch),
                },
                Dialect::Upstream => match &content_only {
                    Ok(m) => m.verify(&slot.signer).map(drop),
                    Err(_) => Err(VerifyError::Mismatch),
                },
            }
        };
        let owner = self.slots.iter().position(|slot| verified_by(slot).is_ok());
        let Some(at) = owner else {
            // Why no launch took it: a malformed signature says so whatever the key; a
            // well-formed one matched no key.
            let rejection = match self.slots.first() {
                None => Rejection::Unsolicited,
                Some(slot) => match verified_by(slot) {
                    Err(e) => e.into(),
                    Ok(()) => VerifyError::Mismatch.into(),
                },
            };
            self.outbox.event(RegistrarEvent::Rejected(rejection));
            return;
        };
        let slot = &mut self.slots[at];
        let id = slot.id;
        if slot
            .accepted
            .iter()
            .any(|seen| seen.as_slice() == signature)
        {
            self.outbox.event(RegistrarEvent::Launch {
                launch: id,
                event: LauncherEvent::Rejected(Rejection::Replayed),
            });
            return;
        }
        let was_pending = !slot.machine.state().is_terminal();
        // Peer input never makes a machine return `Err`.
        let _ = slot
            .machine
            .handle_input(now, LauncherInput::Received(frames));
        if was_pending && slot.machine.state() == LauncherState::Connected {
            slot.accepted.push(signature.to_vec());
        }
        self.pump(id);
    }

    /// Moves a launch's outputs to the registrar's, tagged with its id.
    fn pump(&mut self, launch: LaunchId) {
        let Some(slot) = self.slots.iter_mut().find(|s| s.id == launch) else {
            return;
        };
        loop {
            match slot.machine.poll_output() {
                // The registrar owns the socket; the machine was told the port when armed.
                Output::Action(LauncherAction::BindRegistration { .. }) => {}
                Output::Action(LauncherAction::WriteRegistrationFile(file)) => {
                    self.outbox
                        .action(RegistrarAction::WriteRegistrationFile { launch, file });
                }
                // Never asked: a registrar launch is never classic.
                Output::Action(LauncherAction::WriteConnectionFile(_)) => {}
                Output::Transmit(t) => self.outbox.transmit(t.frames),
                Output::Event(event) => {
                    if let LauncherEvent::Registered { connection, .. } = &event {
                        slot.connection = Some(connection.clone());
                    }
                    self.outbox.event(RegistrarEvent::Launch { launch, event });
                }
                Output::Timeout(_) => return,
            }
        }
    }
}
