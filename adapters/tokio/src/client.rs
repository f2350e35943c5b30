//! A connected client for a kernel: `kernel_info`, `execute`, `shutdown`, to check that a launch
//! worked (not a full Jupyter client).
//!
//! Messages are signed by the core's [`Session`] and checked by the core's codec
//! ([`wire::split`], then the HMAC) before any JSON is read; invalid ones are counted and
//! dropped. Every wait is bounded by its `timeout`. The futures are `Send`; `recv` on zeromq's
//! DEALER and SUB is cancellation-safe, so a wait dropped midway loses no message, but a
//! reply that arrives after its wait ended is dropped by the next wait (it is not its reply).

use std::time::Duration;

use jupyter_handshake::message::Header;
use jupyter_handshake::message::Session;
use jupyter_handshake::wire::{self, Limits};
use jupyter_handshake::{ConnectionFile, Signer};
use serde_json::{Value, json};
use tokio::time::Instant as TokioInstant;
use zeromq::{DealerSocket, Socket, SubSocket, ZmqMessage};

use crate::clock::Clock;
use crate::error::Error;
use crate::files::new_session_id;
use crate::sockets::{connect, recv, send_until};

/// How often `wait_for_ready` repeats its `kernel_info_request` while IOPub stays silent (a SUB
/// misses what was published before its subscription arrived).
const NUDGE: Duration = Duration::from_millis(500);

/// A request-reply channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Shell.
    Shell,
    /// Control.
    Control,
}

/// What an `execute_request` produced.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecuteOutcome {
    /// The `execute_reply` content.
    pub reply: Value,
    /// IOPub messages parented to the request, in order, as `(msg_type, content)`.
    pub iopub: Vec<(String, Value)>,
}

/// Where a received message came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The request channel waited on.
    Reply,
    /// IOPub.
    Iopub,
}

/// A verified message, as far as the client cares.
struct Received {
    msg_type: String,
    parent_msg_id: Option<String>,
    content: Value,
}

/// A client connected to a kernel's shell, control and IOPub channels.
pub struct Client {
    shell: DealerSocket,
    control: DealerSocket,
    iopub: SubSocket,
    session: Session,
    clock: Clock,
    limits: Limits,
    dropped: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.session.id())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `connection`'s shell, control and IOPub (subscribed to everything).
    pub async fn connect(connection: &ConnectionFile) -> Result<Self, Error> {
        let ports = connection.ports;
        let mut shell = DealerSocket::new();
        connect(&mut shell, "shell", &connection.endpoint(ports.shell)).await?;
        let mut control = DealerSocket::new();
        connect(&mut control, "control", &connection.endpoint(ports.control)).await?;
        let mut iopub = SubSocket::new();
        iopub.subscribe("").await.map_err(|source| Error::Socket {
            action: "subscribe",
            socket: "iopub",
            endpoint: None,
            source,
        })?;
        connect(&mut iopub, "iopub", &connection.endpoint(ports.iopub)).await?;
        let signer = Signer::new(connection.signature_scheme, &connection.key);
        Ok(Self {
            shell,
            control,
            iopub,
            session: Session::new(new_session_id(), "client", signer),
            clock: Clock::new(),
            limits: Limits::default(),
            dropped: 0,
        })
    }

    /// How many invalid messages (bad signature, not Jupyter) were dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Sends a signed `msg_type` request with `content` on `channel`; returns its `msg_id`.
    ///
    /// The send itself waits at most one second (a kernel that stops reading fills its
    /// queue); the requests below give their sends the whole of their own timeout.
    pub async fn send(
        &mut self,
        channel: Channel,
        msg_type: &str,
        content: &Value,
    ) -> Result<String, Error> {
        let end = TokioInstant::now() + crate::sockets::SEND_TIMEOUT;
        self.send_until(channel, msg_type, content, end).await
    }

    /// [`send`](Self::send), waiting until `end` for the message to go out. A send still
    /// pending at `end` is a [`Error::Timeout`] like any other wait of the request.
    async fn send_until(
        &mut self,
        channel: Channel,
        msg_type: &str,
        content: &Value,
        end: TokioInstant,
    ) -> Result<String, Error> {
        let started = TokioInstant::now();
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
        let (socket, name) = match channel {
            Channel::Shell => (&mut self.shell, "shell"),
            Channel::Control => (&mut self.control, "control"),
        };
        if send_until(socket, frames, end).await {
            return Ok(header.msg_id);
        }
        if TokioInstant::now() >= end {
            let waiting_for = format!("{msg_type} to be sent on {name}");
            return Err(self.timeout(&waiting_for, end - started));
        }
        Err(Error::Socket {
            action: "send on",
            socket: name,
            endpoint: None,
            source: zeromq::ZmqError::Other("the message could not be delivered"),
        })
    }

    /// Sends `kernel_info_request`s until a reply arrives and IOPub has delivered a message
    /// (proof that the subscription is live); returns the reply's content.
    pub async fn wait_for_ready(&mut self, timeout: Duration) -> Result<Value, Error> {
        let end = TokioInstant::now() + timeout;
        let mut requests = Vec::new();
        let (mut reply, mut iopub_live) = (None, false);
        while reply.is_none() || !iopub_live {
            requests.push(
                self.send_until(Channel::Shell, "kernel_info_request", &json!({}), end)
                    .await?,
            );
            let nudge = (TokioInstant::now() + NUDGE).min(end);
            loop {
                let woke = self.next(Channel::Shell, nudge).await;
                match woke {
                    Some((Source::Reply, m))
                        if m.msg_type == "kernel_info_reply"
                            && m.parent_msg_id
                                .as_ref()
                                .is_some_and(|p| requests.contains(p)) =>
                    {
                        reply = Some(m.content);
                    }
                    Some((Source::Iopub, _)) => iopub_live = true,
                    Some(_) => {}
                    None => break,
                }
                if reply.is_some() && iopub_live {
                    break;
                }
            }
            if TokioInstant::now() >= end && (reply.is_none() || !iopub_live) {
                return Err(self.timeout("a kernel_info_reply and an IOPub message", timeout));
            }
        }
        Ok(reply.unwrap_or(Value::Null))
    }

    /// Runs `code`: the `execute_reply` and the IOPub messages parented to it, until the kernel
    /// is idle again.
    pub async fn execute(
        &mut self,
        code: &str,
        timeout: Duration,
    ) -> Result<ExecuteOutcome, Error> {
        let content = json!({
            "code": code, "silent": false, "store_history": true,
            "user_expressions": {}, "allow_stdin": false, "stop_on_error": true,
        });
        let end = TokioInstant::now() + timeout;
        let msg_id = self
            .send_until(Channel::Shell, "execute_request", &content, end)
            .await?;
        let (mut reply, mut iopub, mut idle) = (None, Vec::new(), false);
        while reply.is_none() || !idle {
            match self.next(Channel::Shell, end).await {
                Some((channel, m)) if m.parent_msg_id.as_deref() == Some(msg_id.as_str()) => {
                    if channel == Source::Reply {
                        reply = Some(m.content);
                    } else {
                        idle |= m.msg_type == "status" && m.content["execution_state"] == "idle";
                        iopub.push((m.msg_type, m.content));
                    }
                }
                Some(_) => {}
                None => return Err(self.timeout("the execute_reply and status idle", timeout)),
            }
        }
        Ok(ExecuteOutcome {
            reply: reply.unwrap_or(Value::Null),
            iopub,
        })
    }

    /// Sends a `msg_type` request with `content` on `channel` and waits up to `timeout` for the
    /// reply whose parent is that request; returns the reply's content. Other messages are
    /// skipped (a reply to an earlier request, IOPub traffic).
    pub async fn request(
        &mut self,
        channel: Channel,
        msg_type: &str,
        content: &Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let end = TokioInstant::now() + timeout;
        let msg_id = self.send_until(channel, msg_type, content, end).await?;
        loop {
            match self.next(channel, end).await {
                Some((Source::Reply, m)) if m.parent_msg_id.as_deref() == Some(msg_id.as_str()) => {
                    return Ok(m.content);
                }
                Some(_) => {}
                None => {
                    let waiting_for = format!("a reply to {msg_type}");
                    return Err(self.timeout(&waiting_for, timeout));
                }
            }
        }
    }

    /// `kernel_info_request` on shell; the `kernel_info_reply` content. (To also know that
    /// IOPub is live, use [`wait_for_ready`](Self::wait_for_ready).)
    pub async fn kernel_info(&mut self, timeout: Duration) -> Result<Value, Error> {
        let content = json!({});
        self.request(Channel::Shell, "kernel_info_request", &content, timeout)
            .await
    }

    /// Asks the kernel to shut down (on control) and returns the `shutdown_reply` content.
    pub async fn shutdown(&mut self, timeout: Duration) -> Result<Value, Error> {
        let content = json!({"restart": false});
        self.request(Channel::Control, "shutdown_request", &content, timeout)
            .await
    }

    /// The next valid message on `channel` or IOPub, or `None` at `end`.
    async fn next(&mut self, primary: Channel, end: TokioInstant) -> Option<(Source, Received)> {
        loop {
            let socket = match primary {
                Channel::Shell => &mut self.shell,
                Channel::Control => &mut self.control,
            };
            let got = tokio::select! {
                m = recv(socket) => m.ok().map(|m| (Source::Reply, m)),
                m = recv(&mut self.iopub) => m.ok().map(|m| (Source::Iopub, m)),
                () = tokio::time::sleep_until(end) => return None,
            };
            let Some((which, message)) = got else {
                // A broken peer: wait for the deadline rather than spin.
                tokio::time::sleep_until(end).await;
                return None;
            };
            match self.read(&message) {
                Some(received) => return Some((which, received)),
                None => self.dropped += 1,
            }
        }
    }

    fn read(&self, message: &ZmqMessage) -> Option<Received> {
        let frames: Vec<&[u8]> = message.iter().map(|b| b.as_ref()).collect();
        let message = wire::split(&frames, &self.limits)
            .ok()?
            .verify(self.session.signer())
            .ok()?;
        let parts = message.parts();
        let header = Header::from_json(parts.header).ok()?;
        let parent_msg_id = serde_json::from_slice::<Value>(parts.parent_header)
            .ok()
            .and_then(|p| p.get("msg_id")?.as_str().map(str::to_string));
        Some(Received {
            msg_type: header.msg_type,
            parent_msg_id,
            content: serde_json::from_slice(parts.content).ok()?,
        })
    }

    fn timeout(&self, waiting_for: &str, waited: Duration) -> Error {
        Error::Timeout {
            waiting_for: waiting_for.into(),
            waited,
            dropped: self.dropped,
            last_dropped: None,
        }
    }
}
