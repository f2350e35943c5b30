//! A small client for a running kernel, blocking: enough to prove a launch worked. The one
//! [`Client`](crate::client::Client) type, waiting with `zmq::poll`.
//!
//! It connects the way ark's test frontend and jupyter_client do: shell and control DEALERs,
//! a stdin DEALER with the **same** ZeroMQ identity as the shell one (the spec requires it for
//! input requests to reach the right frontend), an IOPub SUB subscribed to everything *before*
//! it connects, and a heartbeat REQ. Messages are signed with the core's
//! [`Session`](jupyter_handshake::message::Session) and read with
//! [`wire::split`](jupyter_handshake::wire::split), verification and the core's header and
//! parent-header parsing; anything that fails any of it is dropped. Replies are matched to
//! requests by `parent_header.msg_id`; other messages are skipped.
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

use serde_json::{Value, json};

pub use crate::client::{Channel, ExecuteOutcome};

use crate::client::{Answer, Task};
use crate::error::Error;
use crate::wait::block;

/// The one [`Client`](crate::client::Client) type, waiting with `zmq::poll`.
pub type Client = crate::client::Client<zmq::Socket>;

impl Client {
    /// Sends a request on `channel` and waits up to `timeout` for the reply whose parent is that
    /// request; returns the reply's content. Other messages on the channel are skipped.
    pub fn request(
        &mut self,
        channel: Channel,
        msg_type: &str,
        content: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let task = self.request_task(channel, msg_type, &content)?;
        self.run(task, timeout)?.value()
    }

    /// `kernel_info_request` on shell; the reply's content.
    pub fn kernel_info(&mut self, timeout: Duration) -> Result<Value, Error> {
        self.request(Channel::Shell, "kernel_info_request", json!({}), timeout)
    }

    /// `shutdown_request` (no restart) on control; the reply's content.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<Value, Error> {
        let restart = json!({"restart": false});
        self.request(Channel::Control, "shutdown_request", restart, timeout)
    }

    /// Runs `code`: sends an `execute_request` on shell, then collects the reply and the IOPub
    /// messages parented to the request until the kernel reports `status: idle` for it. If the
    /// reply came but no idle status did, what was seen is returned when `timeout` runs out;
    /// without a reply, that is an error.
    ///
    /// IOPub messages published before this client's subscription was live are lost (ZeroMQ's
    /// "slow joiner"): call [`wait_for_ready`](Self::wait_for_ready) once first.
    pub fn execute(&mut self, code: &str, timeout: Duration) -> Result<ExecuteOutcome, Error> {
        let task = self.execute_task(code)?;
        self.run(task, timeout)?.executed()
    }

    /// Waits until the kernel answers on shell **and** this client's IOPub subscription is live,
    /// the way jupyter_client's `wait_for_ready` does: sends `kernel_info_request`s (again every
    /// 500 ms while IOPub stays silent, since their `status` messages are published on IOPub)
    /// until a reply has come and any valid IOPub message has been received. Returns the
    /// kernel_info reply content.
    pub fn wait_for_ready(&mut self, timeout: Duration) -> Result<Value, Error> {
        self.run(Task::ready(), timeout)?.value()
    }

    /// The next valid IOPub message within `timeout`, as `(msg_type, content, parent msg_id)`;
    /// `None` if none came. Invalid messages are skipped.
    pub fn recv_iopub(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(String, Value, Option<String>)>, Error> {
        self.run(Task::next_iopub(), timeout)?.iopub()
    }

    /// Sends a heartbeat and waits up to `timeout` for the echo. `false` if none came; the
    /// heartbeat socket is then replaced, so the next call starts afresh.
    pub fn heartbeat(&mut self, timeout: Duration) -> Result<bool, Error> {
        let task = self.heartbeat_task()?;
        self.run(task, timeout)?.beat()
    }

    fn run(&mut self, task: Task, timeout: Duration) -> Result<Answer, Error> {
        let mut op = self.op(task, timeout);
        op.start()?;
        block(&mut op)?;
        op.finish()
    }
}
