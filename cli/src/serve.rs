//! The built-in kernel's message handling, once its five channels are bound and the launcher
//! has them: frames in, frames out, per channel, with no I/O.
//!
//! [`Kernel::receive`] takes the frames of one message and the channel it came in on, and gives
//! back the messages to send, each with its channel, in the order they must leave. The loops
//! that move those frames between the sockets and this module are the drivers' (a `zmq::poll`
//! loop, or a tokio `select!` loop: see [`crate::driver`]); the handling is written once, here.
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
use serde_json::{Map, Value, json};

use super::driver::Clock;
use super::trace::Tracer;

/// How often the serve loop asks whether to stop (the parent watch, SIGTERM) while idle.
pub(crate) const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// One of the kernel's five channels: where a message came in, or where one must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Channel {
    /// Shell (ROUTER).
    Shell,
    /// Control (ROUTER).
    Control,
    /// Stdin (ROUTER).
    Stdin,
    /// IOPub (XPUB: what comes in are subscription frames).
    Iopub,
    /// Heartbeat (REP).
    Hb,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shell => "shell",
            Self::Control => "control",
            Self::Stdin => "stdin",
            Self::Iopub => "iopub",
            Self::Hb => "heartbeat",
        })
    }
}

/// One message to send: its channel and its frames (identities first on a ROUTER).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Outgoing {
    /// Where it goes.
    pub(crate) channel: Channel,
    /// Its frames, ready for the socket.
    pub(crate) frames: Vec<Vec<u8>>,
}

/// Whether serving goes on after a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep serving.
    Continue,
    /// A `shutdown_request` was answered: send what is queued, then stop.
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
    /// What the message being handled makes us send, in order.
    out: Vec<Outgoing>,
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
            out: Vec::new(),
        }
    }

    /// Handles a subscription that the handshake itself consumed (the driver reads the XPUB
    /// while it waits for the first subscriber): it still deserves its welcome. Returns what to
    /// send.
    pub(crate) fn welcome(&mut self, topic: &[u8]) -> Vec<Outgoing> {
        self.on_subscription(topic);
        std::mem::take(&mut self.out)
    }

    /// Says that serving starts (a trace line).
    pub(crate) fn serving(&self) {
        self.trace("serving: waiting for requests on shell and control");
    }

    /// Handles one message received on `channel`: returns what to send, in order, and whether
    /// to go on. Nothing here fails: a message that does not verify or parse is dropped with one
    /// line on stderr, and the kernel keeps serving.
    pub(crate) fn receive<F: AsRef<[u8]>>(
        &mut self,
        channel: Channel,
        frames: &[F],
    ) -> (Vec<Outgoing>, Flow) {
        let flow = match channel {
            Channel::Shell | Channel::Control => self.on_request(channel, frames),
            // We never send input_request, so nothing is awaited on stdin.
            Channel::Stdin => {
                log("ignored a message on stdin (no input was requested)");
                Flow::Continue
            }
            Channel::Iopub => {
                self.on_iopub_frames(frames);
                Flow::Continue
            }
            Channel::Hb => {
                // REP: echo each ping verbatim, which is all a heartbeat is.
                self.out.push(Outgoing {
                    channel: Channel::Hb,
                    frames: frames.iter().map(|f| f.as_ref().to_vec()).collect(),
                });
                Flow::Continue
            }
        };
        (std::mem::take(&mut self.out), flow)
    }

    /// Subscription frames from the XPUB: `\x01topic` subscribes, `\x00topic` unsubscribes.
    fn on_iopub_frames<F: AsRef<[u8]>>(&mut self, frames: &[F]) {
        match frames.first().map(AsRef::as_ref) {
            Some([1, topic @ ..]) => self.on_subscription(topic),
            Some([0, topic @ ..]) => {
                let topic = String::from_utf8_lossy(topic);
                self.trace(&format!("iopub: unsubscribed {topic:?}"));
            }
            _ => log("ignored a message on iopub (not a subscription)"),
        }
    }

    /// Every new subscriber gets an `iopub_welcome` (JEP 65: proof that its subscription is
    /// live; extras are ignored by clients), the first one also `status: starting`, as ark does.
    fn on_subscription(&mut self, topic: &[u8]) {
        let text = String::from_utf8_lossy(topic).into_owned();
        // Routed with the subscriber's own topic as prefix, so that it reaches a subscriber
        // that filters; a subscribe-all ("") needs no prefix frame.
        let prefix: Vec<&[u8]> = if topic.is_empty() {
            vec![]
        } else {
            vec![topic]
        };
        self.send(
            Channel::Iopub,
            &prefix,
            "iopub_welcome",
            None,
            &json!({ "subscription": text }),
        );
        self.trace(&format!("iopub: subscription {text:?}, sent iopub_welcome"));
        if !self.started {
            self.started = true;
            self.publish("status", None, &json!({ "execution_state": "starting" }));
        }
    }

    /// One message on shell or control: verify, then answer it between `busy` and `idle`.
    fn on_request<F: AsRef<[u8]>>(&mut self, channel: Channel, frames: &[F]) -> Flow {
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
            channel,
            identities: verified.identities(),
            header: parts.header,
        };
        let msg_type = header.msg_type.as_str();
        self.trace(&format!("{channel}: {}", printable(msg_type)));
        self.publish(
            "status",
            Some(request.header),
            &json!({ "execution_state": "busy" }),
        );
        let flow = self.dispatch(msg_type, &request, &content);
        self.publish(
            "status",
            Some(request.header),
            &json!({ "execution_state": "idle" }),
        );
        if flow == Flow::Shutdown {
            self.trace(&format!("{channel}: answered shutdown_request, exiting"));
        }
        flow
    }

    fn dispatch<F: AsRef<[u8]>>(
        &mut self,
        msg_type: &str,
        request: &Request<'_, F>,
        content: &Map<String, Value>,
    ) -> Flow {
        match msg_type {
            "kernel_info_request" => self.reply(request, "kernel_info_reply", &kernel_info()),
            "execute_request" => self.execute(request, content),
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
    fn execute<F: AsRef<[u8]>>(&mut self, request: &Request<'_, F>, content: &Map<String, Value>) {
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
                "execute_input",
                parent,
                &json!({ "code": code, "execution_count": count }),
            );
            self.publish("stream", parent, &json!({ "name": "stdout", "text": code }));
            self.publish(
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
    fn reply<F: AsRef<[u8]>>(&mut self, request: &Request<'_, F>, msg_type: &str, content: &Value) {
        self.send(
            request.channel,
            request.identities,
            msg_type,
            Some(request.header),
            content,
        );
    }

    /// Publishes on IOPub with the topic `kernel.<session>.<msg_type>`.
    fn publish(&mut self, msg_type: &str, parent: Option<&[u8]>, content: &Value) {
        let topic = format!("{}{msg_type}", self.topic_prefix);
        self.send(
            Channel::Iopub,
            &[topic.as_bytes()],
            msg_type,
            parent,
            content,
        );
    }

    /// Builds and signs one message, and queues it for `channel`.
    fn send<I: AsRef<[u8]>>(
        &mut self,
        channel: Channel,
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
        self.out.push(Outgoing { channel, frames });
    }

    fn trace(&self, text: &str) {
        self.tracer.kernel(self.clock.now(), text);
    }
}

/// What a reply needs from its request.
struct Request<'a, F> {
    /// The channel (ROUTER) it came in on.
    channel: Channel,
    /// Its routing identities, to address the reply.
    identities: &'a [F],
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

/// A peer-chosen string, safe for a log line: no control characters, at most 64 characters.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// One diagnostic line on stderr.
pub(crate) fn log(text: &str) {
    super::say(format_args!("jupyter-handshake kernel: {text}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use jupyter_handshake::{Key, SignatureScheme, Signer};

    fn signer() -> Signer {
        Signer::new(SignatureScheme::HmacSha256, &Key::new("k3y"))
    }

    fn kernel() -> Kernel {
        let session = Session::new("kernel-session", "kernel", signer());
        Kernel::new(session, Clock::new(), Tracer::from_env())
    }

    /// A client's signed request, routed through a ROUTER (one identity frame).
    fn request(msg_type: &str, content: &str) -> Vec<Vec<u8>> {
        let mut client = Session::new("client-session", "client", signer());
        let (_, frames) = client.message(
            Clock::new().now(),
            &[b"peer-1".as_slice()],
            msg_type,
            None,
            None,
            content.as_bytes(),
        );
        frames
    }

    /// The channel, `msg_type` and content of each message sent, verified with the key.
    fn read(out: &[Outgoing]) -> Vec<(Channel, String, Value)> {
        out.iter()
            .map(|o| {
                let m = wire::split(&o.frames, &Limits::default())
                    .expect("a Jupyter message")
                    .verify(&signer())
                    .expect("signed with the key");
                let header = Header::from_json(m.parts().header).expect("a header");
                let content = serde_json::from_slice(m.parts().content).expect("JSON");
                (o.channel, header.msg_type, content)
            })
            .collect()
    }

    #[test]
    fn a_request_is_answered_between_busy_and_idle_to_its_sender() {
        let mut k = kernel();
        let (out, flow) = k.receive(Channel::Shell, &request("kernel_info_request", "{}"));
        assert_eq!(flow, Flow::Continue);
        let sent = read(&out);
        let kinds: Vec<_> = sent.iter().map(|(c, t, _)| (*c, t.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (Channel::Iopub, "status"),
                (Channel::Shell, "kernel_info_reply"),
                (Channel::Iopub, "status"),
            ]
        );
        assert_eq!(sent[0].2["execution_state"], "busy");
        assert_eq!(sent[2].2["execution_state"], "idle");
        // The reply goes back to the identity it came from; IOPub carries the topic.
        assert_eq!(out[1].frames[0], b"peer-1");
        assert_eq!(out[0].frames[0], b"kernel.kernel-session.status");
    }

    #[test]
    fn forged_or_garbage_input_is_dropped_without_a_reply() {
        let mut k = kernel();
        let mut forged = request("shutdown_request", "{}");
        // The HMAC is the frame after the delimiter: one changed hex digit breaks it.
        let at = forged.iter().position(|f| f == b"<IDS|MSG>").unwrap() + 1;
        forged[at][0] = if forged[at][0] == b'0' { b'1' } else { b'0' };
        let (out, flow) = k.receive(Channel::Control, &forged);
        assert!(out.is_empty());
        assert_eq!(flow, Flow::Continue);
        let (out, flow) = k.receive(Channel::Shell, &[b"garbage".as_slice()]);
        assert!(out.is_empty());
        assert_eq!(flow, Flow::Continue);
    }

    #[test]
    fn shutdown_is_answered_on_control_and_ends_serving() {
        let mut k = kernel();
        let (out, flow) = k.receive(Channel::Control, &request("shutdown_request", "{}"));
        assert_eq!(flow, Flow::Shutdown);
        let sent = read(&out);
        assert_eq!(sent[1].0, Channel::Control);
        assert_eq!(sent[1].1, "shutdown_reply");
        assert_eq!(sent[1].2["status"], "ok");
    }

    #[test]
    fn execute_echoes_the_code_and_counts() {
        let mut k = kernel();
        for count in 1..=2 {
            let (out, _) = k.receive(
                Channel::Shell,
                &request("execute_request", r#"{"code":"hi"}"#),
            );
            let sent = read(&out);
            let reply = sent.iter().find(|(_, t, _)| t == "execute_reply").unwrap();
            assert_eq!(reply.2["execution_count"], count);
            let stream = sent.iter().find(|(_, t, _)| t == "stream").unwrap();
            assert_eq!(stream.2["text"], "hi");
        }
    }

    #[test]
    fn heartbeats_are_echoed_and_subscribers_welcomed_once_started() {
        let mut k = kernel();
        let (out, _) = k.receive(Channel::Hb, &[b"ping".as_slice()]);
        assert_eq!(
            out,
            [Outgoing {
                channel: Channel::Hb,
                frames: vec![b"ping".to_vec()]
            }]
        );
        let first = read(&k.welcome(b""));
        let names: Vec<_> = first.iter().map(|(_, t, _)| t.as_str()).collect();
        assert_eq!(names, ["iopub_welcome", "status"]);
        assert_eq!(first[1].2["execution_state"], "starting");
        let (second, _) = k.receive(Channel::Iopub, &[b"\x01kernel.".as_slice()]);
        let names: Vec<_> = read(&second).into_iter().map(|(_, t, _)| t).collect();
        assert_eq!(names, ["iopub_welcome"]);
        assert_eq!(second[0].frames[0], b"kernel.");
        let (unsubscribed, _) = k.receive(Channel::Iopub, &[b"\x00kernel.".as_slice()]);
        assert!(unsubscribed.is_empty());
    }

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
