//! A small async client for a running kernel: the [blocking client](crate::blocking::Client)'s
//! operations as `async fn`s, with the same sockets, signing, verification and matching.

use std::time::Duration;

use futures_util::future::{Either, select};
use jupyter_handshake::ConnectionFile;
use serde_json::{Value, json};

pub use crate::client::{Channel, ExecuteOutcome};

use super::{Dealer, Req, Subscribe, as_slices, recv, within};
use crate::client::{
    ClientSockets, Dropped, Execution, Messenger, NUDGE, Readiness, Received, execute_content,
    heartbeat,
};
use crate::error::Error;
use crate::sockets::{Wrap, send};

/// A connected client of one kernel.
pub struct Client {
    ctx: zmq::Context,
    messenger: Messenger,
    shell: Dealer,
    control: Dealer,
    stdin: Dealer,
    iopub: Subscribe,
    hb: Req,
}

impl Client {
    /// Connects to the kernel described by `connection` (connecting does not wait for the
    /// kernel: use [`wait_for_ready`](Self::wait_for_ready) before relying on IOPub).
    pub fn connect(ctx: &zmq::Context, connection: &ConnectionFile) -> Result<Self, Error> {
        let sockets = ClientSockets::connect(ctx, connection)?;
        Ok(Self {
            ctx: ctx.clone(),
            messenger: Messenger::new(connection),
            shell: Dealer::wrap(sockets.shell),
            control: Dealer::wrap(sockets.control),
            stdin: Dealer::wrap(sockets.stdin),
            iopub: Subscribe::wrap(sockets.iopub),
            hb: Req::wrap(sockets.hb),
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

    fn channel(&mut self, channel: Channel) -> &mut Dealer {
        match channel {
            Channel::Shell => &mut self.shell,
            Channel::Control => &mut self.control,
            Channel::Stdin => &mut self.stdin,
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
        send(self.channel(channel).raw(), channel.as_str(), frames)?;
        Ok(msg_id)
    }

    /// Sends a request on `channel` and waits up to `timeout` for the reply whose parent is that
    /// request; returns the reply's content. Other messages on the channel are skipped.
    pub async fn request(
        &mut self,
        channel: Channel,
        msg_type: &str,
        content: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let started = std::time::Instant::now();
        let msg_id = self.send(channel, msg_type, &content)?;
        let mut dropped = Dropped::default();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(dropped.timeout(format!("reply to {msg_type}"), timeout));
            }
            let socket = match channel {
                Channel::Shell => &mut self.shell,
                Channel::Control => &mut self.control,
                Channel::Stdin => &mut self.stdin,
            };
            let Some(frames) = within(Box::pin(recv(socket, channel.as_str())), left).await else {
                continue;
            };
            if let Some(message) =
                self.messenger
                    .read(channel.as_str(), &as_slices(&frames?), &mut dropped)
            {
                if message.parent_msg_id.as_deref() == Some(msg_id.as_str()) {
                    return Ok(message.content);
                }
            }
        }
    }

    /// `kernel_info_request` on shell; the reply's content.
    pub async fn kernel_info(&mut self, timeout: Duration) -> Result<Value, Error> {
        self.request(Channel::Shell, "kernel_info_request", json!({}), timeout)
            .await
    }

    /// `shutdown_request` (no restart) on control; the reply's content.
    pub async fn shutdown(&mut self, timeout: Duration) -> Result<Value, Error> {
        self.request(
            Channel::Control,
            "shutdown_request",
            json!({"restart": false}),
            timeout,
        )
        .await
    }

    /// Runs `code` and collects the reply and the IOPub messages parented to it until `status:
    /// idle`; as [`blocking::Client::execute`](crate::blocking::Client::execute).
    pub async fn execute(
        &mut self,
        code: &str,
        timeout: Duration,
    ) -> Result<ExecuteOutcome, Error> {
        let started = std::time::Instant::now();
        let msg_id = self.send(Channel::Shell, "execute_request", &execute_content(code))?;
        let mut execution = Execution::new(msg_id);
        let mut dropped = Dropped::default();
        while !execution.done() {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match self.next_shell_or_iopub(left, &mut dropped).await? {
                Some(ShellOrIopub::Shell(m)) => execution.on_shell(m),
                Some(ShellOrIopub::Iopub(m)) => execution.on_iopub(m),
                None => {}
            }
        }
        execution.finish(dropped, timeout)
    }

    /// Waits until the kernel answers on shell **and** this client's IOPub subscription is live;
    /// as [`blocking::Client::wait_for_ready`](crate::blocking::Client::wait_for_ready).
    pub async fn wait_for_ready(&mut self, timeout: Duration) -> Result<Value, Error> {
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
            match self
                .next_shell_or_iopub(left.min(NUDGE), &mut dropped)
                .await?
            {
                Some(ShellOrIopub::Shell(m)) => readiness.on_shell(m),
                Some(ShellOrIopub::Iopub(_)) => readiness.on_iopub(),
                None => {}
            }
        }
        readiness.finish(dropped, timeout)
    }

    /// The next valid IOPub message within `timeout`, as `(msg_type, content, parent msg_id)`;
    /// `None` if none came. Invalid messages are skipped.
    pub async fn recv_iopub(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(String, Value, Option<String>)>, Error> {
        let started = std::time::Instant::now();
        let mut dropped = Dropped::default();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            let Some(frames) = within(Box::pin(recv(&mut self.iopub, "iopub")), left).await else {
                continue;
            };
            if let Some(m) = self
                .messenger
                .read("iopub", &as_slices(&frames?), &mut dropped)
            {
                return Ok(Some((m.msg_type, m.content, m.parent_msg_id)));
            }
        }
    }

    /// Sends a heartbeat and waits up to `timeout` for the echo. `false` if none came; the
    /// heartbeat socket is then replaced, so the next call starts afresh.
    pub async fn heartbeat(&mut self, timeout: Duration) -> Result<bool, Error> {
        let ping = b"ping".to_vec();
        send(self.hb.raw(), "heartbeat", vec![ping.clone()])?;
        match within(Box::pin(recv(&mut self.hb.0, "heartbeat")), timeout).await {
            Some(frames) => {
                let frames = frames?;
                Ok(frames.len() == 1 && *frames[0] == *ping)
            }
            None => {
                // A REQ that got no reply cannot send again: start over with a new one.
                let hb = heartbeat(&self.ctx, &self.messenger.connection)?;
                let old = std::mem::replace(&mut self.hb, Req::wrap(hb));
                let _ = old.raw().set_linger(0);
                Ok(false)
            }
        }
    }

    /// The next valid message on shell or IOPub within `wait` (an invalid one is counted in
    /// `dropped` and gives `None`, as does the wait running out).
    async fn next_shell_or_iopub(
        &mut self,
        wait: Duration,
        dropped: &mut Dropped,
    ) -> Result<Option<ShellOrIopub>, Error> {
        let shell = Box::pin(recv(&mut self.shell, "shell"));
        let iopub = Box::pin(recv(&mut self.iopub, "iopub"));
        let (name, frames, is_shell) = match within(select(shell, iopub), wait).await {
            None => return Ok(None),
            Some(Either::Left((frames, _))) => ("shell", frames?, true),
            Some(Either::Right((frames, _))) => ("iopub", frames?, false),
        };
        Ok(self
            .messenger
            .read(name, &as_slices(&frames), dropped)
            .map(|m| {
                if is_shell {
                    ShellOrIopub::Shell(m)
                } else {
                    ShellOrIopub::Iopub(m)
                }
            }))
    }
}

enum ShellOrIopub {
    Shell(Received),
    Iopub(Received),
}
