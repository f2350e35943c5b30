//! Async drivers over [`async_zmq`] 0.4 (feature `async`): the same kernel side, launcher side
//! and client as [`blocking`](crate::blocking), as `async fn`s that run on any executor.
//!
//! * [`start_kernel`]: binds the five channels, registers them, hands back async sockets.
//! * [`launch`]: binds the registration socket, writes the file, spawns the kernel, watches its
//!   socket, process and file.
//! * [`Client`]: a connected client for a kernel.
//!
//! ## What they cost, and why they work on any runtime
//!
//! * **No runtime is required.** Sockets are waited on through `async_zmq`, which registers
//!   each socket's ZeroMQ file descriptor with its own reactor: **one background thread**
//!   (`async-std/net`, started on first use, shared by the whole process). Timers come from
//!   [`futures_timer`], which keeps **one more helper thread**. Neither needs tokio, smol or
//!   async-std, so these futures can be awaited from any executor (the tests run every scenario
//!   on `futures::executor` and on tokio's current-thread runtime), and from a GUI's or an
//!   interpreter's own loop through any `block_on`.
//! * **Each wake-up costs a hop through the reactor thread.** The kernel's message wakes the
//!   reactor, which wakes the task. `cargo run --release --example latency --features async`
//!   measures what that adds to a handshake, next to the blocking driver and a hand-written
//!   loop.
//! * **The futures are `Send`** ([`launch`], [`start_kernel`], and the methods of
//!   [`Launcher`] and [`Client`]; an observer must be `Send` too): they run as tasks of a
//!   multi-thread runtime (a test spawns launches and clients on tokio's), and many of them can
//!   run concurrently on one thread as well (`futures::future::join_all`). (`zmq` 0.10 sockets
//!   are `Send`; the futures were `!Send` only because their observers needed not be.)
//! * **Watching the child and the file** is polling, as in the blocking launcher: every 10 ms
//!   (a timer), so a crashing kernel is reported within 10 ms and a stock ipykernel that
//!   rewrites the file is seen within 10 ms.
//!
//! Sending never waits: a ROUTER never blocks (it drops what it cannot route), and the REQ and
//! DEALER sockets used here send on a pipe libzmq created when they connected. So every send
//! is a plain non-blocking `zmq` send on the wrapped socket; only receiving is awaited.
//!
//! ```no_run
//! use std::time::Duration;
//! use jupyter_handshake_zmq::asynchronous::{Client, launch};
//! use jupyter_handshake_zmq::launch::LaunchOptions;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let ctx = zmq::Context::new();
//! let argv = ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"].map(String::from);
//! let mut launched = launch(&ctx, &argv, &LaunchOptions::default(), &mut |_, _| {}).await?;
//! let mut client = Client::connect(&ctx, &launched.connection)?;
//! let info = client.wait_for_ready(Duration::from_secs(10)).await?;
//! println!("{} registered after {:?}", info["implementation"], launched.registered_after);
//! client.shutdown(Duration::from_secs(5)).await?;
//! launched.child.wait()?;
//! launched.remove_file()?;
//! # Ok(()) }
//! # fn main() { futures_executor::block_on(run()).unwrap() }
//! ```

pub mod client;
pub mod kernel;
pub mod launcher;

pub use client::Client;
pub use kernel::{KernelSockets, StartedKernel, start_kernel, start_kernel_with};
pub use launcher::{Launcher, launch};

use std::time::Duration;

use futures_util::future::{Either, select};

use crate::error::Error;
use crate::sockets::Wrap;

/// The multipart iterator the `async_zmq` socket types are instantiated with: a message is a
/// `Vec` of frames.
pub type Frames = std::vec::IntoIter<Vec<u8>>;
/// An async ROUTER.
pub type Router = async_zmq::Router<Frames, Vec<u8>>;
/// An async DEALER.
pub type Dealer = async_zmq::Dealer<Frames, Vec<u8>>;
/// An async XPUB.
pub type XPublish = async_zmq::XPublish<Frames, Vec<u8>>;
/// An async REP.
pub type Reply = async_zmq::Reply<Frames, Vec<u8>>;
/// An async REQ.
pub type Request = async_zmq::Request<Frames, Vec<u8>>;
/// An async SUB.
pub type Subscribe = async_zmq::Subscribe;
/// How the async drivers' engines hold a socket they wait on, whatever its kind: `async_zmq`'s
/// wrappers differ only in the traits they expose, and receiving through the DEALER one is
/// receiving one multipart message when libzmq says one is ready, for any kind.
pub type AsyncSocket = Dealer;

impl Wrap for AsyncSocket {
    fn wrap(socket: zmq::Socket) -> Self {
        Self::from(socket)
    }
    fn raw(&self) -> &zmq::Socket {
        self.as_raw_socket()
    }
}

/// Receives one multipart message from a stream-like `async_zmq` socket.
pub(crate) async fn recv<S, E>(
    socket: &mut S,
    name: &'static str,
) -> Result<Vec<zmq::Message>, Error>
where
    S: futures_util::Stream<Item = Result<Vec<zmq::Message>, E>> + Unpin,
    E: Into<zmq::Error>,
{
    use futures_util::StreamExt;
    match socket.next().await {
        Some(Ok(frames)) => Ok(frames),
        Some(Err(e)) => Err(Error::Io {
            action: "receive",
            socket: name,
            source: e.into(),
        }),
        None => Err(Error::Io {
            action: "receive",
            socket: name,
            source: zmq::Error::ETERM,
        }),
    }
}

/// Waits for `future`, or `wait` to pass (then `None`).
pub(crate) async fn within<F: std::future::Future + Unpin>(
    future: F,
    wait: Duration,
) -> Option<F::Output> {
    match select(future, futures_timer::Delay::new(wait)).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(((), _)) => None,
    }
}

/// Borrows received frames the way the core's inputs take them.
pub(crate) fn as_slices(frames: &[zmq::Message]) -> Vec<&[u8]> {
    frames.iter().map(|frame| &**frame).collect()
}

#[cfg(all(test, unix, feature = "blocking"))]
mod tests;
