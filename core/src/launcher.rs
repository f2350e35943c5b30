//! The launcher side of the handshake: see [`LauncherHandshake`](crate::LauncherHandshake).

use alloc::string::String;
use core::time::Duration;

use crate::connection::{
    ConnectionFile, Dialect, KernelFile, KernelPorts, RegistrationFile, Transport,
};
use crate::message::{
    self, HANDSHAKE_REPLY, HANDSHAKE_REQUEST, HandshakeReply, ReplyStatus, Session,
};
use crate::output::{
    Deadline, EmptyKey, ExitStatus, Failure, Next, Outbox, Output, Rejection, UsageError, Waiting,
    sanitize,
};
use crate::sign::{Key, SignatureScheme, Signer};
use crate::time::Instant;
use crate::wire::{self, Limits};

/// The states of the launcher side; see the [`LauncherHandshake`] docs for the diagram.
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
    /// Done: no registration (see [`LauncherHandshake::failure`]).
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

/// How the launcher side behaves. Made from a key ([`new`](Self::new),
/// [`upstream`](Self::upstream)); unsigned operation only through [`unsigned`](Self::unsigned).
#[derive(Clone, Debug)]
pub struct LauncherConfig {
    /// Transport for the registration socket and the kernel's channels (default tcp).
    pub transport: Transport,
    /// Address written into the file: the kernel binds its channels on it and reaches the
    /// registration socket at it (default `127.0.0.1`).
    pub ip: String,
    /// HMAC algorithm (default hmac-sha256, the only one ark implements).
    pub signature_scheme: SignatureScheme,
    key: Key,
    /// How long after the file is ready to wait for the kernel (default 30 s, as Kallichore;
    /// it includes the kernel's start-up time).
    pub registration_timeout: Duration,
    /// Bounds on received frames.
    pub limits: Limits,
    /// Session id for our headers. `None` (the default): an id derived from the key, unique
    /// per kernel because keys are.
    pub session_id: Option<String>,
    /// `username` of our headers.
    pub username: String,
    /// Which dialect the registration file asks the kernel to speak, and so which requests are
    /// accepted (see the [`LauncherHandshake`] docs for what each sends and answers).
    pub dialect: Dialect,
    /// Upstream dialect: the `kernel_id` written into the file and required in the request.
    /// Empty (and unused) in the Posit dialect.
    pub kernel_id: String,
}

impl LauncherConfig {
    /// A Posit-dialect launcher signing with `key`, with the defaults. Generate a fresh random
    /// key per kernel: the core has no randomness. An empty key is refused ([`EmptyKey`]): it
    /// would accept anything, and only [`unsigned`](Self::unsigned) may mean that.
    pub fn new(key: Key) -> Result<Self, EmptyKey> {
        if key.is_empty() {
            return Err(EmptyKey);
        }
        Ok(Self::with_key(key))
    }

    /// An upstream-dialect launcher signing with `key`, naming the kernel `kernel_id` (a UUID,
    /// say) in the file and requiring it in the request.
    pub fn upstream(key: Key, kernel_id: impl Into<String>) -> Result<Self, EmptyKey> {
        Ok(Self {
            dialect: Dialect::Upstream,
            kernel_id: kernel_id.into(),
            ..Self::new(key)?
        })
    }

    /// An **unsigned** launcher: an empty key, so the file tells the kernel not to sign and any
    /// well-formed request from anyone who can reach the socket registers the kernel. Only for
    /// tests and peers that cannot sign; never on a shared host.
    pub fn unsigned() -> Self {
        Self::with_key(Key::default())
    }

    fn with_key(key: Key) -> Self {
        Self {
            transport: Transport::Tcp,
            ip: String::from("127.0.0.1"),
            signature_scheme: SignatureScheme::HmacSha256,
            key,
            registration_timeout: Duration::from_secs(30),
            limits: Limits::HANDSHAKE,
            session_id: None,
            username: String::from("launcher"),
            dialect: Dialect::Posit,
            kernel_id: String::new(),
        }
    }

    /// The key.
    pub fn key(&self) -> &Key {
        &self.key
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
}

/// How the launcher learnt the kernel's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// A verified registration request, in the dialect of our file (Posit: ark, Upstream:
    /// xeus, and our kernel in either).
    Request,
    /// The kernel rewrote the registration file with its ports (stock ipykernel).
    FileRewrite,
    /// None: a classic launch, where the launcher chose the ports and nothing confirms that the
    /// kernel got them. The machines never report it (a classic launch has no machine); drivers
    /// do, so that every launch says how its ports became known.
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
    /// An input was dropped, unanswered; the state did not change.
    Rejected(Rejection),
    /// A well-signed request was answered with `status: error` (reply queued); the state did
    /// not change and the launcher keeps waiting. Only a holder of the key can cause this.
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

/// What the driver tells the launcher side, besides received frames (see
/// [`LauncherHandshake::receive`]).
#[derive(Clone, Copy, Debug)]
pub enum LauncherInput<'a> {
    /// The registration socket is bound on this port.
    RegistrationBound {
        /// The OS-chosen port.
        port: u16,
    },
    /// The registration file we handed over changed; these are its current bytes.
    FileChanged(&'a [u8]),
    /// The kernel process ended (see "Facts of one instant" in the [`LauncherHandshake`] docs).
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
            Self::FileChanged(_) => "FileChanged",
            Self::KernelExited(_) => "KernelExited",
            Self::Timeout => "Timeout",
            Self::Abort => "Abort",
        }
    }
}

/// One `poll_output` result of the launcher side.
pub type LauncherOutput = Output<LauncherAction, LauncherEvent>;

/// A registration request whose signature checked out, in either dialect.
pub(crate) enum Request<'a, F> {
    /// A full `handshake_request` message.
    Posit(wire::Message<'a, F>),
    /// An upstream content frame, with the routing identities it came with.
    Upstream {
        identities: &'a [F],
        content: &'a [u8],
    },
}

/// The launcher side of the handshake.
///
/// [`LauncherConfig::dialect`] picks the dialect the registration file asks for
/// ([`LauncherConfig::new`]: Posit, [`LauncherConfig::upstream`]: upstream); the states are the
/// same:
///
/// | | Posit (Kallichore-compatible) | upstream (xeus-zmq-compatible) |
/// |---|---|---|
/// | file | `registration_port` integer | `kernel_id`, `registration_ip`, `registration_port` string |
/// | request | full signed `handshake_request` (through a REQ: `[id, "", <IDS|MSG>, …]`) | `[id, <IDS|MSG>, HMAC(content), content]` (from a DEALER) |
/// | checks | signature, `msg_type`, five valid ports | signature over the content, `kernel_id` = ours, five valid ports (strings or integers) |
/// | acceptance | `handshake_reply` `{"status":"ok"}` | `[id, <IDS|MSG>, HMAC("ACK"), "ACK"]` |
/// | refusal (signed, still waiting) | `handshake_reply` `{"error":…,"status":"error"}` | `[id, <IDS|MSG>, HMAC(c), c]`, c = `{"error":…,"status":"error"}` |
///
/// **Why `ACK` and not `{"status":"ok"}`.** The jupyter_client docs leave the acknowledgement's
/// content to the implementation; the only deployed upstream launcher, xeus-zmq's, sends the
/// raw bytes `ACK`, so every upstream kernel that works with it (xeus-python ≥ 0.19, which only
/// checks the signature, `protocol.md` §4.3, §9) works with ours, and a kernel written against
/// xeus-zmq that compares the content to `ACK` is not broken by us. Our own kernel accepts either.
/// A refusal is JSON so that it can carry the reason; note that xeus (0.19) only verifies the
/// signature and would take a refusal as acceptance. A real xeus kernel cannot provoke one (it
/// echoes the file's `kernel_id` and binds distinct ports), so refusals only reach key holders
/// that send a bad request.
///
/// Unlike xeus-zmq's launcher ("TODO: check signature"), the upstream request's signature is
/// verified, in constant time, before anything in it is read; the acknowledgement is signed with
/// the configured scheme (xeus-zmq always uses SHA-256).
///
/// ```text
///   new(config) ──► Action::BindRegistration (port 0)
///      │
///    Init ──Input::RegistrationBound(port)──► Bound ──► Action::WriteRegistrationFile(file)
///                                               │      (file in config.dialect; deadline armed)
///          whichever comes first:               │
///          · verified request (either dialect,  │
///            see the table) with kernel_id and  │
///            five valid ports (ack queued)      ├──► Connected  (Event::Registered)
///          · Input::FileChanged: the kernel     │
///            rewrote the file with five ports   │
///            and our key (stock ipykernel)      │
///                                               └──► Failed: deadline, Input::KernelExited,
///                                                            Input::Abort
/// ```
///
/// **Facts of one instant.** A driver's wake-up can bring several facts at once: the file was
/// rewritten *and* the child exited, or a request arrived *and* the child exited. The outcome
/// does not depend on the order the driver feeds them in: `KernelExited` fails the launch one
/// microsecond after the instant it was reported at ([`Waiting::ExitSettling`]), so
/// registration evidence fed with the same `now` still counts, before or after it. A kernel that
/// registered and then exited registered (its exit is the supervisor's to see); a kernel that
/// exited without registering is reported with its exit status at once.
///
/// Classic mode, where the launcher chooses the ports, makes no protocol decision and has no
/// machine: see [`ConnectionFile::new`].
///
/// Anyone on the host can reach a registration socket, so nothing received can end a launch:
/// forged, garbled or unexpected messages are dropped with [`LauncherEvent::Rejected`] and the
/// launcher keeps waiting (Kallichore's single-`recv` socket lets the first stray message end the
/// launch). A well-signed request with unusable ports gets `status: error` with the reason —
/// only a holder of the key can provoke that — and the launcher still keeps waiting.
///
/// Replies echo the request's routing identities, so the driver should bind a ROUTER: it serves
/// REQ kernels (ark) and DEALER kernels alike, and, unlike a REP, can drop a message without
/// answering it.
#[derive(Debug)]
pub struct LauncherHandshake {
    config: LauncherConfig,
    session: Session,
    state: LauncherState,
    registration: Option<RegistrationFile>,
    connection: Option<ConnectionFile>,
    deadline: Option<Deadline>,
    failure: Option<Failure>,
    outbox: Outbox<LauncherAction, LauncherEvent>,
}

impl LauncherHandshake {
    /// A handshake launch. The first output asks the driver to bind the registration socket.
    pub fn new(config: LauncherConfig) -> Self {
        let signer = Signer::new(config.signature_scheme, &config.key);
        let session_id = config
            .session_id
            .clone()
            .unwrap_or_else(|| config.key.derive_id(b"launcher"));
        let session = Session::new(session_id, config.username.clone(), signer);
        let mut outbox = Outbox::new();
        outbox.action(LauncherAction::BindRegistration {
            transport: config.transport,
            ip: config.ip.clone(),
        });
        Self {
            config,
            session,
            state: LauncherState::Init,
            registration: None,
            connection: None,
            deadline: None,
            failure: None,
            outbox,
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

    /// The current deadline. Changes only in [`handle_input`](Self::handle_input) and
    /// [`receive`](Self::receive).
    pub fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.config.dialect
    }

    /// The next output; drain until [`Output::Timeout`]. Never changes the state.
    pub fn poll_output(&mut self) -> LauncherOutput {
        let next = match (self.state.is_terminal(), self.deadline) {
            (true, _) => Next::Done,
            (false, Some(deadline)) => Next::Deadline(deadline),
            (false, None) => Next::Input,
        };
        self.outbox.pop(next)
    }

    /// Feeds one input at time `now`.
    ///
    /// Time is checked first: if the deadline has passed, the machine fails by it and the input
    /// is not looked at. Peer input never returns `Err` and never fails the machine; `Err`
    /// means the driver fed an input that makes no sense in this state, and changes nothing.
    pub fn handle_input(
        &mut self,
        now: Instant,
        input: LauncherInput<'_>,
    ) -> Result<(), UsageError> {
        if !self.live(now) {
            return Ok(());
        }
        match input {
            LauncherInput::RegistrationBound { port } => {
                if self.state != LauncherState::Init || port == 0 {
                    return Err(self.misuse(&input));
                }
                self.on_bound(now, port);
            }
            LauncherInput::FileChanged(bytes) => {
                if self.state != LauncherState::Bound {
                    return Err(self.misuse(&input));
                }
                self.on_file_changed(bytes);
            }
            LauncherInput::KernelExited(status) => self.on_kernel_exited(now, status),
            LauncherInput::Timeout => {}
            LauncherInput::Abort => self.fail(Failure::Aborted),
        }
        Ok(())
    }

    /// Feeds a multipart message received on the registration socket at time `now` (ROUTER:
    /// identities first), as whatever frames the driver holds (`Vec<u8>`, `zmq::Message`,
    /// `&[u8]`…): nothing is copied. The same rules as [`handle_input`](Self::handle_input)
    /// hold; what is dropped is reported as [`LauncherEvent::Rejected`].
    pub fn receive<F: AsRef<[u8]>>(&mut self, now: Instant, frames: &[F]) {
        if !self.accepts_requests(now) {
            return;
        }
        match self.verify(frames) {
            Ok(request) => self.on_request(now, request),
            Err(rejection) => self.outbox.event(LauncherEvent::Rejected(rejection)),
        }
    }

    /// Feeds a request the caller verified with this launch's key (a
    /// [`Registrar`](crate::Registrar) verifies once for all its launches).
    pub(crate) fn receive_verified<F: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        request: Request<'_, F>,
    ) {
        if self.accepts_requests(now) {
            self.on_request(now, request);
        }
    }

    /// Fails the machine if its deadline has passed; whether it can still take input.
    fn live(&mut self, now: Instant) -> bool {
        if self.state.is_terminal() {
            return false;
        }
        if let Some(deadline) = self.deadline.filter(|d| d.passed(now)) {
            self.fail(deadline.failure(now));
            return false;
        }
        true
    }

    /// [`live`](Self::live), and a received request is awaited; reports why not.
    fn accepts_requests(&mut self, now: Instant) -> bool {
        let finished = self.state.is_terminal();
        if !self.live(now) {
            if finished {
                self.outbox
                    .event(LauncherEvent::Rejected(Rejection::Finished));
            }
            return false;
        }
        if self.state != LauncherState::Bound {
            self.outbox
                .event(LauncherEvent::Rejected(Rejection::Unsolicited));
            return false;
        }
        true
    }

    /// Splits and verifies frames in the framing of our dialect, with our key.
    fn verify<'a, F: AsRef<[u8]>>(&self, frames: &'a [F]) -> Result<Request<'a, F>, Rejection> {
        let limits = &self.config.limits;
        let signer = self.session.signer();
        Ok(match self.config.dialect {
            Dialect::Posit => Request::Posit(wire::split(frames, limits)?.verify(signer)?),
            Dialect::Upstream => {
                let split = wire::split_content_only(frames, limits)?;
                let content = split.verify(signer)?;
                Request::Upstream {
                    identities: split.identities(),
                    content,
                }
            }
        })
    }

    fn misuse(&self, input: &LauncherInput<'_>) -> UsageError {
        UsageError {
            input: input.name(),
            state: self.state.name(),
        }
    }

    fn on_bound(&mut self, now: Instant, port: u16) {
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
        self.deadline = Some(Deadline::after(
            now,
            self.config.registration_timeout,
            Waiting::Registration,
        ));
        self.set_state(LauncherState::Bound);
        self.outbox
            .action(LauncherAction::WriteRegistrationFile(file));
    }

    /// The exit takes effect one microsecond later, so that evidence of the same instant still
    /// counts whatever order the driver feeds it in (module docs, "Facts of one instant").
    fn on_kernel_exited(&mut self, now: Instant, status: ExitStatus) {
        let settling = matches!(
            self.deadline,
            Some(Deadline {
                waiting_for: Waiting::ExitSettling(_),
                ..
            })
        );
        if self.state == LauncherState::Bound && !settling {
            self.deadline = Some(Deadline::after(
                now,
                Duration::from_micros(1),
                Waiting::ExitSettling(status),
            ));
        } else if self.state == LauncherState::Init {
            self.fail(Failure::KernelExited(status));
        }
    }

    fn on_request<F: AsRef<[u8]>>(&mut self, now: Instant, request: Request<'_, F>) {
        match request {
            Request::Posit(message) => self.on_posit_request(now, &message),
            Request::Upstream {
                identities,
                content,
            } => self.on_upstream_request(identities, content),
        }
    }

    /// Posit: a verified full message; it must be a `handshake_request` with five usable ports,
    /// else a signed `status: error` reply and we keep waiting.
    fn on_posit_request<F: AsRef<[u8]>>(&mut self, now: Instant, message: &wire::Message<'_, F>) {
        let parts = message.parts();
        match message::classify(&parts) {
            Ok(c) if c.msg_type == HANDSHAKE_REQUEST => {}
            Ok(c) => {
                self.outbox
                    .event(LauncherEvent::Rejected(Rejection::UnexpectedType {
                        expected: HANDSHAKE_REQUEST,
                        got: sanitize(&c.msg_type, 64),
                    }));
                return;
            }
            Err(e) => {
                self.outbox.event(LauncherEvent::Rejected(e.into()));
                return;
            }
        }
        let result = message::request_ports(parts.content).map_err(Rejection::Malformed);
        let reply = match &result {
            Ok(_) => HandshakeReply::OK,
            Err(rejection) => HandshakeReply {
                status: ReplyStatus::Error,
                error: Some(alloc::format!("{rejection}")),
            },
        };
        let (_, reply_frames) = self.session.message(
            now,
            message.identities(),
            HANDSHAKE_REPLY,
            Some(parts.header),
            None,
            &reply.to_json(),
        );
        self.outbox.transmit(reply_frames);
        match result {
            Ok(ports) => self.connected(ports, Evidence::Request),
            Err(rejection) => self.outbox.event(LauncherEvent::Refused(rejection)),
        }
    }

    /// Upstream: a verified content frame (xeus-zmq's launcher does not verify, "TODO: check
    /// signature"; we do, before anything in it is read); the `kernel_id` must be ours and the
    /// ports usable, else a signed JSON `status: error` and we keep waiting. The
    /// acknowledgement is a signed `ACK` (why: see the module docs).
    fn on_upstream_request<F: AsRef<[u8]>>(&mut self, identities: &[F], content: &[u8]) {
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
                let ack = wire::join_content_only(identities, signer, message::UPSTREAM_ACK);
                self.outbox.transmit(ack);
                self.connected(ports, Evidence::Request);
            }
            Err(rejection) => {
                let reply = HandshakeReply {
                    status: ReplyStatus::Error,
                    error: Some(alloc::format!("{rejection}")),
                };
                let refusal = wire::join_content_only(identities, signer, &reply.to_json());
                self.outbox.transmit(refusal);
                self.outbox.event(LauncherEvent::Refused(rejection));
            }
        }
    }

    fn on_file_changed(&mut self, bytes: &[u8]) {
        let rejection = match KernelFile::from_json(bytes) {
            Ok(KernelFile::Connection(file)) => {
                if !file.key.ct_eq(&self.config.key) {
                    Rejection::FileKeyMismatch
                } else if let Err(e) = file.ports.validate() {
                    Rejection::FilePorts(e)
                } else {
                    self.connected_by_file(file);
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

    /// Registered by a request: the registration file we handed out, with its ports.
    fn connected(&mut self, ports: KernelPorts, evidence: Evidence) {
        let connection = match &self.registration {
            Some(registration) => registration.with_ports(ports),
            // A request is only taken in `Bound`, which always has the file.
            None => return,
        };
        self.finish_connected(connection, evidence);
    }

    /// Registered by a rewrite: the kernel's own file, as it wrote it.
    fn connected_by_file(&mut self, file: ConnectionFile) {
        self.finish_connected(file, Evidence::FileRewrite);
    }

    fn finish_connected(&mut self, connection: ConnectionFile, evidence: Evidence) {
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
