//! A small blocking client for a running kernel: enough to prove a launch worked.
//!
//! It connects the way ark's test frontend and jupyter_client do: shell and control DEALERs,
//! a stdin DEALER with the **same** ZeroMQ identity as the shell one (the spec requires it for
//! input requests to reach the right frontend), an IOPub SUB subscribed to everything *before*
//! it connects, and a heartbeat REQ. Messages are signed with the core's
//! [`Session`](jupyter_handshake::Session) and read with
//! [`wire::split`](jupyter_handshake::wire::split) and verification; anything that fails verification is dropped. Replies
//! are matched to requests by `parent_header.msg_id`; other messages are skipped.
//!
//! ```no_run
//! use std::time::Duration;
//! use jupyter_handshake_zmq::blocking::{client::Client, launcher::{LaunchOptions, launch}};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ctx = zmq::Context::new();
//! let argv = ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"].map(String::from);
//! let mut launched = launch(&ctx, &argv, &LaunchOptions::default(), &mut |_, _| {})?;
//! let mut client = Client::connect(&ctx, &launched.connection)?;
//! let info = client.wait_for_ready(Duration::from_secs(10))?;
//! println!("{}", info["implementation"]);
//! client.shutdown(Duration::from_secs(5))?;
//! launched.child.wait()?;
//! launched.remove_file()?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use jupyter_handshake::ConnectionFile;
use serde_json::{Value, json};

pub use crate::client::{Channel, ExecuteOutcome};

use super::{poll, send, try_recv};
use crate::client::{
    ClientSockets, Dropped, Execution, Messenger, NUDGE, Readiness, Received, execute_content,
    heartbeat,
};
use crate::clock::poll_millis;
use crate::error::Error;

/// A connected client of one kernel.
pub struct Client {
    ctx: zmq::Context,
    messenger: Messenger,
    shell: zmq::Socket,
    control: zmq::Socket,
    stdin: zmq::Socket,
    iopub: zmq::Socket,
    hb: zmq::Socket,
}

impl Client {
    /// Connects to the kernel described by `connection`. Connecting does not wait for the
    /// kernel: use [`wait_for_ready`](Self::wait_for_ready) before relying on IOPub.
    pub fn connect(ctx: &zmq::Context, connection: &ConnectionFile) -> Result<Self, Error> {
        let sockets = ClientSockets::connect(ctx, connection)?;
        Ok(Self {
            ctx: ctx.clone(),
            messenger: Messenger::new(connection),
            shell: sockets.shell,
            control: sockets.control,
            stdin: sockets.stdin,
            iopub: sockets.iopub,
            hb: sockets.hb,
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

    fn channel(&self, channel: Channel) -> &zmq::Socket {
        match channel {
            Channel::Shell => &self.shell,
            Channel::Control => &self.control,
            Channel::Stdin => &self.stdin,
        }
    }

    /// Sends a signed `msg_type` message with `content` on `channel`; returns its `msg_id`.
    pub fn send(
        &mut self,
        channel: Channel,
        msg_type: &str,
        content: &Value,
    ) -> Result<String, Error> {
        let (msg_id, frames) = self.messenger.message(msg_type, content);
        send(self.channel(channel), channel.as_str(), frames)?;
        Ok(msg_id)
    }

    /// Sends a request on `channel` and waits up to `timeout` for the reply whose parent is that
    /// request; returns the reply's content. Other messages on the channel are skipped.
    pub fn request(
        &mut self,
        channel: Channel,
        msg_type: &str,
        content: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let started = std::time::Instant::now();
        let msg_id = self.send(channel, msg_type, &content)?;
        let socket = self.channel(channel);
        let mut dropped = Dropped::default();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(dropped.timeout(format!("reply to {msg_type}"), timeout));
            }
            if let Some(message) = self.recv_on(socket, channel.as_str(), left, &mut dropped)? {
                if message.parent_msg_id.as_deref() == Some(msg_id.as_str()) {
                    return Ok(message.content);
                }
            }
        }
    }

    /// `kernel_info_request` on shell; the reply's content.
    pub fn kernel_info(&mut self, timeout: Duration) -> Result<Value, Error> {
        self.request(Channel::Shell, "kernel_info_request", json!({}), timeout)
    }

    /// `shutdown_request` (no restart) on control; the reply's content.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<Value, Error> {
        self.request(
            Channel::Control,
            "shutdown_request",
            json!({"restart": false}),
            timeout,
        )
    }

    /// Runs `code`: sends an `execute_request` on shell, then collects the reply and the IOPub
    /// messages parented to the request until the kernel reports `status: idle` for it. If the
    /// reply came but no idle status did, what was seen is returned when `timeout` runs out;
    /// without a reply, that is an error.
    ///
    /// IOPub messages published before this client's subscription was live are lost (ZeroMQ's
    /// "slow joiner"): call [`wait_for_ready`](Self::wait_for_ready) once first.
    pub fn execute(&mut self, code: &str, timeout: Duration) -> Result<ExecuteOutcome, Error> {
        let started = std::time::Instant::now();
        let msg_id = self.send(Channel::Shell, "execute_request", &execute_content(code))?;
        let mut execution = Execution::new(msg_id);
        let mut dropped = Dropped::default();
        while !execution.done() {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            let (shell_ready, iopub_ready) = self.wait_either(left)?;
            if shell_ready {
                if let Some(m) = self.recv_on(&self.shell, "shell", Duration::ZERO, &mut dropped)? {
                    execution.on_shell(m);
                }
            }
            if iopub_ready {
                if let Some(m) = self.recv_on(&self.iopub, "iopub", Duration::ZERO, &mut dropped)? {
                    execution.on_iopub(m);
                }
            }
        }
        execution.finish(dropped, timeout)
    }

    /// Waits until the kernel answers on shell **and** this client's IOPub subscription is live,
    /// the way jupyter_client's `wait_for_ready` does: sends `kernel_info_request`s (again every
    /// 500 ms while IOPub stays silent, since their `status` messages are published on IOPub)
    /// until a reply has come and any valid IOPub message has been received. Returns the
    /// kernel_info reply content.
    pub fn wait_for_ready(&mut self, timeout: Duration) -> Result<Value, Error> {
        let started = std::time::Instant::now();
        let mut readiness = Readiness::default();
        let mut dropped = Dropped::default();
        while !readiness.done() {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            if readiness.wants_nudge() {
                readiness.nudged(self.send(Channel::Shell, "kernel_info_request", &json!({}))?);
            }
            let (shell_ready, iopub_ready) = self.wait_either(left.min(NUDGE))?;
            if shell_ready {
                if let Some(m) = self.recv_on(&self.shell, "shell", Duration::ZERO, &mut dropped)? {
                    readiness.on_shell(m);
                }
            }
            if iopub_ready
                && self
                    .recv_on(&self.iopub, "iopub", Duration::ZERO, &mut dropped)?
                    .is_some()
            {
                readiness.on_iopub();
            }
        }
        readiness.finish(dropped, timeout)
    }

    /// The next valid IOPub message within `timeout`, as `(msg_type, content, parent msg_id)`;
    /// `None` if none came. Invalid messages are skipped.
    pub fn recv_iopub(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(String, Value, Option<String>)>, Error> {
        let started = std::time::Instant::now();
        let mut dropped = Dropped::default();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if let Some(m) = self.recv_on(&self.iopub, "iopub", left, &mut dropped)? {
                return Ok(Some((m.msg_type, m.content, m.parent_msg_id)));
            }
            if left.is_zero() {
                return Ok(None);
            }
        }
    }

    /// Sends a heartbeat and waits up to `timeout` for the echo. `false` if none came; the
    /// heartbeat socket is then replaced, so the next call starts afresh.
    pub fn heartbeat(&mut self, timeout: Duration) -> Result<bool, Error> {
        let ping = b"ping".to_vec();
        send(&self.hb, "heartbeat", vec![ping.clone()])?;
        let started = std::time::Instant::now();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            let mut items = [self.hb.as_poll_item(zmq::POLLIN)];
            poll(&mut items, poll_millis(left), "heartbeat")?;
            if items[0].is_readable() {
                if let Some(frames) = try_recv(&self.hb, "heartbeat")? {
                    return Ok(frames == [ping]);
                }
            }
            if left.is_zero() {
                // A REQ that got no reply cannot send again: start over with a new one.
                let hb = heartbeat(&self.ctx, &self.messenger.connection)?;
                let old = std::mem::replace(&mut self.hb, hb);
                let _ = old.set_linger(0);
                return Ok(false);
            }
        }
    }

    /// Waits up to `wait` for shell or IOPub to be readable.
    fn wait_either(&self, wait: Duration) -> Result<(bool, bool), Error> {
        let mut items = [
            self.shell.as_poll_item(zmq::POLLIN),
            self.iopub.as_poll_item(zmq::POLLIN),
        ];
        poll(&mut items, poll_millis(wait), "shell")?;
        Ok((items[0].is_readable(), items[1].is_readable()))
    }

    /// Receives one message from `socket` within `wait`; `None` if nothing valid came (an invalid
    /// message is counted in `dropped`).
    fn recv_on(
        &self,
        socket: &zmq::Socket,
        name: &'static str,
        wait: Duration,
        dropped: &mut Dropped,
    ) -> Result<Option<Received>, Error> {
        let mut items = [socket.as_poll_item(zmq::POLLIN)];
        poll(&mut items, poll_millis(wait), name)?;
        if !items[0].is_readable() {
            return Ok(None);
        }
        let Some(frames) = try_recv(socket, name)? else {
            return Ok(None);
        };
        Ok(self.messenger.read(name, &frames, dropped))
    }
}
