//! # jupyter-handshake-zmq
//!
//! Thin ZeroMQ drivers for the [`jupyter_handshake`] sans-IO core: they bind, connect, send,
//! receive, sleep until the core's deadline, write files, spawn and watch kernel processes, and
//! report all of it to the core's machines. Every protocol decision — is this message valid, is
//! the file rewritten, has the time run out — is the core's.
//!
//! * [`blocking`] (feature `blocking`, on by default): the kernel side
//!   ([`start_kernel`](blocking::kernel::start_kernel)), the launcher side
//!   ([`launch`](blocking::launcher::launch)) and a small [`Client`](blocking::client::Client),
//!   over the `zmq` crate (libzmq 4.3, bundled).
//! * [`asynchronous`] (feature `async`): the same three as `async fn`s over `async_zmq`, on any
//!   executor; see its docs for what that costs (a reactor thread) and the `latency` example
//!   for what it measures.
//! * [`launch`], [`kernel`], [`client`]: the one [`Launcher`](launch::Launcher),
//!   [`StartedKernel`](kernel::StartedKernel) and [`Client`](client::Client) types (each over
//!   the socket it waits on), the options and results, and each side's engine: a sans-IO object
//!   that says what it waits on and is told what woke it, driven by one `zmq::poll` loop
//!   (blocking) or one future (async).
//! * [`clock`], [`files`], [`kernelspec`], [`error`]: what any driver needs — the core's timeline,
//!   private atomic files, the Jupyter runtime dir, keys and session ids, kernelspecs and the
//!   launch mode they imply.
//!
//! The [`blocking`] module docs show a complete launch: a kernelspec, a race-free launch, a
//! client, a clean shutdown.
//!
//! Secrets: no `Display` or `Debug` of this crate shows a connection key; keys only ever go
//! into files written with mode 0600.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
pub mod error;
pub mod files;
pub mod kernelspec;
pub mod process;

#[cfg(any(feature = "blocking", feature = "async"))]
pub mod client;
#[cfg(any(feature = "blocking", feature = "async"))]
pub mod kernel;
#[cfg(any(feature = "blocking", feature = "async"))]
pub mod launch;
#[cfg(any(feature = "blocking", feature = "async"))]
mod sockets;
#[cfg(any(feature = "blocking", feature = "async"))]
mod wait;

#[cfg(feature = "async")]
pub mod asynchronous;
#[cfg(feature = "blocking")]
pub mod blocking;
#[cfg(all(test, unix, feature = "blocking", feature = "async"))]
mod fleet_tests;

pub use clock::Clock;
pub use error::{Error, LaunchError};
pub use kernelspec::{KernelSpec, LaunchMode};

/// The core crate, re-exported so callers use the same version as the drivers.
pub use jupyter_handshake;
#[cfg(any(feature = "blocking", feature = "async"))]
/// The `zmq` crate, re-exported so callers use the same version as the drivers.
pub use zmq;
