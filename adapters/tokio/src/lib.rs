//! # jupyter-handshake-tokio
//!
//! A tokio driver for the [`jupyter_handshake`] sans-IO core, over the pure-Rust
//! [`zeromq`] crate.

pub mod client;
pub mod clock;
pub mod error;
pub mod files;
pub mod kernel;
pub mod launcher;
mod sockets;
pub use sockets::{frames, message};

pub use client::{Channel, Client, ExecuteOutcome};
pub use clock::Clock;
pub use error::Error;
pub use kernel::{
    Iopub, KernelOptions, KernelSockets, StartedKernel, start_kernel, start_kernel_with,
};
pub use launcher::{ChildStdio, LaunchOptions, Launched, Launcher, launch};

/// The core crate, re-exported so callers use the same version.
pub use jupyter_handshake;
/// The zeromq crate, re-exported so callers use the same version.
pub use zeromq;
