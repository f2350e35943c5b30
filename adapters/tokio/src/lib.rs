//! # jupyter-handshake-tokio
//!
//! A tokio driver for the [`jupyter_handshake`] sans-IO core, over the pure-Rust [`zeromq`]
//! crate (0.6, the one evcxr, runtimed, Deno's kernel and Kallichore use): race-free kernel
//! launches (JEP 66) in either dialect, on the runtime and the ZeroMQ those projects already
//! have, with no C or C++ compiler (it builds for Windows).
//!
//! The driver only moves bytes, time, processes and files: it binds, connects, sends,
//! receives, sleeps until the core's deadline, writes files (atomically, owner-only), spawns
//! and watches kernels. Every protocol decision is the core's.
//!
//! ```
//! # #[cfg(unix)]
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use jupyter_handshake_tokio::{KernelOptions, LaunchOptions, Launcher, files, start_kernel};
//! use std::time::Duration;
//!
//! let dir = std::env::temp_dir().join(format!("jh-doc-{}", files::new_session_id()));
//! let mut launcher = Launcher::bind(LaunchOptions { dir: Some(dir.clone()), ..LaunchOptions::default() }).await?;
//!
//! // The kernel side. Normally the launched process runs this with the path it is given
//! // (`{connection_file}`); here a task of this process finds the file instead.
//! let kernel = tokio::spawn(async move {
//!     let path = loop {
//!         let found = std::fs::read_dir(&dir)?.flatten().map(|e| e.path()).find(|p| {
//!             p.extension().is_some_and(|x| x == "json")
//!                 && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("kernel-"))
//!         });
//!         match found {
//!             Some(path) => break path,
//!             None => tokio::time::sleep(Duration::from_millis(5)).await,
//!         }
//!     };
//!     let started = start_kernel(&path, &KernelOptions::default()).await?;
//!     std::fs::remove_dir_all(&dir)?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(started)
//! });
//!
//! // The launcher side: a stand-in process, and the registration arrives from the task.
//! let mut launched = launcher.launch(&["sleep".into(), "30".into()]).await?;
//! let started = kernel.await?.map_err(|e| e.to_string())?;
//! assert_eq!(launched.connection.ports, started.connection.ports);
//! launched.child.kill().await?;
//! # Ok(()) }
//! # #[cfg(not(unix))]
//! # fn main() {}
//! ```
//!
//! * [`kernel`]: [`start_kernel`] binds the five channels on port 0, registers (Posit: REQ,
//!   upstream: DEALER, as the file says) and returns the bound `zeromq` sockets.
//! * [`launcher`]: a [`Launcher`] is one registration ROUTER for many launches (the core's
//!   `Registrar`), with restarts through the same socket; [`launch`] is one launch on a socket
//!   of its own.
//! * [`client`]: a [`Client`] for kernel_info, execute, shutdown.
//! * [`clock`], [`files`], [`process`], [`kernelspec`]: from `jupyter-handshake-host`, shared
//!   with the libzmq driver: the core's timeline; private atomic files, the runtime dir, a file
//!   watch that does not trust the file, keys; how kernels are started and stopped.
//!
//! ## Futures and cancellation
//!
//! Every future is `Send` and runs on tokio's multi-thread runtime (the tests run there).
//! Cancellation-safe, for `select!`: [`Client`]'s waits lose no message (zeromq's DEALER and SUB
//! `recv` are). Safe to drop but not cancellation-safe: [`start_kernel`] (dropping it drops
//! the sockets; the launcher then times out), and the [`Launcher`]'s `launch`, `launch_many`
//! and `restart` (kernels they started stay with the `Launcher` and are stopped when it is
//! dropped; see [`launcher`]).
//!
//! ## The registration socket, and what zeromq 0.6 does and does not do
//!
//! The [`Launcher`]'s registration socket is not zeromq's: it is this crate's own small ZMTP
//! 3.0/3.1 ROUTER ([`router`]; NULL mechanism, REQ, DEALER and ROUTER peers of libzmq and
//! zeromq alike), because zeromq's `RouterSocket` bounds nothing a peer sends and drops
//! messages. Any local process can connect to that socket; what it can make the launcher hold
//! is bounded, and a peer that breaks a bound is disconnected at once (the table and the memory
//! bound are in [`router`]): frames of 2 KiB ([`router::MAX_FRAME`], judged on the header), 15
//! frames and 16 KiB per message ([`router::MAX_FRAMES`], [`router::MAX_MESSAGE`]: an endless
//! multipart message is cut off there), 10 s for the greeting and READY
//! ([`router::HANDSHAKE_TIMEOUT`]), 4 messages queued per peer ([`router::PEER_QUEUE`]; then
//! the peer is not read), 1024 connections ([`router::MAX_CONNECTIONS`]). Replies never wait.
//! The kernel side and the [`Client`] keep zeromq.
//!
//! * XPUB exists, so [`KernelOptions::wait_for_iopub`] (stay `Registered` until the first IOPub
//!   subscription) is supported; but zeromq's XPUB only learns subscriptions in `recv`, so
//!   the kernel gets an [`Iopub::XPub`] it must keep receiving on ([`kernel`]).
//! * zeromq has no `ZMQ_MAXMSGSIZE`: on the kernel's channels and the client's sockets a peer
//!   can make it buffer a frame as large as it announces before the core sees (and rejects)
//!   it. Bind kernels on loopback (the default) only.
//! * **zeromq's ROUTER drops the messages of a peer that disconnects right after sending.**
//!   Measured with zeromq's `RouterSocket` as the registration socket: in the 40-kernel fleet
//!   of `tests/hostile.rs`, the 4 forging peers (libzmq DEALERs that send 4 messages each and
//!   close with a linger) got 0 of their 16 messages out of its `recv`, in 3 runs of 3; the
//!   same messages all reach the launcher through [`router`].
//! * The registrations "lost in a burst" (about one in a hundred with 100 kernels at once,
//!   once blamed on zeromq) were this driver's own bug: the launcher took a message off its
//!   queue after the 64th of a batch and dropped it unhandled. Fixed; with that fix alone,
//!   zeromq's ROUTER registered every kernel of the 200-kernel fleet in 3 runs of 3.
//! * **zeromq's fair queue spins on an exhausted tokio budget**: use [`recv`] (it runs
//!   `recv` unconstrained) rather than `SocketRecv::recv` on a busy task; the driver does.
//! * A send to a vanished peer fails in zeromq (libzmq's ROUTER drops it silently); the
//!   driver's kernel side and client drop it too, and bound every send to 1 s, so a peer that
//!   stops reading cannot hang them.
//!
//! ## Windows
//!
//! Cross-built and linted for `x86_64-pc-windows-gnu` in CI (running is not possible there).
//! * **No 0600.** Files are created with the ACL they inherit from their directory. The default
//!   directory, [`files::runtime_dir`], is `%APPDATA%\jupyter\runtime`, inside the user's
//!   profile, whose ACL grants the user, `SYSTEM` and Administrators only: that is what
//!   protects the key. Give [`LaunchOptions::dir`] only a directory as private.
//! * **Handles.** The registration socket (mio: `WSA_FLAG_NO_HANDLE_INHERIT`) and every file
//!   (std: not inheritable) are never inherited by a kernel; the kernel gets its stdio only.
//!   On Unix the same holds through `SOCK_CLOEXEC`/`O_CLOEXEC` (tested on Linux).
//! * **Exit detection.** `tokio::process::Child::try_wait`, every 10 ms while a launch is
//!   pending: on Windows an exit code only (never a signal; a killed kernel reads as code 1).
//! * **Symlinks.** The file watch opens with `FILE_FLAG_OPEN_REPARSE_POINT` and refuses what is
//!   not a regular file, so a reparse point is never followed.
//! * **ipc** goes through zeromq's AF_UNIX support on Windows 10+ on the kernel side and in the
//!   client. The launcher's registration socket ([`router`]) refuses ipc on Windows with
//!   [`Error::Endpoint`] (tokio serves no AF_UNIX sockets there): use tcp.

pub mod client;
pub mod error;
pub mod kernel;
pub mod launcher;
pub mod router;
mod sockets;
pub use sockets::{frames, message, recv};

pub use client::{Channel, Client, ExecuteOutcome};
pub use error::Error;
/// What every driver shares (the core's clock, private files and the file watch, kernel
/// processes, kernelspecs), from `jupyter-handshake-host`.
pub use jupyter_handshake_host::{Clock, clock, files, kernelspec, process};
pub use kernel::{
    Iopub, KernelOptions, KernelSockets, StartedKernel, start_kernel, start_kernel_with,
};
pub use launcher::{ChildStdio, LaunchOptions, Launched, Launcher, launch};

/// The core crate, re-exported so callers use the same version.
pub use jupyter_handshake;
/// The drivers' shared host crate, re-exported.
pub use jupyter_handshake_host;
/// The zeromq crate, re-exported so callers use the same version.
pub use zeromq;

/// Compile-time proof that the public futures are `Send` (usable with `tokio::spawn` on the
/// multi-thread runtime).
#[cfg(test)]
#[allow(dead_code, clippy::let_underscore_future)]
mod futures_are_send {
    use super::*;

    fn send<T: Send>(_: &T) {}

    async fn launcher_calls(mut launcher: Launcher, mut launched: Launched) {
        let _ = launcher.launch(&[]).await;
        let _ = launcher.launch_many(&[]).await;
        let _ = launcher.restart(&mut launched).await;
    }

    async fn client_calls(mut client: Client) {
        let _ = client.wait_for_ready(std::time::Duration::ZERO).await;
        let _ = client.execute("", std::time::Duration::ZERO).await;
        let _ = client.shutdown(std::time::Duration::ZERO).await;
    }

    fn check(
        launcher: Launcher,
        launched: Launched,
        client: Client,
        c: &jupyter_handshake::ConnectionFile,
    ) {
        send(&launcher_calls(launcher, launched));
        send(&client_calls(client));
        send(&Client::connect(c));
        send(&launch(&[], &LaunchOptions::default()));
        send(&Launcher::bind(LaunchOptions::default()));
        send(&start_kernel(
            std::path::Path::new("k.json"),
            &KernelOptions::default(),
        ));
    }

    #[test]
    fn the_check_compiles() {
        // The proof is `check` type-checking; this test only makes it part of the test build.
        let _ = check as fn(Launcher, Launched, Client, &jupyter_handshake::ConnectionFile);
    }
}
