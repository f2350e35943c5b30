//! The options of each side of a launch, one type for every driver: what a launcher or a
//! kernel asks of a driver does not depend on which ZeroMQ it runs on.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use jupyter_handshake::Transport;

use crate::LaunchMode;
use crate::files::new_session_id;
use crate::process::{Cancel, ChildStdio};

/// How a launch behaves, in either driver (`launch`, `Launcher`).
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// Registration file (default) or classic connection file; see
    /// [`KernelSpec::launch_mode`](crate::KernelSpec::launch_mode) to choose from a kernelspec.
    pub mode: LaunchMode,
    /// How long to wait for the kernel to register, from the moment the registration socket is
    /// bound; includes the kernel's start-up time (default 30 s, as Kallichore).
    pub timeout: Duration,
    /// Address written into the file: the kernel binds its channels on it and reaches the
    /// registration socket at it (default `127.0.0.1`).
    pub ip: String,
    /// Transport (default tcp).
    pub transport: Transport,
    /// Directory for the file (default [`runtime_dir`](crate::files::runtime_dir)); created, private, if missing.
    pub dir: Option<PathBuf>,
    /// `kernel_name` to write into a classic connection file and to set in the returned
    /// connection information (a registration file is written exactly as the core makes it).
    pub kernel_name: Option<String>,
    /// Extra environment variables for the kernel (a kernelspec's `env`, say).
    pub env: Vec<(OsString, OsString)>,
    /// Where the kernel's stdout goes (default: inherited).
    pub stdout: ChildStdio,
    /// Where the kernel's stderr goes (default: inherited).
    pub stderr: ChildStdio,
    /// Ends the launch early when cancelled (from a signal handler, say): every kernel it
    /// started is then stopped, gracefully (see [`process::stop`](crate::process::stop)),
    /// every file it wrote removed, and it fails with the driver's `Cancelled` error (default:
    /// none).
    pub cancel: Option<Cancel>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            mode: LaunchMode::Handshake,
            timeout: Duration::from_secs(30),
            ip: "127.0.0.1".into(),
            transport: Transport::Tcp,
            dir: None,
            kernel_name: None,
            env: Vec::new(),
            stdout: ChildStdio::Inherit,
            stderr: ChildStdio::Inherit,
            cancel: None,
        }
    }
}

/// How a kernel-side driver (`start_kernel`, in either driver) behaves.
#[derive(Clone, Debug)]
pub struct KernelOptions {
    /// How long to wait for the launcher's `handshake_reply` (default 10 s). The JEP says a kernel
    /// without an acknowledgement should shut down: `start_kernel` then fails.
    pub ack_timeout: Duration,
    /// Wait, after registering, until the first IOPub subscription arrives, for at most this
    /// long (ark waits 10 s), so nothing published before the client listens is lost. `None`
    /// (default): do not wait. A subscription consumed while waiting is returned as the started
    /// kernel's `first_subscription`. (The tokio driver's IOPub is
    /// then an XPUB the kernel keeps receiving on: see its `kernel` module.)
    pub wait_for_iopub: Option<Duration>,
    /// Write the kernel's own connection file here once connected (atomically, mode 0600), as
    /// the JEP suggests. Default: none.
    pub write_connection_file: Option<PathBuf>,
    /// The `session` of the handshake's headers; use the same id for the kernel's other messages
    /// (one per process). Default: a fresh random UUID.
    pub session_id: String,
    /// The `username` of the handshake's headers (default `kernel`, as ark).
    pub username: String,
}

impl Default for KernelOptions {
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
