//! One kernel and one launcher, both driven from the caller's own loop: the shared part of the
//! `own_loop` and `many_in_one_thread` examples. Nothing here blocks; the caller owns the poll.

use std::error::Error;

use jupyter_handshake::{
    ConnectionFile, Instant, KernelAction, KernelConfig, KernelFile, KernelHandshake, KernelInput,
    KernelPorts, LauncherAction, LauncherConfig, LauncherHandshake, LauncherInput, Output,
};
use jupyter_handshake_zmq::files::random_key;

/// The sockets and machines of one kernel/launcher pair.
pub(crate) struct Pair {
    /// The launcher's machine.
    pub(crate) launcher: LauncherHandshake,
    /// The kernel's machine, once the launcher has handed over the registration file.
    pub(crate) kernel: Option<KernelHandshake>,
    /// The launcher's registration socket (ROUTER).
    pub(crate) router: zmq::Socket,
    /// The kernel's registration socket (REQ), once connected.
    pub(crate) req: Option<zmq::Socket>,
    /// Whether the REQ still awaits its one reply.
    pub(crate) req_waiting: bool,
    /// The kernel's five channels, kept open while the pair lives.
    channels: Vec<zmq::Socket>,
}

fn port_of(socket: &zmq::Socket) -> Result<u16, Box<dyn Error>> {
    let endpoint = socket
        .get_last_endpoint()?
        .map_err(|_| "endpoint is not UTF-8")?;
    let port = endpoint.rsplit(':').next().ok_or("no port")?.parse()?;
    Ok(port)
}

/// One waiting multipart message, or `None` if nothing is waiting (never blocks).
fn frames_of(socket: &zmq::Socket) -> Result<Option<Vec<Vec<u8>>>, zmq::Error> {
    match socket.recv_multipart(zmq::DONTWAIT) {
        Ok(frames) => Ok(Some(frames)),
        Err(zmq::Error::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Pair {
    /// A launcher machine with a fresh key, its registration ROUTER not yet bound.
    pub(crate) fn new(ctx: &zmq::Context) -> Result<Self, Box<dyn Error>> {
        // The session id is derived from the key: unique per launch, as keys are.
        let launcher = LauncherHandshake::new(LauncherConfig::new(random_key())?);
        Ok(Self {
            launcher,
            kernel: None,
            router: ctx.socket(zmq::ROUTER)?,
            req: None,
            req_waiting: false,
            channels: Vec::new(),
        })
    }

    /// Both sides are finished.
    pub(crate) fn done(&self) -> bool {
        self.launcher.state().is_terminal()
            && self
                .kernel
                .as_ref()
                .is_some_and(|k| k.state().is_terminal())
    }

    /// The earliest deadline of both machines.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let kernel = self
            .kernel
            .as_ref()
            .and_then(|k| k.deadline())
            .map(|d| d.at);
        [self.launcher.deadline().map(|d| d.at), kernel]
            .into_iter()
            .flatten()
            .min()
    }

    /// Drains both machines, doing what they ask, until neither has anything queued.
    pub(crate) fn drive(&mut self, ctx: &zmq::Context, now: Instant) -> Result<(), Box<dyn Error>> {
        loop {
            let mut progressed = false;
            loop {
                match self.launcher.poll_output() {
                    Output::Action(LauncherAction::BindRegistration { transport, ip }) => {
                        self.router.bind(&transport.endpoint(&ip, 0))?;
                        let port = port_of(&self.router)?;
                        self.launcher
                            .handle_input(now, LauncherInput::RegistrationBound { port })?;
                    }
                    Output::Action(LauncherAction::WriteRegistrationFile(file)) => {
                        // Instead of writing a file and spawning a process, the "kernel" reads
                        // the very bytes a kernel would read.
                        let file = KernelFile::from_json(&file.to_json_pretty())?;
                        self.kernel = Some(KernelHandshake::new(file, KernelConfig::default()));
                    }
                    Output::Transmit(t) => self.router.send_multipart(t.frames, 0)?,
                    Output::Event(_) => {}
                    Output::Timeout(_) => break,
                }
                progressed = true;
            }
            if let Some(kernel) = self.kernel.as_mut() {
                loop {
                    match kernel.poll_output() {
                        Output::Action(KernelAction::BindChannels {
                            transport,
                            ip,
                            ports: None,
                        }) => {
                            let mut ports = [0u16; 5];
                            let kinds =
                                [zmq::ROUTER, zmq::XPUB, zmq::ROUTER, zmq::ROUTER, zmq::REP];
                            for (port, kind) in ports.iter_mut().zip(kinds) {
                                let socket = ctx.socket(kind)?;
                                socket.bind(&transport.endpoint(&ip, 0))?;
                                *port = port_of(&socket)?;
                                self.channels.push(socket);
                            }
                            let [shell, iopub, stdin, control, hb] = ports;
                            let ports = KernelPorts {
                                shell,
                                iopub,
                                stdin,
                                control,
                                hb,
                            };
                            kernel.handle_input(now, KernelInput::Bound(ports))?;
                        }
                        Output::Action(KernelAction::BindChannels { ports: Some(_), .. }) => {
                            return Err("classic ports are not used here".into());
                        }
                        Output::Action(KernelAction::ConnectRegistration { endpoint, .. }) => {
                            let req = ctx.socket(zmq::REQ)?;
                            req.set_linger(1000)?;
                            req.connect(&endpoint)?;
                            self.req = Some(req);
                            kernel.handle_input(now, KernelInput::RegistrationConnected)?;
                        }
                        Output::Transmit(t) => {
                            // The kernel transmits only after `RegistrationConnected`.
                            let req = self.req.as_ref().ok_or("transmit before connect")?;
                            req.send_multipart(t.frames, 0)?;
                            self.req_waiting = true;
                        }
                        Output::Event(_) => {}
                        Output::Timeout(_) => break,
                    }
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Feeds everything waiting on the registration ROUTER to the launcher.
    pub(crate) fn on_router(
        &mut self,
        ctx: &zmq::Context,
        now: Instant,
    ) -> Result<(), Box<dyn Error>> {
        while let Some(frames) = frames_of(&self.router)? {
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            self.launcher.receive(now, &refs);
            self.drive(ctx, now)?;
        }
        Ok(())
    }

    /// Feeds the reply waiting on the kernel's REQ (a REQ delivers exactly one).
    pub(crate) fn on_req(
        &mut self,
        ctx: &zmq::Context,
        now: Instant,
    ) -> Result<(), Box<dyn Error>> {
        let (Some(req), Some(kernel)) = (&self.req, self.kernel.as_mut()) else {
            return Ok(());
        };
        if let Some(frames) = frames_of(req)? {
            self.req_waiting = false;
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            kernel.receive(now, &refs);
            self.drive(ctx, now)?;
        }
        Ok(())
    }

    /// Tells both machines the time; they act on any deadline that has passed.
    pub(crate) fn on_timeout(
        &mut self,
        ctx: &zmq::Context,
        now: Instant,
    ) -> Result<(), Box<dyn Error>> {
        self.launcher.handle_input(now, LauncherInput::Timeout)?;
        if let Some(kernel) = self.kernel.as_mut() {
            kernel.handle_input(now, KernelInput::Timeout)?;
        }
        self.drive(ctx, now)
    }

    /// Both sides' view of the kernel's connection, once both are connected.
    pub(crate) fn connections(&self) -> (Option<&ConnectionFile>, Option<&ConnectionFile>) {
        (
            self.launcher.connection(),
            self.kernel.as_ref().and_then(KernelHandshake::connection),
        )
    }
}

/// Runs `pairs` to completion from ONE `zmq::poll` loop in this thread: poll every registration
/// socket with the earliest deadline as the timeout, feed what arrived, then the time.
pub(crate) fn run(
    ctx: &zmq::Context,
    pairs: &mut [Pair],
    clock: &jupyter_handshake_zmq::Clock,
) -> Result<(), Box<dyn Error>> {
    for pair in pairs.iter_mut() {
        pair.drive(ctx, clock.now())?;
    }
    while !pairs.iter().all(Pair::done) {
        let deadline = pairs.iter().filter_map(Pair::deadline).min();
        let timeout_ms = deadline.map_or(-1, |d| {
            i64::try_from(clock.until(d).as_millis()).unwrap_or(i64::MAX) + 1
        });
        // Two poll items per pair: its ROUTER, and its REQ while the reply is awaited.
        let mut items = Vec::with_capacity(2 * pairs.len());
        let mut owners = Vec::with_capacity(2 * pairs.len());
        for (i, pair) in pairs.iter().enumerate() {
            items.push(pair.router.as_poll_item(zmq::POLLIN));
            owners.push((i, false));
            if let (Some(req), true) = (&pair.req, pair.req_waiting) {
                items.push(req.as_poll_item(zmq::POLLIN));
                owners.push((i, true));
            }
        }
        zmq::poll(&mut items, timeout_ms)?;
        let ready: Vec<(usize, bool)> = items
            .iter()
            .zip(&owners)
            .filter(|(item, _)| item.is_readable())
            .map(|(_, owner)| *owner)
            .collect();
        drop(items);
        let now = clock.now();
        for (i, is_req) in ready {
            if is_req {
                pairs[i].on_req(ctx, now)?;
            } else {
                pairs[i].on_router(ctx, now)?;
            }
        }
        for pair in pairs.iter_mut() {
            pair.on_timeout(ctx, now)?;
        }
    }
    Ok(())
}
