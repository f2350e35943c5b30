//! A small async client for a running kernel: the one [`Client`](crate::client::Client) type,
//! waiting through `async_zmq`; the [blocking client](crate::blocking::Client)'s operations as
//! `async fn`s, with the same sockets, signing, verification and matching, written once in
//! [`crate::client`]. Its futures are `Send`.

use std::time::Duration;

use serde_json::{Value, json};

pub use crate::client::{Channel, ExecuteOutcome};

use super::AsyncSocket;
use crate::client::{Answer, Task};
use crate::error::Error;
use crate::wait::wait;

/// The one [`Client`](crate::client::Client) type, waiting through `async_zmq`.
pub type Client = crate::client::Client<AsyncSocket>;

impl Client {
    /// Sends a request on `channel` and waits up to `timeout` for its reply; see
    /// [`blocking::Client::request`](crate::blocking::Client::request).
    pub async fn request(
        &mut self,
        channel: Channel,
        msg_type: &str,
        content: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let task = self.request_task(channel, msg_type, &content)?;
        self.run(task, timeout).await?.value()
    }

    /// `kernel_info_request` on shell; the reply's content.
    pub async fn kernel_info(&mut self, timeout: Duration) -> Result<Value, Error> {
        self.request(Channel::Shell, "kernel_info_request", json!({}), timeout)
            .await
    }

    /// `shutdown_request` (no restart) on control; the reply's content.
    pub async fn shutdown(&mut self, timeout: Duration) -> Result<Value, Error> {
        let restart = json!({"restart": false});
        self.request(Channel::Control, "shutdown_request", restart, timeout)
            .await
    }

    /// Runs `code`; see [`blocking::Client::execute`](crate::blocking::Client::execute).
    pub async fn execute(
        &mut self,
        code: &str,
        timeout: Duration,
    ) -> Result<ExecuteOutcome, Error> {
        let task = self.execute_task(code)?;
        self.run(task, timeout).await?.executed()
    }

    /// Waits until the kernel answers on shell and IOPub is live; see
    /// [`blocking::Client::wait_for_ready`](crate::blocking::Client::wait_for_ready).
    pub async fn wait_for_ready(&mut self, timeout: Duration) -> Result<Value, Error> {
        self.run(Task::ready(), timeout).await?.value()
    }

    /// The next valid IOPub message within `timeout`; see
    /// [`blocking::Client::recv_iopub`](crate::blocking::Client::recv_iopub).
    pub async fn recv_iopub(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(String, Value, Option<String>)>, Error> {
        self.run(Task::next_iopub(), timeout).await?.iopub()
    }

    /// Sends a heartbeat and waits up to `timeout` for the echo; see
    /// [`blocking::Client::heartbeat`](crate::blocking::Client::heartbeat).
    pub async fn heartbeat(&mut self, timeout: Duration) -> Result<bool, Error> {
        let task = self.heartbeat_task()?;
        self.run(task, timeout).await?.beat()
    }

    async fn run(&mut self, task: Task, timeout: Duration) -> Result<Answer, Error> {
        let mut op = self.op(task, timeout);
        op.start()?;
        wait(&mut op).await?;
        op.finish()
    }
}
