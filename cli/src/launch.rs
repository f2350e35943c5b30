//! `jupyter-handshake launch -- ARGV…`: launch any kernel, prove it works, shut it down, report.
//!
//! The launch itself is the library's `launch` (registration file or classic connection file);
//! this module adds what a person or a script wants to know afterwards: how the kernel
//! registered, on which ports, whether it answers `kernel_info`, and how long each step took. It
//! also always cleans up: whatever fails after the kernel started, the kernel is asked to shut
//! down, given a grace period, and only then killed.
//!
//! The report never contains the key: the connection is printed field by field, without it.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use jupyter_handshake::{ConnectionFile, Evidence, Instant, LauncherEvent, Transport};
use jupyter_handshake::{LaunchId, RegistrarEvent};
use serde::Serialize;
use serde_json::Value;

use super::CliError;
use super::args::{Arg, Args, is_help, prefix as quote, utf8_argv};
use super::driver::{
    Child, ChildStdio, Client, Clock, Driver, KernelSpec, LaunchFailure, LaunchMode, LaunchOptions,
    Launched, RequestFailure, STOP_GRACE, raise_open_files_limit, runtime_dir,
};
use super::signals::Stop;
use super::trace::{describe_launcher_event, describe_ports};

pub(crate) const HELP: &str = "\
jupyter-handshake launch: launch a kernel race-free, check it with kernel_info, shut it down

Usage:
  jupyter-handshake launch [OPTIONS] -- KERNEL_ARGV...
  jupyter-handshake launch [OPTIONS] --kernelspec PATH [-- KERNEL_ARGV...]

'{connection_file}' in KERNEL_ARGV is replaced by the path of the file handed to the kernel.

Modes:
  handshake  write a registration file (JEP 66): the kernel binds its own ports and registers
             them with a signed handshake_request, or rewrites the file with them (stock
             ipykernel); either way no port is ever chosen before the kernel binds it
  file       the same registration file; says you expect the kernel to register by rewriting
             it (ipykernel); the report gives the evidence actually seen
  upstream   an upstream-dialect registration file (jupyter_client docs 5.6, xeus-python): the
             kernel registers from a DEALER with a content-only signed request
  classic    pick five free ports and write a classic connection file: racy, for kernels that
             cannot register (another process may take a port before the kernel binds it)
  auto       (default) from --kernelspec's kernel_protocol_version: >= 5.6 means upstream,
             5.5 handshake, anything else classic; without --kernelspec, handshake

Options:
  --mode MODE          auto, handshake, file, upstream or classic (see above)
  --count N            launch N copies of the kernel at once through ONE registration socket
                       (each with its own key and file), check and stop each, and report each
                       (one JSON line per kernel with --json, in launch order); not with classic
  --timeout SECS       how long to wait for the kernel to register, and then again for its
                       kernel_info_reply (default 30)
  --kernelspec PATH    a kernel.json (or its directory): its argv (unless KERNEL_ARGV is given),
                       env, and kernel_protocol_version for --mode auto
  --json               print exactly one line of JSON on stdout (see below)
  --ip ADDR            the address the kernel binds and the launcher listens on (default
                       127.0.0.1; IPv6 such as ::1 works); over ipc, the socket files' path
                       prefix (default DIR/kernel-ipc)
  --transport T        tcp (default) or ipc: over ipc every socket is a file {ip}-{N}, N
                       random and claimed atomically (never two kernels on one path), each
                       removed when its socket closes
  --dir DIR            where to write the file (default: the Jupyter runtime dir)
  -v, --verbose        log the launcher's state-machine events on stderr as they happen
  -h, --help           this help

Report (--json): {\"mode\": \"handshake\"|\"upstream\"|\"file\"|\"classic\" (how the ports were
learnt: a Posit handshake_request, an upstream request, a rewrite of the file, or picked by us), \"connection\": {\"transport\", \"ip\",
\"shell_port\", \"iopub_port\", \"stdin_port\", \"control_port\", \"hb_port\", \"signature_scheme\"},
\"kernel_info\": {\"status\", \"protocol_version\", \"implementation\"}, \"timings_us\": {\"register\"
(start to registration), \"kernel_info\" (first kernel_info_request to its reply), \"total\"
(start to kernel exit)}}. The key is never printed. The kernel's own stdout goes to stderr.

With --count, each report also has \"index\" (0..N-1) first.

Exit status: 0 when kernel_info came back with status ok (from every kernel, with --count); 1 otherwise (launch failed, kernel
exited early, timeout, error reply); 2 on a usage error. Any failure is one line on stderr;
the report (or JSON line) is printed only once kernel_info has been answered.
";

/// How long a kernel may take to exit after `shutdown_request` before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for a reply to one `kernel_info_request` before checking that the kernel is
/// still alive and asking again: a dead kernel is reported within this, not at the timeout.
const KERNEL_INFO_SLICE: Duration = Duration::from_millis(500);
/// How many kernels of a `--count` launch are checked at once: each check holds a client of
/// five sockets (libzmq allows 1023 sockets per context) and a few descriptors.
const CHECKERS: usize = 64;

/// How often to look at the kernel process while waiting for it to exit.
const EXIT_POLL: Duration = Duration::from_millis(2);

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModeArg {
    Auto,
    Handshake,
    File,
    Upstream,
    Classic,
}

/// The parsed command line.
struct Options {
    mode: ModeArg,
    timeout: Duration,
    json: bool,
    kernelspec: Option<PathBuf>,
    ip: Option<String>,
    transport: Transport,
    dir: Option<PathBuf>,
    verbose: bool,
    count: usize,
    argv: Vec<String>,
}

/// `jupyter-handshake launch …`.
pub(crate) fn run(args: Args) -> Result<ExitCode, CliError> {
    let Some(options) = parse(args)? else {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    };
    // From here on SIGINT/SIGTERM stop every kernel started and remove every file written.
    let stop = Stop::install()?;
    let clock = Clock::new();
    let start = clock.now();

    // The kernelspec and its directory (the kernel's name in Jupyter, and its resource dir).
    let spec = match &options.kernelspec {
        Some(path) => {
            let spec = KernelSpec::read(path).map_err(|e| CliError::failed(e.to_string()))?;
            let dir = if path.is_dir() {
                path.clone()
            } else {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            let dir = dir.canonicalize().unwrap_or(dir);
            Some((spec, dir))
        }
        None => None,
    };
    let argv = match (&spec, options.argv.is_empty()) {
        (_, false) => options.argv.clone(),
        (Some((spec, dir)), true) => {
            // jupyter_client also substitutes `{resource_dir}`: the kernelspec's directory.
            let dir = dir.to_string_lossy();
            spec.argv
                .iter()
                .map(|a| a.replace("{resource_dir}", &dir))
                .collect()
        }
        (None, true) => {
            return Err(CliError::usage(
                "'launch' needs a kernel command after '--' (or --kernelspec); see 'jupyter-handshake launch --help'",
            ));
        }
    };
    let mode = match options.mode {
        ModeArg::Handshake | ModeArg::File => LaunchMode::Handshake,
        ModeArg::Upstream => LaunchMode::Upstream,
        ModeArg::Classic => LaunchMode::Classic,
        ModeArg::Auto => spec
            .as_ref()
            .map_or(LaunchMode::Handshake, |(spec, _)| spec.launch_mode()),
    };
    let mut launch_options = LaunchOptions {
        mode,
        timeout: options.timeout,
        dir: options.dir.clone(),
        env: spec
            .as_ref()
            .map(|(s, _)| {
                s.env()
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect()
            })
            .unwrap_or_default(),
        kernel_name: spec
            .as_ref()
            .and_then(|(_, dir)| dir.file_name()?.to_str().map(str::to_owned)),
        // Our stdout carries the report (one JSON line with --json); the kernel's goes to stderr.
        stdout: ChildStdio::Stderr,
        stderr: ChildStdio::Inherit,
        cancel: Some(stop.cancel().clone()),
        ..LaunchOptions::default()
    };
    launch_options.transport = options.transport;
    match (&options.ip, options.transport) {
        (Some(ip), _) => launch_options.ip.clone_from(ip),
        (None, Transport::Ipc) => {
            let dir = launch_options.dir.clone().unwrap_or_else(runtime_dir);
            launch_options.ip = dir.join("kernel-ipc").to_string_lossy().into_owned();
        }
        (None, Transport::Tcp) => {}
    }

    // `--count`: a driver set up for one registration socket shared by many kernels.
    let driver = if options.count > 1 {
        Driver::for_fleet()?
    } else {
        Driver::new()?
    };
    if options.count > 1 {
        return run_many(
            &driver,
            &options,
            &argv,
            &launch_options,
            &clock,
            start,
            &stop,
        );
    }
    let verbose = options.verbose;
    let mut launched = driver
        .launch(&argv, &launch_options, &mut |at, event| {
            if verbose {
                super::say(format_args!(
                    "jupyter-handshake launch: [{}] launcher {}",
                    millis(at.saturating_duration_since(start)),
                    describe_launcher_event(event)
                ));
            }
        })
        .map_err(|e| launch_failed(&e, &stop))?;
    let registered = clock.now();

    let checked = check_and_stop(&driver, &mut launched, options.timeout, &clock, &stop)?;
    let total = clock.since(start);

    let report = Report {
        evidence: launched.evidence,
        mode: launch_options.mode,
        connection: &launched.connection,
        registered_after: launched.registered_after,
        register: registered.saturating_duration_since(start),
        checked: &checked,
        total,
    };
    if options.json {
        out(&format!("{}\n", report.json()))?;
    } else {
        out(&report.human(&argv, options.mode))?;
    }
    let ok = checked.kernel_info.get("status").and_then(Value::as_str) == Some("ok");
    if ok {
        Ok(ExitCode::SUCCESS)
    } else {
        // The report says it too, but a script reading only stderr deserves the one-line reason.
        Err(CliError::failed(format!(
            "the kernel answered kernel_info with status {}",
            checked.kernel_info.get("status").unwrap_or(&Value::Null)
        )))
    }
}

/// `--count N`: N copies through one registration socket, then each checked and stopped (in
/// parallel, one thread each), and reported in launch order.
fn run_many(
    driver: &Driver,
    options: &Options,
    argv: &[String],
    launch_options: &LaunchOptions,
    clock: &Clock,
    start: Instant,
    stop: &Stop,
) -> Result<ExitCode, CliError> {
    if launch_options.mode == LaunchMode::Classic {
        return Err(CliError::usage(
            "--count launches through one registration socket: it needs a handshake mode, not classic",
        ));
    }
    // A few descriptors per kernel being checked, and per child: the soft limit is often 1024.
    let _ = raise_open_files_limit();
    let verbose = options.verbose;
    let mut registered_at: HashMap<LaunchId, Instant> = HashMap::new();
    let argvs = vec![argv.to_vec(); options.count];
    // The registration socket stays open until every kernel is checked and stopped.
    let (_fleet, results) = driver
        .launch_many(&argvs, launch_options, &mut |at, event| {
            if let RegistrarEvent::Launch {
                launch,
                event: LauncherEvent::Registered { .. },
            } = event
            {
                registered_at.insert(*launch, at);
            }
            if verbose {
                let what = match event {
                    RegistrarEvent::Launch { launch, event } => {
                        format!(
                            "kernel {}: {}",
                            launch.get(),
                            describe_launcher_event(event)
                        )
                    }
                    RegistrarEvent::Rejected(r) => {
                        format!("dropped a message no launch signed: {r}")
                    }
                    other => format!("{other:?}"),
                };
                super::say(format_args!(
                    "jupyter-handshake launch: [{}] launcher {what}",
                    millis(at.saturating_duration_since(start)),
                ));
            }
        })
        .map_err(|e| launch_failed(&e, stop))?;
    // Check and stop every kernel that registered, at most CHECKERS at once (each check holds a
    // client of five sockets), closing each client when its check is done; then report in
    // launch order.
    let slots: Vec<Mutex<Option<Result<Launched, LaunchFailure>>>> = results
        .into_iter()
        .map(|result| Mutex::new(Some(result)))
        .collect();
    let outcomes: Vec<Mutex<Option<CheckOutcome>>> =
        slots.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..CHECKERS.min(slots.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(slot) = slots.get(i) else { break };
                    let Some(result) = slot.lock().ok().and_then(|mut s| s.take()) else {
                        continue;
                    };
                    let outcome =
                        result
                            .map_err(|e| launch_failed(&e, stop))
                            .and_then(|mut launched| {
                                let checked = check_and_stop(
                                    driver,
                                    &mut launched,
                                    options.timeout,
                                    clock,
                                    stop,
                                )?;
                                Ok((launched, checked))
                            });
                    if let Ok(mut out) = outcomes[i].lock() {
                        *out = Some(outcome);
                    }
                }
            });
        }
    });
    let checked: Vec<CheckOutcome> = outcomes
        .into_iter()
        .map(|o| {
            o.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(CliError::failed("a checking thread panicked")))
        })
        .collect();
    if stop.requested() {
        return Err(stop.error());
    }
    let total = clock.since(start);
    let mut failures = Vec::new();
    for (index, outcome) in checked.iter().enumerate() {
        let (launched, checked) = match outcome {
            Ok(done) => done,
            Err(e) => {
                failures.push(format!("kernel {index}: {e}"));
                continue;
            }
        };
        let registered = launched
            .launch_id
            .and_then(|id| registered_at.get(&id).copied())
            .unwrap_or(start);
        let report = Report {
            evidence: launched.evidence,
            mode: launch_options.mode,
            connection: &launched.connection,
            registered_after: launched.registered_after,
            register: registered.saturating_duration_since(start),
            checked,
            total,
        };
        if options.json {
            out(&format!("{}\n", report.json_line(Some(index))))?;
        } else {
            out(&format!("[{index}]\n{}", report.human(argv, options.mode)))?;
        }
        if checked.kernel_info.get("status").and_then(Value::as_str) != Some("ok") {
            failures.push(format!(
                "kernel {index} answered kernel_info with status {}",
                checked.kernel_info.get("status").unwrap_or(&Value::Null)
            ));
        }
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::failed(format!(
            "{} of {} kernels failed; {}",
            failures.len(),
            options.count,
            failures.join("; ")
        )))
    }
}

/// One kernel of a `--count` launch, checked and stopped, or why not.
type CheckOutcome = Result<(Launched, Checked), CliError>;

/// Parses the options; `None` means `--help`.
fn parse(mut args: Args) -> Result<Option<Options>, CliError> {
    let mut o = Options {
        mode: ModeArg::Auto,
        timeout: Duration::from_secs(30),
        json: false,
        kernelspec: None,
        ip: None,
        transport: Transport::Tcp,
        dir: None,
        verbose: false,
        count: 1,
        argv: Vec::new(),
    };
    while let Some(arg) = args.next_arg()? {
        match arg {
            Arg::Option(opt) if is_help(&opt) => return Ok(None),
            Arg::Option(opt) => match opt.as_str() {
                "--mode" => {
                    let value = args.value(&opt)?;
                    o.mode = match value.as_str() {
                        "auto" => ModeArg::Auto,
                        "handshake" => ModeArg::Handshake,
                        "file" => ModeArg::File,
                        "upstream" => ModeArg::Upstream,
                        "classic" => ModeArg::Classic,
                        _ => {
                            return Err(CliError::usage(format!(
                                "--mode must be auto, handshake, file, upstream or classic, not '{}'",
                                quote(&value)
                            )));
                        }
                    };
                }
                "--timeout" => o.timeout = args.seconds(&opt)?,
                "--json" => o.json = true,
                "--kernelspec" => o.kernelspec = Some(args.path(&opt)?),
                "--ip" => o.ip = Some(args.value(&opt)?),
                "--transport" => {
                    let value = args.value(&opt)?;
                    o.transport = match value.as_str() {
                        "tcp" => Transport::Tcp,
                        "ipc" => Transport::Ipc,
                        _ => {
                            return Err(CliError::usage(format!(
                                "--transport must be tcp or ipc, not '{}'",
                                quote(&value)
                            )));
                        }
                    };
                }
                "--dir" => {
                    // The file's path is substituted into the kernel's command line: text.
                    let dir = args.value(&opt)?;
                    o.dir = Some(PathBuf::from(dir));
                }
                "-v" | "--verbose" => o.verbose = true,
                "--count" => {
                    let value = args.value(&opt)?;
                    o.count = match value.parse() {
                        Ok(n) if n >= 1 => n,
                        _ => {
                            return Err(CliError::usage(format!(
                                "--count must be a whole number of at least 1, not '{}'",
                                quote(&value)
                            )));
                        }
                    };
                }
                _ => return Err(args.unknown(&opt)),
            },
            Arg::Positional(p) => {
                return Err(CliError::usage(format!(
                    "unexpected argument '{p}' for 'launch': put the kernel command after '--' (see 'jupyter-handshake launch --help')"
                )));
            }
            Arg::Rest(rest) => o.argv = utf8_argv(rest)?,
        }
    }
    Ok(Some(o))
}

/// What happened after the launch.
pub(crate) struct Checked {
    /// The `kernel_info_reply` content.
    pub(crate) kernel_info: Value,
    /// When the first `kernel_info_request` went out.
    pub(crate) kernel_info_sent: Instant,
    /// When its reply (or a later request's) came back.
    pub(crate) kernel_info_received: Instant,
    /// How the kernel stopped.
    pub(crate) shutdown: Shutdown,
}

/// How the kernel stopped.
pub(crate) struct Shutdown {
    /// When `shutdown_request` went out.
    pub(crate) requested: Instant,
    /// The `shutdown_reply` content, or why there was none.
    pub(crate) reply: Result<Value, String>,
    /// When its reply came (if it did).
    pub(crate) replied: Option<Instant>,
    /// How the process ended.
    pub(crate) exit: Exit,
    /// When it was seen to have ended.
    pub(crate) exited: Instant,
}

impl Shutdown {
    /// How the process ended, and when (see [`Exit::describe`]).
    pub(crate) fn describe(&self) -> String {
        self.exit
            .describe(self.exited.saturating_duration_since(self.requested))
    }
}

/// How the kernel process ended.
pub(crate) enum Exit {
    /// By itself, with this status.
    Exited(ExitStatus),
    /// Killed by us after the grace period.
    Killed,
    /// Waiting for it failed (it is killed, best effort).
    Unknown(String),
}

impl Exit {
    /// What happened to the process after `shutdown_request` came `after` it: "exited (exit
    /// status 0) 1.234 ms after shutdown_request", "was killed: still running 5 s after…".
    pub(crate) fn describe(&self, after: Duration) -> String {
        match self {
            Self::Exited(status) => format!(
                "exited ({}) {} after shutdown_request",
                describe_status(*status),
                millis(after)
            ),
            Self::Killed => format!(
                "was killed: still running {} s after shutdown_request",
                SHUTDOWN_GRACE.as_secs()
            ),
            Self::Unknown(why) => format!("was killed (waiting for it failed: {why})"),
        }
    }

    /// Whether the kernel exited by itself with status 0.
    pub(crate) fn is_clean(&self) -> bool {
        matches!(self, Self::Exited(status) if status.success())
    }
}

/// Connects a client to a launched kernel, asks `kernel_info`, then shuts the kernel down (even
/// when `kernel_info` failed) and removes the file handed to it.
pub(crate) fn check_and_stop(
    driver: &Driver,
    launched: &mut Launched,
    timeout: Duration,
    clock: &Clock,
    stop: &Stop,
) -> Result<Checked, CliError> {
    let mut client = match driver.connect(&launched.connection, &mut launched.child) {
        Ok(client) => client,
        Err(e) => {
            let why = match launched.child.try_wait() {
                Ok(Some(status)) => format!(
                    "the kernel exited ({}) before answering kernel_info",
                    describe_status(status)
                ),
                _ => format!("cannot connect to the kernel: {e}"),
            };
            let _ = launched.kill();
            return Err(CliError::failed(why));
        }
    };
    let kernel_info_sent = clock.now();
    let info = ask_kernel_info(&mut client, &mut launched.child, timeout, clock, stop);
    let kernel_info_received = clock.now();
    if stop.requested() {
        // Stopping: no shutdown_request, the kernel's group is stopped at once, gracefully.
        drop(client);
        let _ = launched.stop(STOP_GRACE);
        return Err(stop.error());
    }
    let shutdown = shut_down(&mut client, &mut launched.child, clock, stop);
    drop(client);
    // Whatever the kernel left in its process group (a wrapper's children) goes with it.
    let _ = launched.child.kill();
    // The file holds the key; the kernel is gone, so nothing needs it any more.
    let _ = launched.remove_file();
    if stop.requested() {
        return Err(stop.error());
    }
    // Say what became of a kernel that was still there to be asked to shut down.
    let info = info.map_err(|e| {
        if shutdown.replied.is_some() || matches!(shutdown.exit, Exit::Killed) {
            CliError::failed(format!("{e}; the kernel then {}", shutdown.describe()))
        } else {
            e
        }
    })?;
    Ok(Checked {
        kernel_info: info,
        kernel_info_sent,
        kernel_info_received,
        shutdown,
    })
}

/// `kernel_info_request`s until one is answered, the kernel exits, or `timeout` passes.
///
/// Each request waits [`KERNEL_INFO_SLICE`]; then the process is checked and a new request sent
/// (replies to older ones are skipped by the client, which matches replies to requests). So a
/// kernel that dies — a classic launch whose port was taken, say — is reported at once with its
/// exit status, rather than as a timeout much later.
fn ask_kernel_info(
    client: &mut Client,
    child: &mut Child,
    timeout: Duration,
    clock: &Clock,
    stop: &Stop,
) -> Result<Value, CliError> {
    let start = clock.now();
    loop {
        if stop.requested() {
            return Err(stop.error());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::failed(format!(
                "the kernel exited ({}) before answering kernel_info",
                describe_status(status)
            )));
        }
        let left = timeout.saturating_sub(clock.since(start));
        if left.is_zero() {
            return Err(CliError::failed(format!(
                "no kernel_info_reply within {} from a running kernel",
                seconds(timeout)
            )));
        }
        match client.kernel_info(left.min(KERNEL_INFO_SLICE)) {
            Ok(content) => return Ok(content),
            Err(RequestFailure::Timeout(_)) => {}
            Err(e) => return Err(CliError::failed(format!("kernel_info failed: {e}"))),
        }
    }
}

/// Asks the kernel to shut down on control, waits for it to exit, and kills it only once
/// [`SHUTDOWN_GRACE`] has passed since the request.
fn shut_down(client: &mut Client, child: &mut Child, clock: &Clock, stop: &Stop) -> Shutdown {
    let requested = clock.now();
    let (reply, replied) = match child.try_wait() {
        Ok(Some(status)) => (
            Err(format!(
                "not sent: the kernel had already exited ({})",
                describe_status(status)
            )),
            None,
        ),
        _ => match client.shutdown(SHUTDOWN_GRACE) {
            Ok(content) => (Ok(content), Some(clock.now())),
            Err(e) => (Err(e.to_string()), None),
        },
    };
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Exit::Exited(status),
            Ok(None) if clock.since(requested) >= SHUTDOWN_GRACE => {
                let _ = child.kill();
                break Exit::Killed;
            }
            Ok(None) if stop.requested() => {
                let _ = child.stop(STOP_GRACE);
                break Exit::Killed;
            }
            Ok(None) => std::thread::sleep(EXIT_POLL),
            Err(e) => {
                let _ = child.kill();
                break Exit::Unknown(e.to_string());
            }
        }
    };
    Shutdown {
        requested,
        reply,
        replied,
        exit,
        exited: clock.now(),
    }
}

/// The error for a launch that failed: the signal's, when it was stopped by one.
pub(crate) fn launch_failed(error: &LaunchFailure, stop: &Stop) -> CliError {
    match error {
        LaunchFailure::Cancelled => stop.error(),
        other => CliError::failed(format!("launch failed: {other}")),
    }
}

/// Writes `text` on stdout. A reader that went away (`launch --json | head -c0`) is no error to
/// report: the tool exits quietly with the status a broken pipe conventionally gives, 141
/// (128 + SIGPIPE), as a program killed by SIGPIPE would.
pub(crate) fn out(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::quiet(141)),
        Err(e) => Err(CliError::failed(format!("cannot write the report: {e}"))),
    }
}

/// The report of one launch.
struct Report<'a> {
    evidence: Evidence,
    /// The mode launched with (an upstream request reports as "upstream").
    mode: LaunchMode,
    connection: &'a ConnectionFile,
    registered_after: Duration,
    register: Duration,
    checked: &'a Checked,
    total: Duration,
}

impl Report<'_> {
    /// One line of JSON (see [`JsonReport`]).
    fn json(&self) -> String {
        self.json_line(None)
    }

    /// One line of JSON; with `index`, that is its first field (a `--count` launch's kernel).
    fn json_line(&self, index: Option<usize>) -> String {
        let c = self.connection;
        let info = |name: &str| {
            self.checked
                .kernel_info
                .get(name)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let report = JsonReport {
            index,
            mode: report_mode(self.evidence, self.mode),
            connection: JsonConnection {
                transport: c.transport.as_str(),
                ip: &c.ip,
                shell_port: c.ports.shell,
                iopub_port: c.ports.iopub,
                stdin_port: c.ports.stdin,
                control_port: c.ports.control,
                hb_port: c.ports.hb,
                signature_scheme: c.signature_scheme.as_str(),
            },
            kernel_info: JsonKernelInfo {
                status: info("status"),
                protocol_version: info("protocol_version"),
                implementation: info("implementation"),
            },
            timings_us: JsonTimings {
                register: micros(self.register),
                kernel_info: micros(
                    self.checked
                        .kernel_info_received
                        .saturating_duration_since(self.checked.kernel_info_sent),
                ),
                total: micros(self.total),
            },
        };
        // Strings, integers and JSON values only: serializing cannot fail.
        serde_json::to_string(&report).unwrap_or_default()
    }

    /// A few readable lines.
    fn human(&self, argv: &[String], asked: ModeArg) -> String {
        let c = self.connection;
        let k = &self.checked;
        let text = |name: &str| {
            k.kernel_info
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned()
        };
        let mut out = String::new();
        out.push_str(&format!("kernel:       {}\n", argv.join(" ")));
        out.push_str(&format!(
            "registered:   {} after {} ({} after spawn): {}\n",
            report_mode(self.evidence, self.mode),
            millis(self.register),
            millis(self.registered_after),
            evidence_explained(self.evidence)
        ));
        if asked == ModeArg::File && self.evidence != Evidence::FileRewrite {
            out.push_str("              (--mode file expected a rewrite of the file; the kernel chose otherwise)\n");
        }
        out.push_str(&format!(
            "connection:   {} {} {}, {} (key not shown)\n",
            c.transport,
            c.ip,
            describe_ports(&c.ports),
            c.signature_scheme.as_str()
        ));
        out.push_str(&format!(
            "kernel_info:  {} in {}: implementation {}, protocol_version {}\n",
            text("status"),
            millis(
                k.kernel_info_received
                    .saturating_duration_since(k.kernel_info_sent)
            ),
            text("implementation"),
            text("protocol_version"),
        ));
        let reply = match (&k.shutdown.reply, k.shutdown.replied) {
            (Ok(content), Some(at)) => format!(
                "shutdown_reply {} in {}",
                content.get("status").and_then(Value::as_str).unwrap_or("?"),
                millis(at.saturating_duration_since(k.shutdown.requested))
            ),
            (Ok(_), None) => "shutdown_reply".to_owned(),
            (Err(why), _) => format!("no shutdown_reply ({why})"),
        };
        out.push_str(&format!(
            "shutdown:     {reply}; the kernel {}\n",
            k.shutdown.describe()
        ));
        out.push_str(&format!("total:        {}\n", millis(self.total)));
        out
    }
}

/// The `--json` report: one line, its keys in the documented order (a derived `Serialize` writes
/// a struct's fields in declaration order, whatever `serde_json`'s map order). It has no field
/// for the key, by construction.
#[derive(Serialize)]
struct JsonReport<'a> {
    /// The kernel's index in a `--count` launch.
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    mode: &'static str,
    connection: JsonConnection<'a>,
    kernel_info: JsonKernelInfo,
    timings_us: JsonTimings,
}

/// How to reach the kernel, without its key.
#[derive(Serialize)]
struct JsonConnection<'a> {
    transport: &'a str,
    ip: &'a str,
    shell_port: u16,
    iopub_port: u16,
    stdin_port: u16,
    control_port: u16,
    hb_port: u16,
    signature_scheme: &'a str,
}

/// The fields of `kernel_info_reply` the report repeats (`null` when missing).
#[derive(Serialize)]
struct JsonKernelInfo {
    status: Value,
    protocol_version: Value,
    implementation: Value,
}

/// Microseconds: to registration, of the `kernel_info` round trip, in all.
#[derive(Serialize)]
struct JsonTimings {
    register: u64,
    kernel_info: u64,
    total: u64,
}

/// The report's `mode`: the evidence, with an upstream-dialect request told apart.
fn report_mode(evidence: Evidence, mode: LaunchMode) -> &'static str {
    match (evidence, mode) {
        (Evidence::Request, LaunchMode::Upstream) => "upstream",
        _ => evidence_name(evidence),
    }
}

/// The name of a piece of registration evidence, as the JSON report spells it.
pub(crate) fn evidence_name(evidence: Evidence) -> &'static str {
    match evidence {
        Evidence::Request => "handshake",
        Evidence::FileRewrite => "file",
        Evidence::Classic => "classic",
    }
}

fn evidence_explained(evidence: Evidence) -> &'static str {
    match evidence {
        Evidence::Request => "the kernel sent its ports in a signed handshake_request",
        Evidence::FileRewrite => {
            "the kernel rewrote the registration file with the ports it bound (stock ipykernel)"
        }
        Evidence::Classic => "we picked the ports (racy: nothing confirmed the kernel got them)",
    }
}

/// `exit status 3` / `killed by signal 9`.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    status.to_string()
}

/// `12.345 ms`.
pub(crate) fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// `30.000 s`.
fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jupyter_handshake::{KernelPorts, Key, SignatureScheme, Transport};

    fn args(items: &[&str]) -> Args {
        Args::new(
            "launch",
            items.iter().map(std::ffi::OsString::from).collect(),
        )
    }

    #[test]
    fn parses_options_and_the_kernel_command() {
        let o = parse(args(&[
            "--mode",
            "file",
            "--json",
            "--timeout=3",
            "--",
            "k",
            "-f",
            "{connection_file}",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.mode, ModeArg::File);
        assert!(o.json);
        assert_eq!(o.timeout, Duration::from_secs(3));
        assert_eq!(o.argv, ["k", "-f", "{connection_file}"]);
        assert!(parse(args(&["--mode", "racy"])).is_err());
        assert!(parse(args(&["--frobnicate"])).is_err());
        assert!(parse(args(&["kernel"])).is_err());
        assert!(parse(args(&["--help"])).unwrap().is_none());
    }

    #[test]
    fn the_json_report_has_the_documented_shape_and_no_key() {
        let connection = ConnectionFile::new(
            Transport::Tcp,
            "127.0.0.1",
            SignatureScheme::HmacSha256,
            Key::new("s3cr3t-key"),
            KernelPorts {
                shell: 1,
                iopub: 2,
                stdin: 3,
                control: 4,
                hb: 5,
            },
        );
        #[cfg(unix)]
        let status = {
            use std::os::unix::process::ExitStatusExt;
            ExitStatus::from_raw(0)
        };
        #[cfg(windows)]
        let status = {
            use std::os::windows::process::ExitStatusExt;
            ExitStatus::from_raw(0)
        };
        let t = Instant::from_micros(1_000_000);
        let checked = Checked {
            kernel_info: serde_json::json!({"status": "ok", "protocol_version": "5.5",
                "implementation": "jupyter-handshake", "banner": "x"}),
            kernel_info_sent: t,
            kernel_info_received: t + Duration::from_micros(250),
            shutdown: Shutdown {
                requested: t,
                reply: Ok(serde_json::json!({"status": "ok"})),
                replied: Some(t),
                exit: Exit::Exited(status),
                exited: t,
            },
        };
        let report = Report {
            evidence: Evidence::Request,
            mode: LaunchMode::Handshake,
            connection: &connection,
            registered_after: Duration::from_millis(3),
            register: Duration::from_millis(4),
            checked: &checked,
            total: Duration::from_millis(9),
        };
        let line = report.json();
        assert!(!line.contains('\n'));
        assert!(!line.contains("s3cr3t"));
        assert!(
            line.starts_with(r#"{"mode":"handshake","connection":{"transport":"tcp""#),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["connection"]["hb_port"], 5);
        assert_eq!(v["connection"]["signature_scheme"], "hmac-sha256");
        assert_eq!(v["kernel_info"]["implementation"], "jupyter-handshake");
        assert_eq!(v["timings_us"]["register"], 4000);
        assert_eq!(v["timings_us"]["kernel_info"], 250);
        assert_eq!(v["timings_us"]["total"], 9000);
        assert_eq!(v.as_object().unwrap().len(), 4);
        let indexed = report.json_line(Some(7));
        assert_eq!(indexed, format!("{{\"index\":7,{}", &line[1..]));
        assert!(
            !report
                .human(&["k".into()], ModeArg::Auto)
                .contains("s3cr3t")
        );
    }
}
