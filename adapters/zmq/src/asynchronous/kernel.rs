//! The kernel side, async: [`start_kernel`] awaits the launcher's reply (and, if asked, the first
//! IOPub subscription) through `async_zmq`, and hands back async sockets.
//!
//! The steps are those of [`blocking::kernel`](crate::blocking::kernel).

use std::path::Path;

use futures_util::future::{Either, select};
use jupyter_handshake::{ConnectionFile, Instant, KernelEvent, KernelFile};

use super::{Reply, Req, Router, XPublish, as_slices, recv, within};
use crate::error::Error;
use crate::kernel::{KernelOptions, Start, read_kernel_file};

/// The kernel's five bound channels, as `async_zmq` sockets (receive with `StreamExt::next`,
/// send with `SinkExt::send`, or use `as_raw_socket()`).
pub struct KernelSockets {
    /// Shell: ROUTER.
    pub shell: Router,
    /// IOPub: XPUB with `ZMQ_XPUB_VERBOSE` set, so every subscription frame is delivered (send
    /// `iopub_welcome` on each first subscription).
    pub iopub: XPublish,
    /// Stdin: ROUTER.
    pub stdin: Router,
    /// Control: ROUTER.
    pub control: Router,
    /// Heartbeat: REP (echo every message back).
    pub hb: Reply,
}

/// A kernel whose channels are bound and registered.
pub struct StartedKernel {
    /// The five bound sockets.
    pub sockets: KernelSockets,
    /// The connection information clients use (the ports actually bound).
    pub connection: ConnectionFile,
    /// The topic of the IOPub subscription consumed while waiting for the first subscription,
    /// as in [`blocking::StartedKernel`](crate::blocking::StartedKernel).
    pub first_subscription: Option<Vec<u8>>,
}

/// Starts the kernel side from the connection or registration file at `file`; behaves as
/// [`blocking::start_kernel`](crate::blocking::start_kernel).
pub async fn start_kernel(
    ctx: &zmq::Context,
    file: &Path,
    options: &KernelOptions,
    observer: &mut dyn FnMut(Instant, &KernelEvent),
) -> Result<StartedKernel, Error> {
    start_kernel_with(ctx, read_kernel_file(file)?, options, observer).await
}

/// [`start_kernel`] with a file already parsed.
pub async fn start_kernel_with(
    ctx: &zmq::Context,
    file: KernelFile,
    options: &KernelOptions,
    observer: &mut dyn FnMut(Instant, &KernelEvent),
) -> Result<StartedKernel, Error> {
    let mut start = Start::<Req, XPublish>::new(ctx, file, options, observer);
    let mut deadline = start.drain()?;
    while !start.done() {
        let wait = start.wait_for(deadline);
        let watch_iopub = start.watching_iopub();
        let Start { req, channels, .. } = &mut start;
        let reply = req
            .as_mut()
            .map(|req| Box::pin(recv(&mut req.0, "registration")));
        let iopub = match (watch_iopub, channels.as_mut()) {
            (true, Some(c)) => Some(Box::pin(recv(&mut c.iopub, "iopub"))),
            _ => None,
        };
        let woke = match (reply, iopub) {
            (Some(reply), Some(iopub)) => {
                within(select(reply, iopub), wait)
                    .await
                    .map(|either| match either {
                        Either::Left((frames, _)) => Woke::Reply(frames),
                        Either::Right((frames, _)) => Woke::Iopub(frames),
                    })
            }
            (Some(reply), None) => within(reply, wait).await.map(Woke::Reply),
            (None, Some(iopub)) => within(iopub, wait).await.map(Woke::Iopub),
            (None, None) => {
                futures_timer::Delay::new(wait).await;
                None
            }
        };
        match woke {
            Some(Woke::Reply(frames)) => start.reply(&as_slices(&frames?))?,
            Some(Woke::Iopub(frames)) => start.iopub_frame(&concat(&frames?))?,
            None => {}
        }
        deadline = start.tick()?;
    }
    let started = start.finish()?;
    let c = started.channels;
    Ok(StartedKernel {
        sockets: KernelSockets {
            shell: Router::from(c.shell),
            iopub: c.iopub,
            stdin: Router::from(c.stdin),
            control: Router::from(c.control),
            hb: Reply::from(c.hb),
        },
        connection: started.connection,
        first_subscription: started.first_subscription,
    })
}

/// An XPUB delivers a subscription as one frame; joined anyway, as the blocking driver does.
fn concat(frames: &[zmq::Message]) -> Vec<u8> {
    frames
        .iter()
        .flat_map(|frame| frame.iter().copied())
        .collect()
}

/// What a wait of the kernel side ended with.
enum Woke {
    Reply(Result<Vec<zmq::Message>, Error>),
    Iopub(Result<Vec<zmq::Message>, Error>),
}
