//! The kernel side: bind the five channels on port 0, register them with the launcher, and hand
//! back the bound `zeromq` sockets.
//!
//! [`start_kernel`] does what the core's [`KernelHandshake`] asks, nothing else: it binds shell,
//! stdin and control (ROUTER), IOPub (PUB, or XPUB with [`KernelOptions::wait_for_iopub`]) and
//! heartbeat (REP) on port 0, reads the real ports back from the bound endpoints, connects the
//! registration socket the core names (REQ for the Posit dialect, DEALER for the upstream one),
//! sends the core's request, and feeds every reply to the core until it says `Connected` or
//! `Failed`, sleeping until the core's deadline in between. A classic connection file binds
//! its five ports instead, and needs no handshake.
//!
//! **IOPub and XPUB.** zeromq 0.6 has an XPUB, so the subscription gate works: with
//! `wait_for_iopub` the kernel stays `Registered` until the first subscription. But zeromq's
//! XPUB only learns subscriptions inside `recv`: a kernel given [`Iopub::XPub`] must keep
//! receiving on it (a task that loops on `recv`), or what it publishes reaches nobody. Without
//! the option you get a plain [`Iopub::Pub`], as evcxr and Deno's kernel use.
//!
//! **Cancellation.** [`start_kernel`] is not cancellation-safe: dropping it midway drops the
//! sockets bound so far (nothing leaks; the launcher times out). It never needs `select!`: it
//! ends by itself at the core's deadline.

use std::path::Path;
use std::time::Duration;

use jupyter_handshake::{
    ConnectionFile, Failure, Instant, KernelAction, KernelConfig, KernelEvent, KernelFile,
    KernelHandshake, KernelInput, KernelPorts, Output, RegistrationSocket, Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::{
    DealerSocket, PubSocket, RepSocket, ReqSocket, RouterSocket, Socket, SocketOptions, XPubSocket,
    ZmqMessage,
};

use crate::clock::Clock;
use crate::error::Error;
use crate::files::{Links, read_handshake_file, write_private_atomic};
use crate::sockets::{bind, connect, frames, recv, send};

/// How long to sleep when the core names no deadline (it always does while waiting; this only
/// bounds a wait that should not happen).
const IDLE: Duration = Duration::from_millis(100);

pub use jupyter_handshake_host::options::KernelOptions;

/// The IOPub socket: a PUB, or an XPUB when the start waited for the first subscription.
pub enum Iopub {
    /// A plain publisher.
    Pub(PubSocket),
    /// A publisher that sees subscriptions; keep calling `recv` on it (see the
    /// [module docs](self)).
    XPub(XPubSocket),
}

impl Iopub {
    /// Publishes one message.
    pub async fn send(&mut self, message: ZmqMessage) -> zeromq::ZmqResult<()> {
        use zeromq::SocketSend;
        match self {
            Self::Pub(s) => s.send(message).await,
            Self::XPub(s) => s.send(message).await,
        }
    }
}

impl std::fmt::Debug for Iopub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pub(_) => "Iopub::Pub",
            Self::XPub(_) => "Iopub::XPub",
        })
    }
}

/// The five bound channels.
pub struct KernelSockets {
    /// Shell (ROUTER).
    pub shell: RouterSocket,
    /// IOPub (PUB or XPUB).
    pub iopub: Iopub,
    /// Stdin (ROUTER).
    pub stdin: RouterSocket,
    /// Control (ROUTER).
    pub control: RouterSocket,
    /// Heartbeat (REP): echo what it receives.
    pub hb: RepSocket,
}

impl std::fmt::Debug for KernelSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelSockets")
            .field("iopub", &self.iopub)
            .finish_non_exhaustive()
    }
}

/// A kernel whose channels are bound and known to the launcher.
#[derive(Debug)]
pub struct StartedKernel {
    /// The bound channels.
    pub sockets: KernelSockets,
    /// The kernel's connection information (its `Debug` hides the key).
    pub connection: ConnectionFile,
    /// The topic of the first IOPub subscription, when the start waited for it.
    pub first_subscription: Option<Vec<u8>>,
}

/// Reads the connection or registration file at `path` (at most 64 KiB) and starts the kernel
/// with it: see [`start_kernel_with`].
pub async fn start_kernel(path: &Path, options: &KernelOptions) -> Result<StartedKernel, Error> {
    let file = read_kernel_file(path)?;
    start_kernel_with(file, options, &mut |_, _| {}).await
}

/// Reads and classifies a kernel's file, through
/// [`read_handshake_file`]: never blocking, regular files
/// only, at most 64 KiB (a link is followed: a user may hand one over).
pub fn read_kernel_file(path: &Path) -> Result<KernelFile, Error> {
    let bytes = read_handshake_file(path, Links::Follow).map_err(|error| Error::ReadFile {
        path: path.to_path_buf(),
        source: match error {
            crate::files::FileReadError::Io(e) => e,
            other => std::io::Error::other(other),
        },
    })?;
    KernelFile::from_json(&bytes).map_err(|source| Error::InvalidFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Starts a kernel from an already read `file`, telling `observer` every event of the core.
///
/// A registration file: bind on port 0, register, wait for the reply (and the first
/// subscription, if asked). A classic connection file: bind its ports. Fails with
/// [`Error::Handshake`] when the core gives up (no reply in time, refused).
pub async fn start_kernel_with(
    file: KernelFile,
    options: &KernelOptions,
    observer: &mut (dyn FnMut(Instant, &KernelEvent) + Send),
) -> Result<StartedKernel, Error> {
    let config = KernelConfig {
        ack_timeout: options.ack_timeout,
        wait_for_iopub: options.wait_for_iopub,
        session_id: Some(options.session_id.clone()),
        username: options.username.clone(),
        ..KernelConfig::default()
    };
    let mut start = Start {
        clock: Clock::new(),
        machine: KernelHandshake::new(file, config),
        options,
        channels: None,
        registration: None,
        replies: None,
        connected: None,
        failed: None,
        first_subscription: None,
        observer,
    };
    let outcome = start.run().await;
    if let Some(task) = start.registration.take() {
        task.abort();
    }
    outcome?;
    start.finish()
}

/// The registration socket the core asked for.
enum Registration {
    Req(ReqSocket),
    Dealer(DealerSocket),
}

impl Registration {
    async fn recv(&mut self) -> zeromq::ZmqResult<ZmqMessage> {
        match self {
            Self::Req(s) => recv(s).await,
            Self::Dealer(s) => recv(s).await,
        }
    }
}

struct Start<'a> {
    clock: Clock,
    machine: KernelHandshake,
    options: &'a KernelOptions,
    channels: Option<KernelSockets>,
    /// The task receiving on the registration socket (it owns the socket once the request is
    /// sent: a REQ's `recv` must not be cancelled, and a task never is).
    registration: Option<JoinHandle<()>>,
    replies: Option<mpsc::Receiver<ZmqMessage>>,
    connected: Option<ConnectionFile>,
    failed: Option<Failure>,
    first_subscription: Option<Vec<u8>>,
    observer: &'a mut (dyn FnMut(Instant, &KernelEvent) + Send),
}

impl Start<'_> {
    async fn run(&mut self) -> Result<(), Error> {
        let mut deadline = self.drain().await?;
        while !self.machine.state().is_terminal() {
            let sleep = deadline.map_or(IDLE, |d| self.clock.until(d));
            let watch_iopub =
                self.options.wait_for_iopub.is_some() && self.first_subscription.is_none();
            let xpub = match &mut self.channels {
                Some(KernelSockets {
                    iopub: Iopub::XPub(x),
                    ..
                }) if watch_iopub => Some(x),
                _ => None,
            };
            let watching = xpub.is_some();
            let has_replies = self.replies.is_some();
            let replies = self.replies.as_mut();
            let woke = tokio::select! {
                reply = async { replies?.recv().await }, if has_replies => Woke::Reply(reply),
                frame = async { recv(xpub?).await.ok() }, if watching => Woke::Iopub(frame),
                () = tokio::time::sleep(sleep) => Woke::Time,
            };
            match woke {
                Woke::Reply(Some(message)) => {
                    let now = self.clock.now();
                    self.machine.receive(now, &frames(&message));
                }
                // The socket is done (a REQ after its one reply) or broken: only the deadline
                // can end the wait now.
                Woke::Reply(None) => self.replies = None,
                Woke::Iopub(frame) => {
                    // `0x01 topic` is a subscription; `0x00 topic` (unsubscribe) is no news.
                    let topic = frame
                        .as_ref()
                        .and_then(|m| m.get(0))
                        .and_then(|f| f.strip_prefix(&[1u8][..]));
                    if let Some(topic) = topic {
                        self.first_subscription = Some(topic.to_vec());
                        let now = self.clock.now();
                        self.machine
                            .handle_input(now, KernelInput::IopubSubscribed)?;
                    }
                }
                Woke::Time => {}
            }
            let now = self.clock.now();
            self.machine.handle_input(now, KernelInput::Timeout)?;
            deadline = self.drain().await?;
        }
        Ok(())
    }

    /// Does everything the machine asks until it is drained; returns its deadline.
    async fn drain(&mut self) -> Result<Option<Instant>, Error> {
        let mut pending: Option<Registration> = None;
        loop {
            match self.machine.poll_output() {
                Output::Action(KernelAction::BindChannels {
                    transport,
                    ip,
                    ports,
                }) => {
                    let (channels, bound) =
                        bind_channels(transport, &ip, ports, self.options.wait_for_iopub.is_some())
                            .await?;
                    self.channels = Some(channels);
                    let now = self.clock.now();
                    self.machine.handle_input(now, KernelInput::Bound(bound))?;
                }
                Output::Action(KernelAction::ConnectRegistration { endpoint, socket }) => {
                    let mut options = SocketOptions::default();
                    options.connect_timeout(self.options.ack_timeout);
                    let mut registration = match socket {
                        RegistrationSocket::Req => {
                            Registration::Req(ReqSocket::with_options(options))
                        }
                        RegistrationSocket::Dealer => {
                            Registration::Dealer(DealerSocket::with_options(options))
                        }
                    };
                    match &mut registration {
                        Registration::Req(s) => connect(s, "registration", &endpoint).await?,
                        Registration::Dealer(s) => connect(s, "registration", &endpoint).await?,
                    }
                    pending = Some(registration);
                    let now = self.clock.now();
                    self.machine
                        .handle_input(now, KernelInput::RegistrationConnected)?;
                }
                Output::Transmit(transmit) => {
                    let Some(mut registration) = pending.take() else {
                        return Err(Error::Internal(
                            "the core sent a second request, or one before connecting",
                        ));
                    };
                    // A failed send leaves the core waiting for a reply that cannot come: its
                    // deadline ends the start.
                    let _sent = match &mut registration {
                        Registration::Req(s) => send(s, transmit.frames).await,
                        Registration::Dealer(s) => send(s, transmit.frames).await,
                    };
                    let (tx, rx) = mpsc::channel(16);
                    self.replies = Some(rx);
                    self.registration = Some(tokio::spawn(async move {
                        while let Ok(message) = registration.recv().await {
                            if tx.send(message).await.is_err() {
                                break;
                            }
                        }
                    }));
                }
                Output::Event(event) => {
                    (self.observer)(self.clock.now(), &event);
                    match event {
                        KernelEvent::Connected(connection) => self.connected = Some(connection),
                        KernelEvent::Failed(failure) => self.failed = Some(failure),
                        _ => {}
                    }
                }
                Output::Timeout(next) => return Ok(next.at()),
            }
        }
    }

    fn finish(mut self) -> Result<StartedKernel, Error> {
        if let Some(failure) = self.failed.take() {
            return Err(Error::Handshake(failure));
        }
        let (Some(sockets), Some(connection)) = (self.channels.take(), self.connected.take())
        else {
            return Err(Error::Internal(
                "the core said Connected without bound channels",
            ));
        };
        if let Some(path) = &self.options.write_connection_file {
            write_private_atomic(path, &connection.to_json_pretty()).map_err(|source| {
                Error::WriteFile {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        Ok(StartedKernel {
            sockets,
            connection,
            first_subscription: self.first_subscription,
        })
    }
}

/// What ended one wait.
enum Woke {
    Reply(Option<ZmqMessage>),
    Iopub(Option<ZmqMessage>),
    Time,
}

/// Binds the five channels (shell, iopub, heartbeat, stdin, control, as ark does) on `ports`, or
/// on port 0 each.
async fn bind_channels(
    transport: Transport,
    ip: &str,
    ports: Option<KernelPorts>,
    xpub: bool,
) -> Result<(KernelSockets, KernelPorts), Error> {
    let wanted = ports.unwrap_or_default();
    let mut shell = RouterSocket::new();
    let shell_port = bind(&mut shell, "shell", transport, ip, wanted.shell).await?;
    let (iopub, iopub_port) = if xpub {
        let mut s = XPubSocket::new();
        let port = bind(&mut s, "iopub", transport, ip, wanted.iopub).await?;
        (Iopub::XPub(s), port)
    } else {
        let mut s = PubSocket::new();
        let port = bind(&mut s, "iopub", transport, ip, wanted.iopub).await?;
        (Iopub::Pub(s), port)
    };
    let mut hb = RepSocket::new();
    let hb_port = bind(&mut hb, "heartbeat", transport, ip, wanted.hb).await?;
    let mut stdin = RouterSocket::new();
    let stdin_port = bind(&mut stdin, "stdin", transport, ip, wanted.stdin).await?;
    let mut control = RouterSocket::new();
    let control_port = bind(&mut control, "control", transport, ip, wanted.control).await?;
    let bound = KernelPorts {
        shell: shell_port,
        iopub: iopub_port,
        stdin: stdin_port,
        control: control_port,
        hb: hb_port,
    };
    Ok((
        KernelSockets {
            shell,
            iopub,
            stdin,
            control,
            hb,
        },
        bound,
    ))
}
