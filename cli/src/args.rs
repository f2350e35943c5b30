//! The tool's argument parsing, over `lexopt`: long and short options, `--opt=value`, and `--`.
//!
//! Arguments are `OsString`s throughout: a path option (`-f`, `--dir`, `--kernelspec`,
//! `--prefix`, `--write-connection-file`) keeps any bytes the OS gave it, and only what must be
//! text (a mode, an address, a kernel name, a kernel command line) is required to be UTF-8, with
//! an error that says which argument is not. Every mistake is reported in one line (an unknown
//! option, a missing value, a value given to a flag), never silently ignored.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::CliError;

/// One item of the command line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arg {
    /// An option (`-f`, `--json`, `--timeout`); its value, if any, is read with [`Args::value`]
    /// or [`Args::path`].
    Option(String),
    /// Anything that does not start with `-` (or a lone `-`), as text for error messages.
    Positional(String),
    /// Everything after `--`, verbatim.
    Rest(Vec<OsString>),
}

/// The remaining arguments of one subcommand.
pub(crate) struct Args {
    /// The subcommand, for error messages (`launch`, `kernelspec install`...).
    command: &'static str,
    parser: lexopt::Parser,
}

impl Args {
    /// The arguments that follow the subcommand name.
    pub(crate) fn new(command: &'static str, items: Vec<OsString>) -> Self {
        Self {
            command,
            parser: lexopt::Parser::from_args(items),
        }
    }

    /// The subcommand's name.
    pub(crate) fn command(&self) -> &'static str {
        self.command
    }

    /// The next item, or `None` at the end.
    ///
    /// Fails if the previous option had a glued value (`--json=1`) that nobody asked for: such a
    /// flag takes no value, and silently dropping it would hide a typo.
    pub(crate) fn next_arg(&mut self) -> Result<Option<Arg>, CliError> {
        // `--` ends the options: what follows is a command line, taken verbatim.
        if let Some(mut raw) = self.parser.try_raw_args() {
            if raw.peek().is_some_and(|next| next == "--") {
                raw.next();
                return Ok(Some(Arg::Rest(raw.collect())));
            }
        }
        match self.parser.next() {
            Ok(None) => Ok(None),
            Ok(Some(lexopt::Arg::Short(c))) => Ok(Some(Arg::Option(format!("-{c}")))),
            Ok(Some(lexopt::Arg::Long(name))) => Ok(Some(Arg::Option(format!("--{name}")))),
            Ok(Some(lexopt::Arg::Value(value))) => {
                Ok(Some(Arg::Positional(value.to_string_lossy().into_owned())))
            }
            Err(lexopt::Error::UnexpectedValue { option, .. }) => Err(CliError::usage(format!(
                "option '{option}' of '{}' takes no value",
                self.command
            ))),
            Err(other) => Err(CliError::usage(format!("{other} (for '{}')", self.command))),
        }
    }

    /// The value of `option` as given: glued (`--dir=/x`) or the next item (`--dir /x`).
    fn raw_value(&mut self, option: &str) -> Result<OsString, CliError> {
        self.parser.value().map_err(|_| {
            CliError::usage(format!(
                "option '{option}' of '{}' needs a value",
                self.command
            ))
        })
    }

    /// The value of `option` as text.
    pub(crate) fn value(&mut self, option: &str) -> Result<String, CliError> {
        let value = self.raw_value(option)?;
        value.into_string().map_err(|bad| {
            CliError::usage(format!(
                "the value of option '{option}' of '{}' is not valid UTF-8: '{}'",
                self.command,
                prefix(&bad.to_string_lossy())
            ))
        })
    }

    /// The value of `option` as a path, whatever its bytes.
    pub(crate) fn path(&mut self, option: &str) -> Result<PathBuf, CliError> {
        self.raw_value(option).map(PathBuf::from)
    }

    /// The value of `option` as a positive number of seconds (fractions allowed).
    pub(crate) fn seconds(&mut self, option: &str) -> Result<Duration, CliError> {
        let text = self.value(option)?;
        parse_seconds(&text).ok_or_else(|| {
            CliError::usage(format!(
                "option '{option}' of '{}' expects a positive number of seconds, got '{}'",
                self.command,
                prefix(&text)
            ))
        })
    }

    /// The error for an option this subcommand does not know.
    pub(crate) fn unknown(&self, option: &str) -> CliError {
        CliError::usage(format!(
            "unknown option '{option}' for '{}' (see 'jupyter-handshake {} --help')",
            self.command, self.command
        ))
    }

    /// The error for a positional argument this subcommand does not take.
    pub(crate) fn unexpected(&self, item: &str) -> CliError {
        CliError::usage(format!(
            "unexpected argument '{item}' for '{}' (see 'jupyter-handshake {} --help')",
            self.command, self.command
        ))
    }
}

/// Arguments after `--` joined for an error message (lossily: it is only shown).
pub(crate) fn joined(rest: &[OsString]) -> String {
    let parts: Vec<_> = rest.iter().map(|a| a.to_string_lossy()).collect();
    parts.join(" ")
}

/// A kernel command line as text: it is substituted into (`{connection_file}`) and written into
/// JSON files, which hold text only.
pub(crate) fn utf8_argv(rest: Vec<OsString>) -> Result<Vec<String>, CliError> {
    rest.into_iter()
        .map(|arg| {
            arg.into_string().map_err(|bad| {
                CliError::usage(format!(
                    "argument '{}' of the kernel command is not valid UTF-8",
                    prefix(&bad.to_string_lossy())
                ))
            })
        })
        .collect()
}

/// A short, escaped prefix of `text`, for quoting in a message.
pub(crate) fn prefix(text: &str) -> String {
    crate::driver::quote(text)
}

/// Parses a positive, finite number of seconds, at most a year (a larger value is surely a typo,
/// and would overflow deadline arithmetic on some platforms).
pub(crate) fn parse_seconds(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().parse().ok()?;
    if !secs.is_finite() || secs <= 0.0 || secs > 365.0 * 86_400.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

/// Whether `option` asks for help.
pub(crate) fn is_help(option: &str) -> bool {
    matches!(option, "-h" | "--help")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(items: &[&str]) -> Args {
        Args::new("test", items.iter().map(OsString::from).collect())
    }

    #[test]
    fn options_values_and_rest() {
        let mut a = args(&[
            "-f",
            "x.json",
            "--timeout=2.5",
            "--json",
            "--",
            "k",
            "--json",
        ]);
        assert_eq!(a.next_arg().unwrap(), Some(Arg::Option("-f".into())));
        assert_eq!(a.value("-f").unwrap(), "x.json");
        assert_eq!(a.next_arg().unwrap(), Some(Arg::Option("--timeout".into())));
        assert_eq!(a.seconds("--timeout").unwrap(), Duration::from_millis(2500));
        assert_eq!(a.next_arg().unwrap(), Some(Arg::Option("--json".into())));
        assert_eq!(
            a.next_arg().unwrap(),
            Some(Arg::Rest(vec!["k".into(), "--json".into()]))
        );
        assert_eq!(a.next_arg().unwrap(), None);
        let mut a = args(&["--dir=/x", "--dir", "/y"]);
        assert_eq!(a.next_arg().unwrap(), Some(Arg::Option("--dir".into())));
        assert_eq!(a.path("--dir").unwrap(), PathBuf::from("/x"));
        assert!(a.next_arg().unwrap().is_some());
        assert_eq!(a.path("--dir").unwrap(), PathBuf::from("/y"));
        assert_eq!(a.next_arg().unwrap(), None);
    }

    #[test]
    fn mistakes_are_errors() {
        let mut a = args(&["--json=yes"]);
        assert!(a.next_arg().unwrap().is_some());
        assert!(a.next_arg().is_err(), "a flag given a value");
        let mut a = args(&["--timeout"]);
        assert!(a.next_arg().unwrap().is_some());
        assert!(a.value("--timeout").is_err(), "a missing value");
        for bad in ["0", "-1", "nan", "inf", "soon", ""] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
        assert_eq!(parse_seconds("0.25"), Some(Duration::from_millis(250)));
    }

    #[test]
    fn a_lone_dash_is_positional() {
        let mut a = args(&["-"]);
        assert_eq!(a.next_arg().unwrap(), Some(Arg::Positional("-".into())));
    }

    #[cfg(unix)]
    #[test]
    fn paths_keep_any_bytes_and_text_must_be_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(b"/tmp/k\xff".to_vec());
        let mut a = Args::new(
            "test",
            vec!["-f".into(), bad.clone(), "--ip".into(), bad.clone()],
        );
        assert!(a.next_arg().unwrap().is_some());
        assert_eq!(a.path("-f").unwrap().into_os_string(), bad);
        assert!(a.next_arg().unwrap().is_some());
        let error = a.value("--ip").unwrap_err().to_string();
        assert!(
            error.contains("'--ip'") && error.contains("not valid UTF-8"),
            "{error}"
        );
        assert!(utf8_argv(vec!["k".into(), bad]).is_err());
    }
}
