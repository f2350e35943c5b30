//! Many launches on one registration socket: see [`Registrar`](crate::Registrar).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::connection::{ConnectionFile, Dialect, RegistrationFile, Transport};
use crate::launcher::{
    LauncherAction, LauncherConfig, LauncherEvent, LauncherHandshake, LauncherInput, LauncherState,
    Request,
};
use crate::message;
use crate::output::{Deadline, ExitStatus, Failure, Next, Outbox, Output, Rejection, UsageError};
use crate::sign::{Key, SignatureScheme, Signer, Tag, VerifyError};
use crate::time::Instant;
use crate::wire::{self, Limits};

/// Names one launch of a [`Registrar`]. Ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaunchId(u64);

impl LaunchId {
    /// The id as a number (for logs; ids count up from 0 per registrar).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LaunchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "launch {}", self.0)
    }
}

/// How a [`Registrar`] binds its socket and signs its replies.
#[derive(Clone, Debug)]
pub struct RegistrarConfig {
    /// Transport for the registration socket and the kernels' channels (default tcp).
    pub transport: Transport,
    /// Address written into every file (default `127.0.0.1`).
    pub ip: String,
    /// Bounds on received frames.
    pub limits: Limits,
    /// `username` of the replies' headers (each launch's session id is derived from its key).
    pub username: String,
    /// At most this many launches wait for their kernel at once (default 1024); more is
    /// [`RegistrarError::TooManyPending`]. A forged message costs at most this many HMACs.
    pub max_pending: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            transport: Transport::Tcp,
            ip: String::from("127.0.0.1"),
            limits: Limits::HANDSHAKE,
            username: String::from("launcher"),
            max_pending: 1024,
        }
    }
}

/// One launch's own settings.
#[derive(Clone, Debug)]
pub struct LaunchConfig {
    /// The launch's key: fresh and random per kernel, and different from every other launch's
    /// (the key is what attributes a request to its launch). Must not be empty.
    pub key: Key,
    /// HMAC algorithm (default hmac-sha256).
    pub signature_scheme: SignatureScheme,
    /// How long to wait for the kernel after the file is ready (default 30 s); restarts get the
    /// same again.
    pub registration_timeout: Duration,
    /// Which dialect this kernel speaks (launches of both dialects share the socket).
    pub dialect: Dialect,
    /// Upstream dialect: the `kernel_id` written into its file and required in its request,
    /// unique among the registrar's launches. Empty (and unused) in the Posit dialect.
    pub kernel_id: String,
}

impl LaunchConfig {
    /// A Posit-dialect launch with `key` and the defaults.
    pub fn new(key: Key) -> Self {
        Self {
            key,
            signature_scheme: SignatureScheme::HmacSha256,
            registration_timeout: Duration::from_secs(30),
            dialect: Dialect::Posit,
            kernel_id: String::new(),
        }
    }

    /// An upstream-dialect launch with `key`, naming the kernel `kernel_id`.
    pub fn upstream(key: Key, kernel_id: impl Into<String>) -> Self {
        Self {
            dialect: Dialect::Upstream,
            kernel_id: kernel_id.into(),
            ..Self::new(key)
        }
    }
}

/// The registrar's own states (each launch has its [`LauncherState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegistrarState {
    /// Waiting for the driver to bind the registration socket.
    Init,
    /// The socket is bound: launches can be added.
    Bound,
}

/// What the registrar asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum RegistrarAction {
    /// Bind the registration socket (a ROUTER) on port 0, then report
    /// [`RegistrarInput::RegistrationBound`]. Asked once.
    BindRegistration {
        /// Transport.
        transport: Transport,
        /// Address to bind on.
        ip: String,
    },
    /// Write this launch's registration file (atomically, owner-only) and start its kernel
    /// (again, after [`Registrar::rearm`]).
    WriteRegistrationFile {
        /// Which launch.
        launch: LaunchId,
        /// The file.
        file: RegistrationFile,
    },
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RegistrarEvent {
    /// Something happened to one launch: its own [`LauncherEvent`] (state changes, rejections,
    /// refusals, `Registered`, `Failed`).
    Launch {
        /// Which launch.
        launch: LaunchId,
        /// What.
        event: LauncherEvent,
    },
    /// A message on the shared socket that no launch's key verifies (garbage, a forgery, a
    /// stranger): dropped, no launch affected.
    Rejected(Rejection),
}

/// What the driver tells the registrar, besides received frames (see [`Registrar::receive`]).
#[derive(Clone, Copy, Debug)]
pub enum RegistrarInput<'a> {
    /// The registration socket is bound on this port.
    RegistrationBound {
        /// The OS-chosen port.
        port: u16,
    },
    /// A launch's registration file changed; these are its current bytes.
    FileChanged {
        /// Which launch's file.
        launch: LaunchId,
        /// Its bytes.
        bytes: &'a [u8],
    },
    /// A launch's kernel process ended.
    KernelExited {
        /// Which launch.
        launch: LaunchId,
        /// How.
        status: ExitStatus,
    },
    /// A deadline may have passed (spurious calls are harmless).
    Timeout,
    /// Give up on one launch now.
    Abort {
        /// Which launch.
        launch: LaunchId,
    },
}

/// The driver asked for something the registrar cannot do; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrarError {
    /// Launches need the bound socket: report `RegistrationBound` first.
    #[error("the registration socket is not bound yet")]
    NotBound,
    /// An empty key verifies anything, so it would capture every launch's messages.
    #[error("a launch on a shared registration socket needs a non-empty key")]
    EmptyKey,
    /// Another launch has this key, so requests could not be attributed.
    #[error("{0} already uses this key")]
    KeyInUse(LaunchId),
    /// Another upstream launch has this `kernel_id`, so requests could not be routed.
    #[error("{0} already uses this kernel_id")]
    KernelIdInUse(LaunchId),
    /// [`RegistrarConfig::max_pending`] launches are already waiting for their kernel.
    #[error("{max} launches are already waiting for their kernel (max_pending)")]
    TooManyPending {
        /// The configured bound.
        max: usize,
    },
    /// No such launch (never made, or removed).
    #[error("no {0}")]
    UnknownLaunch(LaunchId),
    /// Only a finished launch (connected or failed) can be re-armed.
    #[error("{0} is still waiting for its kernel")]
    StillPending(LaunchId),
    /// An input the current state cannot take.
    #[error(transparent)]
    Usage(#[from] UsageError),
}

/// The first eight bytes of a signature (of its hex, or of whatever a peer sent), as a number:
/// what the replay map is ordered by. A number keeps the map's nodes compact and each comparison
/// one instruction; the full signature is then compared with the launch's own list, so a
/// collision can only cost a lookup, never a wrong drop.
type SignaturePrefix = u64;

fn prefix(signature: &[u8]) -> SignaturePrefix {
    let mut out = [0u8; 8];
    let n = signature.len().min(8);
    out[..n].copy_from_slice(&signature[..n]);
    u64::from_be_bytes(out)
}

/// A bit per bucket of accepted signature prefixes: a clear bit proves a signature was never
/// accepted, so nearly every forged message skips the replay map, whose lookup grows (slowly)
/// with the launches held. It keeps at least 32 bits per accepted request (about 3 % false
/// positives), growing with them; bits of removed launches stay set until it next grows, which
/// costs a lookup, never a wrong answer.
#[derive(Debug)]
struct SeenFilter {
    /// log2 of the number of bits.
    bits: u32,
    words: Vec<u64>,
}

impl SeenFilter {
    const MIN_BITS: u32 = 10;
    const BITS_PER_ENTRY: usize = 32;

    fn new() -> Self {
        Self::with_bits(Self::MIN_BITS, core::iter::empty())
    }

    fn with_bits(bits: u32, prefixes: impl Iterator<Item = SignaturePrefix>) -> Self {
        let mut filter = Self {
            bits,
            words: alloc::vec![0; 1 << (bits - 6)],
        };
        for prefix in prefixes {
            filter.set(prefix);
        }
        filter
    }

    fn bucket(&self, prefix: SignaturePrefix) -> (usize, u64) {
        // Fibonacci hashing: the prefix is hex text, so its entropy is spread over all bytes.
        let bit = (prefix.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize;
        (bit / 64, 1 << (bit % 64))
    }

    fn set(&mut self, prefix: SignaturePrefix) {
        let (word, mask) = self.bucket(prefix);
        if let Some(w) = self.words.get_mut(word) {
            *w |= mask;
        }
    }

    fn may_contain(&self, prefix: SignaturePrefix) -> bool {
        let (word, mask) = self.bucket(prefix);
        self.words.get(word).is_some_and(|w| w & mask != 0)
    }

    /// Records `prefix`, one of `all` (every accepted prefix, `prefix` included), growing
    /// first when the filter holds too few bits for them.
    fn insert(&mut self, prefix: SignaturePrefix, all: &BTreeMap<SignaturePrefix, LaunchId>) {
        if all.len().saturating_mul(Self::BITS_PER_ENTRY) > 1 << self.bits && self.bits < 40 {
            *self = Self::with_bits(self.bits + 1, all.keys().copied());
        }
        self.set(prefix);
    }
}

/// One launch: its machine, and what outlives a restart.
#[derive(Debug)]
struct Slot {
    config: LaunchConfig,
    signer: Signer,
    machine: LauncherHandshake,
    /// How many times it was armed (1 for the first launch): part of its session id, so a
    /// restart's messages never repeat a `msg_id` of the previous run.
    generation: u64,
    /// The latest verified connection information; kept through a restart until superseded.
    connection: Option<ConnectionFile>,
    /// Signatures of the requests accepted so far (also keys of [`Registrar::accepted`]).
    accepted: Vec<Vec<u8>>,
    /// The deadline this slot has in [`Registrar::deadlines`].
    armed: Option<Instant>,
}

/// One long-lived registration socket for many launches: the launcher side that JEP 66
/// recommends for a launcher running many kernels, and keeps for their restarts.
///
/// **Cost per message.** Anyone on the host can send to the socket, as fast as they like, so
/// what one message costs must not grow with the kernels a supervisor has served. Each message
/// is split once. A Posit-framed one is verified against the keys of the *pending* Posit
/// launches only, never finished ones, and there are at most
/// [`RegistrarConfig::max_pending`] of those. An upstream one names its `kernel_id`, which picks
/// the one launch whose key is tried: an unknown `kernel_id` costs no HMAC at all. A request
/// already accepted (a replay) is recognised by its signature in a map, before any HMAC. Slots,
/// keys, `kernel_id`s and deadlines are kept in ordered maps, so every lookup is O(log n), the
/// earliest deadline is the first entry, and expiring allocates nothing.
///
/// A [`LauncherHandshake`] serves one kernel on its own registration socket. A [`Registrar`]
/// owns **one** registration socket (a ROUTER: it serves REQ and DEALER peers alike) and any
/// number of launches, each a [`LauncherHandshake`] with **its own key**. A message on the
/// shared socket is attributed by verifying it against the pending launches' keys: only the
/// holder of a key can sign with it, so the signature proves which launch it belongs to. The
/// message then goes to that launch alone, and the reply goes back through the routing
/// identities it came with. A message no key verifies (garbage, a forgery, a stranger) is
/// dropped with one [`RegistrarEvent::Rejected`] and reaches no launch: one kernel's garbage,
/// forgery or timeout never touches another launch.
///
/// ```text
/// Registrar: Init ─RegistrationBound(port)→ Bound
///
/// each launch (a LauncherHandshake on the shared socket):
///   launch() ─→ Bound ─verified request / rewritten file→ Connected ─rearm()→ Bound …
///                 │                                                      (restart: same key,
///                 └─timeout / kernel exited / abort→ Failed ─rearm()→ Bound   new ports)
/// ```
///
/// **Restarts.** [`Registrar::rearm`] starts a launch over for a new process of the same kernel:
/// same socket, same key, same file, a fresh deadline. Until the new registration arrives,
/// [`Registrar::connection`] keeps answering with the previous connection information; the new
/// one supersedes it only when it is verified.
///
/// **Replays.** A restarted launch keeps its key, so a recording of the previous run's
/// `handshake_request` would verify again. The registrar remembers the signature of every
/// request it accepted for a launch and drops a request that carries one of them
/// ([`Rejection::Replayed`]), as jupyter_client's digest history does. (A fresh Posit request
/// always has a fresh signature: its header has a new `msg_id` and `date`. An upstream request
/// has no header: it signs only `kernel_id` and the ports, so a restarted upstream kernel that
/// happens to bind the very same five ports sends a request identical to the recorded one, is
/// dropped as a replay and times out. With OS-chosen ports this is rare, and failing closed is
/// the safe side: the alternative would let a recording of the old run register a kernel that
/// has not bound anything yet.)
///
/// ```
/// use core::time::Duration;
/// use jupyter_handshake::*;
///
/// let now = Instant::from_micros(1_700_000_000_000_000);
/// let mut registrar = Registrar::new(RegistrarConfig::default());
/// let Output::Action(RegistrarAction::BindRegistration { .. }) = registrar.poll_output() else { panic!() };
/// registrar.handle_input(now, RegistrarInput::RegistrationBound { port: 5555 })?;
///
/// // Two launches share the socket; each has its own key and its own file.
/// let a = registrar.launch(now, LaunchConfig::new(Key::new("key-of-a")))?;
/// let b = registrar.launch(now, LaunchConfig::new(Key::new("key-of-b")))?;
/// let mut files = Vec::new();
/// loop {
///     match registrar.poll_output() {
///         Output::Action(RegistrarAction::WriteRegistrationFile { launch, file }) => {
///             files.push((launch, file.registration_port)); // write it, start the kernel
///         }
///         Output::Timeout(next) => {
///             assert_eq!(next.at(), Some(now + Duration::from_secs(30)));
///             break;
///         }
///         _ => {}
///     }
/// }
/// assert_eq!(files, [(a, 5555), (b, 5555)]);
/// assert_eq!(registrar.pending(), 2);
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    state: RegistrarState,
    port: Option<u16>,
    next_id: u64,
    /// Boxed, so that the map's nodes stay small and a lookup touches little memory.
    slots: BTreeMap<LaunchId, alloc::boxed::Box<Slot>>,
    /// Pending Posit launches and their signers: the keys a Posit-framed message is tried
    /// against, at hand without a lookup of the launch.
    pending_posit: BTreeMap<LaunchId, Signer>,
    /// Pending upstream launches.
    pending_upstream: BTreeSet<LaunchId>,
    /// Every upstream launch by its `kernel_id`.
    kernel_ids: BTreeMap<String, LaunchId>,
    /// Every launch by its key's fingerprint.
    keys: BTreeMap<[u8; 32], LaunchId>,
    /// Every accepted request, by a prefix of its signature, and whose it was (the full
    /// signature is then compared with the launch's own list).
    accepted: BTreeMap<SignaturePrefix, LaunchId>,
    /// Which prefixes may be in `accepted`.
    seen: SeenFilter,
    /// Every armed deadline, earliest first.
    deadlines: BTreeSet<(Instant, LaunchId)>,
    outbox: Outbox<RegistrarAction, RegistrarEvent>,
    /// Signature checks made so far (tests and fuzzing count the cost of a message with it).
    #[cfg(any(test, feature = "fuzzing"))]
    verifications: u64,
}

/// One `poll_output` result of the registrar.
pub type RegistrarOutput = Output<RegistrarAction, RegistrarEvent>;

impl Registrar {
    /// A registrar; its first output asks the driver to bind the registration socket.
    pub fn new(config: RegistrarConfig) -> Self {
        let mut outbox = Outbox::new();
        outbox.action(RegistrarAction::BindRegistration {
            transport: config.transport,
            ip: config.ip.clone(),
        });
        Self {
            config,
            state: RegistrarState::Init,
            port: None,
            next_id: 0,
            slots: BTreeMap::new(),
            pending_posit: BTreeMap::new(),
            pending_upstream: BTreeSet::new(),
            kernel_ids: BTreeMap::new(),
            keys: BTreeMap::new(),
            accepted: BTreeMap::new(),
            seen: SeenFilter::new(),
            deadlines: BTreeSet::new(),
            outbox,
            #[cfg(any(test, feature = "fuzzing"))]
            verifications: 0,
        }
    }

    /// The registrar's state.
    pub fn state(&self) -> RegistrarState {
        self.state
    }

    /// The registration socket's port, once bound.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Starts a launch on the shared socket; the outputs then ask the driver to write its
    /// registration file (and start its kernel). Its deadline starts now.
    pub fn launch(
        &mut self,
        now: Instant,
        config: LaunchConfig,
    ) -> Result<LaunchId, RegistrarError> {
        let port = self.port.ok_or(RegistrarError::NotBound)?;
        if config.key.is_empty() {
            return Err(RegistrarError::EmptyKey);
        }
        let fingerprint = config.key.fingerprint();
        if let Some(&other) = self.keys.get(&fingerprint) {
            return Err(RegistrarError::KeyInUse(other));
        }
        if config.dialect == Dialect::Upstream {
            if let Some(&other) = self.kernel_ids.get(&config.kernel_id) {
                return Err(RegistrarError::KernelIdInUse(other));
            }
        }
        self.check_room()?;
        let id = LaunchId(self.next_id);
        let machine = self.arm(now, &config, 1, port)?;
        self.next_id += 1;
        self.keys.insert(fingerprint, id);
        if config.dialect == Dialect::Upstream {
            self.kernel_ids.insert(config.kernel_id.clone(), id);
        }
        self.slots.insert(
            id,
            alloc::boxed::Box::new(Slot {
                signer: Signer::new(config.signature_scheme, &config.key),
                config,
                machine,
                generation: 1,
                connection: None,
                accepted: Vec::new(),
                armed: None,
            }),
        );
        self.pump(id);
        Ok(id)
    }

    /// Starts a finished launch over for a new process of the same kernel (a restart): same
    /// socket, same key, a fresh deadline; the outputs ask the driver to write the file again
    /// (and start the kernel). [`connection`](Self::connection) keeps the previous information
    /// until the new registration arrives.
    pub fn rearm(&mut self, now: Instant, launch: LaunchId) -> Result<(), RegistrarError> {
        let port = self.port.ok_or(RegistrarError::NotBound)?;
        let slot = self.slot(launch)?;
        if !slot.machine.state().is_terminal() {
            return Err(RegistrarError::StillPending(launch));
        }
        self.check_room()?;
        let generation = slot.generation + 1;
        let machine = self.arm(now, &slot.config, generation, port)?;
        let slot = self.slot_mut(launch)?;
        slot.machine = machine;
        slot.generation = generation;
        self.pump(launch);
        Ok(())
    }

    /// Forgets a launch (its kernel is gone for good) and returns its last connection
    /// information. Its key (and `kernel_id`) may then be used again.
    pub fn remove(&mut self, launch: LaunchId) -> Result<Option<ConnectionFile>, RegistrarError> {
        let slot = self
            .slots
            .remove(&launch)
            .ok_or(RegistrarError::UnknownLaunch(launch))?;
        self.keys.remove(&slot.config.key.fingerprint());
        if slot.config.dialect == Dialect::Upstream {
            self.kernel_ids.remove(&slot.config.kernel_id);
        }
        for signature in &slot.accepted {
            self.accepted.remove(&prefix(signature));
        }
        if let Some(at) = slot.armed {
            self.deadlines.remove(&(at, launch));
        }
        self.pending_posit.remove(&launch);
        self.pending_upstream.remove(&launch);
        Ok(slot.connection.clone())
    }

    /// A launch's state.
    pub fn launch_state(&self, launch: LaunchId) -> Option<LauncherState> {
        self.slot(launch).ok().map(|s| s.machine.state())
    }

    /// Why a launch failed, once it has (until it is re-armed).
    pub fn failure(&self, launch: LaunchId) -> Option<&Failure> {
        self.slot(launch).ok()?.machine.failure()
    }

    /// A launch's latest verified connection information (through a restart, the previous
    /// one until the new registration arrives).
    pub fn connection(&self, launch: LaunchId) -> Option<&ConnectionFile> {
        self.slot(launch).ok()?.connection.as_ref()
    }

    /// How many launches are waiting for their kernel.
    pub fn pending(&self) -> usize {
        self.pending_posit.len() + self.pending_upstream.len()
    }

    /// The earliest deadline of all launches. Changes only in `handle_input`, `receive`,
    /// `launch`, `rearm` and `remove`.
    pub fn deadline(&self) -> Option<Deadline> {
        let &(_, launch) = self.deadlines.first()?;
        self.slots.get(&launch)?.machine.deadline()
    }

    /// Signature checks made so far: what tests and the fuzzer count the cost of a message by.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn verifications(&self) -> u64 {
        self.verifications
    }

    /// The next output; drain until [`Output::Timeout`]. Never changes any state. A registrar
    /// is never done: with nothing timed it waits for input ([`Next::Input`]).
    pub fn poll_output(&mut self) -> RegistrarOutput {
        let next = self.deadline().map_or(Next::Input, Next::Deadline);
        self.outbox.pop(next)
    }

    /// Feeds one input at time `now`.
    ///
    /// Every launch whose deadline has passed fails first, before the input is looked at, so a
    /// flood on the shared socket cannot postpone anyone's deadline. `Err` means the driver fed
    /// an input that makes no sense, and changes nothing.
    pub fn handle_input(
        &mut self,
        now: Instant,
        input: RegistrarInput<'_>,
    ) -> Result<(), RegistrarError> {
        self.expire(now);
        match input {
            RegistrarInput::RegistrationBound { port } => {
                if self.state != RegistrarState::Init || port == 0 {
                    return Err(UsageError {
                        input: "RegistrationBound",
                        state: match self.state {
                            RegistrarState::Init => "Init (port 0)",
                            RegistrarState::Bound => "Bound",
                        },
                    }
                    .into());
                }
                self.port = Some(port);
                self.state = RegistrarState::Bound;
            }
            RegistrarInput::FileChanged { launch, bytes } => {
                self.feed(now, launch, LauncherInput::FileChanged(bytes))?;
            }
            RegistrarInput::KernelExited { launch, status } => {
                self.feed(now, launch, LauncherInput::KernelExited(status))?;
            }
            RegistrarInput::Abort { launch } => {
                self.feed(now, launch, LauncherInput::Abort)?;
            }
            RegistrarInput::Timeout => {}
        }
        Ok(())
    }

    /// Feeds a multipart message received on the registration socket at time `now` (ROUTER:
    /// identities first), as whatever frames the driver holds: nothing is copied. It goes to
    /// the one launch whose key verifies it, or is dropped with [`RegistrarEvent::Rejected`].
    /// Passed deadlines are acted on first, as in [`handle_input`](Self::handle_input).
    pub fn receive<F: AsRef<[u8]>>(&mut self, now: Instant, frames: &[F]) {
        self.expire(now);
        let limits = self.config.limits;
        // Both dialects share the socket. Their framings cannot be confused: a full message
        // has at least five frames after the delimiter, an upstream one exactly two.
        match wire::split(frames, &limits) {
            Ok(message) => self.route_posit(now, &message),
            Err(full) => match wire::split_content_only(frames, &limits) {
                Ok(message) => self.route_upstream(now, &message),
                Err(_) => self.reject(full.into()),
            },
        }
    }

    /// A Posit-framed message: tried against the pending Posit launches' keys only. The
    /// signature is decoded once per scheme (launches usually share one), and a malformed one
    /// is refused before any key is tried.
    fn route_posit<F: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        message: &wire::UnverifiedMessage<'_, F>,
    ) {
        if self.replayed(message.signature()) {
            return;
        }
        let mut why = Rejection::Unsolicited;
        let mut owner = None;
        let mut decoded: Option<(SignatureScheme, Result<Tag, VerifyError>)> = None;
        for (&id, signer) in &self.pending_posit {
            let scheme = signer.scheme();
            if decoded.as_ref().is_none_or(|(s, _)| *s != scheme) {
                decoded = Some((scheme, signer.decode(message.signature())));
            }
            let tag = match &decoded {
                Some((_, Ok(tag))) => tag,
                Some((_, Err(e))) => {
                    why = (*e).into();
                    continue;
                }
                None => continue,
            };
            #[cfg(any(test, feature = "fuzzing"))]
            {
                self.verifications += 1;
            }
            match message.verify_decoded(signer, tag) {
                Ok(verified) => {
                    owner = Some((id, verified));
                    break;
                }
                Err(e) => why = e.into(),
            }
        }
        match owner {
            Some((id, verified)) => {
                self.deliver(now, id, message.signature(), Request::Posit(verified))
            }
            None => self.reject(why),
        }
    }

    /// An upstream-framed message: its `kernel_id` picks the one launch whose key is tried.
    fn route_upstream<F: AsRef<[u8]>>(&mut self, now: Instant, message: &wire::ContentOnly<'_, F>) {
        if self.replayed(message.signature()) {
            return;
        }
        let id = message::upstream_kernel_id(message.unverified_content())
            .and_then(|kernel_id| self.kernel_ids.get(kernel_id.as_ref()).copied());
        let Some(id) = id else {
            self.reject(Rejection::WrongKernel);
            return;
        };
        if !self.pending_upstream.contains(&id) {
            // A finished launch takes no request: dropped without a signature check.
            self.outbox.event(RegistrarEvent::Launch {
                launch: id,
                event: LauncherEvent::Rejected(Rejection::Finished),
            });
            return;
        }
        let Some(slot) = self.slots.get(&id) else {
            return;
        };
        #[cfg(any(test, feature = "fuzzing"))]
        {
            self.verifications += 1;
        }
        match message.verify(&slot.signer) {
            Ok(content) => {
                let request = Request::Upstream {
                    identities: message.identities(),
                    content,
                };
                self.deliver(now, id, message.signature(), request);
            }
            Err(e) => self.reject(e.into()),
        }
    }

    /// Whether `signature` is that of a request accepted before (a replay, of a finished or a
    /// re-armed launch): dropped, without a signature check.
    fn replayed(&mut self, signature: &[u8]) -> bool {
        let prefix = prefix(signature);
        if !self.seen.may_contain(prefix) {
            return false;
        }
        let Some(&launch) = self.accepted.get(&prefix) else {
            return false;
        };
        let seen = self.slots.get(&launch).is_some_and(|slot| {
            slot.accepted
                .iter()
                .any(|accepted| accepted.as_slice() == signature)
        });
        if !seen {
            return false;
        }
        self.outbox.event(RegistrarEvent::Launch {
            launch,
            event: LauncherEvent::Rejected(Rejection::Replayed),
        });
        true
    }

    /// Hands a request verified with `launch`'s key to that launch.
    fn deliver<F: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        launch: LaunchId,
        signature: &[u8],
        request: Request<'_, F>,
    ) {
        let Some(slot) = self.slots.get_mut(&launch) else {
            return;
        };
        slot.machine.receive_verified(now, request);
        if slot.machine.state() == LauncherState::Connected {
            slot.accepted.push(signature.to_vec());
            self.accepted.insert(prefix(signature), launch);
            self.seen.insert(prefix(signature), &self.accepted);
        }
        self.pump(launch);
    }

    fn reject(&mut self, rejection: Rejection) {
        self.outbox.event(RegistrarEvent::Rejected(rejection));
    }

    fn check_room(&self) -> Result<(), RegistrarError> {
        if self.pending() >= self.config.max_pending {
            return Err(RegistrarError::TooManyPending {
                max: self.config.max_pending,
            });
        }
        Ok(())
    }

    /// A launcher machine for one run of a launch, already told the shared port.
    fn arm(
        &self,
        now: Instant,
        config: &LaunchConfig,
        generation: u64,
        port: u16,
    ) -> Result<LauncherHandshake, RegistrarError> {
        let context = alloc::format!("launcher {generation}");
        let mut launcher = match config.dialect {
            Dialect::Posit => LauncherConfig::new(config.key.clone()),
            Dialect::Upstream => {
                LauncherConfig::upstream(config.key.clone(), config.kernel_id.clone())
            }
        }
        .map_err(|_| RegistrarError::EmptyKey)?;
        launcher.transport = self.config.transport;
        launcher.ip = self.config.ip.clone();
        launcher.signature_scheme = config.signature_scheme;
        launcher.registration_timeout = config.registration_timeout;
        launcher.limits = self.config.limits;
        launcher.session_id = Some(config.key.derive_id(context.as_bytes()));
        launcher.username = self.config.username.clone();
        let mut machine = LauncherHandshake::new(launcher);
        machine.handle_input(now, LauncherInput::RegistrationBound { port })?;
        Ok(machine)
    }

    fn slot(&self, launch: LaunchId) -> Result<&Slot, RegistrarError> {
        self.slots
            .get(&launch)
            .map(|slot| &**slot)
            .ok_or(RegistrarError::UnknownLaunch(launch))
    }

    fn slot_mut(&mut self, launch: LaunchId) -> Result<&mut Slot, RegistrarError> {
        self.slots
            .get_mut(&launch)
            .map(|slot| &mut **slot)
            .ok_or(RegistrarError::UnknownLaunch(launch))
    }

    /// Fails every launch whose deadline has passed, earliest first; allocates nothing.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, launch)) = self.deadlines.first() {
            if now < at {
                break;
            }
            self.deadlines.pop_first();
            if let Some(slot) = self.slots.get_mut(&launch) {
                slot.armed = None;
            }
            // A launch found a moment ago; the machine takes `Timeout` in every state.
            let _ = self.feed(now, launch, LauncherInput::Timeout);
        }
    }

    fn feed(
        &mut self,
        now: Instant,
        launch: LaunchId,
        input: LauncherInput<'_>,
    ) -> Result<(), RegistrarError> {
        self.slot_mut(launch)?.machine.handle_input(now, input)?;
        self.pump(launch);
        Ok(())
    }

    /// Moves a launch's outputs to the registrar's, tagged with its id, and files the launch
    /// under its new state and deadline.
    fn pump(&mut self, launch: LaunchId) {
        let Some(slot) = self.slots.get_mut(&launch) else {
            return;
        };
        loop {
            match slot.machine.poll_output() {
                // The registrar owns the socket; the machine was told the port when armed.
                Output::Action(LauncherAction::BindRegistration { .. }) => {}
                Output::Action(LauncherAction::WriteRegistrationFile(file)) => {
                    self.outbox
                        .action(RegistrarAction::WriteRegistrationFile { launch, file });
                }
                Output::Transmit(t) => self.outbox.transmit(t.frames),
                Output::Event(event) => {
                    if let LauncherEvent::Registered { connection, .. } = &event {
                        slot.connection = Some(connection.clone());
                    }
                    self.outbox.event(RegistrarEvent::Launch { launch, event });
                }
                Output::Timeout(_) => break,
            }
        }
        let deadline = slot.machine.deadline().map(|d| d.at);
        if slot.armed != deadline {
            if let Some(at) = slot.armed {
                self.deadlines.remove(&(at, launch));
            }
            if let Some(at) = deadline {
                self.deadlines.insert((at, launch));
            }
            slot.armed = deadline;
        }
        let pending = !slot.machine.state().is_terminal();
        match (slot.machine.dialect(), pending) {
            (Dialect::Posit, true) => {
                self.pending_posit
                    .entry(launch)
                    .or_insert_with(|| slot.signer.clone());
            }
            (Dialect::Posit, false) => {
                self.pending_posit.remove(&launch);
            }
            (Dialect::Upstream, true) => {
                self.pending_upstream.insert(launch);
            }
            (Dialect::Upstream, false) => {
                self.pending_upstream.remove(&launch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! What one message costs: counted signature checks, never timed.
    use super::*;
    use crate::connection::KernelPorts;
    use crate::message::{HANDSHAKE_REQUEST, Session};
    use alloc::format;
    use alloc::vec;

    fn at(ms: u64) -> Instant {
        Instant::from_micros(1_700_000_000_000_000 + ms * 1000)
    }

    fn ports(i: usize) -> KernelPorts {
        let base = 20_000 + 5 * i as u16;
        KernelPorts::from_array([base, base + 1, base + 2, base + 3, base + 4])
    }

    fn key(i: usize) -> Key {
        Key::new(format!("key-{i}"))
    }

    fn kernel_id(i: usize) -> String {
        format!("kernel-{i}")
    }

    /// A correct request of launch `i`, as its kernel would send it through a ROUTER.
    fn request(i: usize, dialect: Dialect) -> Vec<Vec<u8>> {
        let signer = Signer::new(SignatureScheme::HmacSha256, &key(i));
        match dialect {
            Dialect::Posit => {
                let mut session = Session::new(format!("k{i}"), "kernel", signer);
                let ids: [&[u8]; 2] = [b"peer", b""];
                let content = message::request_content(&ports(i));
                session
                    .message(at(1), &ids, HANDSHAKE_REQUEST, None, None, &content)
                    .1
            }
            Dialect::Upstream => {
                let content = message::upstream_request_content(&kernel_id(i), &ports(i));
                wire::join_content_only(&[b"peer"], &signer, &content)
            }
        }
    }

    fn drain(r: &mut Registrar) {
        while !matches!(r.poll_output(), Output::Timeout(_)) {}
    }

    /// A bound registrar with `finished` connected launches (both dialects) and `pending`
    /// waiting ones of each dialect; indexes 0.. are finished, then pending Posit, then pending
    /// upstream.
    fn registrar(finished: usize, pending: usize) -> Registrar {
        let mut r = Registrar::new(RegistrarConfig::default());
        r.handle_input(at(0), RegistrarInput::RegistrationBound { port: 5555 })
            .unwrap();
        let dialect = |i: usize| {
            if i < finished {
                if i % 2 == 0 {
                    Dialect::Posit
                } else {
                    Dialect::Upstream
                }
            } else if i < finished + pending {
                Dialect::Posit
            } else {
                Dialect::Upstream
            }
        };
        for i in 0..finished + 2 * pending {
            let config = match dialect(i) {
                Dialect::Posit => LaunchConfig::new(key(i)),
                Dialect::Upstream => LaunchConfig::upstream(key(i), kernel_id(i)),
            };
            r.launch(at(0), config).unwrap();
        }
        for i in 0..finished {
            r.receive(at(1), &request(i, dialect(i)));
        }
        drain(&mut r);
        assert_eq!(r.pending(), 2 * pending);
        r
    }

    /// How many signature checks `frames` cost.
    fn cost(r: &mut Registrar, frames: &[Vec<u8>]) -> u64 {
        let before = r.verifications();
        r.receive(at(2), frames);
        drain(r);
        r.verifications() - before
    }

    #[test]
    fn a_message_is_tried_only_against_pending_launches_of_its_dialect() {
        let (finished, pending) = (40, 5);
        let mut r = registrar(finished, pending);
        // A forgery in the Posit framing: at most one check per pending Posit launch.
        let mut forged = request(0, Dialect::Posit);
        let content = forged.len() - 1;
        forged[content] = b"{\"forged\":true}".to_vec();
        assert!(cost(&mut r, &forged) <= pending as u64);
        // A malformed signature is malformed whatever the key: refused before any key.
        let mut bad_hex = request(0, Dialect::Posit);
        bad_hex[3] = vec![b'Z'; 64];
        assert_eq!(cost(&mut r, &bad_hex), 0);
        // Garbage that is no message: no check at all.
        assert_eq!(cost(&mut r, &[b"garbage".to_vec()]), 0);
    }

    #[test]
    fn an_upstream_request_is_verified_against_the_one_launch_it_names() {
        let (finished, pending) = (40, 5);
        let mut r = registrar(finished, pending);
        let upstream = finished + pending; // the first pending upstream launch
        let id = LaunchId(upstream as u64);
        // Its own request: exactly one check, and it registers.
        assert_eq!(cost(&mut r, &request(upstream, Dialect::Upstream)), 1);
        assert_eq!(r.launch_state(id), Some(LauncherState::Connected));
        // A forgery naming a pending launch: one check, dropped.
        let mut forged = request(upstream + 1, Dialect::Upstream);
        let last = forged.len() - 1;
        forged[last].extend_from_slice(b" ");
        assert_eq!(cost(&mut r, &forged), 1);
        assert_eq!(
            r.launch_state(LaunchId(upstream as u64 + 1)),
            Some(LauncherState::Bound)
        );
        // An unknown kernel_id, or one of a finished launch: no check at all.
        let stranger = wire::join_content_only(
            &[b"peer"],
            &Signer::new(SignatureScheme::HmacSha256, &key(999)),
            &message::upstream_request_content("nobody", &ports(999)),
        );
        assert_eq!(cost(&mut r, &stranger), 0);
        let finished_upstream = 1; // odd indexes below `finished` are upstream
        let mut late = request(finished_upstream, Dialect::Upstream);
        let last = late.len() - 1;
        late[last].extend_from_slice(b" ");
        assert_eq!(cost(&mut r, &late), 0);
    }

    #[test]
    fn a_replayed_request_costs_no_check() {
        let mut r = registrar(10, 1);
        for i in 0..10 {
            let dialect = if i % 2 == 0 {
                Dialect::Posit
            } else {
                Dialect::Upstream
            };
            // The very request that was accepted before (the helper signs the same bytes).
            assert_eq!(cost(&mut r, &request(i, dialect)), 0, "launch {i}");
        }
        // Re-armed, a launch still refuses the old request, without a check.
        let id = LaunchId(1);
        r.rearm(at(3), id).unwrap();
        drain(&mut r);
        assert_eq!(cost(&mut r, &request(1, Dialect::Upstream)), 0);
        assert_eq!(r.launch_state(id), Some(LauncherState::Bound));
    }

    #[test]
    fn pending_launches_are_capped() {
        let mut r = Registrar::new(RegistrarConfig {
            max_pending: 2,
            ..RegistrarConfig::default()
        });
        r.handle_input(at(0), RegistrarInput::RegistrationBound { port: 5555 })
            .unwrap();
        let a = r.launch(at(0), LaunchConfig::new(key(0))).unwrap();
        r.launch(at(0), LaunchConfig::new(key(1))).unwrap();
        assert_eq!(
            r.launch(at(0), LaunchConfig::new(key(2))),
            Err(RegistrarError::TooManyPending { max: 2 })
        );
        r.receive(at(1), &request(0, Dialect::Posit));
        drain(&mut r);
        assert_eq!(r.launch_state(a), Some(LauncherState::Connected));
        assert!(r.launch(at(1), LaunchConfig::new(key(2))).is_ok());
        assert_eq!(
            r.rearm(at(1), a),
            Err(RegistrarError::TooManyPending { max: 2 })
        );
    }

    #[test]
    fn expiring_finds_the_earliest_deadline_and_keeps_the_rest() {
        let mut r = Registrar::new(RegistrarConfig::default());
        r.handle_input(at(0), RegistrarInput::RegistrationBound { port: 5555 })
            .unwrap();
        let slow = r
            .launch(
                at(0),
                LaunchConfig {
                    registration_timeout: Duration::from_secs(60),
                    ..LaunchConfig::new(key(0))
                },
            )
            .unwrap();
        let fast = r.launch(at(0), LaunchConfig::new(key(1))).unwrap();
        drain(&mut r);
        assert_eq!(r.deadline().map(|d| d.at), Some(at(30_000)));
        r.handle_input(at(30_000), RegistrarInput::Timeout).unwrap();
        assert_eq!(r.launch_state(fast), Some(LauncherState::Failed));
        assert_eq!(r.launch_state(slow), Some(LauncherState::Bound));
        assert_eq!(r.deadline().map(|d| d.at), Some(at(60_000)));
        r.remove(slow).unwrap();
        assert_eq!(r.deadline(), None);
        assert_eq!(r.pending(), 0);
    }
}
