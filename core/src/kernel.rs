//! The kernel side of the handshake: see [`KernelHandshake`](crate::KernelHandshake).

use alloc::string::String;
use core::time::Duration;

use crate::connection::{
    ConnectionFile, Dialect, KernelFile, KernelPorts, RegistrationFile, Transport,
};
use crate::message::{
    self, HANDSHAKE_REPLY, HANDSHAKE_REQUEST, HandshakeReply, ReplyStatus, Session,
};
use crate::output::{
    Deadline, Failure, Next, Outbox, Output, Rejection, UsageError, Waiting, sanitize,
};
use crate::sign::Signer;
use crate::time::Instant;
use crate::wire::{self, Limits};

/// The states of the kernel side; see the [`KernelHandshake`] docs for the diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelState {
    /// Waiting for the driver to bind the five channels.
    Init,
    /// Channels bound; waiting for the driver to connect to the registration socket.
    Bound,
    /// Registration request sent (either dialect); waiting for the launcher's acknowledgement.
    AwaitingReply,
    /// The launcher has our ports (reply `ok`, or a classic file); waiting for the first IOPub
    /// subscription.
    Registered,
    /// Done: clients can use the kernel.
    Connected,
    /// Done: the kernel should exit (the JEP: "shut down itself").
    Failed,
}

impl KernelState {
    /// Whether no input can change this state any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Connected | Self::Failed)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Init => "Init",
            Self::Bound => "Bound",
            Self::AwaitingReply => "AwaitingReply",
            Self::Registered => "Registered",
            Self::Connected => "Connected",
            Self::Failed => "Failed",
        }
    }
}

/// How the kernel side behaves. `Default` gives ark's behaviour, except for a 10 s ack timeout.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    /// How long to wait for the `handshake_reply` after sending the request (default 10 s). The
    /// JEP says a kernel with no acknowledgement should shut down; ark waits 5 s.
    pub ack_timeout: Duration,
    /// Stay in `Registered` until the first IOPub subscription arrives, for at most this long
    /// (ark waits 10 s), so nothing published before the client listens is lost. `None`: do
    /// not wait (default).
    pub wait_for_iopub: Option<Duration>,
    /// Bounds on received frames.
    pub limits: Limits,
    /// Session id for our headers. `None` (the default): an id derived from the file's key,
    /// unique per kernel because keys are.
    pub session_id: Option<String>,
    /// `username` of our headers.
    pub username: String,
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(10),
            wait_for_iopub: None,
            limits: Limits::HANDSHAKE,
            session_id: None,
            username: String::from("kernel"),
        }
    }
}

/// What the kernel side asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelAction {
    /// Bind shell (ROUTER), iopub (XPUB), stdin (ROUTER), control (ROUTER) and heartbeat (REP),
    /// then report [`KernelInput::Bound`] with the ports actually bound.
    BindChannels {
        /// Transport of all five.
        transport: Transport,
        /// Address to bind on.
        ip: String,
        /// `None`: let the OS choose (port 0). `Some`: the classic file's ports.
        ports: Option<KernelPorts>,
    },
    /// Connect a socket of kind `socket` to the launcher's registration socket, then report
    /// [`KernelInput::RegistrationConnected`].
    ConnectRegistration {
        /// The registration endpoint.
        endpoint: String,
        /// REQ for the Posit dialect, DEALER for the upstream one.
        socket: RegistrationSocket,
    },
}

/// Which socket a kernel registers through; the dialect decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistrationSocket {
    /// Posit dialect (ark): one request, one reply.
    Req,
    /// Upstream dialect (xeus): the request goes out on a DEALER; the reply comes back on it.
    /// Unlike a REQ, a DEALER can receive a forged reply and then the real one.
    Dealer,
}

/// What happened on the kernel side.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum KernelEvent {
    /// The state changed.
    StateChanged {
        /// Before.
        from: KernelState,
        /// After.
        to: KernelState,
    },
    /// An input was dropped; the state did not change.
    Rejected(Rejection),
    /// Clients can connect with this information (the final connection file).
    Connected(ConnectionFile),
    /// The handshake failed; the kernel should exit.
    Failed(Failure),
}

/// What the driver tells the kernel side.
#[derive(Clone, Copy, Debug)]
pub enum KernelInput {
    /// The five channels are bound on these ports.
    Bound(KernelPorts),
    /// The registration socket asked for (REQ or DEALER) is connected to the registration
    /// endpoint.
    RegistrationConnected,
    /// The IOPub XPUB saw a subscription.
    IopubSubscribed,
    /// A deadline may have passed (spurious calls are harmless).
    Timeout,
    /// Give up now.
    Abort,
}

impl KernelInput {
    fn name(&self) -> &'static str {
        match self {
            Self::Bound(_) => "Bound",
            Self::RegistrationConnected => "RegistrationConnected",
            Self::IopubSubscribed => "IopubSubscribed",
            Self::Timeout => "Timeout",
            Self::Abort => "Abort",
        }
    }
}

/// One `poll_output` result of the kernel side.
pub type KernelOutput = Output<KernelAction, KernelEvent>;

/// How the kernel was started.
#[derive(Clone, Debug)]
enum Mode {
    Classic(ConnectionFile),
    Handshake(RegistrationFile),
}

/// The kernel side of the handshake.
///
/// The dialect comes from the file ([`RegistrationFile::dialect`]); the states are the same:
///
/// | | Posit (ark) | upstream (xeus) |
/// |---|---|---|
/// | [`KernelAction::ConnectRegistration`] `socket` | [`RegistrationSocket::Req`] | [`RegistrationSocket::Dealer`] |
/// | request | full signed `handshake_request`, integer ports | `[<IDS|MSG>, HMAC(content), content]`, content `{kernel_id, *_port}` with string ports, sorted keys |
/// | acknowledgement | verified `handshake_reply` `{status: ok}` whose parent is our request | any verified single content frame (`ACK`, `{"status":"ok"}`, …) |
/// | refusal | `handshake_reply` `{status: error}` (or Kallichore's bare error frame) | verified JSON `{"status":"error","error":…}` |
///
/// ```text
///            new(file)  ──► Action::BindChannels (port 0, or the file's ports if classic)
///              │
///            Init ──Input::Bound(ports)──┬─ classic file ──► Registered or Connected (see below)
///                                        ▼
///            Bound ──► Action::ConnectRegistration { endpoint, socket: Req | Dealer }
///              │ Input::RegistrationConnected: request queued, ack deadline armed
///              ▼
///        AwaitingReply ──verified acknowledgement (see the table)────────────────────┐
///              │                                                                     ▼
///              │                                  wait_for_iopub? ──yes──► Registered
///              │                                        │ no                    │ Input::IopubSubscribed
///              │                                        ▼                       ▼
///              │                                    Connected ◄─────────────────┘
///              └─► Failed: a verified refusal, ack or IOPub deadline, Input::Abort
/// ```
///
/// Anything else received — forged, garbage, a reply to another request, a message of another
/// type or of the other dialect's framing — is reported as [`KernelEvent::Rejected`] and changes
/// nothing; on the upstream DEALER the real acknowledgement can still arrive after a rejected
/// one (a REQ receives one reply only). `Connected` and `Failed` are terminal. A subscription
/// seen before the reply is remembered, so a fast client never makes the kernel wait for a
/// second one.
#[derive(Debug)]
pub struct KernelHandshake {
    config: KernelConfig,
    mode: Mode,
    session: Session,
    state: KernelState,
    connection: Option<ConnectionFile>,
    request_id: Option<String>,
    iopub_seen: bool,
    deadline: Option<Deadline>,
    failure: Option<Failure>,
    outbox: Outbox<KernelAction, KernelEvent>,
}

impl KernelHandshake {
    /// A kernel started with `file`: a registration file means "handshake", a connection file
    /// means "classic". The first output asks the driver to bind the five channels.
    pub fn new(file: KernelFile, config: KernelConfig) -> Self {
        let key = file.key().clone();
        let (mode, transport, ip, ports, signer) = match file {
            KernelFile::Connection(c) => {
                let signer = Signer::new(c.signature_scheme, &c.key);
                (
                    Mode::Classic(c.clone()),
                    c.transport,
                    c.ip,
                    Some(c.ports),
                    signer,
                )
            }
            KernelFile::Registration(r) => {
                let signer = Signer::new(r.signature_scheme, &r.key);
                let (t, ip) = (r.transport, r.ip.clone());
                (Mode::Handshake(r), t, ip, None, signer)
            }
        };
        let session_id = config
            .session_id
            .clone()
            .unwrap_or_else(|| key.derive_id(b"kernel"));
        let session = Session::new(session_id, config.username.clone(), signer);
        let mut outbox = Outbox::new();
        outbox.action(KernelAction::BindChannels {
            transport,
            ip,
            ports,
        });
        Self {
            config,
            mode,
            session,
            state: KernelState::Init,
            connection: None,
            request_id: None,
            iopub_seen: false,
            deadline: None,
            failure: None,
            outbox,
        }
    }

    /// The current state.
    pub fn state(&self) -> KernelState {
        self.state
    }

    /// The kernel's connection information, once the channels are bound.
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

    /// The next output; drain until [`Output::Timeout`]. Never changes the state.
    pub fn poll_output(&mut self) -> KernelOutput {
        let next = match (self.state.is_terminal(), self.deadline) {
            (true, _) => Next::Done,
            (false, Some(deadline)) => Next::Deadline(deadline),
            (false, None) => Next::Input,
        };
        self.outbox.pop(next)
    }

    /// Feeds one input at time `now`.
    ///
    /// Time is checked first: if a deadline has passed, the machine fails by timeout and the
    /// input is not looked at (so a flood of input can never postpone a deadline). Peer input
    /// never returns `Err`; `Err` means the driver fed an input that makes no sense in this state
    /// (for example `Bound` twice), and changes nothing.
    pub fn handle_input(&mut self, now: Instant, input: KernelInput) -> Result<(), UsageError> {
        if !self.live(now) {
            return Ok(());
        }
        match input {
            KernelInput::Bound(ports) => self.on_bound(now, ports),
            KernelInput::RegistrationConnected => self.on_registration_connected(now),
            KernelInput::IopubSubscribed => self.on_iopub_subscribed(),
            KernelInput::Timeout => Ok(()),
            KernelInput::Abort => {
                self.fail(Failure::Aborted);
                Ok(())
            }
        }
    }

    /// Feeds a multipart message received on the registration socket at time `now`, as
    /// whatever frames the driver holds (`Vec<u8>`, `zmq::Message`, `&[u8]`…): nothing is
    /// copied. The same rules as [`handle_input`](Self::handle_input) hold; what is dropped is
    /// reported as [`KernelEvent::Rejected`].
    pub fn receive<F: AsRef<[u8]>>(&mut self, now: Instant, frames: &[F]) {
        let finished = self.state.is_terminal();
        if !self.live(now) {
            if finished {
                self.outbox
                    .event(KernelEvent::Rejected(Rejection::Finished));
            }
        } else if self.state == KernelState::AwaitingReply {
            self.on_reply(now, frames);
        } else {
            self.outbox
                .event(KernelEvent::Rejected(Rejection::Unsolicited));
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

    fn misuse(&self, input: &KernelInput) -> UsageError {
        UsageError {
            input: input.name(),
            state: self.state.name(),
        }
    }

    fn on_bound(&mut self, now: Instant, ports: KernelPorts) -> Result<(), UsageError> {
        if self.state != KernelState::Init || ports.validate().is_err() {
            return Err(self.misuse(&KernelInput::Bound(ports)));
        }
        match &self.mode {
            Mode::Classic(file) => {
                let mut file = file.clone();
                file.ports = ports;
                self.connection = Some(file);
                self.registered(now);
            }
            Mode::Handshake(reg) => {
                self.connection = Some(reg.with_ports(ports));
                let endpoint = reg.registration_endpoint();
                let socket = match reg.dialect() {
                    Dialect::Posit => RegistrationSocket::Req,
                    Dialect::Upstream => RegistrationSocket::Dealer,
                };
                self.set_state(KernelState::Bound);
                self.outbox
                    .action(KernelAction::ConnectRegistration { endpoint, socket });
            }
        }
        Ok(())
    }

    fn on_registration_connected(&mut self, now: Instant) -> Result<(), UsageError> {
        let ports = match (&self.connection, self.state) {
            (Some(c), KernelState::Bound) => c.ports,
            _ => return Err(self.misuse(&KernelInput::RegistrationConnected)),
        };
        let no_identities: [&[u8]; 0] = [];
        let frames = match self.kernel_id() {
            Some(kernel_id) => {
                let content = message::upstream_request_content(kernel_id, &ports);
                wire::join_content_only(&no_identities, self.session.signer(), &content)
            }
            None => {
                let content = message::request_content(&ports);
                let (header, frames) = self.session.message(
                    now,
                    &no_identities,
                    HANDSHAKE_REQUEST,
                    None,
                    None,
                    &content,
                );
                self.request_id = Some(header.msg_id);
                frames
            }
        };
        self.outbox.transmit(frames);
        self.arm(now, self.config.ack_timeout, Waiting::Reply);
        self.set_state(KernelState::AwaitingReply);
        Ok(())
    }

    fn on_iopub_subscribed(&mut self) -> Result<(), UsageError> {
        match self.state {
            KernelState::Init => Err(self.misuse(&KernelInput::IopubSubscribed)),
            KernelState::Registered => {
                self.connected();
                Ok(())
            }
            _ => {
                self.iopub_seen = true;
                Ok(())
            }
        }
    }

    fn on_reply<F: AsRef<[u8]>>(&mut self, now: Instant, frames: &[F]) {
        match self.read_reply(frames) {
            Ok(reply) => match reply.status {
                ReplyStatus::Ok => self.registered(now),
                ReplyStatus::Error => self.fail(Failure::Refused {
                    reason: reply.error.as_deref().map(|r| sanitize(r, 200)),
                }),
            },
            Err(rejection) => self.outbox.event(KernelEvent::Rejected(rejection)),
        }
    }

    /// The upstream `kernel_id` when registering in the upstream dialect.
    fn kernel_id(&self) -> Option<&str> {
        match &self.mode {
            Mode::Handshake(reg) => reg.kernel_id(),
            Mode::Classic(_) => None,
        }
    }

    fn read_reply<F: AsRef<[u8]>>(&self, frames: &[F]) -> Result<HandshakeReply, Rejection> {
        if self.kernel_id().is_some() {
            return self.read_upstream_reply(frames);
        }
        let unverified = match wire::split(frames, &self.config.limits) {
            Ok(m) => m,
            Err(e) => {
                // Kallichore answers a request it could not parse with one bare, unsigned JSON
                // frame. Our REQ only hears the endpoint our file names, so it counts as a
                // refusal rather than garbage (`protocol.md` §3.5).
                return match frames {
                    [single] => match HandshakeReply::from_json(single.as_ref()) {
                        Ok(r) if r.status == ReplyStatus::Error => Ok(r),
                        _ => Err(e.into()),
                    },
                    _ => Err(e.into()),
                };
            }
        };
        let verified = unverified.verify(self.session.signer())?;
        let parts = verified.parts();
        let classified = message::classify(&parts)?;
        if classified.msg_type != HANDSHAKE_REPLY {
            return Err(Rejection::UnexpectedType {
                expected: HANDSHAKE_REPLY,
                got: sanitize(&classified.msg_type, 64),
            });
        }
        if classified.parent_msg_id.is_none() || classified.parent_msg_id != self.request_id {
            return Err(Rejection::WrongParent);
        }
        HandshakeReply::from_json(parts.content).map_err(|error| {
            Rejection::Malformed(message::MessageError::Json {
                part: message::Part::Content,
                error,
            })
        })
    }

    /// Upstream: one signed content frame. A verified JSON `status: error` is a refusal; any
    /// other verified content (`ACK`, `{"status":"ok"}`) is the acknowledgement.
    fn read_upstream_reply<F: AsRef<[u8]>>(
        &self,
        frames: &[F],
    ) -> Result<HandshakeReply, Rejection> {
        let content =
            wire::split_content_only(frames, &self.config.limits)?.verify(self.session.signer())?;
        match HandshakeReply::from_json(content) {
            Ok(reply) if reply.status == ReplyStatus::Error => Ok(reply),
            _ => Ok(HandshakeReply::OK),
        }
    }

    /// The launcher has our ports: wait for IOPub if configured, else done.
    fn registered(&mut self, now: Instant) {
        self.deadline = None;
        match self.config.wait_for_iopub {
            Some(wait) if !self.iopub_seen => {
                self.arm(now, wait, Waiting::IopubSubscription);
                self.set_state(KernelState::Registered);
            }
            _ => self.connected(),
        }
    }

    fn connected(&mut self) {
        self.deadline = None;
        self.set_state(KernelState::Connected);
        if let Some(connection) = &self.connection {
            self.outbox
                .event(KernelEvent::Connected(connection.clone()));
        }
    }

    fn fail(&mut self, failure: Failure) {
        self.deadline = None;
        self.failure = Some(failure.clone());
        self.set_state(KernelState::Failed);
        self.outbox.event(KernelEvent::Failed(failure));
    }

    fn arm(&mut self, now: Instant, after: Duration, waiting_for: Waiting) {
        self.deadline = Some(Deadline::after(now, after, waiting_for));
    }

    fn set_state(&mut self, to: KernelState) {
        let from = self.state;
        if from != to {
            self.state = to;
            self.outbox.event(KernelEvent::StateChanged { from, to });
        }
    }
}
