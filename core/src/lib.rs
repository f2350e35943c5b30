//! # jupyter-handshake
//!
//! The Jupyter kernel handshake (JEP 66) as a sans-IO state machine: no sockets, threads, clocks,
//! files or randomness, `#![no_std]` + `alloc`. You own the event loop; this crate owns every
//! protocol decision.
//!
//! In the classic scheme the *client* picks five free ports and the kernel binds them later:
//! anything that grabs a port in between kills the kernel with `Address already in use`. With the
//! handshake the launcher binds a registration socket first, the kernel binds its five channels
//! on port 0, registers the ports it actually got with a signed `handshake_request`, and waits
//! for a `handshake_reply`. No window, no race.
//!
//! ## Two dialects
//!
//! JEP 66 is deployed in two incompatible dialects, and both machines speak both
//! ([`Dialect`]). The **Posit** dialect (ark ⇄ Kallichore) registers from a REQ with a full signed
//! `handshake_request` and gets a `handshake_reply`. The **upstream** dialect (jupyter_client
//! docs 5.6 ⇄ xeus) registers from a DEALER with `[<IDS|MSG>, HMAC(content), content]`, the
//! content naming the `kernel_id` and the ports as strings, and gets one signed content frame
//! (`ACK`). The launcher picks the dialect ([`LauncherConfig::dialect`], or from a kernelspec's
//! protocol version, [`LaunchMode::from_protocol_version`]) and writes it into the
//! registration file; the kernel reads it from the file
//! ([`KernelAction::ConnectRegistration`] says which socket to connect). The states are the same.
//!
//! ## A complete handshake, in memory
//!
//! Both machines are driven the same way: feed an input with the current time
//! (`handle_input` for the driver's own facts, `receive` for frames from the socket), then drain
//! `poll_output` until it returns [`Output::Timeout`]. Here the
//! "network" is a function call and the "clock" a number.
//!
//! ```
//! use jupyter_handshake::*;
//! use core::time::Duration;
//!
//! let key = Key::new("a0436f6c-1916-498b-8eb9-e81ab9368e84");
//! let mut now = Instant::from_micros(1_700_000_000_000_000);
//!
//! // The launcher asks for a registration socket; we "bind" it on port 5555.
//! let mut launcher = LauncherHandshake::new(LauncherConfig::new(key)?);
//! let Output::Action(LauncherAction::BindRegistration { .. }) = launcher.poll_output() else { panic!() };
//! launcher.handle_input(now, LauncherInput::RegistrationBound { port: 5555 })?;
//!
//! // It hands back the registration file to write and the deadline to wait until.
//! let mut file = None;
//! loop {
//!     match launcher.poll_output() {
//!         Output::Action(LauncherAction::WriteRegistrationFile(f)) => file = Some(f.to_json_pretty()),
//!         Output::Timeout(next) => { assert_eq!(next.at(), Some(now + Duration::from_secs(30))); break }
//!         _ => {}
//!     }
//! }
//!
//! // The kernel reads that file, binds its channels on port 0 and registers.
//! let file = KernelFile::from_json(&file.unwrap())?;
//! let mut kernel = KernelHandshake::new(file, KernelConfig::default());
//! let mut to_launcher = Vec::new();
//! let mut to_kernel = Vec::new();
//! let mut pump = |kernel: &mut KernelHandshake, now| loop {
//!     match kernel.poll_output() {
//!         Output::Action(KernelAction::BindChannels { .. }) => {
//!             let ports = KernelPorts { shell: 40001, iopub: 40002, stdin: 40003, control: 40004, hb: 40005 };
//!             kernel.handle_input(now, KernelInput::Bound(ports)).unwrap();
//!         }
//!         Output::Action(KernelAction::ConnectRegistration { endpoint, .. }) => {
//!             assert_eq!(endpoint, "tcp://127.0.0.1:5555");
//!             kernel.handle_input(now, KernelInput::RegistrationConnected).unwrap();
//!         }
//!         Output::Transmit(t) => to_launcher.push(t.frames),
//!         Output::Event(_) => {}
//!         Output::Timeout(_) => break,
//!     }
//! };
//! pump(&mut kernel, now);
//! assert_eq!(kernel.state(), KernelState::AwaitingReply);
//!
//! // The request crosses over (a ROUTER would prepend the peer's identity).
//! now = now + Duration::from_millis(3);
//! for frames in to_launcher.drain(..) {
//!     launcher.receive(now, &frames);
//! }
//! loop {
//!     match launcher.poll_output() {
//!         Output::Transmit(t) => to_kernel.push(t.frames),
//!         Output::Event(LauncherEvent::Registered { connection, .. }) => assert_eq!(connection.ports.shell, 40001),
//!         Output::Timeout(next) => { assert_eq!(next, Next::Done); break }
//!         _ => {}
//!     }
//! }
//! assert_eq!(launcher.state(), LauncherState::Connected);
//!
//! // The reply crosses back; the kernel is connected.
//! for frames in to_kernel.drain(..) {
//!     kernel.receive(now, &frames);
//! }
//! assert_eq!(kernel.state(), KernelState::Connected);
//! assert_eq!(kernel.connection(), launcher.connection());
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
//!
//! Over real sockets the loop is the same. The reference for embedding these machines in an
//! event loop of your own is `adapters/zmq/examples/own_loop.rs` in this workspace: one kernel and
//! one launcher driven from a single hand-written `zmq::poll` loop, no runtime, no thread
//! (`adapters/zmq/examples/many_in_one_thread.rs` runs 100 handshakes that way). The
//! `jupyter-handshake-zmq` drivers are the ready-made blocking version.
//!
//! ## The driving contract
//!
//! 1. Create the machine; drain `poll_output`.
//! 2. Do every [`Output::Action`] (bind, connect, write a file) and report the result as an input.
//!    Send every [`Output::Transmit`] on the registration socket. Log or act on events.
//! 3. [`Output::Timeout`] means "drained", and [`Next`] says what for: a [`Deadline`] (wait for a
//!    message, a process exit, a file change, or the deadline, whichever comes first; feed it in,
//!    `Timeout` for the deadline, and go to 2), [`Next::Input`] (nothing is timed: the machine
//!    waits for the result of an action), or [`Next::Done`] (finished).
//!
//! Rules that make this safe to drive from any loop:
//! * Every input carries `now`, and a passed deadline is acted on before the input is looked at;
//!   an early `Timeout` is a harmless no-op. Read the clock once per wake-up: facts fed with the
//!   same `now` are facts of one instant, and their outcome does not depend on the order they are
//!   fed in (a kernel exit takes effect after the other facts of its instant; see
//!   [`LauncherHandshake`]).
//! * Deadlines are armed only at state transitions, inside `handle_input`, never while polling;
//!   `poll_output` never changes the state.
//! * Anything received that fails decoding, verification or checks is dropped, reported as a
//!   `Rejected` event, and changes nothing. A well-signed request with unusable content is
//!   answered with an error and reported as `Refused`; that changes nothing either. Only the
//!   driver's own mistakes return `Err` ([`UsageError`]).
//! * `Connected` and `Failed` are terminal.
//!
//! ## States
//!
//! Kernel side ([`KernelState`]):
//!
//! ```text
//! Init ─Bound(ports)→ Bound ─RegistrationConnected (REQ | DEALER)→ AwaitingReply ─ack→ [Registered ─IOPub sub→] Connected
//!   │ (classic file: Init ─Bound(ports)→ [Registered →] Connected)         │
//!   └──────────────────── deadline, refusal, abort ────────────────────────┴──→ Failed
//! ```
//!
//! Launcher side ([`LauncherState`]):
//!
//! ```text
//! Init ─RegistrationBound(port)→ Bound ─verified request (file's dialect) | file rewritten by the kernel→ Connected
//!                                  └──────────── deadline, kernel exited, abort ───────────────→ Failed
//! ```
//!
//! Classic launches (the launcher picks the ports) make no protocol decision and have no machine:
//! write [`ConnectionFile::new`] and start the kernel.
//!
//! Many kernels, one registration socket ([`Registrar`]): one long-lived socket and any number
//! of launches, each a launcher machine with its own key; a message is attributed by the key that
//! verifies it, and goes to that launch alone. Its cost does not grow with the launches served. Restarts re-arm a launch on the same
//! socket with the same key:
//!
//! ```text
//! Registrar: Init ─RegistrationBound(port)→ Bound;  each launch: Bound → Connected | Failed ─rearm→ Bound
//! ```
//!
//! The details of each transition are in the docs of [`KernelHandshake`], [`LauncherHandshake`]
//! and [`Registrar`].
//!
//! ## The public surface
//!
//! | | |
//! |---|---|
//! | machines | [`KernelHandshake`], [`LauncherHandshake`], [`Registrar`], and their configs, states, inputs, actions, events and errors |
//! | what they hand back | [`Output`], [`Next`], [`Deadline`], [`Waiting`], [`Transmit`], [`Failure`], [`ExitStatus`], [`Rejection`], [`UsageError`] |
//! | files | [`ConnectionFile`], [`RegistrationFile`], [`KernelFile`], [`KernelPorts`], [`Transport`], [`Dialect`], [`LaunchMode`] |
//! | keys | [`Key`], [`SignatureScheme`], [`Signer`] |
//! | time | [`Instant`]: time as a value |
//! | [`wire`] | multipart framing, full messages and the upstream content-only framing: split (zero-copy, zero-alloc) and join |
//! | [`message`] | headers, handshake messages of both dialects, a [`Session`](message::Session) that builds signed messages |
//!
//! Secrets: [`Key`] and the files holding one never print the key in `Debug`, and no error or
//! event carries a key or the raw bytes of a received frame.

#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "fuzzing")]
extern crate std;

mod connection;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod json;
mod kernel;
mod launcher;
pub mod message;
mod output;
mod registrar;
mod sign;
mod time;
pub mod wire;

pub use connection::{
    ConnectionFile, ConnectionFileError, Dialect, ExtraFields, FileKind, KernelFile, KernelPorts,
    LaunchMode, PortsError, RegistrationFile, Transport, UpstreamRegistration,
};
pub use json::{JsonError, JsonKind};
pub use kernel::{
    KernelAction, KernelConfig, KernelEvent, KernelHandshake, KernelInput, KernelOutput,
    KernelState, RegistrationSocket,
};
pub use launcher::{
    Evidence, LauncherAction, LauncherConfig, LauncherEvent, LauncherHandshake, LauncherInput,
    LauncherOutput, LauncherState,
};
pub use output::{
    Deadline, EmptyKey, ExitStatus, Failure, Next, Output, Rejection, Transmit, UsageError, Waiting,
};
pub use registrar::{
    LaunchConfig, LaunchId, Registrar, RegistrarAction, RegistrarConfig, RegistrarError,
    RegistrarEvent, RegistrarInput, RegistrarOutput, RegistrarState,
};
pub use sign::{Key, Signature, SignatureScheme, Signer, UnknownSignatureScheme, VerifyError};
pub use time::Instant;
