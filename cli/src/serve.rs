//! The built-in kernel's main loop, once its five channels are bound and the launcher has them.
//!
//! A deliberately small but real kernel: enough of the messaging protocol for jupyter_client's
//! `KernelManager`/`wait_for_ready`, for `jupyter console`, and for our own launcher to prove a
//! launch end to end. Its "language" is `text`: executing code echoes it back.
//!
//! Everything received goes through the core's codec: [`wire::split`] and then
//! [`UnverifiedMessage::verify`](jupyter_handshake::wire::UnverifiedMessage::verify), so no JSON
//! is parsed before the HMAC has been checked, and anything that fails is dropped with one line on
//! stderr (never its bytes). Everything sent is built and signed by the core's [`Session`], with
//! the request's header bytes copied verbatim as the parent header, as the spec asks.
//!
//! Per request, IOPub carries `status: busy` before and `status: idle` after, both parented to the
//! request: jupyter_client's `wait_for_ready` only trusts a kernel_info reply that comes with IOPub
//! traffic (`protocol.md` §9).

use std::fmt;

use jupyter_handshake::Rejection;
use jupyter_handshake::message::Header;
use jupyter_handshake::message::Session;
use jupyter_handshake::wire::{self, Limits};
use jupyter_handshake_zmq::clock::Clock;
use serde_json::{Map, Value, json};

use super::CliError;
use super::trace::Tracer;

/// How often the serve loop asks whether to stop (the parent watch, SIGTERM) while idle.
pub(crate) const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The five bound channels.
pub(crate) struct Channels {
    /// Shell, ROUTER.
    pub(crate) shell: zmq::Socket,
    /// IOPub, XPUB.
    pub(crate) iopub: zmq::Socket,
    /// Stdin, ROUTER.
    pub(crate) stdin: zmq::Socket,
    /// Control, ROUTER.
    pub(crate) control: zmq::Socket,
    /// Heartbeat, REP.
    pub(crate) hb: zmq::Socket,
}

/// Which request channel a message came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Shell,
    Control,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shell => "shell",
            Self::Control => "control",
        })
    }
}

/// Whether the loop goes on after a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Shutdown,
}

/// The kernel's state between messages.
pub(crate) struct Kernel {
    session: Session,
    clock: Clock,
    tracer: Tracer,
    /// The counter shown as `In [n]`: bumped by each non-silent execution that stores history.
    execution_count: u64,
    /// Whether `status: starting` went out (once, after the first welcome).
    started: bool,
    /// `kernel.<session>.`: IOPub topics follow ipykernel's `kernel.<id>.<msg_type>` convention.
    topic_prefix: String,
}

impl Kernel {
    /// A kernel that signs with `session` (made from the connection's key and scheme).
    pub(crate) fn new(session: Session, clock: Clock, tracer: Tracer) -> Self {
        let topic_prefix = format!("kernel.{}.", session.id());
        Self {
            session,
            clock,
            tracer,
            execution_count: 0,
            started: false,
            topic_prefix,
        }
    }

    /// Handles a subscription that the handshake itself consumed (the library reads the XPUB
    /// while it waits for the first subscriber): it still deserves its welcome.
    pub(crate) fn welcome(&mut self, channels: &Channels, topic: &[u8]) {
        self.on_subscription(&channels.iopub, topic);
    }

    /// Serves until a `shutdown_request` has been answered (`Ok(true)`), or until `stopped`
    /// says to stop (`Ok(false)`; it is asked at least every [`WATCH_EVERY`]).
    pub(crate) fn serve(
        &mut self,
        channels: &Channels,
        stopped: &mut dyn FnMut() -> bool,
    ) -> Result<bool, CliError> {
        self.trace("serving: waiting for requests on shell and control");
        let watch_ms = i64::try_from(WATCH_EVERY.as_millis()).unwrap_or(1000);
        loop {
            if stopped() {
                return Ok(false);
            }
            // Control first: it is the channel that must stay responsive (shutdown, interrupt).
            let mut items = [
                channels.control.as_poll_item(zmq::POLLIN),
                channels.shell.as_poll_item(zmq::POLLIN),
                channels.stdin.as_poll_item(zmq::POLLIN),
                channels.iopub.as_poll_item(zmq::POLLIN),
                channels.hb.as_poll_item(zmq::POLLIN),
            ];
            match zmq::poll(&mut items, watch_ms) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => {
                    return Err(CliError::failed(format!(
                        "waiting on the kernel's sockets failed: {e}"
                    )));
                }
            }
            let ready = items.map(|item| item.is_readable());
            if ready[0] {
                if let Some(frames) = receive(&channels.control, "control")? {
                    let flow = self.on_request(Channel::Control, channels, &frames);
                    if flow == Flow::Shutdown {
                        return Ok(true);
                    }
                }
            }
            if ready[1] {
                if let Some(frames) = receive(&channels.shell, "shell")? {
                    let flow = self.on_request(Channel::Shell, channels, &frames);
                    if flow == Flow::Shutdown {
                        return Ok(true);
                    }
                }
            }
            // We never send input_request, so nothing is awaited on stdin.
            if ready[2] && receive(&channels.stdin, "stdin")?.is_some() {
                log("ignored a message on stdin (no input was requested)");
            }
            if ready[3] {
                if let Some(frames) = receive(&channels.iopub, "iopub")? {
                    self.on_iopub_frames(&channels.iopub, &frames);
                }
            }
            if ready[4] {
                if let Some(frames) = receive(&channels.hb, "heartbeat")? {
                    // REP: echo each ping verbatim, which is all a heartbeat is.
                    if let Err(e) = channels.hb.send_multipart(frames, 0) {
                        log(&format!("could not answer a heartbeat: {e}"));
                    }
                }
            }
        }
    }

    /// Subscription frames from the XPUB: `\x01topic` subscribes, `\x00topic` unsubscribes.
    fn on_iopub_frames(&mut self, iopub: &zmq::Socket, frames: &[Vec<u8>]) {
        match frames.first().map(Vec::as_slice) {
            Some([1, topic @ ..]) => self.on_subscription(iopub, topic),
            Some([0, topic @ ..]) => {
                let topic = String::from_utf8_lossy(topic);
                self.trace(&format!("iopub: unsubscribed {topic:?}"));
            }
            _ => log("ignored a message on iopub (not a subscription)"),
        }
    }

    /// Every new subscriber gets an `iopub_welcome` (JEP 65: proof that its subscription is
    /// live; extras are ignored by clients), the first one also `status: starting`, as ark does.
    fn on_subscription(&mut self, iopub: &zmq::Socket, topic: &[u8]) {
        let text = String::from_utf8_lossy(topic).into_owned();
        // Routed with the subscriber's own topic as prefix, so that it reaches a subscriber
        // that filters; a subscribe-all ("") needs no prefix frame.
        let prefix: Vec<&[u8]> = if topic.is_empty() {
            vec![]
        } else {
            vec![topic]
        };
        self.send(
            iopub,
            &prefix,
            "iopub_welcome",
            None,
            &json!({ "subscription": text }),
        );
        self.trace(&format!("iopub: subscription {text:?}, sent iopub_welcome"));
        if !self.started {
            self.started = true;
            self.publish(
                iopub,
                "status",
                None,
                &json!({ "execution_state": "starting" }),
            );
        }
    }

    /// One message on shell or control: verify, then answer it between `busy` and `idle`.
    fn on_request(&mut self, channel: Channel, channels: &Channels, frames: &[Vec<u8>]) -> Flow {
        let verified = match wire::split(frames, &Limits::default())
            .map_err(Rejection::from)
            .and_then(|m| m.verify(self.session.signer()).map_err(Rejection::from))
        {
            Ok(m) => m,
            Err(why) => {
                log(&format!("dropped a message on {channel}: {why}"));
                return Flow::Continue;
            }
        };
        let parts = verified.parts();
        let header = match Header::from_json(parts.header) {
            Ok(h) => h,
            Err(e) => {
                log(&format!("dropped a message on {channel}: header: {e}"));
                return Flow::Continue;
            }
        };
        let content = match serde_json::from_slice::<Value>(parts.content) {
            Ok(Value::Object(map)) => map,
            _ => {
                log(&format!(
                    "dropped a {} on {channel}: its content is not a JSON object",
                    printable(&header.msg_type)
                ));
                return Flow::Continue;
            }
        };
        let request = Request {
            socket: match channel {
                Channel::Shell => &channels.shell,
                Channel::Control => &channels.control,
            },
            identities: verified.identities(),
            header: parts.header,
        };
        let msg_type = header.msg_type.as_str();
        self.trace(&format!("{channel}: {}", printable(msg_type)));
        let iopub = &channels.iopub;
        self.publish(
            iopub,
            "status",
            Some(request.header),
            &json!({ "execution_state": "busy" }),
        );
        let flow = self.dispatch(msg_type, &request, iopub, &content);
        self.publish(
            iopub,
            "status",
            Some(request.header),
            &json!({ "execution_state": "idle" }),
        );
        if flow == Flow::Shutdown {
            self.trace(&format!("{channel}: answered shutdown_request, exiting"));
        }
        flow
    }

    fn dispatch(
        &mut self,
        msg_type: &str,
        request: &Request<'_>,
        iopub: &zmq::Socket,
        content: &Map<String, Value>,
    ) -> Flow {
        match msg_type {
            "kernel_info_request" => self.reply(request, "kernel_info_reply", &kernel_info()),
            "execute_request" => self.execute(request, iopub, content),
            "shutdown_request" => {
                let restart = content
                    .get("restart")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                self.reply(
                    request,
                    "shutdown_reply",
                    &json!({ "status": "ok", "restart": restart }),
                );
                return Flow::Shutdown;
            }
            // Nothing runs long enough to be interrupted; acknowledging keeps clients happy.
            "interrupt_request" => {
                self.reply(request, "interrupt_reply", &json!({ "status": "ok" }))
            }
            "is_complete_request" => self.reply(
                request,
                "is_complete_reply",
                &json!({ "status": "complete" }),
            ),
            "complete_request" => {
                let cursor = content
                    .get("cursor_pos")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                self.reply(
                    request,
                    "complete_reply",
                    &json!({ "status": "ok", "matches": [], "cursor_start": cursor,
                             "cursor_end": cursor, "metadata": {} }),
                );
            }
            "inspect_request" => self.reply(
                request,
                "inspect_reply",
                &json!({ "status": "ok", "found": false, "data": {}, "metadata": {} }),
            ),
            "history_request" => self.reply(
                request,
                "history_reply",
                &json!({ "status": "ok", "history": [] }),
            ),
            "comm_info_request" => self.reply(
                request,
                "comm_info_reply",
                &json!({ "status": "ok", "comms": {} }),
            ),
            other => {
                if let Some(base) = other.strip_suffix("_request") {
                    let reply_type = format!("{base}_reply");
                    self.reply(
                        request,
                        &reply_type,
                        &error_content(
                            "UnsupportedRequest",
                            &format!("jupyter-handshake does not implement {}", printable(other)),
                        ),
                    );
                } else {
                    // comm_open, comm_msg, input_reply...: nothing to answer.
                    log(&format!("ignored a {} (not a request)", printable(other)));
                }
            }
        }
        Flow::Continue
    }

    /// `execute_request`: the code is the result. Publishes `execute_input`, a `stream` on stdout
    /// and an `execute_result` (unless silent), then replies `ok`.
    fn execute(
        &mut self,
        request: &Request<'_>,
        iopub: &zmq::Socket,
        content: &Map<String, Value>,
    ) {
        let Some(code) = content.get("code").and_then(Value::as_str) else {
            self.reply(
                request,
                "execute_reply",
                &error_content("BadRequest", "execute_request has no string 'code'"),
            );
            return;
        };
        let flag = |name: &str, default: bool| {
            content
                .get(name)
                .and_then(Value::as_bool)
                .unwrap_or(default)
        };
        // The spec: silent forces store_history off; only stored executions bump the counter.
        let silent = flag("silent", false);
        let store_history = !silent && flag("store_history", true);
        if store_history {
            self.execution_count += 1;
        }
        let count = self.execution_count;
        let parent = Some(request.header);
        if !silent {
            self.publish(
                iopub,
                "execute_input",
                parent,
                &json!({ "code": code, "execution_count": count }),
            );
            self.publish(
                iopub,
                "stream",
                parent,
                &json!({ "name": "stdout", "text": code }),
            );
            self.publish(
                iopub,
                "execute_result",
                parent,
                &json!({ "execution_count": count, "data": { "text/plain": code }, "metadata": {} }),
            );
        }
        // An expression's value is its own text, as for the code.
        let user_expressions: Map<String, Value> = content
            .get("user_expressions")
            .and_then(Value::as_object)
            .map(|exprs| {
                exprs
                    .iter()
                    .map(|(name, expr)| {
                        let text = expr
                            .as_str()
                            .map_or_else(|| expr.to_string(), str::to_owned);
                        let value = json!({ "status": "ok", "data": { "text/plain": text },
                                            "metadata": {} });
                        (name.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.reply(
            request,
            "execute_reply",
            &json!({ "status": "ok", "execution_count": count,
                     "user_expressions": user_expressions, "payload": [] }),
        );
    }

    /// Sends a reply through the request's ROUTER, to the request's identities.
    fn reply(&mut self, request: &Request<'_>, msg_type: &str, content: &Value) {
        self.send(
            request.socket,
            request.identities,
            msg_type,
            Some(request.header),
            content,
        );
    }

    /// Publishes on IOPub with the topic `kernel.<session>.<msg_type>`.
    fn publish(
        &mut self,
        iopub: &zmq::Socket,
        msg_type: &str,
        parent: Option<&[u8]>,
        content: &Value,
    ) {
        let topic = format!("{}{msg_type}", self.topic_prefix);
        self.send(iopub, &[topic.as_bytes()], msg_type, parent, content);
    }

    /// Builds, signs and sends one message. A failed send is logged, not fatal: a client that
    /// went away must not take the kernel down with it.
    fn send<I: AsRef<[u8]>>(
        &mut self,
        socket: &zmq::Socket,
        identities: &[I],
        msg_type: &str,
        parent: Option<&[u8]>,
        content: &Value,
    ) {
        let content = content.to_string();
        let (_, frames) = self.session.message(
            self.clock.now(),
            identities,
            msg_type,
            parent,
            None,
            content.as_bytes(),
        );
        if let Err(e) = socket.send_multipart(frames, 0) {
            log(&format!("could not send {msg_type}: {e}"));
        }
    }

    fn trace(&self, text: &str) {
        self.tracer.kernel(self.clock.now(), text);
    }
}

/// What a reply needs from its request.
struct Request<'a> {
    /// The ROUTER it came in on.
    socket: &'a zmq::Socket,
    /// Its routing identities, to address the reply.
    identities: &'a [Vec<u8>],
    /// Its header's exact bytes: the reply's parent header.
    header: &'a [u8],
}

/// The `kernel_info_reply` content.
fn kernel_info() -> Value {
    json!({
        "status": "ok",
        "protocol_version": "5.5",
        "implementation": "jupyter-handshake",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "language_info": {
            "name": "text",
            "version": "1.0",
            "mimetype": "text/plain",
            "file_extension": ".txt",
        },
        "banner": concat!(
            "jupyter-handshake ", env!("CARGO_PKG_VERSION"),
            ": a text kernel started race-free through the JEP 66 handshake (code is echoed back)"
        ),
        "help_links": [],
        "debugger": false,
    })
}

/// The content of an error reply.
fn error_content(ename: &str, evalue: &str) -> Value {
    json!({ "status": "error", "ename": ename, "evalue": evalue, "traceback": [] })
}

/// Receives one multipart message without blocking; `None` if there was none after all.
fn receive(socket: &zmq::Socket, name: &str) -> Result<Option<Vec<Vec<u8>>>, CliError> {
    match socket.recv_multipart(zmq::DONTWAIT) {
        Ok(frames) => Ok(Some(frames)),
        Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => Ok(None),
        Err(e) => Err(CliError::failed(format!(
            "receiving on the {name} socket failed: {e}"
        ))),
    }
}

/// A peer-chosen string, safe for a log line: no control characters, at most 64 characters.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// One diagnostic line on stderr.
fn log(text: &str) {
    super::say(format_args!("jupyter-handshake kernel: {text}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_info_says_who_we_are() {
        let info = kernel_info();
        assert_eq!(info["status"], "ok");
        assert_eq!(info["protocol_version"], "5.5");
        assert_eq!(info["implementation"], "jupyter-handshake");
        assert_eq!(info["language_info"]["name"], "text");
        assert_eq!(info["help_links"], json!([]));
    }

    #[test]
    fn printable_strips_control_characters() {
        assert_eq!(printable("a\u{1b}[2Jb\n"), "a[2Jb");
        assert_eq!(printable(&"x".repeat(100)).len(), 64);
    }
}
