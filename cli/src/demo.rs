//! `jupyter-handshake demo`: the handshake, watched from both sides, on one clock.
//!
//! The demo launches this very binary's `kernel` subcommand through the driver's `launch`, so it
//! needs nothing installed. Two state machines take part, in two processes:
//!
//! * the launcher's, in this process: its events come from `launch`'s observer;
//! * the kernel's, in the child: it prints each event as a trace line on stderr
//!   (`JUPYTER_HANDSHAKE_TRACE=1`, see [`super::trace`]); a thread reads the pipe.
//!
//! Both processes stamp events with the core's timeline (Unix-epoch microseconds, advanced
//! monotonically), so the two streams merge into one timeline, sorted by time and shown in
//! milliseconds since the demo started. Then a client asks `kernel_info` and shuts the kernel
//! down, and those steps join the timeline too.

use std::io::{BufRead, BufReader, Read};
use std::process::ExitCode;
use std::thread::JoinHandle;
use std::time::Duration;

use jupyter_handshake::{Evidence, Instant, LauncherEvent};
use serde_json::Value;

use super::CliError;
use super::args::{Arg, Args, is_help, joined};
use super::driver::{ChildStdio, Clock, Driver, LaunchMode, LaunchOptions, Launched};
use super::launch::{Checked, check_and_stop, evidence_name, launch_failed, millis};
use super::signals::Stop;
use super::trace::{TRACE_ENV, describe_launcher_event, parse_line};

pub(crate) const HELP: &str = "\
jupyter-handshake demo: a race-free kernel launch, with both sides' state machines on one timeline

Usage:
  jupyter-handshake demo [--timeout SECS]

Launches this program's own kernel ('jupyter-handshake kernel -f {connection_file}') through the
JEP 66 handshake: the launcher binds a registration socket and writes a registration file; the
kernel binds its five channels on ports the OS picks and registers them with a signed
handshake_request; the launcher verifies it and replies. No port is ever chosen before the
kernel holds it, so nothing can steal one. The demo then asks kernel_info, shuts the kernel
down cleanly, and prints every state change of both machines with its time in milliseconds.
Needs nothing installed but this binary.

Options:
  --timeout SECS   how long to wait for the registration and for kernel_info (default 30)
  -h, --help       this help
";

/// Who did something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Launcher,
    Kernel,
    Client,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Self::Launcher => "launcher",
            Self::Kernel => "kernel",
            Self::Client => "client",
        }
    }
}

/// One line of the timeline.
#[derive(Clone, Debug)]
struct Entry {
    at: Instant,
    side: Side,
    text: String,
}

/// `jupyter-handshake demo …`.
pub(crate) fn run(mut args: Args) -> Result<ExitCode, CliError> {
    let mut timeout = Duration::from_secs(30);
    while let Some(arg) = args.next_arg()? {
        match arg {
            Arg::Option(o) if is_help(&o) => {
                print!("{HELP}");
                return Ok(ExitCode::SUCCESS);
            }
            Arg::Option(o) if o == "--timeout" => timeout = args.seconds(&o)?,
            Arg::Option(o) => return Err(args.unknown(&o)),
            Arg::Positional(p) => return Err(args.unexpected(&p)),
            Arg::Rest(r) => return Err(args.unexpected(&joined(&r))),
        }
    }

    // From here on SIGINT/SIGTERM stop the kernel and remove its file.
    let stop = Stop::install()?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("cannot find this program's own path: {e}")))?;
    let exe = exe
        .to_str()
        .ok_or_else(|| CliError::failed("this program's path is not valid UTF-8"))?
        .to_owned();
    let argv: Vec<String> = [exe.as_str(), "kernel", "-f", "{connection_file}"]
        .map(String::from)
        .to_vec();
    let options = LaunchOptions {
        mode: LaunchMode::Handshake,
        timeout,
        env: vec![(TRACE_ENV.into(), "1".into())],
        // The kernel's trace lines come on its stderr; it prints nothing on stdout.
        stdout: ChildStdio::Stderr,
        stderr: ChildStdio::Piped,
        cancel: Some(stop.cancel().clone()),
        ..LaunchOptions::default()
    };

    let clock = Clock::new();
    let start = clock.now();
    println!("jupyter-handshake demo: a race-free kernel launch through the JEP 66 handshake\n");
    println!("  launcher  this process (pid {})", std::process::id());

    let mut timeline: Vec<Entry> = Vec::new();
    let mut registered_at: Option<Instant> = None;
    let driver = Driver::new()?;
    let launched = driver.launch(&argv, &options, &mut |at, event| {
        if matches!(event, LauncherEvent::Registered { .. }) {
            registered_at = Some(at);
        }
        timeline.push(Entry {
            at,
            side: Side::Launcher,
            text: describe_launcher_event(event),
        });
    });
    let mut launched = match launched {
        Ok(launched) => launched,
        Err(e) => {
            print_timeline(start, timeline);
            return Err(launch_failed(&e, &stop));
        }
    };
    println!(
        "  kernel    {exe} kernel -f {} (pid {})",
        launched.file.display(),
        launched.child.id()
    );
    let reader = launched
        .child
        .take_stderr()
        .map(|pipe| spawn_reader(pipe, clock));
    if let Some(at) = registered_at {
        // `launch` measures from the spawn to the registration; the spawn itself is no core
        // event, so it is placed on the timeline from that measurement.
        let after = u64::try_from(launched.registered_after.as_micros()).unwrap_or(u64::MAX);
        timeline.push(Entry {
            at: Instant::from_micros(at.as_micros().saturating_sub(after)),
            side: Side::Launcher,
            text: format!("spawned the kernel (pid {})", launched.child.id()),
        });
    }

    let checked = check_and_stop(&driver, &mut launched, timeout, &clock, &stop);
    if let Ok(checked) = &checked {
        timeline.extend(client_entries(checked));
    }
    // The kernel has exited (or been killed): its stderr is closed, so the reader ends.
    if let Some(reader) = reader {
        match reader.join() {
            Ok(entries) => timeline.extend(entries),
            Err(_) => super::say(format_args!(
                "jupyter-handshake demo: the kernel's stderr reader failed"
            )),
        }
    }
    print_timeline(start, timeline);
    let checked = checked?;
    print_summary(&launched, &checked);
    let ok = checked.kernel_info.get("status").and_then(Value::as_str) == Some("ok");
    if ok && checked.shutdown.exit.is_clean() {
        Ok(ExitCode::SUCCESS)
    } else if ok {
        Err(CliError::failed(format!(
            "the kernel did not exit cleanly: {}",
            checked.shutdown.describe()
        )))
    } else {
        Err(CliError::failed(
            "the kernel's kernel_info_reply was not ok",
        ))
    }
}

/// Reads the kernel's stderr until it closes: trace lines become kernel entries at their own
/// instants; any other line is kept too, stamped when it was read.
fn spawn_reader(pipe: impl Read + Send + 'static, clock: Clock) -> JoinHandle<Vec<Entry>> {
    std::thread::spawn(move || {
        let mut entries = Vec::new();
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            match parse_line(&line) {
                Some(trace) => entries.push(Entry {
                    at: trace.at,
                    side: Side::Kernel,
                    text: trace.text,
                }),
                None if line.trim().is_empty() => {}
                None => entries.push(Entry {
                    at: clock.now(),
                    side: Side::Kernel,
                    text: format!("stderr: {line}"),
                }),
            }
        }
        entries
    })
}

/// The client's steps: kernel_info and shutdown.
fn client_entries(checked: &Checked) -> Vec<Entry> {
    let info = &checked.kernel_info;
    let field = |name: &str| info.get(name).and_then(Value::as_str).unwrap_or("?");
    let mut entries = vec![
        Entry {
            at: checked.kernel_info_sent,
            side: Side::Client,
            text: "connected to the five ports; kernel_info_request sent on shell".into(),
        },
        Entry {
            at: checked.kernel_info_received,
            side: Side::Client,
            text: format!(
                "kernel_info_reply: status {}, implementation {} {}, protocol_version {}",
                field("status"),
                field("implementation"),
                field("implementation_version"),
                field("protocol_version")
            ),
        },
    ];
    let shutdown = &checked.shutdown;
    entries.push(Entry {
        at: shutdown.requested,
        side: Side::Client,
        text: "shutdown_request sent on control".into(),
    });
    if let (Ok(reply), Some(at)) = (&shutdown.reply, shutdown.replied) {
        entries.push(Entry {
            at,
            side: Side::Client,
            text: format!(
                "shutdown_reply: status {}",
                reply.get("status").and_then(Value::as_str).unwrap_or("?")
            ),
        });
    }
    entries.push(Entry {
        at: shutdown.exited,
        side: Side::Launcher,
        text: format!("the kernel process {}", shutdown.describe()),
    });
    entries
}

/// What a state change means, for a reader who has not read the JEP.
fn explain(side: Side, text: &str) -> Option<&'static str> {
    Some(match (side, text) {
        (Side::Launcher, "state Init -> Bound") => {
            "registration socket bound on a port the OS picked; registration file written (mode 0600)"
        }
        (Side::Launcher, "state Bound -> Connected") => {
            "the kernel's ports are known: no port was picked before the kernel held it"
        }
        (Side::Kernel, "state Init -> Bound") => {
            "read the registration file; bound its five channels on ports the OS picked"
        }
        (Side::Kernel, "state Bound -> AwaitingReply") => {
            "connected to the registration socket; signed handshake_request sent with its ports"
        }
        (Side::Kernel, "state AwaitingReply -> Connected") => {
            "handshake_reply {status: ok} verified: registered"
        }
        (Side::Kernel, "state AwaitingReply -> Registered") => {
            "handshake_reply verified; waiting for the first IOPub subscriber"
        }
        (Side::Kernel, "state Registered -> Connected") => "the first IOPub subscriber arrived",
        _ => return None,
    })
}

/// Prints the entries sorted by time (stable: equal instants keep their order).
fn print_timeline(start: Instant, mut timeline: Vec<Entry>) {
    timeline.sort_by_key(|e| e.at);
    println!("\n  {:>10}  {:<8}  event", "ms", "side");
    for entry in &timeline {
        let ms = entry.at.saturating_duration_since(start).as_secs_f64() * 1000.0;
        println!("  {ms:>10.3}  {:<8}  {}", entry.side.name(), entry.text);
        if let Some(why) = explain(entry.side, &entry.text) {
            println!("  {:>10}  {:<8}    ↳ {why}", "", "");
        }
    }
    println!();
}

fn print_summary(launched: &Launched, checked: &Checked) {
    let round_trip = checked
        .kernel_info_received
        .saturating_duration_since(checked.kernel_info_sent);
    println!(
        "Registered ({}) {} after the spawn; kernel_info answered in {}; the kernel {}.",
        evidence_name(launched.evidence),
        millis(launched.registered_after),
        millis(round_trip),
        checked.shutdown.describe(),
    );
    if launched.evidence == Evidence::Request {
        println!("No port was picked before the kernel held it: there was nothing to steal.");
    }
}
