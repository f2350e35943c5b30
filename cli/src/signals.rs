//! SIGINT and SIGTERM for `launch` and `demo`: stop in order, never mid-way.
//!
//! A signal only sets flags (through `signal-hook`, which owns the one async-signal-safe
//! handler); the launch in progress sees them within one tick, through the library's
//! [`Cancel`], and so does the check of each launched kernel. Whatever was started is then
//! stopped (its process group: SIGTERM, then SIGKILL after a grace period), every file written
//! is removed, and the tool exits with the conventional status, 128 + the signal's number
//! (130 for SIGINT, 143 for SIGTERM), with one line on stderr.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::driver::Cancel;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::CliError;

/// Whether SIGINT or SIGTERM came, and the cancel token they set.
#[derive(Clone, Debug)]
pub(crate) struct Stop {
    cancel: Cancel,
    interrupted: Arc<AtomicBool>,
    terminated: Arc<AtomicBool>,
}

impl Stop {
    /// Installs the handlers: from now on SIGINT and SIGTERM set flags instead of ending the
    /// process at once.
    pub(crate) fn install() -> Result<Self, CliError> {
        let stop = Self {
            cancel: Cancel::new(),
            interrupted: Arc::new(AtomicBool::new(false)),
            terminated: Arc::new(AtomicBool::new(false)),
        };
        for (signal, which) in [(SIGINT, &stop.interrupted), (SIGTERM, &stop.terminated)] {
            for flag in [Arc::clone(which), stop.cancel.flag()] {
                signal_hook::flag::register(signal, flag)
                    .map_err(|e| CliError::failed(format!("cannot handle signal {signal}: {e}")))?;
            }
        }
        Ok(stop)
    }

    /// The token for [`LaunchSettings::cancel`](crate::driver::LaunchSettings::cancel).
    pub(crate) fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// Whether a signal came.
    pub(crate) fn requested(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The error to exit with once everything is stopped: 128 + the signal's number.
    pub(crate) fn error(&self) -> CliError {
        let (name, number) = if self.interrupted.load(Ordering::SeqCst) {
            ("SIGINT", SIGINT)
        } else if self.terminated.load(Ordering::SeqCst) {
            ("SIGTERM", SIGTERM)
        } else {
            // Not reached: `error` is asked for only once `requested` is true.
            ("a signal", SIGTERM)
        };
        CliError::with_code(
            format!(
                "stopped by {name}: every kernel started was stopped and every file written removed"
            ),
            u8::try_from(128 + number).unwrap_or(1),
        )
    }
}
