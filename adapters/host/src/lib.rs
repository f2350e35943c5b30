//! # jupyter-handshake-host
//!
//! What every driver of the [`jupyter_handshake`] core needs from the operating system and
//! that is not the protocol, written once for all of them (the libzmq driver
//! `jupyter-handshake-zmq`, the tokio driver `jupyter-handshake-tokio`, and the
//! `jupyter-handshake` tool): no sockets, no runtime, no protocol decision.
//!
//! * [`clock`]: the core's timeline ([`Clock`]): wall-clock dates, monotonic deadlines.
//! * [`files`]: private atomic files, the Jupyter runtime dir, a registration file read that
//!   never blocks or reads without bound, the launcher's [`FileWatch`](files::FileWatch), keys
//!   and session ids.
//! * [`process`]: how a kernel is started (its own process group, `JPY_PARENT_PID`, stdin
//!   null) and stopped (its whole group, gracefully then by force), cancelling launches,
//!   a kernel's watch on its launcher, the open-file limit.
//! * [`kernelspec`]: `kernel.json`, and the [`LaunchMode`] it implies.
//! * [`options`]: [`LaunchOptions`](options::LaunchOptions) and
//!   [`KernelOptions`](options::KernelOptions), one type per side for every driver.
//! * [`classic`]: the five ports of a classic (racy) launch, picked the way jupyter_client
//!   picks them.
//! * [`quote`]: how an error message quotes a value (short, escaped).
//!
//! ```
//! use jupyter_handshake_host::{files, process, Clock, LaunchMode};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A private directory and a file only its owner can read, written atomically.
//! let dir = std::env::temp_dir().join(format!("jh-host-doc-{}", files::new_session_id()));
//! files::create_private_dir(&dir)?;
//! let path = dir.join("kernel-1.json");
//! files::write_private_atomic(&path, br#"{"ports": "soon"}"#)?;
//!
//! // The launcher's watch on it: news only when the kernel rewrites it.
//! let mut watch = files::FileWatch::new(path.clone(), br#"{"ports": "soon"}"#.to_vec());
//! assert_eq!(watch.changed(), None);
//! files::write_private_atomic(&path, br#"{"shell_port": 5}"#)?;
//! assert_eq!(watch.changed().as_deref(), Some(&br#"{"shell_port": 5}"#[..]));
//!
//! // A kernel command with the file's path in it, started the way launchers start kernels.
//! # #[cfg(unix)] {
//! let argv = process::substitute_connection_file(
//!     &["cat".into(), "{connection_file}".into()],
//!     &path,
//! );
//! let mut child = process::command(&argv, &[], process::ChildStdio::Null, process::ChildStdio::Null)?
//!     .spawn()?;
//! let status = process::stop(&mut child, process::STOP_GRACE)?;
//! assert!(status.success() || status.code().is_none());
//! # }
//!
//! let clock = Clock::new();
//! assert!(clock.until(clock.now() + Duration::from_secs(1)) <= Duration::from_secs(1));
//! assert_eq!(LaunchMode::from_protocol_version(Some("5.5")), LaunchMode::Handshake);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

pub mod classic;
pub mod clock;
pub mod files;
pub mod kernelspec;
pub mod options;
pub mod process;

pub use clock::Clock;
pub use kernelspec::{KernelSpec, KernelSpecError, LaunchMode};

/// The core crate, re-exported so callers use the same version.
pub use jupyter_handshake;

/// The most characters of a value (an endpoint, an address) an error message quotes.
pub const QUOTE_MAX_CHARS: usize = 64;

/// `text` as an error message may quote it: escaped (`escape_default`: no control character,
/// newline or non-ASCII byte reaches a terminal or a log as is), and at most
/// [`QUOTE_MAX_CHARS`] characters of that, then `…` when there was more. A 10 MB address makes
/// a one-line error, not a 10 MB one.
///
/// ```
/// use jupyter_handshake_host::quote;
/// assert_eq!(quote("tcp://127.0.0.1:5"), "tcp://127.0.0.1:5");
/// assert_eq!(quote("a\nb"), "a\\nb");
/// assert_eq!(quote(&"x".repeat(10_000_000)), format!("{}…", "x".repeat(64)));
/// ```
pub fn quote(text: &str) -> String {
    let mut out: String = text.escape_default().take(QUOTE_MAX_CHARS + 1).collect();
    if out.chars().count() > QUOTE_MAX_CHARS {
        out = out.chars().take(QUOTE_MAX_CHARS).collect();
        out.push('…');
    }
    out
}
