//! A tokio kernel in the shape of evcxr's or Deno's, migrated to the handshake.
//!
//! Before, such a kernel read the connection file and bound its five sockets on the ports the
//! file named — ports the launcher had picked and released, so anything could take them first
//! (`Address already in use`). After, the part between the `migration` markers: the kernel
//! binds on port 0 and registers the ports it got (or, handed a classic connection file, binds
//! its ports as before). The rest is a small real kernel ("language" `text`: executing code
//! echoes it), enough for jupyter_client's `KernelManager`: kernel_info, execute, shutdown,
//! status busy/idle on IOPub, and the heartbeat.
//!
//! Run: `tokio_kernel {connection_file}` (a kernelspec argv).

use std::error::Error;
use std::path::PathBuf;

use jupyter_handshake::Signer;
use jupyter_handshake::message::Header;
use jupyter_handshake::message::Session;
use jupyter_handshake::wire::{self, Limits};
use jupyter_handshake_tokio::zeromq::{self, SocketSend, ZmqMessage};
use jupyter_handshake_tokio::{Clock, Iopub, KernelOptions, frames, message, recv, start_kernel};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let path = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: tokio_kernel CONNECTION_FILE")?,
    );
    // migration: begin — replaces "read the file, bind shell/iopub/stdin/control/hb on its ports"
    let options = KernelOptions::default();
    let started = start_kernel(&path, &options).await?;
    // Fields moved out one by one: `sockets` keeps the rest (over ipc, the socket files).
    let sockets = started.sockets;
    let (shell, iopub, control, mut hb) =
        (sockets.shell, sockets.iopub, sockets.control, sockets.hb);
    let connection = started.connection;
    // migration: end
    let signer = Signer::new(connection.signature_scheme, &connection.key);
    let mut kernel = Kernel {
        session: Session::new(options.session_id, "kernel", signer),
        clock: Clock::new(),
        iopub,
        count: 0,
    };
    tokio::spawn(async move {
        while let Ok(ping) = recv(&mut hb).await {
            if hb.send(ping).await.is_err() {
                break;
            }
        }
    });
    kernel
        .publish(None, "status", json!({"execution_state": "starting"}))
        .await;
    let (mut shell, mut control) = (shell, control);
    loop {
        let (message, on_control) = tokio::select! {
            m = recv(&mut shell) => (m?, false),
            m = recv(&mut control) => (m?, true),
        };
        let socket = if on_control { &mut control } else { &mut shell };
        if kernel.handle(socket, &message).await? {
            return Ok(());
        }
    }
}

struct Kernel {
    session: Session,
    clock: Clock,
    iopub: Iopub,
    count: u64,
}

impl Kernel {
    /// Answers one request; `true` once asked to shut down.
    async fn handle(
        &mut self,
        socket: &mut zeromq::RouterSocket,
        message: &ZmqMessage,
    ) -> Result<bool, Box<dyn Error>> {
        let frames = frames(message);
        // Verified before any JSON is read; anything invalid is dropped.
        let Some(verified) = wire::split(&frames, &Limits::default())
            .ok()
            .and_then(|m| m.verify(self.session.signer()).ok())
        else {
            eprintln!("tokio_kernel: dropped an invalid message");
            return Ok(false);
        };
        let parts = verified.parts();
        let Ok(header) = Header::from_json(parts.header) else {
            return Ok(false);
        };
        let request: Value = serde_json::from_slice(parts.content).unwrap_or(Value::Null);
        let parent = Some(parts.header);
        self.publish(parent, "status", json!({"execution_state": "busy"}))
            .await;
        let (reply_type, reply, shutdown) = match header.msg_type.as_str() {
            "kernel_info_request" => ("kernel_info_reply", kernel_info(), false),
            "execute_request" => {
                let code = request["code"].as_str().unwrap_or_default().to_string();
                self.count += 1;
                let count = self.count;
                self.publish(
                    parent,
                    "execute_input",
                    json!({"code": code, "execution_count": count}),
                )
                .await;
                self.publish(parent, "stream", json!({"name": "stdout", "text": code}))
                    .await;
                (
                    "execute_reply",
                    json!({"status": "ok", "execution_count": count, "user_expressions": {}}),
                    false,
                )
            }
            "shutdown_request" => (
                "shutdown_reply",
                json!({"status": "ok", "restart": request["restart"]}),
                true,
            ),
            other => {
                eprintln!("tokio_kernel: no handler for {other}");
                self.publish(parent, "status", json!({"execution_state": "idle"}))
                    .await;
                return Ok(false);
            }
        };
        let content = serde_json::to_vec(&reply)?;
        let (_, frames) = self.session.message(
            self.clock.now(),
            verified.identities(),
            reply_type,
            parent,
            None,
            &content,
        );
        socket.send(to_message(frames)?).await?;
        self.publish(parent, "status", json!({"execution_state": "idle"}))
            .await;
        Ok(shutdown)
    }

    /// Publishes on IOPub with the topic `kernel.<session>.<msg_type>`, as ipykernel does.
    async fn publish(&mut self, parent: Option<&[u8]>, msg_type: &str, content: Value) {
        let topic = format!("kernel.{}.{msg_type}", self.session.id());
        let content = serde_json::to_vec(&content).unwrap_or_default();
        let (_, frames) = self.session.message(
            self.clock.now(),
            &[topic.as_bytes()],
            msg_type,
            parent,
            None,
            &content,
        );
        if let Ok(message) = to_message(frames) {
            let _ = self.iopub.send(message).await;
        }
    }
}

fn kernel_info() -> Value {
    json!({
        "status": "ok",
        "protocol_version": "5.4",
        "implementation": "tokio_kernel",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "language_info": {"name": "text", "version": "1", "mimetype": "text/plain", "file_extension": ".txt"},
        "banner": "jupyter-handshake-tokio example kernel",
        "help_links": [],
    })
}

fn to_message(frames: Vec<Vec<u8>>) -> Result<ZmqMessage, Box<dyn Error>> {
    Ok(message(frames).ok_or("no frames")?)
}
