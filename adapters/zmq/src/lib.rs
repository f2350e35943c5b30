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
//! * [`clock`], [`files`], [`kernelspec`], [`process`]: what any driver needs — the core's
//!   timeline, private atomic files, the Jupyter runtime dir, keys and session ids, kernelspecs
//!   and the launch mode they imply, kernel processes — from `jupyter-handshake-host`, which
//!   every driver shares (re-exported here under these names). [`error`]: this driver's errors.
//!
//! The [`blocking`] module docs show a complete launch: a kernelspec, a race-free launch, a
//! client, a clean shutdown.
//!
//! Secrets: no `Display` or `Debug` of this crate shows a connection key; keys only ever go
//! into files written with mode 0600.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub use jupyter_handshake_host::{clock, files, kernelspec, process};

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
/// The drivers' shared host crate (files, processes, clock, kernelspecs), re-exported.
pub use jupyter_handshake_host;
#[cfg(any(feature = "blocking", feature = "async"))]
/// The `zmq` crate, re-exported so callers use the same version as the drivers.
pub use zmq;

/// A private temporary directory for the tests, removed on drop.
#[cfg(test)]
pub(crate) mod temp {
    use std::path::PathBuf;

    /// A fresh private directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new() -> Self {
            let name = format!("jh-zmq-test-{}", crate::files::new_session_id());
            let dir = std::env::temp_dir().join(name);
            crate::files::create_private_dir(&dir).expect("a private temp dir");
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
