//! The launcher side, async: [`launch`] awaits the registration socket through `async_zmq`.
//!
//! The sequence, classic mode and what is left on disk are described in [`crate::launch`].

use jupyter_handshake::registrar::RegistrarEvent;
use jupyter_handshake::{Dialect, Instant, LauncherEvent};

use super::{Router, as_slices, recv, within};
use crate::error::LaunchError;
use crate::launch::{Fleet, LaunchOptions, Launched, MAX_BATCH, Run};
use crate::sockets::{Wrap, try_recv};

/// Launches the kernel `argv` (`{connection_file}` is replaced by the file's path) and waits,
/// without blocking the executor, until it has registered.
///
/// Behaves exactly as [`blocking::launch`](crate::blocking::launch) (same options, same events,
/// same result, same cleanup on failure); see [`crate::launch`].
pub async fn launch(
    ctx: &zmq::Context,
    argv: &[String],
    options: &LaunchOptions,
    observer: &mut dyn FnMut(Instant, &LauncherEvent),
) -> Result<Launched, LaunchError> {
    let mut run = Run::<Router>::new(ctx, argv, options, observer)?;
    let outcome = drive(&mut run).await;
    run.finish(outcome)
}

async fn drive(run: &mut Run<'_, Router>) -> Result<(), LaunchError> {
    let mut deadline = run.drain()?;
    while !run.done() {
        let wait = run.wait_for(deadline);
        let first = match run.router.as_mut() {
            Some(router) => within(Box::pin(recv(router, "registration")), wait).await,
            None => {
                futures_timer::Delay::new(wait).await;
                None
            }
        };
        if let Some(frames) = first {
            run.received(&as_slices(&frames?))?;
            // More may be queued: take them without waiting, up to the batch bound.
            for _ in 1..MAX_BATCH {
                let Some(frames) = (match &run.router {
                    Some(router) if !run.done() => try_recv(router.raw(), "registration")?,
                    _ => None,
                }) else {
                    break;
                };
                run.received(&crate::sockets::as_slices(&frames))?;
            }
        }
        deadline = run.tick()?;
    }
    Ok(())
}

/// Launches many kernels through **one** registration socket, at once, and restarts them
/// through it; the async twin of [`blocking::Launcher`](crate::blocking::launcher::Launcher),
/// with the same behaviour.
pub struct Launcher {
    fleet: Fleet<Router>,
}

impl Launcher {
    /// Binds the shared registration socket (classic mode is refused).
    pub fn new(ctx: &zmq::Context, options: &LaunchOptions) -> Result<Self, LaunchError> {
        Ok(Self {
            fleet: Fleet::new(ctx, options)?,
        })
    }

    /// The shared registration socket's port.
    pub fn port(&self) -> Option<u16> {
        self.fleet.port()
    }

    /// Forgets `launched` for good: its key can no longer register here, and the launcher no
    /// longer keeps anything for it (a supervisor that launches kernels for days calls this when
    /// one is gone). It neither stops the process nor removes the file.
    pub fn forget(&mut self, launched: &Launched) -> Result<(), LaunchError> {
        self.fleet
            .forget(launched.launch_id.ok_or(LaunchError::NotShared)?)
    }

    /// Launches one kernel per command, all at once; see
    /// [`blocking::Launcher::launch_all`](crate::blocking::launcher::Launcher::launch_all).
    pub async fn launch_all(
        &mut self,
        argvs: &[Vec<String>],
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<Vec<Result<Launched, LaunchError>>, LaunchError> {
        let launches = self.fleet.same_dialect(argvs);
        self.launch_mixed(&launches, observer).await
    }

    /// Like `launch_all`, each kernel with its own dialect: Posit and upstream kernels share
    /// the one registration socket.
    pub async fn launch_mixed(
        &mut self,
        launches: &[(Vec<String>, Dialect)],
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<Vec<Result<Launched, LaunchError>>, LaunchError> {
        let started = self.fleet.start(launches, observer)?;
        let outcome = drive_fleet(&mut self.fleet, observer).await;
        self.fleet.conclude(started, outcome)
    }

    /// Restarts `launched` through the same socket; see
    /// [`blocking::Launcher::restart`](crate::blocking::launcher::Launcher::restart).
    pub async fn restart(
        &mut self,
        launched: &mut Launched,
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<(), LaunchError> {
        let id = self.fleet.restart(launched, observer)?;
        let outcome = drive_fleet(&mut self.fleet, observer).await;
        *launched = self.fleet.conclude_restart(id, outcome)?;
        Ok(())
    }
}

async fn drive_fleet(
    fleet: &mut Fleet<Router>,
    observer: &mut dyn FnMut(Instant, &RegistrarEvent),
) -> Result<(), LaunchError> {
    while !fleet.done() {
        let wait = fleet.wait_for();
        if let Some(frames) = within(Box::pin(recv(&mut fleet.router, "registration")), wait).await
        {
            fleet.received(&as_slices(&frames?), observer)?;
            for _ in 1..MAX_BATCH {
                let Some(frames) = try_recv(fleet.router.raw(), "registration")? else {
                    break;
                };
                fleet.received(&crate::sockets::as_slices(&frames), observer)?;
            }
        }
        fleet.tick(observer)?;
    }
    Ok(())
}
