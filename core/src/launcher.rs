//! The launcher side of the handshake.
//!
//! [`LauncherConfig::dialect`] picks the dialect the registration file asks for (default Posit);
//! the states are the same:
//!
//! | | Posit (Kallichore-compatible) | upstream (xeus-zmq-compatible) |
//! |---|---|---|
//! | file | `registration_port` integer | `kernel_id`, `registration_ip`, `registration_port` string |
//! | request | full signed `handshake_request` (through a REQ: `[id, "", <IDS|MSG>, …]`) | `[id, <IDS|MSG>, HMAC(content), content]` (from a DEALER) |
//! | checks | signature, `msg_type`, five valid ports | signature over the content, `kernel_id` = ours, five valid ports (strings or integers) |
//! | acceptance | `handshake_reply` `{"status":"ok"}` | `[id, <IDS|MSG>, HMAC("ACK"), "ACK"]` |
//! | refusal (signed, still waiting) | `handshake_reply` `{"error":…,"status":"error"}` | `[id, <IDS|MSG>, HMAC(c), c]`, c = `{"error":…,"status":"error"}` |
//!
//! **Why `ACK` and not `{"status":"ok"}`.** The jupyter_client docs leave the acknowledgement's
//! content to the implementation; the only deployed upstream launcher, xeus-zmq's, sends the
//! raw bytes `ACK`, so every upstream kernel that works with it (xeus-python ≥ 0.19, which only
//! checks the signature, `protocol.md` §4.3, §9) works with ours, and a kernel written against
//! xeus-zmq that compares the content to `ACK` is not broken by us. Our own kernel accepts either.
//! A refusal is JSON so that it can carry the reason; note that xeus (0.19) only verifies the
//! signature and would take a refusal as acceptance. A real xeus kernel cannot provoke one (it
//! echoes the file's `kernel_id` and binds distinct ports), so refusals only reach key holders
//! that send a bad request.
//!
//! Unlike xeus-zmq's launcher ("TODO: check signature"), the upstream request's signature is
//! verified, in constant time, before anything in it is read; the acknowledgement is signed with
//! the configured scheme (xeus-zmq always uses SHA-256).
//!
//! ```text
//!   new(config) ──► Action::BindRegistration (port 0)
//!      │
//!    Init ──Input::RegistrationBound(port)──► Bound ──► Action::WriteRegistrationFile(file)
//!                                               │      (file in config.dialect; deadline armed)
//!          whichever comes first:               │
//!          · verified request (either dialect,  │
//!            see the table) with kernel_id and  │
//!            five valid ports (ack queued)      ├──► Connected  (Event::Registered)
//!          · Input::FileChanged: the kernel     │
//!            rewrote the file with five ports   │
//!            and our key (stock ipykernel)      │
//!                                               └──► Failed: deadline, Input::KernelExited,
//!                                                            Input::Abort
//!
//!   classic(config, ports) ──► Action::WriteConnectionFile, Event::Registered ──► Connected
//! ```
//!
//! Anyone on the host can reach a registration socket, so nothing received can end a launch:
//! forged, garbled or unexpected messages are dropped with [`LauncherEvent::Rejected`] and the
//! launcher keeps waiting (Kallichore's single-`recv` socket lets the first stray message end the
//! launch). A well-signed request with unusable ports gets `status: error` with the reason —
//! only a holder of the key can provoke that — and the launcher still keeps waiting.
//!
//! Replies echo the request's routing identities, so the driver should bind a ROUTER: it serves
//! REQ kernels (ark) and DEALER kernels alike, and, unlike a REP, can drop a message without
//! answering it.

use alloc::string::String;
use core::time::Duration;

use crate::connection::{
    ConnectionFile, Dialect, KernelFile, KernelPorts, RegistrationFile, Transport,
};
use crate::message::{
    self, HANDSHAKE_REPLY, HANDSHAKE_REQUEST, HandshakeReply, ReplyStatus, Session,
};
use crate::output::{
    ExitStatus, Failure, Outbox, Output, Rejection, UsageError, Waiting, sanitize,
};
use crate::sign::{Key, SignatureScheme, Signer};
use crate::time::Instant;
use crate::wire::{self, Limits};

/// The states of the launcher side; see the [module docs](self) for the diagram.
///
/// The launcher never waits for a reply, so, unlike [`KernelState`](crate::KernelState), it has
/// no `AwaitingReply` and no `Registered`: registration evidence makes it `Connected` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LauncherState {
    /// Waiting for the driver to bind the registration socket.
    Init,
    /// Registration socket bound and file handed out; waiting for the kernel.
    Bound,
    /// Done: the kernel's ports are known (see [`LauncherHandshake::connection`]).
    Connected,
    /// Done: no registration.
    Failed,
}

impl LauncherState {
    /// Whether no input can change this state any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Connected | Self::Failed)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Init => "Init",
            Self::Bound => "Bound",
            Self::Connected => "Connected",
            Self::Failed => "Failed",
        }
    }
}

/// How the launcher side behaves.
#[derive(Clone, Debug)]
pub struct LauncherConfig {
    /// Transport for the registration socket and the kernel's channels (default tcp).
    pub transport: Transport,
    /// Address written into the file: the kernel binds its channels on it and reaches the
    /// registration socket at it (default `127.0.0.1`).
    pub ip: String,
    /// HMAC algorithm (default hmac-sha256, the only one ark implements).
    pub signature_scheme: SignatureScheme,
    /// The connection key. Generate a fresh random one per kernel; the core has no randomness.
    pub key: Key,
    /// How long after the file is ready to wait for the kernel (default 30 s, as Kallichore;
    /// it includes the kernel's start-up time).
    pub registration_timeout: Duration,
    /// Bounds on received frames.
    pub limits: Limits,
    /// Session id for our headers; unique per launcher (a UUID, say). The default,
    /// `"launcher"`, is a placeholder for tests: with it two launchers send the same message ids.
    pub session_id: String,
    /// `username` of our headers.
    pub username: String,
    /// Which dialect the registration file asks the kernel to speak, and so which requests are
    /// accepted (default Posit; see the [module docs](self) for what each sends and answers).
    pub dialect: Dialect,
    /// Upstream dialect: the `kernel_id` written into the file and required in the request
    /// (a UUID, say). The default, `"kernel"`, is a placeholder for tests.
    pub kernel_id: String,
}

impl Default for LauncherConfig {
    fn default() -> Self {
        Self {
            transport: Transport::Tcp,
            ip: String::from("127.0.0.1"),
            signature_scheme: SignatureScheme::HmacSha256,
            key: Key::default(),
            registration_timeout: Duration::from_secs(30),
            limits: Limits::HANDSHAKE,
            session_id: String::from("launcher"),
            username: String::from("launcher"),
            dialect: Dialect::Posit,
            kernel_id: String::from("kernel"),
        }
    }
}

/// What the launcher side asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum LauncherAction {
    /// Bind the registration socket (a ROUTER) on port 0, then report
    /// [`LauncherInput::RegistrationBound`].
    BindRegistration {
        /// Transport.
        transport: Transport,
        /// Address to bind on.
        ip: String,
    },
    /// Write this registration file (atomically, owner-only) and start the kernel with its path.
    /// It is in the configured dialect ([`RegistrationFile::dialect`]); for the upstream one it
    /// names [`LauncherConfig::kernel_id`]. Report later changes of the file with
    /// [`LauncherInput::FileChanged`].
    WriteRegistrationFile(RegistrationFile),
    /// Classic mode: write this connection file (atomically, owner-only) and start the kernel.
    WriteConnectionFile(ConnectionFile),
}

/// How the launcher learnt the kernel's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// A verified registration request, in the dialect of our file (Posit: ark, Upstream:
    /// xeus, and our kernel in either; [`LauncherHandshake::registration`] says which).
    Request,
    /// The kernel rewrote the registration file with its ports (stock ipykernel).
    FileRewrite,
    /// Classic mode: we chose the ports ourselves.
    Classic,
}

/// What happened on the launcher side.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LauncherEvent {
    /// The state changed.
    StateChanged {
        /// Before.
        from: LauncherState,
        /// After.
        to: LauncherState,
    },
    /// An input was dropped; the state did not change.
    Rejected(Rejection),
    /// A well-signed request was refused with `status: error` (reply queued); still waiting.
    Refused(Rejection),
    /// The kernel is registered: connect clients with this.
    Registered {
        /// The kernel's connection information.
        connection: ConnectionFile,
        /// How we know.
        evidence: Evidence,
    },
    /// No registration.
    Failed(Failure),
}

/// What the driver tells the launcher side.
#[derive(Clone, Copy, Debug)]
pub enum LauncherInput<'a> {
    /// The registration socket is bound on this port.
    RegistrationBound {
        /// The OS-chosen port.
        port: u16,
    },
    /// A multipart message arrived on the registration socket (ROUTER: identities first).
    Received(&'a [&'a [u8]]),
    /// The registration file we handed over changed; these are its current bytes.
    FileChanged(&'a [u8]),
    /// The kernel process ended.
    KernelExited(ExitStatus),
    /// A deadline may have passed (spurious calls are harmless).
    Timeout,
    /// Give up now.
    Abort,
}

impl LauncherInput<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::RegistrationBound { .. } => "RegistrationBound",
            Self::Received(_) => "Received",
            Self::FileChanged(_) => "FileChanged",
            Self::KernelExited(_) => "KernelExited",
            Self::Timeout => "Timeout",
            Self::Abort => "Abort",
        }
    }
}

/// One `poll_output` result of the launcher side.
pub type LauncherOutput = Output<LauncherAction, LauncherEvent>;

/// The launcher side of the handshake, as a sans-IO state machine.
#[derive(Debug)]
pub struct LauncherHandshake {
    config: LauncherConfig,
    session: Session,
    state: LauncherState,
    registration: Option<RegistrationFile>,
    connection: Option<ConnectionFile>,
    deadline: Option<(Instant, Instant)>,
    failure: Option<Failure>,
    outbox: Outbox<LauncherAction, LauncherEvent>,
}

impl LauncherHandshake {
    /// A handshake launch. The first output asks the driver to bind the registration socket.
    pub fn new(config: LauncherConfig) -> Self {
        let mut this = Self::blank(config);
        this.outbox.action(LauncherAction::BindRegistration {
            transport: this.config.transport,
            ip: this.config.ip.clone(),
        });
        this
    }

    /// A classic launch with caller-chosen `ports`: racy (anything may take a port before the
    /// kernel binds it), for kernels that cannot register. It is `Connected` at once; the
    /// outputs ask the driver to write the connection file and report the registration.
    pub fn classic(config: LauncherConfig, ports: KernelPorts) -> Self {
        let mut this = Self::blank(config);
        let connection = ConnectionFile::new(
            this.config.transport,
            this.config.ip.clone(),
            this.config.signature_scheme,
            this.config.key.clone(),
            ports,
        );
        this.outbox
            .action(LauncherAction::WriteConnectionFile(connection.clone()));
        this.connected(connection, Evidence::Classic);
        this
    }

    fn blank(config: LauncherConfig) -> Self {
        let signer = Signer::new(config.signature_scheme, &config.key);
        let session = Session::new(config.session_id.clone(), config.username.clone(), signer);
        Self {
            config,
            session,
            state: LauncherState::Init,
            registration: None,
            connection: None,
            deadline: None,
            failure: None,
            outbox: Outbox::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> LauncherState {
        self.state
    }

    /// The registration file, once the socket is bound.
    pub fn registration(&self) -> Option<&RegistrationFile> {
        self.registration.as_ref()
    }

    /// The kernel's connection information, once `Connected`.
    pub fn connection(&self) -> Option<&ConnectionFile> {
        self.connection.as_ref()
    }

    /// Why the machine failed, once it has.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// The current deadline. Changes only in [`handle_input`](Self::handle_input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.map(|(_, at)| at)
    }

    /// The next output; drain until [`Output::Timeout`]. Never changes the state.
    pub fn poll_output(&mut self) -> LauncherOutput {
        let deadline = self.poll_timeout();
        self.outbox.pop(deadline)
    }

    /// Feeds one input at time `now`.
    ///
    /// Time is checked first: if the deadline has passed, the machine fails by timeout and the
    /// input is not looked at. Peer input never returns `Err` and never fails the machine;
    /// `Err` means the driver fed an input that makes no sense in this state, and changes nothing.
    pub fn handle_input(
        &mut self,
        now: Instant,
        input: LauncherInput<'_>,
    ) -> Result<(), UsageError> {
        if self.state.is_terminal() {
            if let LauncherInput::Received(_) = input {
                self.outbox
                    .event(LauncherEvent::Rejected(Rejection::Finished));
            }
            return Ok(());
        }
        if let Some((since, at)) = self.deadline {
            if now >= at {
                self.fail(Failure::Timeout {
                    waiting_for: Waiting::Registration,
                    waited: now.saturating_duration_since(since),
                });
                return Ok(());
            }
        }
        match input {
            LauncherInput::RegistrationBound { port } => {
                if self.state != LauncherState::Init || port == 0 {
                    return Err(self.misuse(&input));
                }
                let (transport, ip) = (self.config.transport, self.config.ip.clone());
                let (scheme, key) = (self.config.signature_scheme, self.config.key.clone());
                let file = match self.config.dialect {
                    Dialect::Posit => RegistrationFile::new(transport, ip, scheme, key, port),
                    Dialect::Upstream => {
                        let kernel_id = self.config.kernel_id.clone();
                        RegistrationFile::upstream(transport, ip, scheme, key, port, kernel_id)
                    }
                };
                self.registration = Some(file.clone());
                self.deadline = Some((now, now + self.config.registration_timeout));
                self.set_state(LauncherState::Bound);
                self.outbox
                    .action(LauncherAction::WriteRegistrationFile(file));
            }
            LauncherInput::Received(frames) => {
                if self.state == LauncherState::Bound {
                    self.on_request(now, frames);
                } else {
                    self.outbox
                        .event(LauncherEvent::Rejected(Rejection::Unsolicited));
                }
            }
            LauncherInput::FileChanged(bytes) => {
                if self.state != LauncherState::Bound {
                    return Err(self.misuse(&input));
                }
                self.on_file_changed(bytes);
            }
            LauncherInput::KernelExited(status) => self.fail(Failure::KernelExited(status)),
            LauncherInput::Timeout => {}
            LauncherInput::Abort => self.fail(Failure::Aborted),
        }
        Ok(())
    }

    fn misuse(&self, input: &LauncherInput<'_>) -> UsageError {
        UsageError {
            input: input.name(),
            state: self.state.name(),
        }
    }

    fn on_request(&mut self, now: Instant, frames: &[&[u8]]) {
        if self.config.dialect == Dialect::Upstream {
            self.on_upstream_request(frames);
            return;
        }
        let (identities, request_header, result) = match self.read_request(frames) {
            Ok(read) => read,
            Err(rejection) => {
                self.outbox.event(LauncherEvent::Rejected(rejection));
                return;
            }
        };
        let reply = match &result {
            Ok(_) => HandshakeReply::OK,
            Err(rejection) => HandshakeReply {
                status: ReplyStatus::Error,
                error: Some(alloc::format!("{rejection}")),
            },
        };
        let (_, reply_frames) = self.session.message(
            now,
            identities,
            HANDSHAKE_REPLY,
            Some(request_header),
            None,
            &reply.to_json(),
        );
        self.outbox.transmit(reply_frames);
        match result {
            Ok(ports) => {
                self.connected(self.connection_for(ports), Evidence::Request);
            }
            Err(rejection) => self.outbox.event(LauncherEvent::Refused(rejection)),
        }
    }

    /// Upstream: `[identities…, <IDS|MSG>, signature over the content, content]`. Verified
    /// first (xeus-zmq's launcher does not, "TODO: check signature"; we do); then the
    /// `kernel_id` must be ours and the ports usable, else the reply is a signed JSON
    /// `status: error` and we keep waiting. The acknowledgement is a signed `ACK` (why: see the
    /// module docs).
    fn on_upstream_request(&mut self, frames: &[&[u8]]) {
        let split = match wire::split_content_only(frames, &self.config.limits) {
            Ok(split) => split,
            Err(e) => {
                self.outbox.event(LauncherEvent::Rejected(e.into()));
                return;
            }
        };
        let content = match split.verify(self.session.signer()) {
            Ok(content) => content,
            Err(e) => {
                self.outbox.event(LauncherEvent::Rejected(e.into()));
                return;
            }
        };
        let result = match message::upstream_request(content) {
            Ok(request) if request.kernel_id != self.config.kernel_id => {
                Err(Rejection::WrongKernel)
            }
            Ok(request) => Ok(request.ports),
            Err(e) => Err(Rejection::Malformed(e)),
        };
        let signer = self.session.signer();
        match result {
            Ok(ports) => {
                let ack =
                    wire::join_content_only(split.identities(), signer, message::UPSTREAM_ACK);
                self.outbox.transmit(ack);
                self.connected(self.connection_for(ports), Evidence::Request);
            }
            Err(rejection) => {
                let reply = HandshakeReply {
                    status: ReplyStatus::Error,
                    error: Some(alloc::format!("{rejection}")),
                };
                let refusal = wire::join_content_only(split.identities(), signer, &reply.to_json());
                self.outbox.transmit(refusal);
                self.outbox.event(LauncherEvent::Refused(rejection));
            }
        }
    }

    /// Splits and verifies a request. The outer `Err` means "drop silently" (not from a key
    /// holder, or not a request); the inner `Err` means "signed, but refuse with a reason".
    #[allow(clippy::type_complexity)]
    fn read_request<'f>(
        &self,
        frames: &'f [&'f [u8]],
    ) -> Result<(&'f [&'f [u8]], &'f [u8], Result<KernelPorts, Rejection>), Rejection> {
        let verified = wire::split(frames, &self.config.limits)?.verify(self.session.signer())?;
        let parts = verified.parts();
        let classified = message::classify(&parts)?;
        if classified.msg_type != HANDSHAKE_REQUEST {
            return Err(Rejection::UnexpectedType {
                expected: HANDSHAKE_REQUEST,
                got: sanitize(&classified.msg_type, 64),
            });
        }
        let ports = message::request_ports(parts.content).map_err(Rejection::Malformed);
        Ok((verified.identities(), parts.header, ports))
    }

    /// The kernel's connection information once it registered `ports`: the registration file
    /// we handed out, with those ports.
    fn connection_for(&self, ports: KernelPorts) -> ConnectionFile {
        self.registration
            .as_ref()
            .map(|r| r.with_ports(ports))
            .unwrap_or_else(|| {
                ConnectionFile::new(
                    self.config.transport,
                    self.config.ip.clone(),
                    self.config.signature_scheme,
                    self.config.key.clone(),
                    ports,
                )
            })
    }

    fn on_file_changed(&mut self, bytes: &[u8]) {
        let rejection = match KernelFile::from_json(bytes) {
            Ok(KernelFile::Connection(file)) => {
                if !file.key.ct_eq(&self.config.key) {
                    Rejection::FileKeyMismatch
                } else if let Err(e) = file.ports.validate() {
                    Rejection::FilePorts(e)
                } else {
                    self.connected(file, Evidence::FileRewrite);
                    return;
                }
            }
            Ok(KernelFile::Registration(_)) => {
                Rejection::FileNotReady(crate::connection::ConnectionFileError::WrongKind {
                    expected: crate::connection::FileKind::Connection,
                    got: crate::connection::FileKind::Registration,
                })
            }
            Err(e) => Rejection::FileNotReady(e),
        };
        self.outbox.event(LauncherEvent::Rejected(rejection));
    }

    fn connected(&mut self, connection: ConnectionFile, evidence: Evidence) {
        self.deadline = None;
        self.connection = Some(connection.clone());
        self.set_state(LauncherState::Connected);
        self.outbox.event(LauncherEvent::Registered {
            connection,
            evidence,
        });
    }

    fn fail(&mut self, failure: Failure) {
        self.deadline = None;
        self.failure = Some(failure.clone());
        self.set_state(LauncherState::Failed);
        self.outbox.event(LauncherEvent::Failed(failure));
    }

    fn set_state(&mut self, to: LauncherState) {
        let from = self.state;
        if from != to {
            self.state = to;
            self.outbox.event(LauncherEvent::StateChanged { from, to });
        }
    }
}
