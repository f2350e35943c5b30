//! What every client driver shares: the channel names, the outcome of an execution, and the
//! client's protocol bookkeeping (signing requests, reading and verifying messages, matching
//! replies to requests, knowing when an execution or `wait_for_ready` is complete). The
//! blocking and async clients only differ in how they wait.

use std::time::Duration;

use jupyter_handshake::message::Header;
use jupyter_handshake::wire::{self, Limits};
use jupyter_handshake::{ConnectionFile, Session, Signer};
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::error::Error;
use crate::files::{new_session_id, random_hex};
use crate::sockets::{configure, connect, socket};

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
    clock: Clock,
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
        let header = Header::from_json(parts.header).map_err(|e| format!("header: {e}"))?;
        let parent_msg_id = serde_json::from_slice::<Value>(parts.parent_header)
            .ok()
            .and_then(|p| p.get("msg_id")?.as_str().map(str::to_string));
        let content = serde_json::from_slice(parts.content).map_err(|e| format!("content: {e}"))?;
        Ok(Received {
            msg_type: header.msg_type,
            parent_msg_id,
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

/// `wait_for_ready` in progress: a `kernel_info_reply` to one of our requests, and any valid
/// IOPub message (proof that our subscription is live).
#[derive(Default)]
pub(crate) struct Readiness {
    requests: Vec<String>,
    reply: Option<Value>,
    iopub_live: bool,
    last_nudge: Option<std::time::Instant>,
}

impl Readiness {
    /// Whether a (new) `kernel_info_request` should go out now.
    pub(crate) fn wants_nudge(&self) -> bool {
        self.last_nudge.is_none_or(|at| at.elapsed() >= NUDGE)
    }

    pub(crate) fn nudged(&mut self, msg_id: String) {
        self.requests.push(msg_id);
        self.last_nudge = Some(std::time::Instant::now());
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
