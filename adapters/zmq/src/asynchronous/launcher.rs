//! The launcher side, async: [`launch`] and [`Launcher`] await the registration socket through
//! `async_zmq`.
//!
//! The sequence, classic mode and what is left on disk are described in [`crate::launch`].

use jupyter_handshake::RegistrarEvent;
use jupyter_handshake::{Dialect, Instant, LauncherEvent};

use super::AsyncSocket;
use crate::error::LaunchError;
use crate::kernelspec::LaunchMode;
use crate::launch::{LaunchOptions, Launched, launch_classic, only, single};
use crate::wait::wait;

/// The one [`Launcher`](crate::launch::Launcher) type, waiting through `async_zmq`: the same
/// engine and behaviour as the blocking one, with `async fn`s.
pub type Launcher = crate::launch::Launcher<AsyncSocket>;

/// Launches the kernel `argv` (`{connection_file}` is replaced by the file's path) and waits,
/// without blocking the executor, until it has registered.
///
/// Behaves exactly as [`blocking::launch`](crate::blocking::launch) (same options, same events,
/// same result, same cleanup on failure); see [`crate::launch`]. The future is `Send` (the
/// observer must be).
pub async fn launch(
    ctx: &zmq::Context,
    argv: &[String],
    options: &LaunchOptions,
    observer: &mut (dyn FnMut(Instant, &LauncherEvent) + Send),
) -> Result<Launched, LaunchError> {
    if options.mode == LaunchMode::Classic {
        return launch_classic(argv, options);
    }
    let mut launcher = Launcher::new(ctx, options)?;
    let launches = launcher.fleet.same_dialect(&[argv.to_vec()]);
    only(
        launcher
            .launch_mixed(&launches, &mut single(observer))
            .await,
    )
}

impl Launcher {
    /// Launches one kernel per command, all at once; see
    /// [`blocking::Launcher::launch_all`](crate::launch::Launcher::launch_all).
    pub async fn launch_all(
        &mut self,
        argvs: &[Vec<String>],
        observer: &mut (dyn FnMut(Instant, &RegistrarEvent) + Send),
    ) -> Result<Vec<Result<Launched, LaunchError>>, LaunchError> {
        let launches = self.fleet.same_dialect(argvs);
        self.launch_mixed(&launches, observer).await
    }

    /// Like `launch_all`, each kernel with its own dialect: Posit and upstream kernels share
    /// the one registration socket.
    pub async fn launch_mixed(
        &mut self,
        launches: &[(Vec<String>, Dialect)],
        observer: &mut (dyn FnMut(Instant, &RegistrarEvent) + Send),
    ) -> Result<Vec<Result<Launched, LaunchError>>, LaunchError> {
        let started = self.fleet.start(launches, observer)?;
        let outcome = wait(&mut self.fleet.driving(observer)).await;
        self.fleet.conclude(started, outcome)
    }

    /// Restarts `launched` through the same socket; see
    /// [`blocking::Launcher::restart`](crate::launch::Launcher::restart).
    pub async fn restart(
        &mut self,
        launched: &mut Launched,
        observer: &mut (dyn FnMut(Instant, &RegistrarEvent) + Send),
    ) -> Result<(), LaunchError> {
        let id = self.fleet.restart(launched, observer)?;
        let outcome = wait(&mut self.fleet.driving(observer)).await;
        *launched = self.fleet.conclude_restart(id, outcome)?;
        Ok(())
    }
}
