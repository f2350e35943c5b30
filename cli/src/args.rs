//! A small hand-written argument parser: long and short options, `--opt=value`, and `--`.
//!
//! The tool has four subcommands with a handful of options each, so a dependency like clap would
//! cost more than it saves. What matters is that every mistake is caught and reported in one line
//! (an unknown option, a missing value, a value given to a flag), never silently ignored.

use std::time::Duration;

use super::CliError;

/// One item of the command line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arg {
    /// An option (`-f`, `--json`, `--timeout`); its value, if any, is read with [`Args::value`].
    Option(String),
    /// Anything that does not start with `-` (or a lone `-`).
    Positional(String),
    /// Everything after `--`, verbatim.
    Rest(Vec<String>),
}

/// The remaining arguments of one subcommand.
pub(crate) struct Args {
    /// The subcommand, for error messages (`launch`, `kernelspec install`...).
    command: &'static str,
    items: std::vec::IntoIter<String>,
    /// The value glued to the last option with `=`, until [`Args::value`] takes it.
    glued: Option<(String, String)>,
}

impl Args {
    /// The arguments that follow the subcommand name.
    pub(crate) fn new(command: &'static str, items: Vec<String>) -> Self {
        Self {
            command,
            items: items.into_iter(),
            glued: None,
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
        if let Some((option, _)) = self.glued.take() {
            return Err(CliError::usage(format!(
                "option '{option}' of '{}' takes no value",
                self.command
            )));
        }
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        if item == "--" {
            return Ok(Some(Arg::Rest(self.items.by_ref().collect())));
        }
        if item.len() > 1 && item.starts_with('-') {
            if let Some((option, value)) = item.split_once('=') {
                self.glued = Some((option.to_owned(), value.to_owned()));
                return Ok(Some(Arg::Option(option.to_owned())));
            }
            return Ok(Some(Arg::Option(item)));
        }
        Ok(Some(Arg::Positional(item)))
    }

    /// The value of `option`: glued (`--timeout=5`) or the next item (`--timeout 5`).
    pub(crate) fn value(&mut self, option: &str) -> Result<String, CliError> {
        if let Some((_, value)) = self.glued.take() {
            return Ok(value);
        }
        self.items.next().ok_or_else(|| {
            CliError::usage(format!(
                "option '{option}' of '{}' needs a value",
                self.command
            ))
        })
    }

    /// The value of `option` as a positive number of seconds (fractions allowed).
    pub(crate) fn seconds(&mut self, option: &str) -> Result<Duration, CliError> {
        let text = self.value(option)?;
        parse_seconds(&text).ok_or_else(|| {
            CliError::usage(format!(
                "option '{option}' of '{}' expects a positive number of seconds, got '{text}'",
                self.command
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
        Args::new("test", items.iter().map(|s| (*s).to_owned()).collect())
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
}
