//! Helpers shared by the machine tests: draining outputs and a quinn-style in-memory pair.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::time::Duration;

use jupyter_handshake::message::Session;
use jupyter_handshake::*;

pub const T0: u64 = 1_700_000_000_000_000;
pub const KEY: &str = "0123456789abcdef0123456789abcdef";
pub const REG_PORT: u16 = 5555;
pub const PORTS: KernelPorts = KernelPorts {
    shell: 40001,
    iopub: 40002,
    stdin: 40003,
    control: 40004,
    hb: 40005,
};

pub fn at(ms: u64) -> Instant {
    Instant::from_micros(T0 + ms * 1000)
}

/// Everything a drain produced.
#[derive(Debug, Default)]
pub struct Drained<A, E> {
    pub transmits: Vec<Vec<Vec<u8>>>,
    pub actions: Vec<A>,
    pub events: Vec<E>,
    pub timeout: Option<Instant>,
    pub next: Option<Next>,
}

/// Pulls outputs until `Timeout`, sorting them by kind.
pub fn drain<A, E>(mut poll: impl FnMut() -> Output<A, E>) -> Drained<A, E> {
    let mut d = Drained {
        transmits: vec![],
        actions: vec![],
        events: vec![],
        timeout: None,
        next: None,
    };
    loop {
        match poll() {
            Output::Transmit(t) => d.transmits.push(t.frames),
            Output::Action(a) => d.actions.push(a),
            Output::Event(e) => d.events.push(e),
            Output::Timeout(t) => {
                d.timeout = t.at();
                d.next = Some(t);
                return d;
            }
        }
    }
}

pub fn drain_kernel(k: &mut KernelHandshake) -> Drained<KernelAction, KernelEvent> {
    drain(|| k.poll_output())
}

pub fn drain_launcher(l: &mut LauncherHandshake) -> Drained<LauncherAction, LauncherEvent> {
    drain(|| l.poll_output())
}

pub fn refs(frames: &[Vec<u8>]) -> Vec<&[u8]> {
    frames.iter().map(Vec::as_slice).collect()
}

/// A Posit launcher with `key`, or an explicitly unsigned one for `""`.
pub fn launcher_config(key: &str) -> LauncherConfig {
    let mut config = if key.is_empty() {
        LauncherConfig::unsigned()
    } else {
        LauncherConfig::new(Key::new(key)).unwrap()
    };
    config.session_id = Some("launcher-session".into());
    config
}

/// An upstream launcher with `key`, naming the kernel `kernel_id`.
pub fn upstream_config(key: &str, kernel_id: &str) -> LauncherConfig {
    let mut config = LauncherConfig::upstream(Key::new(key), kernel_id).unwrap();
    config.session_id = Some("launcher-session".into());
    config
}

/// The instant a machine's deadline passes at, if any.
pub fn deadline_at(deadline: Option<Deadline>) -> Option<Instant> {
    deadline.map(|d| d.at)
}

/// A launcher in `Bound`, and the registration file it handed out.
pub fn bound_launcher(config: LauncherConfig) -> (LauncherHandshake, RegistrationFile) {
    let mut l = LauncherHandshake::new(config);
    let d = drain_launcher(&mut l);
    assert!(matches!(
        d.actions[..],
        [LauncherAction::BindRegistration { .. }]
    ));
    l.handle_input(at(0), LauncherInput::RegistrationBound { port: REG_PORT })
        .unwrap();
    let d = drain_launcher(&mut l);
    let file = d
        .actions
        .into_iter()
        .find_map(|a| match a {
            LauncherAction::WriteRegistrationFile(f) => Some(f),
            _ => None,
        })
        .unwrap();
    (l, file)
}

/// A kernel in `AwaitingReply`, and the request frames it sent.
pub fn awaiting_kernel(
    file: RegistrationFile,
    config: KernelConfig,
    now: Instant,
) -> (KernelHandshake, Vec<Vec<u8>>) {
    let mut k = KernelHandshake::new(KernelFile::Registration(file), config);
    drain_kernel(&mut k);
    k.handle_input(now, KernelInput::Bound(PORTS)).unwrap();
    drain_kernel(&mut k);
    k.handle_input(now, KernelInput::RegistrationConnected)
        .unwrap();
    let d = drain_kernel(&mut k);
    assert_eq!(k.state(), KernelState::AwaitingReply);
    let request = d.transmits.into_iter().next().unwrap();
    (k, request)
}

/// Builds a message signed with `key` (or unsigned with ""), through core's own Session.
pub fn message(
    key: &str,
    msg_type: &str,
    parent: Option<&[u8]>,
    content: &[u8],
    identities: &[&[u8]],
) -> Vec<Vec<u8>> {
    let mut session = Session::new(
        "someone",
        "someone",
        Signer::new(SignatureScheme::HmacSha256, &Key::new(key)),
    );
    session
        .message(at(0), identities, msg_type, parent, None, content)
        .1
}

/// The header frame of a message with no identities.
pub fn header_of(frames: &[Vec<u8>]) -> Vec<u8> {
    let delim = frames
        .iter()
        .position(|f| f.as_slice() == b"<IDS|MSG>")
        .unwrap();
    frames[delim + 2].clone()
}

// ---------------------------------------------------------------------------------------------
// The pair: both machines wired through a simulated network with a virtual clock.

/// What the network does to one message.
#[derive(Clone, Copy, Debug)]
pub struct Fate {
    pub latency: Duration,
    pub lost: bool,
    pub duplicated: bool,
}

impl Fate {
    pub const RELIABLE: Self = Self {
        latency: Duration::from_millis(1),
        lost: false,
        duplicated: false,
    };
}

/// Who a stray message is aimed at, and what it is.
#[derive(Clone, Debug)]
pub struct Injection {
    pub at: Duration,
    pub to_launcher: bool,
    pub frames: Vec<Vec<u8>>,
}

pub struct Pair {
    pub now: Instant,
    pub kernel: Option<KernelHandshake>,
    pub launcher: LauncherHandshake,
    pub kernel_config: KernelConfig,
    fates: VecDeque<Fate>,
    in_flight: Vec<(Instant, bool, Vec<Vec<u8>>)>,
    pub launcher_events: Vec<LauncherEvent>,
    pub kernel_events: Vec<KernelEvent>,
    /// Checks made on every step.
    pub checks: usize,
    /// The socket the kernel asked for: decides the envelope on the launcher's ROUTER.
    pub socket: Option<RegistrationSocket>,
}

/// The routing identity a ROUTER puts before the kernel's message.
pub const KERNEL_ID: &[u8] = b"kernel-peer";

impl Pair {
    pub fn new(launcher: LauncherConfig, kernel: KernelConfig, fates: Vec<Fate>) -> Self {
        let mut launcher = LauncherHandshake::new(launcher);
        drain_launcher(&mut launcher);
        Self {
            now: at(0),
            kernel: None,
            launcher,
            kernel_config: kernel,
            fates: fates.into(),
            in_flight: vec![],
            launcher_events: vec![],
            kernel_events: vec![],
            checks: 0,
            socket: None,
        }
    }

    /// How many frames a ROUTER puts before the kernel's message: its identity, and for a REQ
    /// peer the empty envelope delimiter too (a DEALER sends none).
    fn envelope(&self) -> usize {
        match self.socket {
            Some(RegistrationSocket::Dealer) => 1,
            _ => 2,
        }
    }

    fn send(&mut self, to_launcher: bool, frames: Vec<Vec<u8>>) {
        let fate = self.fates.pop_front().unwrap_or(Fate::RELIABLE);
        if fate.lost {
            return;
        }
        let arrive = self.now + fate.latency;
        if fate.duplicated {
            self.in_flight.push((
                arrive + Duration::from_millis(1),
                to_launcher,
                frames.clone(),
            ));
        }
        self.in_flight.push((arrive, to_launcher, frames));
    }

    fn pump_launcher(&mut self) {
        let d = drain_launcher(&mut self.launcher);
        for a in d.actions {
            if let LauncherAction::WriteRegistrationFile(file) = a {
                // The driver writes the file and spawns the kernel, which reads it.
                let bytes = file.to_json_pretty();
                let file = KernelFile::from_json(&bytes).unwrap();
                let mut k = KernelHandshake::new(file, self.kernel_config.clone());
                drain_kernel(&mut k);
                k.handle_input(self.now, KernelInput::Bound(PORTS)).unwrap();
                self.socket = drain_kernel(&mut k).actions.iter().find_map(|a| match a {
                    KernelAction::ConnectRegistration { socket, .. } => Some(*socket),
                    _ => None,
                });
                k.handle_input(self.now, KernelInput::RegistrationConnected)
                    .unwrap();
                self.kernel = Some(k);
                self.pump_kernel();
            }
        }
        for frames in d.transmits {
            // A ROUTER routes by the first identity; a REQ also strips the empty envelope frame.
            if frames.first().map(Vec::as_slice) == Some(KERNEL_ID) {
                self.send(false, frames[self.envelope()..].to_vec());
            }
        }
        self.launcher_events.extend(d.events);
    }

    fn pump_kernel(&mut self) {
        let Some(k) = self.kernel.as_mut() else {
            return;
        };
        let d = drain_kernel(k);
        let envelope = self.envelope();
        for frames in d.transmits {
            let mut wrapped = vec![KERNEL_ID.to_vec(), Vec::new()];
            wrapped.truncate(envelope);
            wrapped.extend(frames);
            self.send(true, wrapped);
        }
        self.kernel_events.extend(d.events);
    }

    pub fn start(&mut self) {
        self.launcher
            .handle_input(
                self.now,
                LauncherInput::RegistrationBound { port: REG_PORT },
            )
            .unwrap();
        self.pump_launcher();
    }

    /// Delivers `frames` to one side at the current time, checking that a rejection changes
    /// nothing.
    fn deliver(&mut self, to_launcher: bool, frames: &[Vec<u8>]) {
        if to_launcher {
            let (state, deadline) = (self.launcher.state(), self.launcher.deadline());
            self.launcher.receive(self.now, frames);
            let d = drain_launcher(&mut self.launcher);
            if d.events
                .iter()
                .all(|e| matches!(e, LauncherEvent::Rejected(_)))
            {
                assert_eq!(
                    self.launcher.state(),
                    state,
                    "a rejection changed the state"
                );
                assert_eq!(self.launcher.deadline(), deadline);
                assert!(d.transmits.is_empty());
                self.checks += 1;
            }
            self.launcher_events.extend(d.events);
            for frames in d.transmits {
                if frames.first().map(Vec::as_slice) == Some(KERNEL_ID) {
                    self.send(false, frames[self.envelope()..].to_vec());
                }
            }
        } else if let Some(k) = self.kernel.as_mut() {
            let (state, deadline) = (k.state(), k.deadline());
            k.receive(self.now, frames);
            let d = drain_kernel(k);
            if d.events
                .iter()
                .all(|e| matches!(e, KernelEvent::Rejected(_)))
            {
                assert_eq!(k.state(), state, "a rejection changed the state");
                assert_eq!(k.deadline(), deadline);
                self.checks += 1;
            }
            self.kernel_events.extend(d.events);
        }
    }

    /// Runs until both sides are terminal or nothing can happen any more.
    pub fn run(&mut self, mut injections: Vec<Injection>) {
        injections.sort_by_key(|i| i.at);
        let mut injections: VecDeque<Injection> = injections.into();
        self.start();
        for _ in 0..10_000 {
            let kernel_deadline = self.kernel.as_ref().and_then(|k| deadline_at(k.deadline()));
            let next_delivery = self.in_flight.iter().map(|m| m.0).min();
            let next_injection = injections.front().map(|i| at(0) + i.at);
            let Some(next) = [
                kernel_deadline,
                deadline_at(self.launcher.deadline()),
                next_delivery,
                next_injection,
            ]
            .into_iter()
            .flatten()
            .min() else {
                return;
            };
            assert!(next >= self.now, "time went backwards");
            self.now = next;
            if next_injection == Some(next) {
                let i = injections.pop_front().unwrap();
                self.deliver(i.to_launcher, &i.frames);
            } else if next_delivery == Some(next) {
                let i = self.in_flight.iter().position(|m| m.0 == next).unwrap();
                let (_, to_launcher, frames) = self.in_flight.remove(i);
                self.deliver(to_launcher, &frames);
            } else {
                if let Some(k) = self.kernel.as_mut() {
                    k.handle_input(self.now, KernelInput::Timeout).unwrap();
                }
                self.launcher
                    .handle_input(self.now, LauncherInput::Timeout)
                    .unwrap();
                self.pump_kernel();
                self.pump_launcher();
            }
        }
        panic!("the pair did not settle");
    }
}
