//! The kernel side: [`KernelOptions`], the one kernel-side result type ([`StartedKernel`] and
//! its [`KernelSockets`]), and the engine that does what the core's [`KernelHandshake`] asks
//! (bind the five channels, connect the registration socket, send the request, write the
//! connection file). The engine says what it waits on (the registration socket, and IOPub while
//! it waits for the first subscription) and until when; the blocking and async drivers only
//! differ in how they wait.

use std::path::Path;
use std::time::Duration;

use jupyter_handshake::{
    ConnectionFile, Instant, KernelAction, KernelConfig, KernelEvent, KernelFile, KernelHandshake,
    KernelInput, KernelPorts, KernelState, Output, RegistrationSocket, Transport,
};

use crate::clock::Clock;
use crate::error::Error;
use crate::files::{FileReadError, Links, read_handshake_file, write_private_atomic};
use crate::sockets::{IpcFile, Wrap, bind, configure, connect, ipc_file, send, socket};
use crate::wait::{Engine, Interest, Watch};

/// How long to sleep when the core names no deadline while it is not finished (it always does
/// name one while waiting; this only bounds a wait that should never happen).
const IDLE_TICK: Duration = Duration::from_millis(100);

pub use jupyter_handshake_host::options::KernelOptions;

/// Reads and classifies the connection or registration file at `path`: at most
/// [`MAX_HANDSHAKE_FILE_LEN`](crate::files::MAX_HANDSHAKE_FILE_LEN) bytes of a regular file,
/// never blocking (a link a user handed over is followed).
pub(crate) fn read_kernel_file(path: &Path) -> Result<KernelFile, Error> {
    let bytes = read_handshake_file(path, Links::Follow).map_err(|error| Error::ReadFile {
        path: path.to_path_buf(),
        source: match error {
            FileReadError::Io(source) => source,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        },
    })?;
    KernelFile::from_json(&bytes).map_err(|source| Error::InvalidFile {
        path: path.to_path_buf(),
        source,
    })
}

/// A kernel's five bound channels: `zmq::Socket`s from the blocking driver
/// ([`blocking::KernelSockets`](crate::blocking::KernelSockets)), `async_zmq` sockets from the
/// async one (which receive with `StreamExt::next`, send with `SinkExt::send`, and give the
/// socket itself with `as_raw_socket()`).
pub struct KernelSockets<S = zmq::Socket> {
    /// Shell: ROUTER.
    pub shell: S,
    /// IOPub: XPUB with `ZMQ_XPUB_VERBOSE` set, so every subscription frame is delivered (send
    /// `iopub_welcome` on each first subscription).
    pub iopub: S,
    /// Stdin: ROUTER.
    pub stdin: S,
    /// Control: ROUTER.
    pub control: S,
    /// Heartbeat: REP (echo every message back).
    pub hb: S,
    /// Over ipc, the five socket files, removed when these sockets are dropped.
    _ipc_files: Vec<IpcFile>,
}

/// A kernel whose channels are bound and registered: what `start_kernel` (blocking or async)
/// returns.
pub struct StartedKernel<S = zmq::Socket> {
    /// The five bound sockets.
    pub sockets: KernelSockets<S>,
    /// The connection information clients use (the ports actually bound).
    pub connection: ConnectionFile,
    /// The topic of the IOPub subscription consumed while waiting for the first subscription
    /// ([`KernelOptions::wait_for_iopub`]); `None` when not waiting. The kernel should treat it
    /// as a first subscription (send `iopub_welcome` to that topic).
    pub first_subscription: Option<Vec<u8>>,
}

/// Socket tags of the kernel side's engine.
const REGISTRATION: usize = 0;
const IOPUB: usize = 1;

/// The kernel-side engine: everything `start_kernel` does except waiting, driven through
/// [`Engine`]. A driver creates it, calls [`drain`](Start::drain), waits until it is done, then
/// calls [`finish`](Start::finish).
pub(crate) struct Start<'a, S, O: ?Sized> {
    ctx: &'a zmq::Context,
    clock: Clock,
    machine: KernelHandshake,
    options: &'a KernelOptions,
    channels: Option<KernelSockets<S>>,
    req: Option<S>,
    /// Whether the registration socket can still receive: a REQ gets one reply to its one
    /// request, and then cannot receive again.
    req_open: bool,
    req_is_req: bool,
    first_subscription: Option<Vec<u8>>,
    observer: &'a mut O,
}

impl<'a, S: Wrap, O> Start<'a, S, O>
where
    O: FnMut(Instant, &KernelEvent) + ?Sized,
{
    pub(crate) fn new(
        ctx: &'a zmq::Context,
        file: KernelFile,
        options: &'a KernelOptions,
        observer: &'a mut O,
    ) -> Self {
        let config = KernelConfig {
            ack_timeout: options.ack_timeout,
            wait_for_iopub: options.wait_for_iopub,
            session_id: Some(options.session_id.clone()),
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
            req_open: false,
            req_is_req: false,
            first_subscription: None,
            observer,
        }
    }

    /// Whether the driver should wait on IOPub for the first subscription.
    fn watching_iopub(&self) -> bool {
        self.options.wait_for_iopub.is_some() && self.first_subscription.is_none() && !self.done()
    }

    /// Feeds a frame received on the IOPub XPUB: `0x01 topic` is a subscription (news for the
    /// core), `0x00 topic` an unsubscription (not).
    fn iopub_frame(&mut self, frame: &[u8]) -> Result<(), Error> {
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
        self.drain()
    }

    /// Does everything the machine asks until it is drained.
    pub(crate) fn drain(&mut self) -> Result<(), Error> {
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
                    self.req_is_req = kind == zmq::REQ;
                    let req = socket(self.ctx, kind, "registration")?;
                    connect(&req, "registration", &endpoint)?;
                    self.req = Some(S::wrap(req));
                    self.req_open = true;
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
                Output::Event(event) => (self.observer)(self.clock.now(), &event),
                Output::Timeout(_) => return Ok(()),
            }
        }
    }

    /// Closes the registration socket and returns the channels and the connection information
    /// (after writing the kernel's own connection file if asked), or the core's reason.
    pub(crate) fn finish(mut self) -> Result<StartedKernel<S>, Error> {
        drop(self.req.take());
        if let Some(failure) = self.machine.failure() {
            return Err(Error::Handshake(failure.clone()));
        }
        let (Some(channels), Some(connection), KernelState::Connected) = (
            self.channels.take(),
            self.machine.connection().cloned(),
            self.machine.state(),
        ) else {
            return Err(Error::Internal(
                "the start ended without bound channels and a connection",
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
            sockets: channels,
            connection,
            first_subscription: self.first_subscription,
        })
    }
}

impl<S: Wrap, O> Engine for Start<'_, S, O>
where
    O: FnMut(Instant, &KernelEvent) + ?Sized,
{
    type Socket = S;
    type Error = Error;

    fn done(&self) -> bool {
        self.machine.state().is_terminal()
    }

    /// The registration socket for the reply and, while waiting for the first subscription,
    /// IOPub; until the core's deadline.
    fn interest(&mut self) -> Interest<'_, S> {
        let timeout = self
            .machine
            .deadline()
            .map(|d| d.at)
            .map_or(IDLE_TICK, |d| self.clock.until(d));
        let watch_iopub = self.watching_iopub();
        let mut sockets = Vec::with_capacity(2);
        if let (true, Some(req)) = (self.req_open, self.req.as_mut()) {
            sockets.push(Watch {
                tag: REGISTRATION,
                name: "registration",
                socket: req,
            });
        }
        if let (true, Some(channels)) = (watch_iopub, self.channels.as_mut()) {
            sockets.push(Watch {
                tag: IOPUB,
                name: "iopub",
                socket: &mut channels.iopub,
            });
        }
        Interest { sockets, timeout }
    }

    fn socket(&self, tag: usize) -> Option<(&'static str, &S)> {
        match tag {
            REGISTRATION if self.req_open => self.req.as_ref().map(|req| ("registration", req)),
            IOPUB if self.watching_iopub() => self.channels.as_ref().map(|c| ("iopub", &c.iopub)),
            _ => None,
        }
    }

    /// A reply on the registration socket goes to the core; a frame on IOPub may be the first
    /// subscription. Nothing is fed once the start is over.
    fn received<F: AsRef<[u8]>>(&mut self, tag: usize, frames: &[F]) -> Result<(), Error> {
        if self.done() {
            return Ok(());
        }
        if tag == IOPUB {
            // An XPUB delivers a subscription as one frame; joined anyway.
            let joined: Vec<u8> = frames
                .iter()
                .flat_map(|f| f.as_ref().iter().copied())
                .collect();
            return self.iopub_frame(&joined);
        }
        // A REQ gets one reply per request (the kernel sends one); a DEALER may get more.
        self.req_open = !self.req_is_req;
        let now = self.clock.now();
        self.machine.receive(now, frames);
        self.drain()
    }

    /// Reports the time (the deadline may have passed).
    fn woke(&mut self) -> Result<(), Error> {
        let now = self.clock.now();
        self.machine.handle_input(now, KernelInput::Timeout)?;
        self.drain()
    }
}

/// Binds the five channels (in ark's order: shell, iopub, heartbeat, stdin, control) on `ports`,
/// or on port 0 each when `ports` is `None` (or a port is 0).
fn bind_channels<S: Wrap>(
    ctx: &zmq::Context,
    transport: Transport,
    ip: &str,
    ports: Option<KernelPorts>,
) -> Result<(KernelSockets<S>, KernelPorts), Error> {
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
    let ipc_files = [
        bound.shell,
        bound.iopub,
        bound.hb,
        bound.stdin,
        bound.control,
    ]
    .into_iter()
    .filter_map(|port| ipc_file(transport, ip, port))
    .collect();
    let channels = KernelSockets {
        _ipc_files: ipc_files,
        shell: S::wrap(shell),
        iopub: S::wrap(iopub),
        stdin: S::wrap(stdin),
        control: S::wrap(control),
        hb: S::wrap(hb),
    };
    Ok((channels, bound))
}
