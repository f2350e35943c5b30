//! The pure-Rust backend: the `jupyter-handshake-tokio` driver (zeromq, tokio) on a runtime
//! this backend owns, its futures run to completion with `block_on`, and a `select!` serve
//! loop.
//!
//! The runtime has two worker threads, where zeromq's connection tasks and the launcher's
//! receiving task run; the tool's own threads (the `--count` checkers) call `block_on` through
//! its [`Handle`], as the zmq backend's call blocking functions. Whatever owns zeromq sockets
//! or tokio processes is dropped inside the runtime's context.

use std::io::{self, Read};
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use jupyter_handshake::{ConnectionFile, Instant, KernelEvent, LauncherEvent, RegistrarEvent};
use jupyter_handshake_tokio::kernel::read_kernel_file;
use jupyter_handshake_tokio::zeromq::{SocketSend, ZmqMessage};
use jupyter_handshake_tokio::{Error, Iopub, KernelSockets, Launcher, message, recv};
use tokio::runtime::{Handle, Runtime};

use super::{
    KernelOptions, LaunchFailure, LaunchMode, LaunchOptions, Launched, Launches, RequestFailure,
    Started,
};
use crate::CliError;
use crate::serve::{Channel, Flow, Kernel, Outgoing, WATCH_EVERY, log};

/// The longest one send of the kernel may take: a client that stops reading loses its
/// message rather than stopping the kernel (zeromq waits for room, libzmq would drop).
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// How often [`Driver::connect`] looks whether the kernel exited.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// The tokio runtime every socket and process of the tool lives on.
pub(crate) struct Driver {
    runtime: Runtime,
}

impl Driver {
    /// A multi-thread runtime with two workers.
    pub(crate) fn new() -> Result<Self, CliError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| CliError::failed(format!("cannot start the tokio runtime: {e}")))?;
        Ok(Self { runtime })
    }

    /// The same runtime for `--count` (the registration socket is the driver's own router).
    pub(crate) fn for_fleet() -> Result<Self, CliError> {
        Self::new()
    }

    fn handle(&self) -> Handle {
        self.runtime.handle().clone()
    }

    /// Launches one kernel (any mode) and waits until it registered or failed.
    pub(crate) fn launch(
        &self,
        argv: &[String],
        options: &LaunchOptions,
        observer: &mut (dyn FnMut(Instant, &LauncherEvent) + Send),
    ) -> Result<Launched<Child>, LaunchFailure> {
        let outcome = self.runtime.block_on(async {
            if options.mode == LaunchMode::Classic {
                // Nothing is decided in a classic launch, so there are no events to observe.
                let launched = jupyter_handshake_tokio::launch(argv, options).await?;
                return Ok((launched, None));
            }
            let mut launcher = Launcher::bind(options.clone()).await?;
            // The launch's own events, and the shared socket's drops as its rejections.
            let mut single = |at: Instant, event: &RegistrarEvent| match event {
                RegistrarEvent::Launch { event, .. } => observer(at, event),
                RegistrarEvent::Rejected(rejection) => {
                    observer(at, &LauncherEvent::Rejected(rejection.clone()));
                }
                _ => {}
            };
            let mut results = launcher
                .launch_many_observed(&[argv.to_vec()], &mut single)
                .await?;
            let launched = results
                .pop()
                .unwrap_or(Err(Error::Internal("no outcome for the launch")))?;
            Ok((launched, Some(launcher)))
        });
        outcome
            .map(|(l, launcher)| {
                let mut launched = launched(l, self.handle());
                // The registration socket lives as long as the kernel's handle: its reply to
                // the kernel may still be queued when the outcome comes (the driver's router
                // never waits on a send), and closing the socket would drop it.
                launched.child.launcher = launcher;
                launched
            })
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
        let (launcher, results) = self
            .runtime
            .block_on(async {
                let mut launcher = Launcher::bind(options.clone()).await?;
                let results = launcher.launch_many_observed(argvs, observer).await?;
                Ok((launcher, results))
            })
            .map_err(failure)?;
        let results = results
            .into_iter()
            .map(|r| r.map(|l| launched(l, self.handle())).map_err(failure))
            .collect();
        let fleet = Fleet {
            launcher: Some(launcher),
            handle: self.handle(),
        };
        Ok((fleet, results))
    }

    /// A client connected to `connection`'s shell, control and IOPub, unless `child` exits
    /// first. zeromq's `connect` waits for the TCP connection (libzmq's returns at once and
    /// connects in the background), so a kernel that died before binding (a classic launch
    /// whose port was taken) is seen here, within [`EXIT_POLL`], not at zeromq's connect
    /// timeout.
    pub(crate) fn connect(
        &self,
        connection: &ConnectionFile,
        child: &mut Child,
    ) -> Result<Client, String> {
        let handle = self.handle();
        let connected = handle.block_on(async {
            let connect = jupyter_handshake_tokio::Client::connect(connection);
            tokio::pin!(connect);
            loop {
                tokio::select! {
                    client = &mut connect => return client.map_err(|e| e.to_string()),
                    () = tokio::time::sleep(EXIT_POLL) => {
                        if let Ok(Some(_)) = child.inner.child.try_wait() {
                            return Err("the kernel exited before its ports accepted a connection".into());
                        }
                    }
                }
            }
        });
        Ok(Client {
            inner: Some(connected?),
            handle,
        })
    }

    /// The kernel side: reads `file`, binds, registers (or binds a classic file's ports).
    pub(crate) fn start_kernel(
        &self,
        file: &Path,
        options: &KernelOptions,
        observer: &mut (dyn FnMut(Instant, &KernelEvent) + Send),
    ) -> Result<Started<Channels>, String> {
        let file = read_kernel_file(file).map_err(|e| e.to_string())?;
        let started = self
            .runtime
            .block_on(jupyter_handshake_tokio::start_kernel_with(
                file, options, observer,
            ))
            .map_err(|e| e.to_string())?;
        Ok(Started {
            connection: started.connection,
            first_subscription: started.first_subscription,
            channels: Channels {
                sockets: Some(started.sockets),
                handle: self.handle(),
            },
        })
    }

    /// Ends a kernel whose start failed without waiting for anything: the JEP wants a kernel
    /// without an acknowledgement gone at its deadline.
    pub(crate) fn abandon(self) {
        self.runtime.shutdown_background();
    }

    /// Serves `kernel` on `channels` until a `shutdown_request` has been answered (`Ok(true)`)
    /// or `stopped` says to stop (`Ok(false)`; asked at least every [`WATCH_EVERY`]); then
    /// closes the sockets. Every send has completed (its frames written to the peer's
    /// connection) before the next message is handled, so the `shutdown_reply` and the last
    /// `status: idle` have left when this returns.
    pub(crate) fn serve(
        &self,
        mut channels: Channels,
        kernel: &mut Kernel,
        welcome: Option<&[u8]>,
        stopped: &mut dyn FnMut() -> bool,
    ) -> Result<bool, CliError> {
        let Some(mut sockets) = channels.sockets.take() else {
            return Err(CliError::failed("the kernel's sockets are gone"));
        };
        let served = self.runtime.block_on(async {
            if let Some(topic) = welcome {
                send_all(&mut sockets, kernel.welcome(topic)).await;
            }
            kernel.serving();
            serve(&mut sockets, kernel, stopped).await
        });
        let _inside = self.runtime.enter();
        drop(sockets);
        served
    }
}

/// What woke the serve loop.
enum Woke {
    Message(Channel, ZmqMessage),
    Broken(Channel, jupyter_handshake_tokio::zeromq::ZmqError),
    Tick,
}

async fn serve(
    sockets: &mut KernelSockets,
    kernel: &mut Kernel,
    stopped: &mut dyn FnMut() -> bool,
) -> Result<bool, CliError> {
    loop {
        if stopped() {
            return Ok(false);
        }
        let KernelSockets {
            shell,
            iopub,
            stdin,
            control,
            hb,
            ..
        } = &mut *sockets;
        let xpub = match iopub {
            Iopub::XPub(x) => Some(x),
            Iopub::Pub(_) => None,
        };
        let watching_iopub = xpub.is_some();
        let on = |channel: Channel, got: Result<ZmqMessage, _>| match got {
            Ok(m) => Woke::Message(channel, m),
            Err(e) => Woke::Broken(channel, e),
        };
        // Control first: it is the channel that must stay responsive (shutdown, interrupt).
        // zeromq's `recv` on these sockets is cancellation-safe: a branch that loses the race
        // loses no message.
        let woke = tokio::select! {
            biased;
            m = recv(control) => on(Channel::Control, m),
            m = recv(shell) => on(Channel::Shell, m),
            m = recv(stdin) => on(Channel::Stdin, m),
            m = async { match xpub { Some(x) => recv(x).await, None => std::future::pending().await } },
                if watching_iopub => on(Channel::Iopub, m),
            m = recv(hb) => on(Channel::Hb, m),
            () = tokio::time::sleep(WATCH_EVERY) => Woke::Tick,
        };
        match woke {
            Woke::Message(channel, message) => {
                let frames: Vec<&[u8]> = message.iter().map(|b| b.as_ref()).collect();
                let (out, flow) = kernel.receive(channel, &frames);
                send_all(sockets, out).await;
                if flow == Flow::Shutdown {
                    return Ok(true);
                }
            }
            Woke::Broken(channel, e) => {
                return Err(CliError::failed(format!(
                    "receiving on the {channel} socket failed: {e}"
                )));
            }
            Woke::Tick => {}
        }
    }
}

/// Sends each message on its channel, in order. A failed or timed-out send is logged, not
/// fatal: a client that went away must not take the kernel down with it.
async fn send_all(sockets: &mut KernelSockets, out: Vec<Outgoing>) {
    for Outgoing { channel, frames } in out {
        let Some(message) = message(frames) else {
            continue;
        };
        let sent = match channel {
            Channel::Shell => timed(sockets.shell.send(message)).await,
            Channel::Control => timed(sockets.control.send(message)).await,
            Channel::Stdin => timed(sockets.stdin.send(message)).await,
            Channel::Iopub => timed(sockets.iopub.send(message)).await,
            Channel::Hb => timed(sockets.hb.send(message)).await,
        };
        if let Err(why) = sent {
            log(&format!("could not send on {channel}: {why}"));
        }
    }
}

/// A send, bounded by [`SEND_TIMEOUT`], outside tokio's cooperative budget (see the driver's
/// `sockets` module: zeromq holds a lock across its write).
async fn timed(
    send: impl std::future::Future<Output = jupyter_handshake_tokio::zeromq::ZmqResult<()>>,
) -> Result<(), String> {
    match tokio::task::unconstrained(tokio::time::timeout(SEND_TIMEOUT, send)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the peer took no message for {} s",
            SEND_TIMEOUT.as_secs()
        )),
    }
}

/// The five bound channels.
pub(crate) struct Channels {
    sockets: Option<KernelSockets>,
    handle: Handle,
}

impl Drop for Channels {
    fn drop(&mut self) {
        let _inside = self.handle.enter();
        self.sockets = None;
    }
}

/// The registration socket of a `--count` launch.
pub(crate) struct Fleet {
    launcher: Option<Launcher>,
    handle: Handle,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _inside = self.handle.enter();
        self.launcher = None;
    }
}

/// A client for the checks: `kernel_info` and `shutdown`.
pub(crate) struct Client {
    inner: Option<jupyter_handshake_tokio::Client>,
    handle: Handle,
}

impl Client {
    fn run<T>(
        &mut self,
        call: impl AsyncFnOnce(&mut jupyter_handshake_tokio::Client) -> Result<T, Error>,
    ) -> Result<T, RequestFailure> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(RequestFailure::Failed("the client is closed".into()));
        };
        self.handle.block_on(call(inner)).map_err(|e| match e {
            Error::Timeout { .. } => RequestFailure::Timeout(e.to_string()),
            other => RequestFailure::Failed(other.to_string()),
        })
    }

    /// `kernel_info_request` on shell; the reply's content.
    pub(crate) fn kernel_info(
        &mut self,
        timeout: Duration,
    ) -> Result<serde_json::Value, RequestFailure> {
        self.run(async |c| c.kernel_info(timeout).await)
    }

    /// `shutdown_request` on control; the reply's content.
    pub(crate) fn shutdown(
        &mut self,
        timeout: Duration,
    ) -> Result<serde_json::Value, RequestFailure> {
        self.run(async |c| c.shutdown(timeout).await)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _inside = self.handle.enter();
        self.inner = None;
    }
}

/// A kernel process, the leader of its own process group: the driver's launch, whose `stop`
/// and `kill` take the whole group.
#[derive(Debug)]
pub(crate) struct Child {
    inner: jupyter_handshake_tokio::Launched,
    pid: u32,
    /// A single launch's registration socket (see [`Driver::launch`]).
    launcher: Option<Launcher>,
    handle: Handle,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _inside = self.handle.enter();
        self.launcher = None;
    }
}

impl Child {
    /// Its process id.
    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// How it ended, if it has.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let _inside = self.handle.enter();
        self.inner.child.try_wait()
    }

    /// Its stderr, when it was [`ChildStdio::Piped`](super::ChildStdio::Piped), as a blocking
    /// reader.
    pub(crate) fn take_stderr(&mut self) -> Option<Box<dyn Read + Send>> {
        let _inside = self.handle.enter();
        let pipe = self.inner.child.stderr.take()?;
        #[cfg(unix)]
        let file = std::fs::File::from(pipe.into_owned_fd().ok()?);
        #[cfg(windows)]
        let file = std::fs::File::from(pipe.into_owned_handle().ok()?);
        Some(Box::new(file))
    }

    /// Kills its process group at once and reaps it (its file goes too).
    pub(crate) fn kill(&mut self) -> io::Result<ExitStatus> {
        self.handle.block_on(self.inner.kill())
    }

    /// Stops its process group gracefully and reaps it (its file goes too).
    pub(crate) fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.handle.block_on(self.inner.stop(grace))
    }
}

fn launched(l: jupyter_handshake_tokio::Launched, handle: Handle) -> Launched<Child> {
    Launched {
        connection: l.connection.clone(),
        evidence: l.evidence,
        file: l.file.clone(),
        registered_after: l.registered_after,
        launch_id: l.launch_id,
        child: Child {
            pid: l.child.id().unwrap_or(0),
            inner: l,
            launcher: None,
            handle,
        },
    }
}

/// The driver's error as the tool reports it, worded as the zmq backend's (the tool adds
/// "launch failed: ").
fn failure(error: Error) -> LaunchFailure {
    match error {
        Error::Cancelled => LaunchFailure::Cancelled,
        Error::Failed {
            failure,
            last_rejection,
        } => LaunchFailure::Failed(match last_rejection {
            Some(r) => format!("{failure} (last input dropped: {r})"),
            None => failure.to_string(),
        }),
        other => LaunchFailure::Failed(other.to_string()),
    }
}
