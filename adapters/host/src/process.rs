//! Kernel processes: starting a kernel, stopping its whole process group, cancelling launches,
//! watching the parent, and the open-file limit.
//!
//! * [`command`] is how every launcher starts a kernel: stdin null, `JPY_PARENT_PID` set, and
//!   the leader of a process group of its own. It returns a [`std::process::Command`], which
//!   `tokio::process::Command::from` takes as it is.
//! * Every kernel a launcher starts is the leader of a **process group of its own** (as
//!   jupyter_client starts kernels), so a signal for the kernel reaches everything it started:
//!   a kernel behind a wrapper script that does not `exec` is stopped with its wrapper, and a
//!   Ctrl-C at the terminal (SIGINT to the terminal's foreground group) reaches the launcher,
//!   not the kernels, which the launcher then stops in order. [`stop`] stops a group gracefully
//!   (SIGTERM, then SIGKILL after a grace period) and [`kill`] at once (SIGKILL), for a
//!   [`std::process::Child`]; [`terminate_group`], [`kill_group`] and [`group_is_empty`] are the
//!   same steps by pid, for a driver with its own child type (tokio's).
//! * A [`Cancel`] given to a launch (the drivers' `LaunchOptions::cancel`) ends it while in
//!   progress: every kernel it started is stopped and every file it wrote removed. A program
//!   that stops on SIGINT/SIGTERM sets it from its signal handler (the `jupyter-handshake` tool
//!   does, with `signal-hook`).
//! * The launcher puts its own pid in the kernel's environment as `JPY_PARENT_PID`
//!   ([`PARENT_PID_ENV`], ipykernel's convention): ipykernel exits when that process is gone.
//!   [`ParentWatch`] is the same watch for a kernel written with this crate.
//!
//! Signals and process groups are Unix notions; elsewhere [`stop`] and [`kill`] kill the direct
//! child only, and [`ParentWatch`] never reports the parent gone.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The environment variable through which a launcher tells a kernel its pid (ipykernel's name
/// for it): a kernel exits once that process is gone.
pub const PARENT_PID_ENV: &str = "JPY_PARENT_PID";

/// How long kernels stopped by a cancelled (or failed) launcher get between SIGTERM and
/// SIGKILL: the grace period the `jupyter-handshake` tool gives on SIGINT/SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How often [`stop`] looks whether the kernel has exited.
const EXIT_POLL: Duration = Duration::from_millis(5);

/// Where a kernel's stdout or stderr go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChildStdio {
    /// The launcher's own stream (default).
    #[default]
    Inherit,
    /// Nowhere.
    Null,
    /// The launcher's stderr (so that the launcher's stdout stays clean, for a JSON report say).
    Stderr,
    /// A pipe, readable from the child. Read it, or the kernel blocks once it is full.
    Piped,
}

impl ChildStdio {
    /// The [`Stdio`] to give a [`Command`].
    pub fn to_stdio(self) -> Stdio {
        match self {
            Self::Inherit => Stdio::inherit(),
            Self::Null => Stdio::null(),
            Self::Piped => Stdio::piped(),
            Self::Stderr => stderr_copy().unwrap_or_else(|_| Stdio::inherit()),
        }
    }
}

#[cfg(unix)]
fn stderr_copy() -> io::Result<Stdio> {
    use std::os::fd::AsFd;
    Ok(Stdio::from(io::stderr().as_fd().try_clone_to_owned()?))
}

#[cfg(windows)]
fn stderr_copy() -> io::Result<Stdio> {
    use std::os::windows::io::AsHandle;
    Ok(Stdio::from(io::stderr().as_handle().try_clone_to_owned()?))
}

#[cfg(not(any(unix, windows)))]
fn stderr_copy() -> io::Result<Stdio> {
    Ok(Stdio::inherit())
}

/// `argv` with every `{connection_file}` replaced by `path`, as jupyter_client formats a
/// kernelspec's argv.
pub fn substitute_connection_file(argv: &[String], path: &Path) -> Vec<String> {
    let path = path.to_string_lossy();
    argv.iter()
        .map(|arg| arg.replace("{connection_file}", &path))
        .collect()
}

/// The command that starts a kernel, as every launcher starts one: `argv` (its first item the
/// program; `{connection_file}` already substituted), `env` added to this process's
/// environment, stdin null, stdout and stderr as asked, `JPY_PARENT_PID` set to this process
/// (ipykernel's parent watch: the kernel exits once we are gone), and on Unix the leader of a
/// process group of its own, as jupyter_client starts kernels (stopping the kernel signals the
/// group, a wrapper's children too, and a Ctrl-C at our terminal is ours to handle).
///
/// Errors with [`io::ErrorKind::InvalidInput`] for an empty `argv`. On Windows a spawned child
/// inherits no handle but its stdio (std creates files and sockets non-inheritable).
pub fn command(
    argv: &[String],
    env: &[(OsString, OsString)],
    stdout: ChildStdio,
    stderr: ChildStdio,
) -> io::Result<Command> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an empty kernel command"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env(PARENT_PID_ENV, std::process::id().to_string())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout.to_stdio())
        .stderr(stderr.to_stdio());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    Ok(command)
}

/// How a child ended, in the core's terms (a signal is only known on Unix).
pub fn exit_status(status: ExitStatus) -> jupyter_handshake::ExitStatus {
    use jupyter_handshake::ExitStatus as Core;
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return Core::Signal(signal);
        }
    }
    status.code().map_or(Core::Unknown, Core::Code)
}

/// Sends SIGTERM to `child`'s process group (see the [module docs](self)) without waiting.
/// A group that is gone already is not an error.
pub fn terminate(child: &Child) -> io::Result<()> {
    terminate_group(child.id())
}

/// Sends SIGTERM to the process group led by `pid` (a kernel started by [`command`]) without
/// waiting; a group that is gone is not an error. Elsewhere than Unix: nothing (there is no
/// graceful request to send).
pub fn terminate_group(pid: u32) -> io::Result<()> {
    signal_group(pid, Signal::Term)
}

/// Sends SIGKILL to the process group led by `pid`; a group that is gone is not an error.
/// Elsewhere than Unix: nothing (kill the child itself).
pub fn kill_group(pid: u32) -> io::Result<()> {
    signal_group(pid, Signal::Kill)
}

/// Stops `child` and its process group: SIGTERM to the group, then up to `grace` for the child
/// and everything else in its group to exit (a kernel behind a wrapper gets the same time to
/// clean up as the wrapper), then SIGKILL to whatever is left, and reaps the child. Returns how
/// the child ended.
pub fn stop(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    terminate(child)?;
    let until = Instant::now() + grace;
    loop {
        let exited = !matches!(child.try_wait(), Ok(None));
        if (exited && group_is_empty(child.id())) || Instant::now() >= until {
            break;
        }
        std::thread::sleep(EXIT_POLL);
    }
    kill(child)
}

/// Kills `child`'s process group at once (SIGKILL; on other platforms, the child) and reaps the
/// child. The group is signalled even when the child has exited already, so that nothing it
/// started in its group outlives it. Returns how the child ended.
pub fn kill(child: &mut Child) -> io::Result<ExitStatus> {
    let result = kill_group(child.id());
    #[cfg(not(unix))]
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let status = child.wait()?;
    result.map(|()| status)
}

/// Whether no process is left in the group led by `pid` (asked once the leader has exited; a
/// zombie not yet reaped by its new parent still counts). Elsewhere than Unix: always.
#[cfg(unix)]
pub fn group_is_empty(pid: u32) -> bool {
    use rustix::process::{Pid, test_kill_process_group};
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return true;
    };
    matches!(test_kill_process_group(pid), Err(e) if e == rustix::io::Errno::SRCH)
}

/// Whether no process is left in the group led by `pid`. Elsewhere than Unix: always.
#[cfg(not(unix))]
pub fn group_is_empty(_pid: u32) -> bool {
    true
}

/// The two signals this module sends.
#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

#[cfg(unix)]
fn signal_group(pid: u32, signal: Signal) -> io::Result<()> {
    use rustix::process::{Pid, Signal as S, kill_process_group};
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(());
    };
    let signal = match signal {
        Signal::Term => S::TERM,
        Signal::Kill => S::KILL,
    };
    match kill_process_group(pid, signal) {
        // ESRCH: no process is left in the group.
        Err(e) if e == rustix::io::Errno::SRCH => Ok(()),
        other => other.map_err(io::Error::from),
    }
}

#[cfg(not(unix))]
fn signal_group(_pid: u32, _signal: Signal) -> io::Result<()> {
    // No process groups: no graceful request is available, and [`kill`] kills the child.
    Ok(())
}

/// Ends launches in progress from elsewhere (a signal handler, another thread): cheap to clone,
/// every clone sees [`cancel`](Self::cancel). Give one to a driver's `LaunchOptions::cancel`:
/// the launch then fails (`Cancelled`) within one tick (10 ms), having stopped every kernel it
/// started (gracefully, see [`stop`]) and removed every file it wrote.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every launch that holds this token (or a clone of it).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for code that sets an `Arc<AtomicBool>` (such as
    /// `signal_hook::flag::register`).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

/// A kernel's watch on the process that launched it: ipykernel's `JPY_PARENT_PID` convention.
///
/// A kernel whose launcher is gone (killed with SIGKILL, say, so that it could stop nothing)
/// has nobody left to serve, and should exit rather than hold its ports and key forever. Make
/// one at start-up and ask [`gone`](Self::gone) every second or so from the serve loop; the
/// `jupyter-handshake kernel` subcommand does, and exits with status 0 when it says so.
///
/// The parent is gone when the process named by `JPY_PARENT_PID` no longer exists, or when this
/// process's parent changed since the watch was made (it was re-parented: its parent died). A
/// kernel started through a wrapper that does not `exec` has the wrapper as its parent: it is
/// re-parented when the wrapper dies, which the launcher's process-group kill also does.
///
/// ```
/// use jupyter_handshake_host::process::ParentWatch;
/// let watch = ParentWatch::from_env();
/// assert!(!watch.gone(), "the process running this test is alive");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ParentWatch {
    /// From `JPY_PARENT_PID`: a pid above 1 (0 and 1 name no launcher).
    launcher: Option<u32>,
    /// Our parent when the watch was made.
    parent: Option<u32>,
}

impl ParentWatch {
    /// Watches the pid in `JPY_PARENT_PID` (if set to a pid above 1) and this process's parent.
    pub fn from_env() -> Self {
        let launcher = std::env::var(PARENT_PID_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok());
        Self::new(launcher)
    }

    /// Watches `launcher` (if a pid above 1) and this process's parent.
    pub fn new(launcher: Option<u32>) -> Self {
        Self {
            launcher: launcher.filter(|&pid| pid > 1),
            parent: parent_pid(),
        }
    }

    /// Whether the launcher (or the parent) is gone.
    pub fn gone(&self) -> bool {
        if self.parent.is_some() && parent_pid() != self.parent {
            return true;
        }
        self.launcher.is_some_and(|pid| !exists(pid))
    }
}

#[cfg(unix)]
fn parent_pid() -> Option<u32> {
    Some(std::os::unix::process::parent_id())
}

#[cfg(not(unix))]
fn parent_pid() -> Option<u32> {
    None
}

/// Whether process `pid` exists (a permission error means it does, owned by someone else).
#[cfg(unix)]
fn exists(pid: u32) -> bool {
    use rustix::process::{Pid, test_kill_process};
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    !matches!(test_kill_process(pid), Err(e) if e == rustix::io::Errno::SRCH)
}

#[cfg(not(unix))]
fn exists(_pid: u32) -> bool {
    true
}

/// Raises this process's soft limit on open files to its hard limit, and returns the new soft
/// limit (`None` where there is no such limit, or it cannot be read).
///
/// A launcher checking hundreds of kernels at once holds several descriptors per kernel
/// (sockets, and libzmq's mailbox per socket); the soft limit is often 1024 while the hard limit
/// is much higher. `jupyter-handshake launch --count` calls this.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            limit.current = limit.maximum;
            // Best effort: a refusal keeps the old limit, which is then reported.
            let _ = setrlimit(Resource::Nofile, limit);
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    None
}
