//! The one seam between the tool and a driver: the little the tool needs from one, written so
//! that the tool's logic (arguments, reports, the trace, the fleet's bookkeeping, the checks,
//! the demo) exists once.
//!
//! Two backends provide the same functions and types, chosen by the package's features:
//!
//! * `zmq` (default): the blocking libzmq driver, `jupyter-handshake-zmq`;
//! * `tokio`: the pure-Rust driver, `jupyter-handshake-tokio`, on a tokio runtime the backend
//!   owns, its futures run to completion with `block_on` (the tool is a synchronous program).
//!
//! With both features (as `cargo clippy --all-features` builds it), `zmq` is the one used and
//! the tokio backend is still compiled, so both stay building and linted.
//!
//! What a backend provides: a [`Driver`] (the libzmq context or the tokio runtime) that
//! launches one kernel or N through one registration socket, with an observer and a
//! [`Cancel`] (both drivers take the host crate's [`LaunchOptions`]); a [`Client`] for
//! `kernel_info` and `shutdown`; the kernel side's start-up ([`KernelOptions`]); and the
//! kernel's serve loop, which moves frames between the five sockets and the I/O-free
//! [`Kernel`](crate::serve::Kernel). The rest (clock, files, processes, kernelspecs) is the
//! host crate's, the same for both.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use jupyter_handshake::{ConnectionFile, Evidence, LaunchId};

// What is the same whichever driver runs: the host crate, which both drivers build on.
pub(crate) use jupyter_handshake_host::files::runtime_dir;
pub(crate) use jupyter_handshake_host::options::{KernelOptions, LaunchOptions};
pub(crate) use jupyter_handshake_host::process::{
    Cancel, ChildStdio, ParentWatch, STOP_GRACE, raise_open_files_limit,
};
pub(crate) use jupyter_handshake_host::{Clock, KernelSpec, LaunchMode, quote};

#[cfg(feature = "zmq")]
mod zmq;
#[cfg(feature = "zmq")]
pub(crate) use self::zmq::{Channels, Child, Client, Driver};

// With both features the tokio backend is compiled (and linted) but not used.
#[cfg(feature = "tokio")]
#[cfg_attr(feature = "zmq", allow(dead_code))]
mod tokio;
#[cfg(all(feature = "tokio", not(feature = "zmq")))]
pub(crate) use self::tokio::{Channels, Child, Client, Driver};

#[cfg(not(any(feature = "zmq", feature = "tokio")))]
compile_error!(
    "jupyter-handshake-cli needs a driver: enable the feature `zmq` (default) or `tokio`"
);

/// Why a launch gave no kernel.
#[derive(Debug)]
pub(crate) enum LaunchFailure {
    /// [`LaunchSettings::cancel`] was set: every kernel started was stopped, every file
    /// written removed.
    Cancelled,
    /// Anything else, as the driver says it.
    Failed(String),
}

impl fmt::Display for LaunchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled => f.write_str("the launch was cancelled"),
            Self::Failed(why) => f.write_str(why),
        }
    }
}

/// Why a client's request got no reply.
#[derive(Debug)]
pub(crate) enum RequestFailure {
    /// None came in time.
    Timeout(String),
    /// The client itself failed.
    Failed(String),
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(why) | Self::Failed(why) => f.write_str(why),
        }
    }
}

/// A kernel that registered (or, classic, was started); `C` is a backend's [`Child`] (both are
/// compiled with both features).
#[derive(Debug)]
pub(crate) struct Launched<C = Child> {
    /// How to reach it (its `Debug` hides the key).
    pub(crate) connection: ConnectionFile,
    /// How its ports are known.
    pub(crate) evidence: Evidence,
    /// Its process, the leader of its own process group.
    pub(crate) child: C,
    /// The file handed to it (it holds the key).
    pub(crate) file: PathBuf,
    /// From its spawn to its registration.
    pub(crate) registered_after: Duration,
    /// Its launch on a shared registration socket (`--count`).
    pub(crate) launch_id: Option<LaunchId>,
}

/// The outcome of each launch of a `--count` launch, at its command's index.
pub(crate) type Launches<C> = Vec<Result<Launched<C>, LaunchFailure>>;

impl Launched {
    /// Removes the file; one already gone is not an error.
    pub(crate) fn remove_file(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Stops the kernel's process group gracefully (SIGTERM, `grace`, SIGKILL), reaps it, and
    /// removes the file.
    pub(crate) fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        let status = self.child.stop(grace);
        self.remove_file()?;
        status
    }

    /// Kills the kernel's process group at once, reaps it, and removes the file.
    pub(crate) fn kill(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.kill();
        self.remove_file()?;
        status
    }
}

/// A kernel side whose channels are bound and registered; `Ch` is a backend's [`Channels`].
pub(crate) struct Started<Ch = Channels> {
    /// Its connection information.
    pub(crate) connection: ConnectionFile,
    /// The topic of an IOPub subscription consumed during the start, to be welcomed.
    pub(crate) first_subscription: Option<Vec<u8>>,
    /// The five bound sockets, for [`Driver::serve`].
    pub(crate) channels: Ch,
}
