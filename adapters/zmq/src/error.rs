//! The adapters' errors. Each `Display` is one line that says what happened, and none ever
//! contains a connection key: keys are only ever written into files, never formatted.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use jupyter_handshake::ConnectionFileError;
use jupyter_handshake::RegistrarError;
use jupyter_handshake::{Failure, Rejection, UsageError};

/// `12.345 s`, the way the core's own messages print durations.
pub(crate) struct Secs(pub(crate) Duration);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03} s", self.0.as_secs(), self.0.subsec_millis())
    }
}

/// What can go wrong on the kernel side ([`start_kernel`](crate::blocking::kernel::start_kernel))
/// and in a [`Client`](crate::blocking::client::Client).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A connection or registration file is not valid.
    #[error("{}: {source}", path.display())]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ConnectionFileError,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A ZeroMQ socket could not be created, bound or connected.
    #[cfg(any(feature = "blocking", feature = "async"))]
    #[error("cannot {action} the {socket} socket{}: {source}", at(endpoint))]
    Socket {
        /// What was being done: "create", "bind", "connect", "configure".
        action: &'static str,
        /// Which socket (`shell`, `registration`, …).
        socket: &'static str,
        /// The endpoint, if one was involved, as a short escaped prefix ([`quote`]).
        endpoint: Option<String>,
        /// Why.
        #[source]
        source: zmq::Error,
    },
    /// Sending or receiving failed.
    #[cfg(any(feature = "blocking", feature = "async"))]
    #[error("cannot {action} on the {socket} socket: {source}")]
    Io {
        /// "send", "receive" or "poll".
        action: &'static str,
        /// Which socket.
        socket: &'static str,
        /// Why.
        #[source]
        source: zmq::Error,
    },
    /// An endpoint libzmq could not give back as a port, or that cannot be used at all.
    #[error("unusable endpoint '{endpoint}': {reason}")]
    Endpoint {
        /// The endpoint, as a short escaped prefix ([`quote`]).
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The handshake failed (the core's verdict: timeout, refusal, …).
    #[error(transparent)]
    Handshake(#[from] Failure),
    /// Nothing usable came back in time.
    #[error("no {waiting_for} within {}{}", Secs(*waited), dropped_suffix(*dropped, last_dropped))]
    Timeout {
        /// What was awaited, e.g. "reply to kernel_info_request".
        waiting_for: String,
        /// How long it was awaited.
        waited: Duration,
        /// How many messages were received but dropped as invalid meanwhile.
        dropped: usize,
        /// Why the last one was dropped.
        last_dropped: Option<String>,
    },
    /// A bug in this adapter or the core: something the driving contract rules out happened.
    #[error("internal error in the zmq adapter: {0}")]
    Internal(&'static str),
    /// A bug in this adapter: it fed the core an input that makes no sense in its state.
    #[error("internal error in the zmq adapter: {0}")]
    Usage(#[from] UsageError),
    /// The registrar refused a request of this adapter (an unknown launch, a restart of a
    /// launch still waiting, …).
    #[error("{0}")]
    Registrar(#[from] RegistrarError),
}

/// How an error message quotes a value (short, escaped): the host crate's, shared by every
/// driver.
pub use jupyter_handshake_host::{QUOTE_MAX_CHARS, quote};

#[cfg(any(feature = "blocking", feature = "async"))]
fn at(endpoint: &Option<String>) -> String {
    endpoint
        .as_ref()
        .map(|e| format!(" on {e}"))
        .unwrap_or_default()
}

fn dropped_suffix(dropped: usize, last: &Option<String>) -> String {
    match (dropped, last) {
        (0, _) => String::new(),
        (n, Some(reason)) => format!(" ({n} invalid message(s) dropped; last: {reason})"),
        (n, None) => format!(" ({n} invalid message(s) dropped)"),
    }
}

/// What can go wrong when launching a kernel
/// ([`launch`](crate::blocking::launcher::launch)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The kernel command line is empty.
    #[error("the kernel command line is empty")]
    EmptyCommand,
    /// The kernel process could not be started.
    #[error("cannot start the kernel `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel process could not be watched.
    #[error("cannot watch the kernel process: {0}")]
    Wait(#[source] io::Error),
    /// Free ports for a classic launch could not be found.
    #[error("cannot pick free ports for a classic launch: {0}")]
    Ports(#[source] io::Error),
    /// The kernel did not register (the core's verdict: it exited first — with its status —, or
    /// the deadline passed). The child has been killed if it was still running.
    #[error("{failure}{}", rejection_suffix(last_rejection))]
    Failed {
        /// Why, as the core says it.
        failure: Failure,
        /// The last message or file change that was dropped while waiting, if any: often the
        /// reason a timeout happened (a refused request, a wrong key, a half-written file).
        last_rejection: Option<Rejection>,
    },
    /// Setting up sockets or files failed.
    #[error(transparent)]
    Setup(#[from] Error),
    /// Classic mode picks ports instead of waiting for a registration: it has nothing to share
    /// a registration socket for.
    #[error("classic launches cannot share a registration socket; use `launch` for each")]
    ClassicCannotShare,
    /// Only a kernel launched through a shared registration socket (a `Launcher`) can be
    /// restarted through it.
    #[error("this kernel was not launched through a shared registration socket")]
    NotShared,
    /// The launch was cancelled through [`LaunchOptions::cancel`](crate::launch::LaunchOptions::cancel):
    /// every kernel it started has been stopped and every file it wrote removed.
    #[error("the launch was cancelled; its kernels were stopped and their files removed")]
    Cancelled,
}

impl From<RegistrarError> for LaunchError {
    fn from(error: RegistrarError) -> Self {
        Self::Setup(Error::Registrar(error))
    }
}

fn rejection_suffix(rejection: &Option<Rejection>) -> String {
    rejection
        .as_ref()
        .map(|r| format!(" (last input dropped: {r})"))
        .unwrap_or_default()
}

impl From<UsageError> for LaunchError {
    fn from(error: UsageError) -> Self {
        Self::Setup(Error::Usage(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jupyter_handshake::Waiting;

    #[test]
    fn messages_are_one_line() {
        let errors: Vec<String> = vec![
            Error::Handshake(Failure::Timeout {
                waiting_for: Waiting::Reply,
                waited: Duration::from_millis(10_000),
            })
            .to_string(),
            Error::Timeout {
                waiting_for: "reply to kernel_info_request".into(),
                waited: Duration::from_millis(1500),
                dropped: 2,
                last_dropped: Some("bad signature".into()),
            }
            .to_string(),
            LaunchError::Failed {
                failure: Failure::KernelExited(jupyter_handshake::ExitStatus::Code(3)),
                last_rejection: Some(Rejection::Unsolicited),
            }
            .to_string(),
            LaunchError::EmptyCommand.to_string(),
        ];
        assert_eq!(
            errors[0],
            "timed out after 10.000 s waiting for the launcher's handshake_reply"
        );
        assert_eq!(
            errors[1],
            "no reply to kernel_info_request within 1.500 s (2 invalid message(s) dropped; last: bad signature)"
        );
        assert_eq!(
            errors[2],
            "the kernel exited before it registered (exit status 3) (last input dropped: nothing is awaited in the current state)"
        );
        for e in errors {
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
