//! `jupyter-handshake kernel -f FILE`: the built-in kernel.
//!
//! Start-up is entirely the driver's `start_kernel`: it reads the file, binds the five channels
//! (on port 0 for a registration file, on the file's ports for a classic one), performs the
//! handshake when the file asks for it, and gives back the bound sockets. This module only maps
//! options, prints the trace, and hands the sockets to the driver's serve loop, which feeds the
//! [kernel](super::serve) their messages.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jupyter_handshake::message::Session;
use jupyter_handshake::{KernelEvent, Signer};
use jupyter_handshake_host::files::write_private_atomic;

use super::CliError;
use super::args::{Arg, Args, is_help, joined};
use super::driver::{Clock, Driver, KernelOptions, ParentWatch};
use super::serve::Kernel;
use super::trace::{Tracer, describe_kernel_event};

pub(crate) const HELP: &str = "\
jupyter-handshake kernel: a small but real Jupyter kernel (language 'text': code is echoed back)

Usage:
  jupyter-handshake kernel -f FILE [--ack-timeout SECS] [--wait-for-iopub SECS]
                           [--write-connection-file PATH]

FILE is either
  * a registration file {transport, ip, key, signature_scheme, registration_port}: the kernel
    binds its five channels on port 0 and registers the ports it got with the launcher (a
    signed handshake_request, JEP 66); no port can be stolen in between; or
  * a classic connection file with five ports: the kernel binds those (as any kernel does).

It then answers kernel_info, execute, shutdown (and a few more) requests on shell and control,
publishes status busy/idle around each on IOPub, welcomes IOPub subscribers, and echoes
heartbeats, until a shutdown_request arrives (exit status 0). It also exits, removing the file
of --write-connection-file, on SIGTERM (status 143) and when its launcher is gone (status 0):
the process named by JPY_PARENT_PID (set by launchers, ipykernel's convention) no longer exists,
or its own parent changed. A SIGTERM before it has registered (nothing of it is on disk yet)
ends it at once, as SIGTERM's default action does.

Options:
  -f, --connection-file FILE    the connection or registration file (required)
  --ack-timeout SECS            how long to wait for the launcher's handshake_reply (default 10);
                                with no reply in time the kernel exits with status 1
  --wait-for-iopub SECS         after registering, wait up to SECS for the first IOPub
                                subscriber before serving (default: do not wait)
  --write-connection-file PATH  also write the final connection file (with the key, mode 0600)
                                to PATH, as JEP 66 suggests
  -h, --help                    this help

Environment:
  JUPYTER_HANDSHAKE_TRACE=1     print each state-machine event on stderr as
                                'jupyter-handshake-trace <unix_micros> kernel <text>'
";

/// `jupyter-handshake kernel …`.
pub(crate) fn run(mut args: Args) -> Result<ExitCode, CliError> {
    // SIGTERM is ours first thing, so that no moment of the start-up is left to the default
    // action. While nothing of ours is on disk (`nothing_to_remove`), it ends the process at
    // once, as the default action would (a kernel waiting for its handshake_reply stops without
    // delay); from the moment the connection file may be written it only sets `terminated`, and
    // the serve loop stops in order and removes the file.
    let terminated = Arc::new(AtomicBool::new(false));
    let nothing_to_remove = Arc::new(AtomicBool::new(true));
    let term = signal_hook::consts::SIGTERM;
    signal_hook::flag::register_conditional_default(term, Arc::clone(&nothing_to_remove))
        .and_then(|_| signal_hook::flag::register(term, Arc::clone(&terminated)))
        .map_err(|e| CliError::failed(format!("cannot handle SIGTERM: {e}")))?;
    let mut file: Option<PathBuf> = None;
    let mut ack_timeout: Option<Duration> = None;
    let mut wait_for_iopub: Option<Duration> = None;
    let mut write_connection_file: Option<PathBuf> = None;
    while let Some(arg) = args.next_arg()? {
        match arg {
            Arg::Option(o) if is_help(&o) => {
                print!("{HELP}");
                return Ok(ExitCode::SUCCESS);
            }
            // `-f` is what kernelspecs pass; `--connection_file` is ark's spelling.
            Arg::Option(o)
                if matches!(
                    o.as_str(),
                    "-f" | "--f" | "--connection-file" | "--connection_file"
                ) =>
            {
                file = Some(args.path(&o)?);
            }
            Arg::Option(o) if o == "--ack-timeout" => ack_timeout = Some(args.seconds(&o)?),
            Arg::Option(o) if o == "--wait-for-iopub" => wait_for_iopub = Some(args.seconds(&o)?),
            Arg::Option(o) if o == "--write-connection-file" => {
                write_connection_file = Some(args.path(&o)?);
            }
            Arg::Option(o) => return Err(args.unknown(&o)),
            Arg::Positional(p) => return Err(args.unexpected(&p)),
            Arg::Rest(r) => return Err(args.unexpected(&joined(&r))),
        }
    }
    let file = file.ok_or_else(|| {
        CliError::usage("'kernel' needs -f FILE (see 'jupyter-handshake kernel --help')")
    })?;

    let tracer = Tracer::from_env();
    let mut options = KernelOptions::default();
    if let Some(t) = ack_timeout {
        options.ack_timeout = t;
    }
    options.wait_for_iopub = wait_for_iopub;
    // The connection file is written here, not by `start_kernel`, once SIGTERM no longer ends
    // the process at once (see above): then the file goes when we do, however we stop.
    let remove_own_file = || {
        if let Some(path) = &write_connection_file {
            let _ = std::fs::remove_file(path);
        }
    };
    // Made before anything can take long: the parent we must outlive no longer than it lives.
    let parent = ParentWatch::from_env();

    let driver = Driver::new()?;
    let started = match driver.start_kernel(&file, &options, &mut |at, event| {
        if tracer.enabled() {
            tracer.kernel(at, &describe_kernel_event(event));
        } else if matches!(event, KernelEvent::Rejected(_)) {
            // A dropped reply is worth a line even untraced: a forged or garbled message on the
            // registration socket, or a launcher using another key.
            super::say(format_args!(
                "jupyter-handshake kernel: {}",
                describe_kernel_event(event)
            ));
        }
    }) {
        Ok(started) => started,
        Err(e) => {
            // The JEP wants a kernel without an acknowledgement to go away, and at its
            // deadline, not a second later: nothing waits for its sockets' linger.
            driver.abandon();
            return Err(CliError::failed(format!("kernel start-up failed: {e}")));
        }
    };

    let connection = &started.connection;
    nothing_to_remove.store(false, Ordering::SeqCst);
    if let Some(path) = &write_connection_file {
        if let Err(e) = write_private_atomic(path, &connection.to_json_pretty()) {
            return Err(CliError::failed(format!(
                "cannot write the connection file {}: {e}",
                path.display()
            )));
        }
    }
    let signer = Signer::new(connection.signature_scheme, &connection.key);
    // The handshake's session id, so that every message of this process carries the same one.
    let session = Session::new(options.session_id.clone(), options.username.clone(), signer);
    let mut kernel = Kernel::new(session, Clock::new(), tracer);
    // SIGTERM (what a launcher that stops sends to our process group) ends the serve loop in
    // order, so that the file above is removed; so does the launcher's death.
    let mut why_stopped = None;
    let welcome = started.first_subscription.as_deref();
    let served = driver.serve(started.channels, &mut kernel, welcome, &mut || {
        if terminated.load(Ordering::SeqCst) {
            why_stopped = Some(Stopped::Terminated);
        } else if parent.gone() {
            why_stopped = Some(Stopped::ParentGone);
        }
        why_stopped.is_some()
    });
    // The file with the key goes first: nothing will connect again, and a launcher stopping us
    // (SIGTERM, then SIGKILL after its grace) may not wait for the linger below.
    remove_own_file();
    // Closing the driver flushes what is queued (within the sockets' linger).
    drop(driver);
    served?;
    match why_stopped {
        None => Ok(ExitCode::SUCCESS),
        Some(Stopped::ParentGone) => {
            super::say(format_args!(
                "jupyter-handshake kernel: the process that launched this kernel is gone; exiting"
            ));
            Ok(ExitCode::SUCCESS)
        }
        Some(Stopped::Terminated) => Err(CliError::with_code(
            "kernel stopped by SIGTERM",
            u8::try_from(128 + signal_hook::consts::SIGTERM).unwrap_or(1),
        )),
    }
}

/// Why the serve loop stopped before a `shutdown_request`.
#[derive(Clone, Copy)]
enum Stopped {
    /// SIGTERM came.
    Terminated,
    /// The launcher (`JPY_PARENT_PID`) or our parent is gone.
    ParentGone,
}
