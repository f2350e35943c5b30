//! The driver's one error type. Messages name sockets, endpoints, files and sizes; never a key,
//! never received bytes.

use std::path::PathBuf;
use std::time::Duration;

use jupyter_handshake::{ConnectionFileError, Failure, RegistrarError, Rejection, UsageError};

/// What went wrong in a driver: its own I/O, or the core's verdict ([`Error::Handshake`],
/// [`Error::Failed`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A ZeroMQ socket could not be bound, connected, or used.
    #[error("cannot {action} the {socket} socket{}: {source}", at(.endpoint))]
    Socket {
        /// `bind`, `connect`, `send`, `receive`.
        action: &'static str,
        /// Which socket.
        socket: &'static str,
        /// Its endpoint, when one is involved.
        endpoint: Option<String>,
        /// What zeromq said.
        source: zeromq::ZmqError,
    },
    /// The driver's own registration socket ([`router`](crate::router)) could not be bound or
    /// served.
    #[error("cannot {action} the {socket} socket{}: {source}", at(.endpoint))]
    Io {
        /// `bind`, `create the lock file of`.
        action: &'static str,
        /// Which socket.
        socket: &'static str,
        /// Its endpoint, when one is involved.
        endpoint: Option<String>,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A bound endpoint the driver cannot use.
    #[error("endpoint {endpoint}: {reason}")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: &'static str,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    ReadFile {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not a connection or registration file.
    #[error("{} is not a usable connection or registration file: {source}", .path.display())]
    InvalidFile {
        /// Which file.
        path: PathBuf,
        /// Why (field names and kinds, never values).
        source: ConnectionFileError,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", .path.display())]
    WriteFile {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel side's handshake failed (the core's reason).
    #[error("handshake failed: {0}")]
    Handshake(Failure),
    /// A launch failed (the core's reason), with the last message it dropped, if any.
    #[error("launch failed: {failure}{}", last(.last_rejection))]
    Failed {
        /// Why the core gave up.
        failure: Failure,
        /// The last message or file it dropped, and why.
        last_rejection: Option<Rejection>,
    },
    /// The kernel command is empty.
    #[error("the kernel command is empty")]
    EmptyCommand,
    /// Classic mode picks ports instead of waiting for a registration: it has nothing to share
    /// a registration socket for (use the free `launch`).
    #[error("classic mode cannot share a registration socket; launch classic kernels one by one")]
    ClassicCannotShare,
    /// Picking the five ports of a classic launch failed.
    #[error("cannot pick free ports: {0}")]
    Ports(std::io::Error),
    /// The launch's [`Cancel`](crate::process::Cancel) was cancelled: every kernel it started
    /// was stopped and every file it wrote removed.
    #[error("the launch was cancelled")]
    Cancelled,
    /// The kernel could not be started.
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        /// argv\[0\].
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Waiting for the kernel process failed.
    #[error("cannot watch the kernel process: {0}")]
    Wait(std::io::Error),
    /// A client wait ran out of time.
    #[error("timed out after {waited:?} waiting for {waiting_for} ({dropped} invalid messages dropped{})", last_dropped.as_ref().map(|l| format!(", last: {l}")).unwrap_or_default())]
    Timeout {
        /// What never came.
        waiting_for: String,
        /// How long it was awaited.
        waited: Duration,
        /// How many messages were dropped meanwhile.
        dropped: usize,
        /// Why the last one was.
        last_dropped: Option<String>,
    },
    /// The `Launcher` has no such launch, or cannot re-arm it.
    #[error(transparent)]
    Registrar(#[from] RegistrarError),
    /// The driver fed the core an input it cannot take: a bug in this crate.
    #[error("driver bug: {0}")]
    Usage(#[from] UsageError),
    /// A state the driver should never reach: a bug in this crate.
    #[error("driver bug: {0}")]
    Internal(&'static str),
}

fn at(endpoint: &Option<String>) -> String {
    endpoint
        .as_ref()
        .map(|e| format!(" at {e}"))
        .unwrap_or_default()
}

fn last(rejection: &Option<Rejection>) -> String {
    rejection
        .as_ref()
        .map(|r| format!(" (last dropped: {r})"))
        .unwrap_or_default()
}
