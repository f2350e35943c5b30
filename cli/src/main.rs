//! `jupyter-handshake`: race-free Jupyter kernel launches through the JEP 66 kernel handshake.
//!
//! * `jupyter-handshake demo` launches the built-in kernel through the handshake and prints both
//!   state machines on one timeline;
//! * `jupyter-handshake launch -- ARGV…` launches any kernel (handshake, file rewrite or classic),
//!   checks it with `kernel_info`, shuts it down and reports (`--json` for scripts);
//! * `jupyter-handshake kernel -f FILE` is a small but real kernel that registers through the
//!   handshake when given a registration file, or binds a classic connection file's ports;
//! * `jupyter-handshake kernelspec install` makes that kernel visible to Jupyter.
//!
//! Every protocol decision lives in the `jupyter-handshake` core and every socket, file and
//! process in a driver: `jupyter-handshake-zmq` (libzmq, feature `zmq`, the default) or
//! `jupyter-handshake-tokio` (pure Rust, feature `tokio`), behind one small seam
//! ([`driver`]). This tool parses arguments, handles the built-in kernel's messages and prints
//! reports. See `jupyter-handshake --help`.
//!
//! Subcommand dispatch, errors and exit codes: every subcommand returns
//! `Result<ExitCode, CliError>`; [`main`] prints an error as one line,
//! `jupyter-handshake: error: …`, on stderr. That single-line contract is what scripts and the
//! integration tests rely on, so nothing below prints a backtrace or a multi-line error.

mod args;
mod demo;
mod driver;
mod kernel;
mod kernelspec;
mod launch;
mod serve;
mod signals;
mod trace;

use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;

use args::is_help;

/// Exit status for a failure (timeout, refused, kernel died, I/O error).
const EXIT_FAILURE: u8 = 1;
/// Exit status for a usage error (unknown option, missing value, bad argument).
const EXIT_USAGE: u8 = 2;

const HELP: &str = "\
jupyter-handshake: race-free Jupyter kernel launches (the JEP 66 kernel handshake)

Usage:
  jupyter-handshake demo
      launch the built-in kernel through the handshake; show both state machines on a timeline
  jupyter-handshake launch [OPTIONS] -- KERNEL_ARGV...
      launch any kernel race-free, ask kernel_info, shut it down, report (--json for scripts)
  jupyter-handshake kernel -f FILE [OPTIONS]
      run the small built-in kernel (language 'text': code is echoed back)
  jupyter-handshake kernelspec install [--user | --prefix PREFIX | --dir DIR] [--name NAME]
      install a kernelspec for the built-in kernel (kernel_protocol_version 5.5)

Options:
  -h, --help       this help ('jupyter-handshake COMMAND --help' for a command's own)
  -V, --version    print the version

Exit status: 0 on success, 1 on failure, 2 on a usage error. Errors are one line on stderr.
The connection key never appears in any output.
";

/// Why a subcommand stopped: a message for the user and an exit status.
#[derive(Debug)]
pub(crate) struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    /// A usage error: the command line is wrong (exit status 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_USAGE,
        }
    }

    /// A stop with its own exit status (128 + a signal's number, say).
    pub(crate) fn with_code(message: impl Into<String>, code: u8) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }

    /// An exit with `code` and nothing to say (stdout's reader went away, say).
    pub(crate) fn quiet(code: u8) -> Self {
        Self::with_code(String::new(), code)
    }

    /// A failure while doing the work (exit status 1).
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_FAILURE,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the message's source put in it.
        let mut first = true;
        for line in self.message.lines().filter(|l| !l.trim().is_empty()) {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(line.trim())?;
            first = false;
        }
        Ok(())
    }
}

/// Writes one line to stderr with a single `write`, so that it never interleaves mid-line with
/// the output of a kernel sharing the same stderr (`eprintln!` may split a line into several
/// writes, one per formatted piece).
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut text = line.to_string();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Runs the tool with the process's arguments.
fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(code) => code,
        Err(e) => {
            if !e.message.is_empty() {
                say(format_args!("jupyter-handshake: error: {e}"));
            }
            ExitCode::from(e.code)
        }
    }
}

fn run(raw: Vec<OsString>) -> Result<ExitCode, CliError> {
    // Paths stay `OsString`s (see `args`); the command's name is text.
    let mut items = raw.into_iter();
    let Some(command) = items.next() else {
        eprint!("{HELP}");
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let command = command.into_string().map_err(|bad| {
        CliError::usage(format!(
            "unknown command '{}' (not valid UTF-8; see 'jupyter-handshake --help')",
            bad.to_string_lossy()
        ))
    })?;
    let rest: Vec<OsString> = items.collect();
    match command.as_str() {
        "kernel" => kernel::run(args::Args::new("kernel", rest)),
        "launch" => launch::run(args::Args::new("launch", rest)),
        "demo" => demo::run(args::Args::new("demo", rest)),
        "kernelspec" => kernelspec::run(rest),
        "help" => help(rest),
        "-V" | "--version" => {
            println!("jupyter-handshake {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        option if is_help(option) => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        other if other.starts_with('-') => Err(CliError::usage(format!(
            "unknown option '{other}' (see 'jupyter-handshake --help')"
        ))),
        other => Err(CliError::usage(format!(
            "unknown command '{other}' (expected demo, launch, kernel or kernelspec; see 'jupyter-handshake --help')"
        ))),
    }
}

/// `jupyter-handshake help [COMMAND]`.
fn help(rest: Vec<OsString>) -> Result<ExitCode, CliError> {
    let first = rest.first().map(|a| a.to_string_lossy());
    let text = match first.as_deref() {
        None => HELP,
        Some("kernel") => kernel::HELP,
        Some("launch") => launch::HELP,
        Some("demo") => demo::HELP,
        Some("kernelspec") => kernelspec::HELP,
        Some(other) => {
            return Err(CliError::usage(format!(
                "no help for unknown command '{other}'"
            )));
        }
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
