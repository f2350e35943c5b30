//! Trace lines: how the `kernel` subcommand tells the `demo` what its state machine did, and when.
//!
//! The kernel runs in another process, so the demo cannot observe its machine directly. When
//! `JUPYTER_HANDSHAKE_TRACE=1` is set, the kernel prints one line per event on stderr:
//!
//! ```text
//! jupyter-handshake-trace <unix_micros> kernel <text>
//! ```
//!
//! Both processes anchor their clocks at the Unix epoch, so the demo can merge these lines with
//! its own launcher events on one timeline. Texts never carry the key: events name states, ports
//! and rejection reasons, and the core's events never contain a key or raw frame bytes.

use std::io::Write;

use jupyter_handshake::{Instant, KernelEvent, LauncherEvent};

/// The environment variable that turns tracing on (value `1`).
pub(crate) const TRACE_ENV: &str = "JUPYTER_HANDSHAKE_TRACE";
/// The first word of every trace line.
const PREFIX: &str = "jupyter-handshake-trace";

/// Prints trace lines on stderr, or nothing when tracing is off.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tracer {
    enabled: bool,
}

impl Tracer {
    /// On when `JUPYTER_HANDSHAKE_TRACE` is `1` (or `true`/`yes`).
    pub(crate) fn from_env() -> Self {
        let enabled = std::env::var(TRACE_ENV)
            .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
            .unwrap_or(false);
        Self { enabled }
    }

    /// Whether lines are printed.
    pub(crate) fn enabled(self) -> bool {
        self.enabled
    }

    /// Prints `text` for the kernel side at `at`.
    pub(crate) fn kernel(self, at: Instant, text: &str) {
        if self.enabled {
            let line = format_line(at, "kernel", text);
            // One write per line, so that lines never interleave with other stderr output. A
            // closed stderr is not a reason to stop serving.
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// `jupyter-handshake-trace <micros> <side> <text>\n`; newlines in `text` are flattened.
fn format_line(at: Instant, side: &str, text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{PREFIX} {} {side} {text}\n", at.as_micros())
}

/// One parsed trace line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TraceLine {
    /// When, in microseconds since the Unix epoch.
    pub(crate) at: Instant,
    /// `kernel` (the only side that prints them today).
    pub(crate) side: String,
    /// What happened.
    pub(crate) text: String,
}

/// Reads a trace line; `None` for any other line (ordinary stderr output).
pub(crate) fn parse_line(line: &str) -> Option<TraceLine> {
    let rest = line.strip_prefix(PREFIX)?.strip_prefix(' ')?;
    let (micros, rest) = rest.split_once(' ')?;
    let (side, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(TraceLine {
        at: Instant::from_micros(micros.parse().ok()?),
        side: side.to_owned(),
        text: text.trim_end().to_owned(),
    })
}

/// A one-line description of a kernel-machine event (no key: see the module docs).
pub(crate) fn describe_kernel_event(event: &KernelEvent) -> String {
    match event {
        KernelEvent::StateChanged { from, to } => format!("state {from:?} -> {to:?}"),
        KernelEvent::Rejected(why) => format!("dropped a message: {why}"),
        KernelEvent::Connected(c) => format!("connected: {}", describe_ports(&c.ports)),
        KernelEvent::Failed(failure) => format!("failed: {failure}"),
        other => format!("{other:?}"),
    }
}

/// A one-line description of a launcher-machine event (no key: see the module docs).
pub(crate) fn describe_launcher_event(event: &LauncherEvent) -> String {
    match event {
        LauncherEvent::StateChanged { from, to } => format!("state {from:?} -> {to:?}"),
        LauncherEvent::Rejected(why) => format!("dropped: {why}"),
        LauncherEvent::Refused(why) => format!("refused a signed request: {why}"),
        LauncherEvent::Registered {
            connection,
            evidence,
        } => format!(
            "registered ({}): {}",
            super::launch::evidence_name(*evidence),
            describe_ports(&connection.ports)
        ),
        LauncherEvent::Failed(failure) => format!("failed: {failure}"),
        other => format!("{other:?}"),
    }
}

/// `shell=… iopub=… stdin=… control=… hb=…`.
pub(crate) fn describe_ports(p: &jupyter_handshake::KernelPorts) -> String {
    format!(
        "shell={} iopub={} stdin={} control={} hb={}",
        p.shell, p.iopub, p.stdin, p.control, p.hb
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let line = format_line(
            Instant::from_micros(1_700_000_000_123_456),
            "kernel",
            "a\nb",
        );
        assert_eq!(
            line,
            "jupyter-handshake-trace 1700000000123456 kernel a b\n"
        );
        assert_eq!(
            parse_line(&line),
            Some(TraceLine {
                at: Instant::from_micros(1_700_000_000_123_456),
                side: "kernel".into(),
                text: "a b".into(),
            })
        );
        assert_eq!(parse_line("Traceback (most recent call last):"), None);
        assert_eq!(parse_line("jupyter-handshake-trace soon kernel x"), None);
    }
}
