//! What both machines hand back, and why they reject or fail.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::connection::{ConnectionFileError, PortsError};
use crate::message::MessageError;
use crate::sign::VerifyError;
use crate::time::Instant;
use crate::wire::DecodeError;

/// One pull from a machine's `poll_output`.
///
/// Drain it after every input until it returns [`Output::Timeout`], which means "nothing else is
/// queued": then wait for I/O, or for the deadline it names ([`Next`]).
#[derive(Debug)]
pub enum Output<A, E> {
    /// Frames to send on the registration socket, in order, as one multipart message.
    Transmit(Transmit),
    /// Something the driver must do (bind, connect, write a file). Never optional.
    Action(A),
    /// Something that happened; for logs, metrics and the caller's own logic.
    Event(E),
    /// Nothing is queued: what to wait for next.
    Timeout(Next),
}

/// What a drained machine waits for: the last word of every drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait for input until this deadline, then feed the machine's `Timeout` input.
    Deadline(Deadline),
    /// Nothing is timed: the machine waits for the driver to report on an action it asked for
    /// (a bind, a connect), or, for a registrar, for new launches and messages.
    Input,
    /// The machine is finished (`Connected` or `Failed`): nothing more will come.
    Done,
}

impl Next {
    /// The instant to wake up at, if any.
    pub fn at(&self) -> Option<Instant> {
        match self {
            Self::Deadline(deadline) => Some(deadline.at),
            Self::Input | Self::Done => None,
        }
    }
}

/// A named timer: when it was armed, when it passes, and what it waits for. Deadlines are armed
/// only at state transitions, inside `handle_input`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// When it passes.
    pub at: Instant,
    /// When it was armed.
    pub armed_at: Instant,
    /// What the machine waits for until then.
    pub waiting_for: Waiting,
}

impl Deadline {
    pub(crate) fn after(now: Instant, wait: Duration, waiting_for: Waiting) -> Self {
        Self {
            at: now + wait,
            armed_at: now,
            waiting_for,
        }
    }

    /// Whether it has passed at `now`.
    pub fn passed(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// What a machine fails with when this deadline passes at `now`.
    pub(crate) fn failure(&self, now: Instant) -> Failure {
        match self.waiting_for {
            Waiting::ExitSettling(status) => Failure::KernelExited(status),
            waiting_for => Failure::Timeout {
                waiting_for,
                waited: now.saturating_duration_since(self.armed_at),
            },
        }
    }
}

/// A multipart message to send, signed, with the routing identities it must go back through
/// (empty on a REQ or REP socket; the peer's envelope on a ROUTER).
#[derive(Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The frames, identities first.
    pub frames: Vec<Vec<u8>>,
}

impl fmt::Debug for Transmit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Frame sizes only: content may be of interest to nobody but the peer.
        f.debug_struct("Transmit")
            .field(
                "frame_lens",
                &self.frames.iter().map(Vec::len).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a machine was waiting for when its deadline passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// The launcher's `handshake_reply` (kernel side).
    Reply,
    /// The first IOPub subscription (kernel side, when configured).
    IopubSubscription,
    /// The kernel's registration (launcher side).
    Registration,
    /// The kernel exited (launcher side); the other facts of the instant its exit was seen in
    /// are still looked at, so that the outcome does not depend on the order the driver feeds
    /// them in. Passes one microsecond after the exit was reported, failing the launch with
    /// [`Failure::KernelExited`].
    ExitSettling(ExitStatus),
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reply => "the launcher's handshake_reply",
            Self::IopubSubscription => "the first IOPub subscription",
            Self::Registration => "the kernel's registration",
            Self::ExitSettling(_) => "the rest of the instant the kernel exited in",
        })
    }
}

/// Why a machine ended in `Failed`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The deadline passed.
    #[error("timed out after {}.{:03} s waiting for {waiting_for}", waited.as_secs(), waited.subsec_millis())]
    Timeout {
        /// What never came.
        waiting_for: Waiting,
        /// How long it was awaited.
        waited: Duration,
    },
    /// The launcher answered `status: error` (kernel side).
    #[error("the launcher refused the registration{}", reason_suffix(.reason))]
    Refused {
        /// The launcher's reason, sanitised and truncated.
        reason: Option<String>,
    },
    /// The kernel process ended before it registered (launcher side).
    #[error("the kernel exited before it registered ({0})")]
    KernelExited(ExitStatus),
    /// The caller aborted.
    #[error("aborted by the caller")]
    Aborted,
}

fn reason_suffix(reason: &Option<String>) -> String {
    match reason {
        Some(r) => alloc::format!(": {r}"),
        None => String::new(),
    }
}

/// How a kernel process ended, as the driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal (Unix).
    Signal(i32),
    /// The platform did not say.
    Unknown,
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit status {code}"),
            Self::Signal(signal) => write!(f, "killed by signal {signal}"),
            Self::Unknown => f.write_str("unknown exit status"),
        }
    }
}

/// Why an input was dropped. A rejection never changes a machine's state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The frames are not a Jupyter message.
    #[error("not a Jupyter message: {0}")]
    Decode(#[from] DecodeError),
    /// The signature is missing, malformed or wrong: forged, or made with another key.
    #[error("bad signature: {0}")]
    Signature(#[from] VerifyError),
    /// Correctly signed, but the JSON is not what the message type requires.
    #[error("malformed message: {0}")]
    Malformed(#[from] MessageError),
    /// Correctly signed, but of another type than the one awaited.
    #[error("expected a {expected} message, got {got:?}")]
    UnexpectedType {
        /// The awaited `msg_type`.
        expected: &'static str,
        /// The received `msg_type` (sanitised and truncated).
        got: String,
    },
    /// A reply whose parent is not our request.
    #[error("reply is not to our request (its parent_header.msg_id differs)")]
    WrongParent,
    /// A changed file that is not (yet) a usable connection file: a partial write, or still the
    /// registration file we handed over.
    #[error("the kernel's file is not a complete connection file yet: {0}")]
    FileNotReady(ConnectionFileError),
    /// A rewritten file with another key than ours: not our kernel's.
    #[error("the rewritten file carries another key")]
    FileKeyMismatch,
    /// A rewritten file whose ports cannot be a kernel's.
    #[error("the rewritten file's ports are unusable: {0}")]
    FilePorts(PortsError),
    /// A message arrived before the machine sent anything that could be answered.
    #[error("nothing is awaited in the current state")]
    Unsolicited,
    /// The handshake is over; late or duplicate input is ignored.
    #[error("the handshake is already finished")]
    Finished,
    /// A well-signed upstream request whose `kernel_id` is not the one in our file.
    #[error("the request names another kernel_id than ours")]
    WrongKernel,
    /// A request whose signature was already accepted once (a replay of an earlier run's
    /// request, seen by a [`Registrar`](crate::registrar::Registrar) after a restart).
    #[error("replay of a request already accepted")]
    Replayed,
}

/// The caller fed an input the machine cannot take in its current state: a bug in the driver,
/// not the peer's doing (peer input never produces this).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("input `{input}` is not valid in state {state}")]
pub struct UsageError {
    /// The input.
    pub input: &'static str,
    /// The state it arrived in.
    pub state: &'static str,
}

/// A launcher was configured with an empty key. An empty key signs nothing and verifies
/// anything, so a launcher with one would register whoever reaches its socket first; it must be
/// asked for explicitly ([`LauncherConfig::unsigned`](crate::LauncherConfig::unsigned)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the key is empty: a launcher without a key accepts anyone's registration")]
pub struct EmptyKey;

/// The queue behind `poll_output`: what the last inputs produced, in order.
#[derive(Debug)]
pub(crate) struct Outbox<A, E> {
    queue: VecDeque<Output<A, E>>,
}

impl<A, E> Outbox<A, E> {
    pub(crate) fn new() -> Self {
        Self {
            queue: VecDeque::new(),
        }
    }

    pub(crate) fn transmit(&mut self, frames: Vec<Vec<u8>>) {
        self.queue.push_back(Output::Transmit(Transmit { frames }));
    }

    pub(crate) fn action(&mut self, action: A) {
        self.queue.push_back(Output::Action(action));
    }

    pub(crate) fn event(&mut self, event: E) {
        self.queue.push_back(Output::Event(event));
    }

    /// The next queued output, or `Timeout(next)` once drained.
    pub(crate) fn pop(&mut self, next: Next) -> Output<A, E> {
        self.queue.pop_front().unwrap_or(Output::Timeout(next))
    }
}

/// Keeps printable characters of a peer-supplied string, at most `max` of them.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    if text.chars().filter(|c| !c.is_control()).count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn sanitize_strips_control_characters_and_truncates() {
        assert_eq!(sanitize("a\u{1b}[31mb\nc", 10), "a[31mbc");
        assert_eq!(sanitize("abcdef", 3), "abc…");
    }

    #[test]
    fn failures_read_well() {
        let t = Failure::Timeout {
            waiting_for: Waiting::Reply,
            waited: Duration::from_millis(10_250),
        };
        assert_eq!(
            t.to_string(),
            "timed out after 10.250 s waiting for the launcher's handshake_reply"
        );
        assert_eq!(
            Failure::KernelExited(ExitStatus::Code(3)).to_string(),
            "the kernel exited before it registered (exit status 3)"
        );
        assert_eq!(
            Failure::KernelExited(ExitStatus::Signal(9)).to_string(),
            "the kernel exited before it registered (killed by signal 9)"
        );
        assert_eq!(
            Failure::Refused {
                reason: Some("busy".into())
            }
            .to_string(),
            "the launcher refused the registration: busy"
        );
    }
}
