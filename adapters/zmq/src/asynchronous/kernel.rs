//! The kernel side, async: [`start_kernel`] awaits the launcher's reply (and, if asked, the first
//! IOPub subscription) through `async_zmq`, and hands back async sockets.
//!
//! The steps are those of [`blocking::kernel`](crate::blocking::kernel), in one engine
//! ([`crate::kernel`]); only the waiting differs.

use std::path::Path;

use jupyter_handshake::{Instant, KernelEvent, KernelFile};

use super::AsyncSocket;
use crate::error::Error;
use crate::kernel::{KernelOptions, Start, read_kernel_file};
use crate::wait::wait;

/// The kernel's five bound channels, as `async_zmq` sockets (receive with `StreamExt::next`,
/// send with `SinkExt::send`, or use `as_raw_socket()`).
pub type KernelSockets = crate::kernel::KernelSockets<AsyncSocket>;

/// A kernel whose channels are bound and registered, as in
/// [`blocking::StartedKernel`](crate::blocking::StartedKernel), with async sockets.
pub type StartedKernel = crate::kernel::StartedKernel<AsyncSocket>;

/// Starts the kernel side from the connection or registration file at `file`; behaves as
/// [`blocking::start_kernel`](crate::blocking::start_kernel).
pub async fn start_kernel(
    ctx: &zmq::Context,
    file: &Path,
    options: &KernelOptions,
    observer: &mut (dyn FnMut(Instant, &KernelEvent) + Send),
) -> Result<StartedKernel, Error> {
    start_kernel_with(ctx, read_kernel_file(file)?, options, observer).await
}

/// [`start_kernel`] with a file already parsed.
pub async fn start_kernel_with(
    ctx: &zmq::Context,
    file: KernelFile,
    options: &KernelOptions,
    observer: &mut (dyn FnMut(Instant, &KernelEvent) + Send),
) -> Result<StartedKernel, Error> {
    let mut start = Start::new(ctx, file, options, observer);
    start.drain()?;
    wait(&mut start).await?;
    start.finish()
}
