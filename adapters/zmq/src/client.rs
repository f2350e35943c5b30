//! The client: the channel names, the outcome of an execution, the one [`Client`] type, and its
//! engine. Every operation (a request, an execution, `wait_for_ready`, an IOPub message, a
//! heartbeat) is a task of that engine over the client's sockets: it says which sockets it waits
//! on and until when, and is told what arrived. Messages are read with the core (`wire::split`,
//! verification, [`message::classify`]): a message that fails any of it,
//! including a malformed parent header, is dropped and counted, never taken as "no parent".
//! Time is the crate's [`Clock`]. The blocking and async clients only differ in how they wait.

use std::time::Duration;

use jupyter_handshake::message::{self, Session};
use jupyter_handshake::wire::{self, Limits};
use jupyter_handshake::{ConnectionFile, Instant, Signer};
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::error::Error;
use crate::files::{new_session_id, random_hex};
use crate::sockets::{Wrap, configure, connect, send, socket};
use crate::wait::{Engine, Interest, Watch};

/// A request-reply channel of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Shell: execution, introspection, `kernel_info`.
    Shell,
    /// Control: `shutdown`, `interrupt`, debugging; not queued behind execution.
    Control,
    /// Stdin: replies to the kernel's input requests.
    Stdin,
}

impl Channel {
    /// The channel's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Shell => "shell",
            Self::Control => "control",
            Self::Stdin => "stdin",
        }
    }
}

/// What an `execute_request` produced.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecuteOutcome {
    /// The `execute_reply` content (`status`, `execution_count`, …).
    pub reply: Value,
    /// IOPub messages parented to the request, in order, as `(msg_type, content)`: `status`
    /// busy, `execute_input`, `stream`, `execute_result`, `error`, `status` idle…
    pub iopub: Vec<(String, Value)>,
}

/// How often `wait_for_ready` repeats its `kernel_info_request` while IOPub stays silent.
pub(crate) const NUDGE: Duration = Duration::from_millis(500);

/// A verified message, as far as the client cares.
pub(crate) struct Received {
    pub(crate) msg_type: String,
    pub(crate) parent_msg_id: Option<String>,
    pub(crate) content: Value,
}

/// How many messages a wait dropped as invalid, and why the last one was.
#[derive(Default)]
pub(crate) struct Dropped {
    count: usize,
    last: Option<String>,
}

impl Dropped {
    pub(crate) fn note(&mut self, reason: String) {
        self.count += 1;
        self.last = Some(reason);
    }

    pub(crate) fn timeout(self, waiting_for: String, waited: Duration) -> Error {
        Error::Timeout {
            waiting_for,
            waited,
            dropped: self.count,
            last_dropped: self.last,
        }
    }
}

/// A client's five sockets, created and connected the way ark's test frontend and
/// jupyter_client do (see the blocking client's docs); each driver wraps them as it waits.
pub(crate) struct ClientSockets {
    pub(crate) shell: zmq::Socket,
    pub(crate) control: zmq::Socket,
    pub(crate) stdin: zmq::Socket,
    pub(crate) iopub: zmq::Socket,
    pub(crate) hb: zmq::Socket,
}

impl ClientSockets {
    /// Creates and connects the five sockets for `connection`.
    pub(crate) fn connect(ctx: &zmq::Context, connection: &ConnectionFile) -> Result<Self, Error> {
        let shell = socket(ctx, zmq::DEALER, "shell")?;
        let stdin = socket(ctx, zmq::DEALER, "stdin")?;
        let identity = Messenger::identity()?;
        for (s, name) in [(&shell, "shell"), (&stdin, "stdin")] {
            s.set_identity(identity.as_bytes())
                .map_err(|source| configure(name, source))?;
        }
        let control = socket(ctx, zmq::DEALER, "control")?;
        let iopub = socket(ctx, zmq::SUB, "iopub")?;
        iopub
            .set_subscribe(b"")
            .map_err(|source| configure("iopub", source))?;
        let hb = heartbeat(ctx, connection)?;
        let ports = &connection.ports;
        connect(&shell, "shell", &connection.endpoint(ports.shell))?;
        connect(&stdin, "stdin", &connection.endpoint(ports.stdin))?;
        connect(&control, "control", &connection.endpoint(ports.control))?;
        connect(&iopub, "iopub", &connection.endpoint(ports.iopub))?;
        Ok(Self {
            shell,
            control,
            stdin,
            iopub,
            hb,
        })
    }
}

/// A fresh heartbeat REQ connected to `connection` (a REQ that got no reply cannot send again,
/// so a missed heartbeat replaces it).
pub(crate) fn heartbeat(
    ctx: &zmq::Context,
    connection: &ConnectionFile,
) -> Result<zmq::Socket, Error> {
    let hb = socket(ctx, zmq::REQ, "heartbeat")?;
    connect(&hb, "heartbeat", &connection.endpoint(connection.ports.hb))?;
    Ok(hb)
}

/// The client's protocol side: its session (signing), clock and limits.
pub(crate) struct Messenger {
    pub(crate) connection: ConnectionFile,
    pub(crate) session: Session,
    pub(crate) clock: Clock,
    limits: Limits,
}

impl Messenger {
    pub(crate) fn new(connection: &ConnectionFile) -> Self {
        let signer = Signer::new(connection.signature_scheme, &connection.key);
        let username = std::env::var("USER").unwrap_or_else(|_| "username".into());
        Self {
            connection: connection.clone(),
            session: Session::new(new_session_id(), username, signer),
            clock: Clock::new(),
            limits: Limits::default(),
        }
    }

    /// A ZeroMQ identity for the shell and stdin DEALERs (the spec wants them equal): printable,
    /// and never starting with a zero byte (reserved by libzmq).
    pub(crate) fn identity() -> Result<String, Error> {
        random_hex(16)
            .map_err(|_| Error::Internal("the OS gave no random bytes for a ZeroMQ identity"))
    }

    /// A signed `msg_type` message with `content`: its `msg_id` and frames.
    pub(crate) fn message(&mut self, msg_type: &str, content: &Value) -> (String, Vec<Vec<u8>>) {
        let content = serde_json::to_vec(content).unwrap_or_else(|_| b"{}".to_vec());
        let no_identities: [&[u8]; 0] = [];
        let (header, frames) = self.session.message(
            self.clock.now(),
            &no_identities,
            msg_type,
            None,
            None,
            &content,
        );
        (header.msg_id, frames)
    }

    /// Splits, verifies and reads a message received on `name`; an invalid one is counted in
    /// `dropped` and gives `None`.
    pub(crate) fn read<F: AsRef<[u8]>>(
        &self,
        name: &str,
        frames: &[F],
        dropped: &mut Dropped,
    ) -> Option<Received> {
        match self.try_read(frames) {
            Ok(message) => Some(message),
            Err(reason) => {
                dropped.note(format!("{name}: {reason}"));
                None
            }
        }
    }

    fn try_read<F: AsRef<[u8]>>(&self, frames: &[F]) -> Result<Received, String> {
        let message = wire::split(frames, &self.limits)
            .map_err(|e| e.to_string())?
            .verify(self.session.signer())
            .map_err(|e| format!("bad signature: {e}"))?;
        let parts = message.parts();
        // The core's rule: no parent (empty, `{}`, `null`) is `None`; a parent must otherwise
        // name a `msg_id`, or the message is dropped.
        let classified = message::classify(&parts).map_err(|e| e.to_string())?;
        let content = serde_json::from_slice(parts.content).map_err(|e| format!("content: {e}"))?;
        Ok(Received {
            msg_type: classified.msg_type,
            parent_msg_id: classified.parent_msg_id,
            content,
        })
    }
}

/// The content of an `execute_request` for `code`.
pub(crate) fn execute_content(code: &str) -> Value {
    json!({
        "code": code,
        "silent": false,
        "store_history": true,
        "user_expressions": {},
        "allow_stdin": false,
        "stop_on_error": true,
    })
}

/// An execution in progress: the reply and the IOPub messages parented to the request, until
/// the kernel reports `status: idle` for it.
pub(crate) struct Execution {
    msg_id: String,
    reply: Option<Value>,
    iopub: Vec<(String, Value)>,
    idle: bool,
}

impl Execution {
    pub(crate) fn new(msg_id: String) -> Self {
        Self {
            msg_id,
            reply: None,
            iopub: Vec::new(),
            idle: false,
        }
    }

    pub(crate) fn on_shell(&mut self, m: Received) {
        if m.parent_msg_id.as_deref() == Some(self.msg_id.as_str()) {
            self.reply = Some(m.content);
        }
    }

    pub(crate) fn on_iopub(&mut self, m: Received) {
        if m.parent_msg_id.as_deref() == Some(self.msg_id.as_str()) {
            self.idle |= m.msg_type == "status" && m.content["execution_state"] == "idle";
            self.iopub.push((m.msg_type, m.content));
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.reply.is_some() && self.idle
    }

    /// The outcome once done, or when time ran out: what was seen if the reply came, an error
    /// otherwise.
    pub(crate) fn finish(
        self,
        dropped: Dropped,
        timeout: Duration,
    ) -> Result<ExecuteOutcome, Error> {
        match self.reply {
            Some(reply) => Ok(ExecuteOutcome {
                reply,
                iopub: self.iopub,
            }),
            None => Err(dropped.timeout("reply to execute_request".into(), timeout)),
        }
    }
}

/// `wait_for_ready` in progress (the task [`Task::ready`]): a `kernel_info_reply` to one of our requests, and any valid
/// IOPub message (proof that our subscription is live).
#[derive(Default)]
pub(crate) struct Readiness {
    requests: Vec<String>,
    reply: Option<Value>,
    iopub_live: bool,
    last_nudge: Option<Instant>,
}

impl Readiness {
    /// Whether a (new) `kernel_info_request` should go out now.
    pub(crate) fn wants_nudge(&self, now: Instant) -> bool {
        self.last_nudge
            .is_none_or(|at| now.saturating_duration_since(at) >= NUDGE)
    }

    /// When the next `kernel_info_request` is due.
    fn next_nudge(&self) -> Option<Instant> {
        self.last_nudge.map(|at| at + NUDGE)
    }

    pub(crate) fn nudged(&mut self, msg_id: String, now: Instant) {
        self.requests.push(msg_id);
        self.last_nudge = Some(now);
    }

    pub(crate) fn on_shell(&mut self, m: Received) {
        if m.msg_type == "kernel_info_reply"
            && m.parent_msg_id.is_some_and(|p| self.requests.contains(&p))
        {
            self.reply = Some(m.content);
        }
    }

    pub(crate) fn on_iopub(&mut self) {
        self.iopub_live = true;
    }

    pub(crate) fn done(&self) -> bool {
        self.reply.is_some() && self.iopub_live
    }

    /// The kernel_info reply once done; what is missing when time ran out.
    pub(crate) fn finish(self, dropped: Dropped, timeout: Duration) -> Result<Value, Error> {
        match (self.reply, self.iopub_live) {
            (Some(reply), true) => Ok(reply),
            (Some(_), false) => Err(dropped.timeout(
                "IOPub message (the kernel answers on shell but publishes nothing)".into(),
                timeout,
            )),
            (None, _) => Err(dropped.timeout("reply to kernel_info_request".into(), timeout)),
        }
    }
}

/// Socket tags of a client's engine.
const SHELL: usize = 0;
const CONTROL: usize = 1;
const STDIN: usize = 2;
const IOPUB: usize = 3;
const HB: usize = 4;

/// A connected client of one kernel, to check that a launch worked: one type for both kinds of
/// callers, by the socket it waits on. [`blocking::Client`](crate::blocking::Client)
/// (`Client<zmq::Socket>`) has blocking methods, `asynchronous::Client` (feature `async`) the
/// same as `async fn`s; everything but the waiting is written once.
///
/// It connects the way ark's test frontend and jupyter_client do: shell and control DEALERs, a
/// stdin DEALER with the **same** ZeroMQ identity as the shell one (the spec requires it for
/// input requests to reach the right frontend), an IOPub SUB subscribed to everything *before*
/// it connects, and a heartbeat REQ. Replies are matched to requests by
/// `parent_header.msg_id`; other messages are skipped, invalid ones dropped.
pub struct Client<S = zmq::Socket> {
    ctx: zmq::Context,
    messenger: Messenger,
    shell: S,
    control: S,
    stdin: S,
    iopub: S,
    hb: S,
}

#[allow(private_bounds)]
impl<S: Wrap> Client<S> {
    /// Connects to the kernel described by `connection`. Connecting does not wait for the
    /// kernel: use `wait_for_ready` before relying on IOPub.
    pub fn connect(ctx: &zmq::Context, connection: &ConnectionFile) -> Result<Self, Error> {
        let sockets = ClientSockets::connect(ctx, connection)?;
        Ok(Self {
            ctx: ctx.clone(),
            messenger: Messenger::new(connection),
            shell: S::wrap(sockets.shell),
            control: S::wrap(sockets.control),
            stdin: S::wrap(sockets.stdin),
            iopub: S::wrap(sockets.iopub),
            hb: S::wrap(sockets.hb),
        })
    }

    /// The connection information this client uses.
    pub fn connection(&self) -> &ConnectionFile {
        &self.messenger.connection
    }

    /// The `session` of this client's headers.
    pub fn session_id(&self) -> &str {
        self.messenger.session.id()
    }

    /// Sends a signed `msg_type` message with `content` on `channel`; returns its `msg_id`.
    /// Sending never waits (a DEALER queues on the pipe it made when it connected).
    pub fn send(
        &mut self,
        channel: Channel,
        msg_type: &str,
        content: &Value,
    ) -> Result<String, Error> {
        let (msg_id, frames) = self.messenger.message(msg_type, content);
        let socket = match channel {
            Channel::Shell => &self.shell,
            Channel::Control => &self.control,
            Channel::Stdin => &self.stdin,
        };
        send(socket.raw(), channel.as_str(), frames)?;
        Ok(msg_id)
    }

    /// A request's task: sends it, and waits for the reply whose parent it is.
    pub(crate) fn request_task(
        &mut self,
        channel: Channel,
        msg_type: &str,
        content: &Value,
    ) -> Result<Task, Error> {
        let msg_id = self.send(channel, msg_type, content)?;
        Ok(Task::Reply {
            channel,
            msg_type: msg_type.to_owned(),
            msg_id,
            reply: None,
        })
    }

    /// An execution's task: sends the `execute_request`.
    pub(crate) fn execute_task(&mut self, code: &str) -> Result<Task, Error> {
        let msg_id = self.send(Channel::Shell, "execute_request", &execute_content(code))?;
        Ok(Task::Execute(Execution::new(msg_id)))
    }

    /// A heartbeat's task: sends the ping.
    pub(crate) fn heartbeat_task(&mut self) -> Result<Task, Error> {
        let ping = b"ping".to_vec();
        send(self.hb.raw(), "heartbeat", vec![ping.clone()])?;
        Ok(Task::Heartbeat { ping, echo: None })
    }

    /// `task` as an engine that runs for at most `timeout`.
    pub(crate) fn op(&mut self, task: Task, timeout: Duration) -> Op<'_, S> {
        let deadline = self.messenger.clock.now() + timeout;
        Op {
            client: self,
            task,
            deadline,
            timeout,
            dropped: Dropped::default(),
            expired: false,
        }
    }
}

/// What one client operation waits for, and what it has so far.
pub(crate) enum Task {
    /// The reply to `msg_id`, sent on `channel`.
    Reply {
        channel: Channel,
        msg_type: String,
        msg_id: String,
        reply: Option<Value>,
    },
    /// An execution's reply and IOPub messages.
    Execute(Execution),
    /// `wait_for_ready`.
    Ready(Readiness),
    /// The next valid IOPub message.
    Iopub(Option<(String, Value, Option<String>)>),
    /// The heartbeat's echo: whether it was the ping.
    Heartbeat { ping: Vec<u8>, echo: Option<bool> },
}

/// What a finished operation gives back.
pub(crate) enum Answer {
    Value(Value),
    Executed(ExecuteOutcome),
    Iopub(Option<(String, Value, Option<String>)>),
    Beat(bool),
}

impl Answer {
    /// The reply content an operation gave, if it gave one.
    pub(crate) fn value(self) -> Result<Value, Error> {
        match self {
            Self::Value(value) => Ok(value),
            _ => Err(Error::Internal("a client operation answered out of kind")),
        }
    }
    /// What an execution gave.
    pub(crate) fn executed(self) -> Result<ExecuteOutcome, Error> {
        match self {
            Self::Executed(outcome) => Ok(outcome),
            _ => Err(Error::Internal("a client operation answered out of kind")),
        }
    }
    /// The IOPub message an operation gave.
    pub(crate) fn iopub(self) -> Result<Option<(String, Value, Option<String>)>, Error> {
        match self {
            Self::Iopub(message) => Ok(message),
            _ => Err(Error::Internal("a client operation answered out of kind")),
        }
    }
    /// Whether the heartbeat came back.
    pub(crate) fn beat(self) -> Result<bool, Error> {
        match self {
            Self::Beat(alive) => Ok(alive),
            _ => Err(Error::Internal("a client operation answered out of kind")),
        }
    }
}

/// One client operation in progress: the engine the blocking and async drivers wait for.
pub(crate) struct Op<'a, S> {
    client: &'a mut Client<S>,
    task: Task,
    deadline: Instant,
    timeout: Duration,
    dropped: Dropped,
    expired: bool,
}

impl<S: Wrap> Op<'_, S> {
    /// The operation's answer, once the driver's loop has ended; for a heartbeat that got no
    /// echo, the heartbeat socket is replaced first (a REQ that got no reply cannot send again).
    pub(crate) fn finish(self) -> Result<Answer, Error> {
        let (dropped, timeout) = (self.dropped, self.timeout);
        match self.task {
            Task::Reply {
                msg_type, reply, ..
            } => reply
                .map(Answer::Value)
                .ok_or_else(|| dropped.timeout(format!("reply to {msg_type}"), timeout)),
            Task::Execute(execution) => execution.finish(dropped, timeout).map(Answer::Executed),
            Task::Ready(readiness) => readiness.finish(dropped, timeout).map(Answer::Value),
            Task::Iopub(message) => Ok(Answer::Iopub(message)),
            Task::Heartbeat {
                echo: Some(same), ..
            } => Ok(Answer::Beat(same)),
            Task::Heartbeat { echo: None, .. } => {
                let client = self.client;
                let hb = heartbeat(&client.ctx, &client.messenger.connection)?;
                let old = std::mem::replace(&mut client.hb, S::wrap(hb));
                let _ = old.raw().set_linger(0);
                Ok(Answer::Beat(false))
            }
        }
    }

    /// Before the first wait: `wait_for_ready` sends its first `kernel_info_request`.
    pub(crate) fn start(&mut self) -> Result<(), Error> {
        if matches!(self.task, Task::Ready(_)) {
            self.nudge()?;
        }
        Ok(())
    }

    /// Sends a `kernel_info_request` if `wait_for_ready` is due one.
    fn nudge(&mut self) -> Result<(), Error> {
        let now = self.client.messenger.clock.now();
        if let Task::Ready(readiness) = &self.task {
            if !readiness.wants_nudge(now) {
                return Ok(());
            }
        }
        let msg_id = self
            .client
            .send(Channel::Shell, "kernel_info_request", &json!({}))?;
        if let Task::Ready(readiness) = &mut self.task {
            readiness.nudged(msg_id, now);
        }
        Ok(())
    }
}

impl Task {
    /// `wait_for_ready`'s task.
    pub(crate) fn ready() -> Self {
        Self::Ready(Readiness::default())
    }

    /// `recv_iopub`'s task.
    pub(crate) fn next_iopub() -> Self {
        Self::Iopub(None)
    }
}

impl<S: Wrap> Engine for Op<'_, S> {
    type Socket = S;
    type Error = Error;

    fn done(&self) -> bool {
        self.expired
            || match &self.task {
                Task::Reply { reply, .. } => reply.is_some(),
                Task::Execute(execution) => execution.done(),
                Task::Ready(readiness) => readiness.done(),
                Task::Iopub(message) => message.is_some(),
                Task::Heartbeat { echo, .. } => echo.is_some(),
            }
    }

    fn interest(&mut self) -> Interest<'_, S> {
        let now = self.client.messenger.clock.now();
        let mut until = self.deadline;
        let c = &mut *self.client;
        let sockets = match &self.task {
            Task::Reply { channel, .. } => match channel {
                Channel::Shell => vec![watch(SHELL, &mut c.shell)],
                Channel::Control => vec![watch(CONTROL, &mut c.control)],
                Channel::Stdin => vec![watch(STDIN, &mut c.stdin)],
            },
            Task::Execute(_) => vec![watch(SHELL, &mut c.shell), watch(IOPUB, &mut c.iopub)],
            Task::Ready(readiness) => {
                until = readiness.next_nudge().map_or(until, |at| at.min(until));
                vec![watch(SHELL, &mut c.shell), watch(IOPUB, &mut c.iopub)]
            }
            Task::Iopub(_) => vec![watch(IOPUB, &mut c.iopub)],
            Task::Heartbeat { .. } => vec![watch(HB, &mut c.hb)],
        };
        Interest {
            sockets,
            timeout: until.saturating_duration_since(now),
        }
    }

    fn socket(&self, tag: usize) -> Option<(&'static str, &S)> {
        let c = &self.client;
        Some(match tag {
            SHELL => ("shell", &c.shell),
            CONTROL => ("control", &c.control),
            STDIN => ("stdin", &c.stdin),
            IOPUB => ("iopub", &c.iopub),
            HB => ("heartbeat", &c.hb),
            _ => return None,
        })
    }

    fn received<F: AsRef<[u8]>>(&mut self, tag: usize, frames: &[F]) -> Result<(), Error> {
        if let Task::Heartbeat { ping, echo } = &mut self.task {
            *echo = Some(matches!(frames, [frame] if frame.as_ref() == ping.as_slice()));
            return Ok(());
        }
        let name = self.socket(tag).map_or("socket", |(name, _)| name);
        let Some(message) = self.client.messenger.read(name, frames, &mut self.dropped) else {
            return Ok(());
        };
        match (&mut self.task, tag) {
            (Task::Reply { msg_id, reply, .. }, _) => {
                if message.parent_msg_id.as_deref() == Some(msg_id.as_str()) {
                    *reply = Some(message.content);
                }
            }
            (Task::Execute(execution), SHELL) => execution.on_shell(message),
            (Task::Execute(execution), _) => execution.on_iopub(message),
            (Task::Ready(readiness), SHELL) => readiness.on_shell(message),
            (Task::Ready(readiness), _) => readiness.on_iopub(),
            (Task::Iopub(next), _) => {
                *next = Some((message.msg_type, message.content, message.parent_msg_id));
            }
            (Task::Heartbeat { .. }, _) => {}
        }
        Ok(())
    }

    fn woke(&mut self) -> Result<(), Error> {
        if self.done() {
            return Ok(());
        }
        if self.client.messenger.clock.now() >= self.deadline {
            self.expired = true;
            return Ok(());
        }
        if matches!(self.task, Task::Ready(_)) {
            self.nudge()?;
        }
        Ok(())
    }
}

fn watch<S>(tag: usize, socket: &mut S) -> Watch<'_, S> {
    let name = match tag {
        SHELL => "shell",
        CONTROL => "control",
        STDIN => "stdin",
        IOPUB => "iopub",
        _ => "heartbeat",
    };
    Watch { tag, name, socket }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jupyter_handshake::{KernelPorts, Key, SignatureScheme, Transport};

    fn messenger() -> Messenger {
        let connection = ConnectionFile::new(
            Transport::Tcp,
            "127.0.0.1",
            SignatureScheme::HmacSha256,
            Key::new("client-test-key"),
            KernelPorts {
                shell: 1,
                iopub: 2,
                stdin: 3,
                control: 4,
                hb: 5,
            },
        );
        Messenger::new(&connection)
    }

    /// A message from the kernel with `parent` as its parent header, signed with the key.
    fn from_kernel(messenger: &mut Messenger, parent: &[u8]) -> Vec<Vec<u8>> {
        let now = messenger.clock.now();
        let none: [&[u8]; 0] = [];
        let (_, frames) = messenger.session.message(
            now,
            &none,
            "kernel_info_reply",
            Some(parent),
            None,
            b"{\"status\":\"ok\"}",
        );
        frames
    }

    #[test]
    fn a_malformed_parent_header_is_dropped_not_taken_for_no_parent() {
        let mut messenger = messenger();
        let mut dropped = Dropped::default();
        for parent in [&b"[1, 2]"[..], b"{\"msg_id\": 5}", b"not json"] {
            let frames = from_kernel(&mut messenger, parent);
            assert!(
                messenger.read("shell", &frames, &mut dropped).is_none(),
                "{}",
                String::from_utf8_lossy(parent)
            );
        }
        assert_eq!(dropped.count, 3);
        assert!(
            dropped
                .last
                .as_deref()
                .is_some_and(|r| r.contains("parent_header")),
            "{:?}",
            dropped.last
        );
        // No parent at all is fine, and a full header is a parent.
        for (parent, id) in [(&b"{}"[..], None), (b"null", None), (b"", None)] {
            let frames = from_kernel(&mut messenger, parent);
            let read = messenger.read("shell", &frames, &mut dropped).unwrap();
            assert_eq!(read.parent_msg_id, id);
        }
        let request = messenger
            .session
            .header("kernel_info_request", messenger.clock.now());
        let frames = from_kernel(&mut messenger, &request.to_json());
        let read = messenger.read("shell", &frames, &mut dropped).unwrap();
        assert_eq!(read.parent_msg_id, Some(request.msg_id));
        assert_eq!(dropped.count, 3);
    }
}
