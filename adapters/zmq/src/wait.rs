//! The one seam between an engine and the OS: an engine says what it waits on, a driver waits
//! and tells it what woke it.
//!
//! An engine (the launcher's [`Fleet`](crate::launch), the kernel side's start, the client) is
//! a sans-IO object over OS events. It does everything but waiting: it owns its sockets, its
//! child processes and files, and its core machine. Through [`Engine`] it says
//!
//! * what it waits on: which of its sockets, and for how long at most ([`Engine::interest`]:
//!   until its core's deadline, or sooner when it also watches a child or a file by polling);
//!
//! and it is told what woke it:
//!
//! * a message on one of those sockets ([`Engine::received`]), at most [`MAX_BATCH`] per
//!   wake-up and socket, so a flood cannot keep it from looking at the rest; a message from a
//!   peer the engine no longer hears ([`Engine::ignores`]) is dropped unhandled (and counts
//!   against the same budget: reading a flood faster only makes the flooders send faster);
//! * the wake-up itself ([`Engine::woke`]), after every wait: it checks its child, its file and
//!   the time.
//!
//! Two drivers, each written once: [`block`] is a `zmq::poll` loop over it, and `wait` (feature
//! `async`) one future over it, which awaits the sockets through `async_zmq` and the time
//! through `futures-timer`.

use std::time::Duration;

use crate::error::Error;
use crate::sockets::{Wrap, try_recv};

/// At most this many messages are handled per wake-up and socket, so a flood on one socket
/// cannot keep an engine from noticing that its kernel exited. (A flood cannot postpone a
/// deadline either: the core checks it before every input.)
pub(crate) const MAX_BATCH: usize = 64;

/// One socket an engine waits on.
pub(crate) struct Watch<'a, S> {
    /// The engine's name for it, handed back with what it received.
    pub(crate) tag: usize,
    /// Its name in error messages.
    pub(crate) name: &'static str,
    pub(crate) socket: &'a mut S,
}

/// What an engine waits on next.
pub(crate) struct Interest<'a, S> {
    /// The sockets whose messages wake it (none: only the time does).
    pub(crate) sockets: Vec<Watch<'a, S>>,
    /// The longest it may sleep before [`Engine::woke`].
    pub(crate) timeout: Duration,
}

/// A sans-IO engine over OS events; see the [module docs](self).
pub(crate) trait Engine {
    /// How it holds its sockets: `zmq::Socket` (blocking) or an async wrapper of one.
    type Socket: Wrap;
    /// Its error type.
    type Error: From<Error>;

    /// Whether it is finished: nothing more to wait for.
    fn done(&self) -> bool;

    /// What it waits on next.
    fn interest(&mut self) -> Interest<'_, Self::Socket>;

    /// Its socket `tag` (to take more queued messages without waiting), with its name; `None`
    /// once it no longer listens there.
    fn socket(&self, tag: usize) -> Option<(&'static str, &Self::Socket)>;

    /// A message arrived on its socket `tag`, as the frames the socket gave (handed to the core
    /// as they are: no copy, no list of slices built first).
    fn received<F: AsRef<[u8]>>(&mut self, tag: usize, frames: &[F]) -> Result<(), Self::Error>;

    /// Called after every wait, whatever ended it: look at the child, the file, the time.
    fn woke(&mut self) -> Result<(), Self::Error>;

    /// Whether a message that arrived on socket `tag` comes from a peer the engine no longer
    /// hears: it is then dropped without [`received`](Self::received) (default: none is).
    fn ignores<F: AsRef<[u8]>>(&mut self, _tag: usize, _frames: &[F]) -> bool {
        false
    }
}

/// Hands `engine` the messages already queued on its socket `tag`, up to `batch` of them
/// (those of peers it ignores dropped instead), without waiting.
pub(crate) fn take_queued<E: Engine>(
    engine: &mut E,
    tag: usize,
    batch: usize,
) -> Result<(), E::Error> {
    for _ in 0..batch {
        if engine.done() {
            break;
        }
        let Some((name, socket)) = engine.socket(tag) else {
            break;
        };
        let Some(frames) = try_recv(socket.raw(), name)? else {
            break;
        };
        if !engine.ignores(tag, &frames) {
            engine.received(tag, &frames)?;
        }
    }
    Ok(())
}

/// The blocking driver: waits with `zmq::poll` until `engine` is done.
pub(crate) fn block<E: Engine<Socket = zmq::Socket>>(engine: &mut E) -> Result<(), E::Error> {
    while !engine.done() {
        let ready: Vec<usize> = {
            let interest = engine.interest();
            let mut items: Vec<_> = interest
                .sockets
                .iter()
                .map(|w| w.socket.as_poll_item(zmq::POLLIN))
                .collect();
            let name = interest.sockets.first().map_or("poll", |w| w.name);
            if items.is_empty() {
                std::thread::sleep(interest.timeout);
            } else {
                crate::sockets::poll(&mut items, poll_millis(interest.timeout), name)?;
            }
            interest
                .sockets
                .iter()
                .zip(&items)
                .filter(|(_, item)| item.is_readable())
                .map(|(w, _)| w.tag)
                .collect()
        };
        for tag in ready {
            take_queued(engine, tag, MAX_BATCH)?;
        }
        engine.woke()?;
    }
    Ok(())
}

/// The async driver: one future that awaits `engine`'s sockets and its timeout until it is
/// done. It is `Send` when the engine is (its sockets are, and so is an observer that is
/// `Send`).
#[cfg(feature = "async")]
pub(crate) async fn wait<E>(engine: &mut E) -> Result<(), E::Error>
where
    E: Engine<Socket = crate::asynchronous::AsyncSocket>,
{
    use futures_util::future::select_all;

    use crate::asynchronous::{recv, within};

    while !engine.done() {
        let woke = {
            let interest = engine.interest();
            let timeout = interest.timeout;
            let receives: Vec<_> = interest
                .sockets
                .into_iter()
                .map(|w| {
                    Box::pin(async move {
                        let frames = recv(w.socket, w.name).await;
                        (w.tag, frames)
                    })
                })
                .collect();
            if receives.is_empty() {
                futures_timer::Delay::new(timeout).await;
                None
            } else {
                within(select_all(receives), timeout)
                    .await
                    .map(|(first, _, _)| first)
            }
        };
        if let Some((tag, frames)) = woke {
            let received = frames?;
            let frames = crate::asynchronous::as_slices(&received);
            if !engine.ignores(tag, &frames) {
                engine.received(tag, &frames)?;
            }
            // More may be queued: take them without waiting, up to the batch bound.
            take_queued(engine, tag, MAX_BATCH - 1)?;
        }
        engine.woke()?;
    }
    Ok(())
}

/// Whole milliseconds to wait for `duration`, rounded up so a poll never wakes just before a
/// deadline (an early wake-up would only cost a harmless extra `Timeout` input).
#[cfg_attr(not(feature = "blocking"), allow(dead_code))]
fn poll_millis(duration: Duration) -> i64 {
    let micros = duration.as_micros();
    i64::try_from(micros.div_ceil(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_millis_rounds_up() {
        assert_eq!(poll_millis(Duration::ZERO), 0);
        assert_eq!(poll_millis(Duration::from_micros(1)), 1);
        assert_eq!(poll_millis(Duration::from_micros(1000)), 1);
        assert_eq!(poll_millis(Duration::from_micros(1001)), 2);
        assert_eq!(poll_millis(Duration::MAX), i64::MAX);
    }
}
