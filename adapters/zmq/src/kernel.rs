//! What every kernel-side driver shares: [`KernelOptions`], and the engine that does what the
//! core's [`KernelHandshake`] asks (bind the five channels, connect the registration socket, send
//! the request, write the connection file). The blocking and async
//! drivers only differ in how they wait for the reply and the first IOPub subscription.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jupyter_handshake::{
    ConnectionFile, Failure, Instant, KernelAction, KernelConfig, KernelEvent, KernelFile,
    KernelHandshake, KernelInput, KernelPorts, Output, RegistrationSocket, Transport,
};

use crate::clock::Clock;
use crate::error::Error;
use crate::files::{new_session_id, write_private_atomic};
use crate::sockets::{Wrap, bind, configure, connect, send, socket};

/// How long to sleep when the core names no deadline while it is not finished (it always does
/// name one while waiting; this only bounds a wait that should never happen).
const IDLE_TICK: Duration = Duration::from_millis(100);

/// How a kernel-side driver (`start_kernel`) behaves.
#[derive(Clone, Debug)]
pub struct KernelOptions {
    /// How long to wait for the launcher's `handshake_reply` (default 10 s). The JEP says a kernel
    /// without an acknowledgement should shut down: `start_kernel` then fails.
    pub ack_timeout: Duration,
    /// Wait, after registering, until the first IOPub subscription arrives, for at most this
    /// long (ark waits 10 s), so nothing published before the client listens is lost. `None`
    /// (default): do not wait. A subscription consumed while waiting is returned as the started
    /// kernel's `first_subscription`.
    pub wait_for_iopub: Option<Duration>,
    /// Write the kernel's own connection file here once connected (atomically, mode 0600), as
    /// the JEP suggests. Default: none.
    pub write_connection_file: Option<PathBuf>,
    /// The `session` of the handshake's headers; use the same id for the kernel's other messages
    /// (one per process). Default: a fresh random UUID.
    pub session_id: String,
    /// The `username` of the handshake's headers (default `kernel`, as ark).
    pub username: String,
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(10),
            wait_for_iopub: None,
            write_connection_file: None,
            session_id: new_session_id(),
            username: "kernel".into(),
        }
    }
}

/// Reads and classifies the connection or registration file at `path`.
pub(crate) fn read_kernel_file(path: &Path) -> Result<KernelFile, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    KernelFile::from_json(&bytes).map_err(|source| Error::InvalidFile {
        path: path.to_path_buf(),
        source,
    })
}

/// The five bound channels as the engine holds them: IOPub as the driver waits on it (`X`), the
/// others plain.
pub(crate) struct Channels<X> {
    pub(crate) shell: zmq::Socket,
    pub(crate) iopub: X,
    pub(crate) stdin: zmq::Socket,
    pub(crate) control: zmq::Socket,
    pub(crate) hb: zmq::Socket,
}

/// What a finished start hands back.
pub(crate) struct Started<X> {
    pub(crate) channels: Channels<X>,
    pub(crate) connection: ConnectionFile,
    pub(crate) first_subscription: Option<Vec<u8>>,
}

/// The kernel-side engine: everything `start_kernel` does except waiting. A driver calls
/// [`drain`](Start::drain), then loops until [`done`](Start::done): wait for at most
/// [`wait_for`](Start::wait_for) on the registration socket `R` and, while
/// [`watching_iopub`](Start::watching_iopub), on IOPub `X`; hand a reply to
/// [`reply`](Start::reply) and an IOPub frame to [`iopub_frame`](Start::iopub_frame); then
/// [`tick`](Start::tick). Finally [`finish`](Start::finish).
pub(crate) struct Start<'a, R, X> {
    ctx: &'a zmq::Context,
    clock: Clock,
    machine: KernelHandshake,
    options: &'a KernelOptions,
    pub(crate) channels: Option<Channels<X>>,
    pub(crate) req: Option<R>,
    connected: Option<ConnectionFile>,
    failed: Option<Failure>,
    first_subscription: Option<Vec<u8>>,
    observer: &'a mut dyn FnMut(Instant, &KernelEvent),
}

impl<'a, R: Wrap, X: Wrap> Start<'a, R, X> {
    pub(crate) fn new(
        ctx: &'a zmq::Context,
        file: KernelFile,
        options: &'a KernelOptions,
        observer: &'a mut dyn FnMut(Instant, &KernelEvent),
    ) -> Self {
        let config = KernelConfig {
            ack_timeout: options.ack_timeout,
            wait_for_iopub: options.wait_for_iopub,
            session_id: options.session_id.clone(),
            username: options.username.clone(),
            ..KernelConfig::default()
        };
        Self {
            ctx,
            clock: Clock::new(),
            machine: KernelHandshake::new(file, config),
            options,
            channels: None,
            req: None,
            connected: None,
            failed: None,
            first_subscription: None,
            observer,
        }
    }

    /// Whether the start is over (connected or failed).
    pub(crate) fn done(&self) -> bool {
        self.machine.state().is_terminal()
    }

    /// Whether the driver should wait on IOPub for the first subscription.
    pub(crate) fn watching_iopub(&self) -> bool {
        self.options.wait_for_iopub.is_some() && self.first_subscription.is_none() && !self.done()
    }

    /// How long to wait at most before the next [`tick`](Self::tick).
    pub(crate) fn wait_for(&self, deadline: Option<Instant>) -> Duration {
        deadline.map_or(IDLE_TICK, |d| self.clock.until(d))
    }

    /// Feeds a message received on the registration socket to the core. (A REQ delivers one
    /// reply per request: a driver receives once.)
    pub(crate) fn reply(&mut self, frames: &[&[u8]]) -> Result<(), Error> {
        if self.done() {
            return Ok(());
        }
        let now = self.clock.now();
        self.machine
            .handle_input(now, KernelInput::Received(frames))?;
        self.drain()?;
        Ok(())
    }

    /// Feeds a frame received on the IOPub XPUB: `0x01 topic` is a subscription (news for the
    /// core), `0x00 topic` an unsubscription (not).
    pub(crate) fn iopub_frame(&mut self, frame: &[u8]) -> Result<(), Error> {
        let Some((&1, topic)) = frame.split_first() else {
            return Ok(());
        };
        if !self.watching_iopub() {
            return Ok(());
        }
        self.first_subscription = Some(topic.to_vec());
        let now = self.clock.now();
        self.machine
            .handle_input(now, KernelInput::IopubSubscribed)?;
        self.drain()?;
        Ok(())
    }

    /// After each wake-up: reports the deadline (which may have passed); returns the deadline to
    /// wait towards next.
    pub(crate) fn tick(&mut self) -> Result<Option<Instant>, Error> {
        let now = self.clock.now();
        self.machine.handle_input(now, KernelInput::Timeout)?;
        self.drain()
    }

    /// Does everything the machine asks until it is drained; returns its deadline.
    pub(crate) fn drain(&mut self) -> Result<Option<Instant>, Error> {
        loop {
            match self.machine.poll_output() {
                Output::Action(KernelAction::BindChannels {
                    transport,
                    ip,
                    ports,
                }) => {
                    let (channels, bound) = bind_channels(self.ctx, transport, &ip, ports)?;
                    self.channels = Some(channels);
                    let now = self.clock.now();
                    self.machine.handle_input(now, KernelInput::Bound(bound))?;
                }
                Output::Action(KernelAction::ConnectRegistration {
                    endpoint,
                    socket: kind,
                }) => {
                    let kind = match kind {
                        RegistrationSocket::Req => zmq::REQ,
                        RegistrationSocket::Dealer => zmq::DEALER,
                    };
                    let req = socket(self.ctx, kind, "registration")?;
                    connect(&req, "registration", &endpoint)?;
                    self.req = Some(R::wrap(req));
                    let now = self.clock.now();
                    self.machine
                        .handle_input(now, KernelInput::RegistrationConnected)?;
                }
                // A connected REQ or DEALER queues the request at once (libzmq makes the pipe
                // on connect), so a plain send never blocks, for the async driver either.
                Output::Transmit(transmit) => match &self.req {
                    Some(req) => send(req.raw(), "registration", transmit.frames)?,
                    None => {
                        return Err(Error::Internal(
                            "the core sent a message before asking to connect",
                        ));
                    }
                },
                Output::Event(event) => {
                    (self.observer)(self.clock.now(), &event);
                    match event {
                        KernelEvent::Connected(connection) => self.connected = Some(connection),
                        KernelEvent::Failed(failure) => self.failed = Some(failure),
                        _ => {}
                    }
                }
                Output::Timeout(deadline) => return Ok(deadline),
            }
        }
    }

    /// Closes the registration socket and returns the channels and the connection information
    /// (after writing the kernel's own connection file if asked), or the core's reason.
    pub(crate) fn finish(mut self) -> Result<Started<X>, Error> {
        drop(self.req.take());
        if let Some(failure) = self.failed.take() {
            return Err(Error::Handshake(failure));
        }
        let (Some(channels), Some(connection)) = (self.channels.take(), self.connected.take())
        else {
            return Err(Error::Internal(
                "the core reported Connected without bound channels",
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
        Ok(Started {
            channels,
            connection,
            first_subscription: self.first_subscription,
        })
    }
}

/// Binds the five channels (in ark's order: shell, iopub, heartbeat, stdin, control) on `ports`,
/// or on port 0 each when `ports` is `None` (or a port is 0).
fn bind_channels<X: Wrap>(
    ctx: &zmq::Context,
    transport: Transport,
    ip: &str,
    ports: Option<KernelPorts>,
) -> Result<(Channels<X>, KernelPorts), Error> {
    let wanted = ports.unwrap_or_default();
    let shell = socket(ctx, zmq::ROUTER, "shell")?;
    let iopub = socket(ctx, zmq::XPUB, "iopub")?;
    iopub
        .set_xpub_verbose(true)
        .map_err(|source| configure("iopub", source))?;
    let hb = socket(ctx, zmq::REP, "heartbeat")?;
    let stdin = socket(ctx, zmq::ROUTER, "stdin")?;
    let control = socket(ctx, zmq::ROUTER, "control")?;
    let bound = KernelPorts {
        shell: bind(&shell, "shell", transport, ip, wanted.shell)?,
        iopub: bind(&iopub, "iopub", transport, ip, wanted.iopub)?,
        hb: bind(&hb, "heartbeat", transport, ip, wanted.hb)?,
        stdin: bind(&stdin, "stdin", transport, ip, wanted.stdin)?,
        control: bind(&control, "control", transport, ip, wanted.control)?,
    };
    let channels = Channels {
        shell,
        iopub: X::wrap(iopub),
        stdin,
        control,
        hb,
    };
    Ok((channels, bound))
}
