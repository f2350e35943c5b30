//! The libzmq backend: the blocking `jupyter-handshake-zmq` driver and a `zmq::poll` serve
//! loop.

use std::io::{self, Read};
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use jupyter_handshake::{ConnectionFile, Instant, KernelEvent, LauncherEvent, RegistrarEvent};
use jupyter_handshake_zmq::LaunchError;
use jupyter_handshake_zmq::blocking::kernel::{KernelSockets, start_kernel};
use jupyter_handshake_zmq::blocking::launcher::{self, Launcher};
use jupyter_handshake_zmq::error::Error;
use jupyter_handshake_zmq::process;

use super::{
    KernelOptions, LaunchFailure, LaunchOptions, Launched, Launches, RequestFailure, Started,
};
use crate::CliError;
use crate::serve::{Channel, Flow, Kernel, WATCH_EVERY, log};

/// Linger on the kernel's exit: long enough for the `shutdown_reply` and the last `status:
/// idle` to leave, short enough that a vanished client never keeps the process alive.
const EXIT_LINGER_MS: i32 = 1000;

/// The I/O threads of `--count`'s context; see the zmq driver's `Launcher` docs on floods.
const REGISTRATION_IO_THREADS: i32 = 2;

/// The libzmq context every socket of the tool lives in.
pub(crate) struct Driver {
    ctx: zmq::Context,
}

impl Driver {
    /// A fresh context.
    pub(crate) fn new() -> Result<Self, CliError> {
        Ok(Self {
            ctx: zmq::Context::new(),
        })
    }

    /// A context for `--count`, with two I/O threads (libzmq's default is one): a flood of the
    /// registration socket keeps one busy, and new connections (the kernels') wait behind it
    /// (README, "Security of the drivers"). Set before the first socket, or it has no effect;
    /// a failure keeps one.
    pub(crate) fn for_fleet() -> Result<Self, CliError> {
        let ctx = zmq::Context::new();
        let _ = ctx.set_io_threads(REGISTRATION_IO_THREADS);
        Ok(Self { ctx })
    }

    /// Launches one kernel (any mode) and waits until it registered or failed.
    pub(crate) fn launch(
        &self,
        argv: &[String],
        options: &LaunchOptions,
        observer: &mut (dyn FnMut(Instant, &LauncherEvent) + Send),
    ) -> Result<Launched<Child>, LaunchFailure> {
        launcher::launch(&self.ctx, argv, options, observer)
            .map(launched)
            .map_err(failure)
    }

    /// Launches every command through one registration socket and waits until each registered
    /// or failed; each outcome at its command's index. Keep the [`Fleet`] (the registration
    /// socket) until the kernels are done with.
    pub(crate) fn launch_many(
        &self,
        argvs: &[Vec<String>],
        options: &LaunchOptions,
        observer: &mut (dyn FnMut(Instant, &RegistrarEvent) + Send),
    ) -> Result<(Fleet, Launches<Child>), LaunchFailure> {
        let mut launcher = Launcher::new(&self.ctx, options).map_err(failure)?;
        let results = launcher.launch_all(argvs, observer).map_err(failure)?;
        let results = results
            .into_iter()
            .map(|r| r.map(launched).map_err(failure))
            .collect();
        Ok((
            Fleet {
                _launcher: launcher,
            },
            results,
        ))
    }

    /// A client connected to `connection`'s shell, control and IOPub (libzmq connects in the
    /// background: a dead `_child` is seen by the checks that follow).
    pub(crate) fn connect(
        &self,
        connection: &ConnectionFile,
        _child: &mut Child,
    ) -> Result<Client, String> {
        jupyter_handshake_zmq::blocking::Client::connect(&self.ctx, connection)
            .map(|inner| Client { inner })
            .map_err(|e| e.to_string())
    }

    /// The kernel side: reads `file`, binds, registers (or binds a classic file's ports).
    pub(crate) fn start_kernel(
        &self,
        file: &Path,
        options: &KernelOptions,
        observer: &mut (dyn FnMut(Instant, &KernelEvent) + Send),
    ) -> Result<Started<Channels>, String> {
        let started =
            start_kernel(&self.ctx, file, options, observer).map_err(|e| e.to_string())?;
        Ok(Started {
            connection: started.connection,
            first_subscription: started.first_subscription,
            channels: Channels {
                sockets: started.sockets,
            },
        })
    }

    /// Ends a kernel whose start failed without waiting for its sockets' linger: terminating
    /// the context would wait for a `handshake_request` nobody took, and the JEP wants a kernel
    /// without an acknowledgement gone at its deadline. The process is about to exit; the OS
    /// reclaims everything.
    pub(crate) fn abandon(self) {
        std::mem::forget(self.ctx);
    }

    /// Serves `kernel` on `channels` until a `shutdown_request` has been answered (`Ok(true)`)
    /// or `stopped` says to stop (`Ok(false)`; asked at least every [`WATCH_EVERY`]); then
    /// closes the sockets, letting what is queued leave within the linger.
    pub(crate) fn serve(
        &self,
        channels: Channels,
        kernel: &mut Kernel,
        welcome: Option<&[u8]>,
        stopped: &mut dyn FnMut() -> bool,
    ) -> Result<bool, CliError> {
        if let Some(topic) = welcome {
            channels.send(kernel.welcome(topic));
        }
        kernel.serving();
        let served = channels.serve(kernel, stopped);
        for socket in channels.all() {
            // Best effort: a socket that refuses the option keeps libzmq's default.
            let _ = socket.set_linger(EXIT_LINGER_MS);
        }
        served
    }
}

/// The registration socket of a `--count` launch, and what it holds (over ipc, its socket
/// file).
pub(crate) struct Fleet {
    _launcher: Launcher,
}

/// The five bound channels (and, over ipc, their socket files, removed with them).
pub(crate) struct Channels {
    sockets: KernelSockets,
}

impl Channels {
    /// In poll order: control first, the channel that must stay responsive (shutdown,
    /// interrupt).
    fn all(&self) -> [&zmq::Socket; 5] {
        let s = &self.sockets;
        [&s.control, &s.shell, &s.stdin, &s.iopub, &s.hb]
    }

    fn serve(
        &self,
        kernel: &mut Kernel,
        stopped: &mut dyn FnMut() -> bool,
    ) -> Result<bool, CliError> {
        const ORDER: [Channel; 5] = [
            Channel::Control,
            Channel::Shell,
            Channel::Stdin,
            Channel::Iopub,
            Channel::Hb,
        ];
        let watch_ms = i64::try_from(WATCH_EVERY.as_millis()).unwrap_or(1000);
        loop {
            if stopped() {
                return Ok(false);
            }
            let mut items = self.all().map(|s| s.as_poll_item(zmq::POLLIN));
            match zmq::poll(&mut items, watch_ms) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => {
                    return Err(CliError::failed(format!(
                        "waiting on the kernel's sockets failed: {e}"
                    )));
                }
            }
            let ready = items.map(|item| item.is_readable());
            for (channel, ready) in ORDER.into_iter().zip(ready) {
                if !ready {
                    continue;
                }
                let Some(frames) = receive(self.socket(channel), channel)? else {
                    continue;
                };
                let (out, flow) = kernel.receive(channel, &frames);
                self.send(out);
                if flow == Flow::Shutdown {
                    return Ok(true);
                }
            }
        }
    }

    fn socket(&self, channel: Channel) -> &zmq::Socket {
        let s = &self.sockets;
        match channel {
            Channel::Shell => &s.shell,
            Channel::Control => &s.control,
            Channel::Stdin => &s.stdin,
            Channel::Iopub => &s.iopub,
            Channel::Hb => &s.hb,
        }
    }

    /// Sends each message on its channel. A failed send is logged, not fatal: a client that
    /// went away must not take the kernel down with it.
    fn send(&self, out: Vec<crate::serve::Outgoing>) {
        for message in out {
            if let Err(e) = self
                .socket(message.channel)
                .send_multipart(message.frames, 0)
            {
                log(&format!("could not send on {}: {e}", message.channel));
            }
        }
    }
}

/// Receives one multipart message without blocking; `None` if there was none after all.
fn receive(socket: &zmq::Socket, channel: Channel) -> Result<Option<Vec<Vec<u8>>>, CliError> {
    match socket.recv_multipart(zmq::DONTWAIT) {
        Ok(frames) => Ok(Some(frames)),
        Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => Ok(None),
        Err(e) => Err(CliError::failed(format!(
            "receiving on the {channel} socket failed: {e}"
        ))),
    }
}

/// A client for the checks: `kernel_info` and `shutdown`.
pub(crate) struct Client {
    inner: jupyter_handshake_zmq::blocking::Client,
}

impl Client {
    /// `kernel_info_request` on shell; the reply's content.
    pub(crate) fn kernel_info(
        &mut self,
        timeout: Duration,
    ) -> Result<serde_json::Value, RequestFailure> {
        self.inner.kernel_info(timeout).map_err(request_failure)
    }

    /// `shutdown_request` on control; the reply's content.
    pub(crate) fn shutdown(
        &mut self,
        timeout: Duration,
    ) -> Result<serde_json::Value, RequestFailure> {
        self.inner.shutdown(timeout).map_err(request_failure)
    }
}

fn request_failure(error: Error) -> RequestFailure {
    match error {
        Error::Timeout { .. } => RequestFailure::Timeout(error.to_string()),
        other => RequestFailure::Failed(other.to_string()),
    }
}

/// A kernel process, the leader of its own process group.
#[derive(Debug)]
pub(crate) struct Child {
    inner: std::process::Child,
}

impl Child {
    /// Its process id.
    pub(crate) fn id(&self) -> u32 {
        self.inner.id()
    }

    /// How it ended, if it has.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.inner.try_wait()
    }

    /// Its stderr, when it was [`ChildStdio::Piped`](super::ChildStdio::Piped).
    pub(crate) fn take_stderr(&mut self) -> Option<Box<dyn Read + Send>> {
        let pipe = self.inner.stderr.take()?;
        Some(Box::new(pipe))
    }

    /// Kills its process group at once and reaps it.
    pub(crate) fn kill(&mut self) -> io::Result<ExitStatus> {
        process::kill(&mut self.inner)
    }

    /// Stops its process group gracefully and reaps it.
    pub(crate) fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        process::stop(&mut self.inner, grace)
    }
}

fn launched(l: launcher::Launched) -> Launched<Child> {
    Launched {
        connection: l.connection,
        evidence: l.evidence,
        child: Child { inner: l.child },
        file: l.file,
        registered_after: l.registered_after,
        launch_id: l.launch_id,
    }
}

fn failure(error: LaunchError) -> LaunchFailure {
    match error {
        LaunchError::Cancelled => LaunchFailure::Cancelled,
        other => LaunchFailure::Failed(other.to_string()),
    }
}
