//! The one seam between the tool and a driver: the little the tool needs from one, written so
//! that the tool's logic (arguments, reports, the trace, the fleet's bookkeeping, the checks,
//! the demo) exists once.
//!
//! Two backends provide the same functions and types, chosen by the package's features:
//!
//! * `zmq` (default): the blocking libzmq driver, `jupyter-handshake-zmq` ([`zmq`](self));
//! * `tokio`: the pure-Rust driver, `jupyter-handshake-tokio`, on a tokio runtime the backend
//!   owns, its futures run to completion with `block_on` (the tool is a synchronous program).
//!
//! With both features (as `cargo clippy --all-features` builds it), `zmq` is the one used and
//! the tokio backend is still compiled, so both stay building and linted.
//!
//! What a backend provides: a [`Driver`] (the libzmq context or the tokio runtime) that
//! launches one kernel or N through one registration socket, with an observer and a
//! [`Cancel`]; a [`Client`] for `kernel_info` and `shutdown`; the kernel side's start-up; and
//! the kernel's serve loop, which moves frames between the five sockets and the I/O-free
//! [`Kernel`](crate::serve::Kernel).

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use jupyter_handshake::{ConnectionFile, Evidence, LaunchId, Transport};

pub(crate) use jupyter_handshake_zmq::clock::Clock;
pub(crate) use jupyter_handshake_zmq::error::quote;
pub(crate) use jupyter_handshake_zmq::files::{new_session_id, runtime_dir};
pub(crate) use jupyter_handshake_zmq::kernelspec::{KernelSpec, LaunchMode};
pub(crate) use jupyter_handshake_zmq::process::{
    Cancel, ParentWatch, STOP_GRACE, raise_open_files_limit,
};

#[cfg(feature = "zmq")]
mod zmq;
#[cfg(feature = "zmq")]
pub(crate) use self::zmq::{Channels, Child, Client, Driver};

#[cfg(not(feature = "zmq"))]
compile_error!("jupyter-handshake-cli needs a driver: enable the feature `zmq` (default)");

/// Where a kernel's stdout or stderr go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stdio {
    /// The tool's own stream.
    Inherit,
    /// The tool's stderr (so that its stdout carries only the report).
    Stderr,
    /// A pipe, read with [`Child::take_stderr`].
    Piped,
}

/// How to launch: what the tool decides from its command line and the kernelspec.
#[derive(Clone, Debug)]
pub(crate) struct LaunchSettings {
    /// Registration file (either dialect) or classic connection file.
    pub(crate) mode: LaunchMode,
    /// How long the kernel has to register.
    pub(crate) timeout: Duration,
    /// The address (or, over ipc, the socket files' path prefix).
    pub(crate) ip: String,
    /// tcp or ipc.
    pub(crate) transport: Transport,
    /// Where the file goes (default: the Jupyter runtime dir).
    pub(crate) dir: Option<PathBuf>,
    /// The kernel's name in Jupyter, if launched from a kernelspec.
    pub(crate) kernel_name: Option<String>,
    /// Extra environment variables for the kernel.
    pub(crate) env: Vec<(OsString, OsString)>,
    /// The kernel's stdout.
    pub(crate) stdout: Stdio,
    /// The kernel's stderr.
    pub(crate) stderr: Stdio,
    /// Set by SIGINT/SIGTERM: the launch then stops its kernels and removes its files.
    pub(crate) cancel: Cancel,
}

impl LaunchSettings {
    /// A handshake launch on 127.0.0.1 over tcp, the kernel's output on the tool's stderr.
    pub(crate) fn new(cancel: Cancel) -> Self {
        Self {
            mode: LaunchMode::Handshake,
            timeout: Duration::from_secs(30),
            ip: "127.0.0.1".into(),
            transport: Transport::Tcp,
            dir: None,
            kernel_name: None,
            env: Vec::new(),
            stdout: Stdio::Stderr,
            stderr: Stdio::Inherit,
            cancel,
        }
    }
}

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

/// A kernel that registered (or, classic, was started).
#[derive(Debug)]
pub(crate) struct Launched {
    /// How to reach it (its `Debug` hides the key).
    pub(crate) connection: ConnectionFile,
    /// How its ports are known.
    pub(crate) evidence: Evidence,
    /// Its process, the leader of its own process group.
    pub(crate) child: Child,
    /// The file handed to it (it holds the key).
    pub(crate) file: PathBuf,
    /// From its spawn to its registration.
    pub(crate) registered_after: Duration,
    /// Its launch on a shared registration socket (`--count`).
    pub(crate) launch_id: Option<LaunchId>,
}

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

/// How the kernel side starts.
#[derive(Clone, Debug)]
pub(crate) struct KernelSettings {
    /// How long to wait for the launcher's reply.
    pub(crate) ack_timeout: Duration,
    /// Wait for the first IOPub subscriber before serving, at most this long.
    pub(crate) wait_for_iopub: Option<Duration>,
    /// Also write the final connection file here.
    pub(crate) write_connection_file: Option<PathBuf>,
    /// The session of every message this kernel sends.
    pub(crate) session_id: String,
    /// Their username.
    pub(crate) username: String,
}

impl Default for KernelSettings {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(10),
            wait_for_iopub: None,
            write_connection_file: None,
            session_id: new_session_id(),
            username: "kernel".into(),
        }
    }
}

/// A kernel side whose channels are bound and registered.
pub(crate) struct Started {
    /// Its connection information.
    pub(crate) connection: ConnectionFile,
    /// The topic of an IOPub subscription consumed during the start, to be welcomed.
    pub(crate) first_subscription: Option<Vec<u8>>,
    /// The five bound sockets, for [`Driver::serve`].
    pub(crate) channels: Channels,
}
