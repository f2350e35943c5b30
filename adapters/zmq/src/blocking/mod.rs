//! Blocking drivers over the `zmq` crate (libzmq 4.3, bundled).
//!
//! * [`kernel::start_kernel`]: the kernel side. Binds the five channels, performs the handshake
//!   when the file is a registration file, and hands back the bound sockets.
//! * [`launcher::launch`]: the launcher side. Binds the registration socket, writes the file,
//!   spawns the kernel, watches its socket, process and file, and hands back the kernel's
//!   connection information and the child.
//! * [`client::Client`]: a connected client for a kernel, to check that the launch worked.
//!
//! Each driver owns one core machine and follows the core's contract to the letter: do the
//! actions, send the transmits, report everything that happens as an input with the current
//! [`Clock`](crate::Clock) time, drain `poll_output` until `Timeout`, sleep until the deadline it
//! names or until something happens. Every decision (is this message valid, is the file
//! rewritten, has the time run out) is the core's.
//!
//! Launching a kernel race-free and talking to it:
//!
//! ```no_run
//! use std::time::Duration;
//! use jupyter_handshake_zmq::blocking::{Client, LaunchOptions, launch};
//! use jupyter_handshake_zmq::KernelSpec;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = KernelSpec::read("/usr/share/jupyter/kernels/python3".as_ref())?;
//! let options = LaunchOptions { mode: spec.launch_mode(), ..LaunchOptions::default() };
//! let ctx = zmq::Context::new();
//! let mut launched = launch(&ctx, &spec.argv, &options, &mut |at, event| {
//!     eprintln!("{} {event:?}", at.to_iso8601());
//! })?;
//! let mut client = Client::connect(&ctx, &launched.connection)?;
//! let info = client.wait_for_ready(Duration::from_secs(10))?;
//! println!("{} registered after {:?} ({:?})", info["implementation"], launched.registered_after, launched.evidence);
//! client.shutdown(Duration::from_secs(5))?;
//! launched.child.wait()?;
//! launched.remove_file()?;
//! # Ok(()) }
//! ```
//!
//! All functions take the caller's [`zmq::Context`]; sockets are created in it, so the caller
//! decides when the context is terminated (after the sockets returned to it are dropped).

pub mod client;
pub mod kernel;
pub mod launcher;
#[cfg(test)]
pub(crate) mod testkit;

pub use client::Client;
pub use kernel::{KernelSockets, StartedKernel, start_kernel, start_kernel_with};
pub use launcher::{Launcher, launch};

pub use crate::client::{Channel, ExecuteOutcome};
pub use crate::kernel::KernelOptions;
pub use crate::launch::{ChildStdio, LaunchOptions, Launched};

#[cfg(test)]
pub(crate) use crate::sockets::{bind, socket};
