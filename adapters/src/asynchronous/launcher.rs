//! The launcher side, async: [`launch`] awaits the registration socket through `async_zmq`.
//!
//! The sequence, classic mode and what is left on disk are described in [`crate::launch`].

use jupyter_handshake::{Instant, LauncherEvent};

use super::{Router, as_slices, recv, within};
use crate::error::LaunchError;
use crate::launch::{LaunchOptions, Launched, MAX_BATCH, Run};
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
