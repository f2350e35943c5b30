//! The kernel side: bind the five channels, register them, hand the sockets back.
//!
//! ```no_run
//! use jupyter_handshake_zmq::blocking::kernel::{KernelOptions, start_kernel};
//! # fn main() -> Result<(), jupyter_handshake_zmq::Error> {
//! let ctx = zmq::Context::new();
//! let started = start_kernel(
//!     &ctx,
//!     "registration.json".as_ref(),
//!     &KernelOptions::default(),
//!     &mut |at, event| eprintln!("{at:?} {event:?}"),
//! )?;
//! // Serve shell, iopub, stdin, control and heartbeat on started.sockets.
//! # Ok(()) }
//! ```
//!
//! What happens, step by step (each step is the core's [`KernelHandshake`](jupyter_handshake::KernelHandshake) asking for it):
//!
//! 1. `BindChannels`: shell (ROUTER), iopub (XPUB, `ZMQ_XPUB_VERBOSE` so every subscription is
//!    seen), heartbeat (REP), stdin (ROUTER), control (ROUTER) are bound in ark's order, on port
//!    0 for a registration file, on the file's ports for a classic file; the real ports are read
//!    back from libzmq and reported.
//! 2. `ConnectRegistration` (registration file only): a REQ socket connects to the launcher's
//!    registration endpoint, and the core's `handshake_request` is sent on it.
//! 3. The driver waits on the REQ (and, with [`KernelOptions::wait_for_iopub`], on the XPUB)
//!    until the core's deadline, reporting each reply, each subscription, and the deadline.
//! 4. On `Connected`, the kernel's own connection file is written if asked (atomically, mode
//!    0600), and the sockets are returned; on `Failed`, the core's reason is returned as
//!    [`Error::Handshake`], and the sockets are closed.
//!
//! The REQ socket is closed before returning. Losing the registration connection is not detected
//! (libzmq reconnects silently); the acknowledgement deadline covers it.

use std::path::Path;

use jupyter_handshake::{Instant, KernelEvent, KernelFile};

pub use crate::kernel::KernelOptions;

use crate::error::Error;
use crate::kernel::{Start, read_kernel_file};
use crate::wait::block;

/// The kernel's five bound channels, as `zmq::Socket`s (the one
/// [`KernelSockets`](crate::kernel::KernelSockets) type).
pub type KernelSockets = crate::kernel::KernelSockets<zmq::Socket>;

/// A kernel whose channels are bound and registered (the one
/// [`StartedKernel`](crate::kernel::StartedKernel) type). Its `first_subscription` is the
/// topic of the IOPub subscription consumed while waiting for the first subscription (the XPUB
/// frame without its leading `0x01`; empty for a subscribe-all), if any: the caller should
/// still greet that subscriber with `iopub_welcome`. `None` when no subscription was consumed
/// (then any subscription is still queued on the IOPub socket).
pub type StartedKernel = crate::kernel::StartedKernel<zmq::Socket>;

/// Starts the kernel side from the connection or registration file at `file`.
///
/// A classic connection file binds the five ports it names; a registration file binds them on
/// port 0 and registers them with the launcher (see the [module docs](self)). `observer` sees
/// every event of the core machine (state changes, dropped replies, the outcome) with the instant
/// it happened.
pub fn start_kernel(
    ctx: &zmq::Context,
    file: &Path,
    options: &KernelOptions,
    observer: &mut dyn FnMut(Instant, &KernelEvent),
) -> Result<StartedKernel, Error> {
    start_kernel_with(ctx, read_kernel_file(file)?, options, observer)
}

/// [`start_kernel`] with a file already parsed.
pub fn start_kernel_with(
    ctx: &zmq::Context,
    file: KernelFile,
    options: &KernelOptions,
    observer: &mut dyn FnMut(Instant, &KernelEvent),
) -> Result<StartedKernel, Error> {
    let mut start = Start::new(ctx, file, options, observer);
    start.drain()?;
    block(&mut start)?;
    start.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocking::testkit::HandLauncher;
    use crate::clock::Clock;
    use crate::files::write_private_atomic;
    use crate::temp::TempDir;
    use jupyter_handshake::ConnectionFile;
    use jupyter_handshake::message::Header;
    use jupyter_handshake::message::Session;
    use jupyter_handshake::wire::{self, Limits};
    use jupyter_handshake::{Failure, Transport};
    use jupyter_handshake::{
        KernelState, LauncherState, RegistrationFile, SignatureScheme, Signer, Waiting,
    };
    use std::path::PathBuf;
    use std::time::Duration;

    type Events = Vec<KernelEvent>;

    /// Runs `start_kernel` on `file` in a thread; returns its result and events.
    fn spawn_kernel(
        ctx: &zmq::Context,
        file: PathBuf,
        options: KernelOptions,
    ) -> std::thread::JoinHandle<(Result<StartedKernel, Error>, Events)> {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let mut events = Vec::new();
            let result = start_kernel(&ctx, &file, &options, &mut |_, e| events.push(e.clone()));
            (result, events)
        })
    }

    fn states(events: &Events) -> Vec<KernelState> {
        events
            .iter()
            .filter_map(|e| match e {
                KernelEvent::StateChanged { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn registers_with_a_hand_driven_launcher_and_writes_its_connection_file() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut launcher = HandLauncher::new(&ctx, &dir.0);
        let own_file = dir.0.join("kernel-own.json");
        let options = KernelOptions {
            write_connection_file: Some(own_file.clone()),
            ..KernelOptions::default()
        };
        let kernel = spawn_kernel(&ctx, launcher.file.clone(), options);
        launcher.serve();
        let (result, events) = kernel.join().unwrap();
        let started = result.unwrap();

        assert_eq!(launcher.machine.state(), LauncherState::Connected);
        assert_eq!(&started.connection, launcher.connection());
        assert_eq!(started.connection.key, launcher.registration.key);
        assert_eq!(started.first_subscription, None);
        assert_eq!(
            states(&events),
            [
                KernelState::Bound,
                KernelState::AwaitingReply,
                KernelState::Connected
            ]
        );
        assert!(matches!(events.last(), Some(KernelEvent::Connected(_))));

        let written = std::fs::read(&own_file).unwrap();
        assert_eq!(
            ConnectionFile::from_json(&written).unwrap(),
            started.connection
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&own_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // The sockets are really bound where the connection says: the XPUB is verbose, so a
        // subscription shows up on it; the heartbeat REP echoes.
        let sub = ctx.socket(zmq::SUB).unwrap();
        sub.set_subscribe(b"").unwrap();
        sub.connect(&started.connection.endpoint(started.connection.ports.iopub))
            .unwrap();
        assert_eq!(started.sockets.iopub.recv_bytes(0).unwrap(), [1]);
        let hb = ctx.socket(zmq::REQ).unwrap();
        hb.connect(&started.connection.endpoint(started.connection.ports.hb))
            .unwrap();
        hb.send("ping", 0).unwrap();
        let ping = started.sockets.hb.recv_bytes(0).unwrap();
        started.sockets.hb.send(ping, 0).unwrap();
        assert_eq!(hb.recv_bytes(0).unwrap(), b"ping");
    }

    #[test]
    fn waits_for_the_first_iopub_subscription_and_hands_it_back() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut launcher = HandLauncher::new(&ctx, &dir.0);
        let options = KernelOptions {
            wait_for_iopub: Some(Duration::from_secs(30)),
            ..KernelOptions::default()
        };
        let kernel = spawn_kernel(&ctx, launcher.file.clone(), options);
        launcher.serve();
        let connection = launcher.connection().clone();
        let sub = ctx.socket(zmq::SUB).unwrap();
        sub.set_subscribe(b"").unwrap();
        sub.connect(&connection.endpoint(connection.ports.iopub))
            .unwrap();
        let (result, events) = kernel.join().unwrap();
        let started = result.unwrap();
        assert_eq!(started.first_subscription.as_deref(), Some(&b""[..]));
        assert_eq!(
            states(&events),
            [
                KernelState::Bound,
                KernelState::AwaitingReply,
                KernelState::Registered,
                KernelState::Connected
            ]
        );
    }

    /// A registration socket that never answers, and the registration file pointing at it.
    fn silent_launcher(ctx: &zmq::Context, dir: &Path) -> (zmq::Socket, PathBuf, Key) {
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        let port =
            crate::sockets::bind(&router, "registration", Transport::Tcp, "127.0.0.1", 0).unwrap();
        let key = crate::files::random_key();
        let file = RegistrationFile::new(
            Transport::Tcp,
            "127.0.0.1",
            SignatureScheme::HmacSha256,
            key.clone(),
            port,
        );
        let path = dir.join("registration.json");
        write_private_atomic(&path, &file.to_json_pretty()).unwrap();
        (router, path, key)
    }

    use jupyter_handshake::Key;

    #[test]
    fn no_reply_fails_at_the_ack_timeout() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let (router, path, _key) = silent_launcher(&ctx, &dir.0);
        let options = KernelOptions {
            ack_timeout: Duration::from_millis(200),
            ..KernelOptions::default()
        };
        let (result, events) = spawn_kernel(&ctx, path, options).join().unwrap();
        let Err(Error::Handshake(Failure::Timeout { waiting_for, .. })) = result else {
            panic!("expected a timeout");
        };
        assert_eq!(waiting_for, Waiting::Reply);
        assert_eq!(states(&events).last(), Some(&KernelState::Failed));
        // The request did arrive.
        assert!(router.poll(zmq::POLLIN, 0).unwrap() > 0);
    }

    #[test]
    fn a_refusal_and_a_bare_error_frame_fail_at_once() {
        for bare in [false, true] {
            let ctx = zmq::Context::new();
            let dir = TempDir::new();
            let (router, path, key) = silent_launcher(&ctx, &dir.0);
            let kernel = spawn_kernel(&ctx, path, KernelOptions::default());
            let frames = router.recv_multipart(0).unwrap();
            let request = wire::split(&frames, &Limits::HANDSHAKE).unwrap();
            let identities = request.identities();
            let header = request.verify(&Signer::new(SignatureScheme::HmacSha256, &key));
            let header = header.unwrap().parts().header;
            assert_eq!(
                Header::from_json(header).unwrap().msg_type,
                "handshake_request"
            );
            let reply = if bare {
                // Kallichore's answer to a request it could not parse.
                let mut frames = identities.to_vec();
                frames.push(
                    br#"{"status":"error","error":"Failed to parse","capabilities":{}}"#.to_vec(),
                );
                frames
            } else {
                let mut session = Session::new(
                    "hand",
                    "launcher",
                    Signer::new(SignatureScheme::HmacSha256, &key),
                );
                session
                    .message(
                        Clock::new().now(),
                        identities,
                        "handshake_reply",
                        Some(header),
                        None,
                        br#"{"status":"error","error":"no thanks"}"#,
                    )
                    .1
            };
            router.send_multipart(reply, 0).unwrap();
            let (result, _) = kernel.join().unwrap();
            let error = result.err().unwrap();
            let Error::Handshake(Failure::Refused { reason }) = &error else {
                panic!("expected a refusal, got {error}");
            };
            let expected = if bare { "Failed to parse" } else { "no thanks" };
            assert_eq!(reason.as_deref(), Some(expected));
            assert_eq!(
                error.to_string(),
                format!("the launcher refused the registration: {expected}")
            );
            assert!(!error.to_string().contains(key.expose_secret()));
        }
    }

    #[test]
    fn a_classic_file_binds_its_own_ports() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let ports =
            jupyter_handshake_host::classic::pick_ports(Transport::Tcp, "127.0.0.1").unwrap();
        let file = ConnectionFile::new(
            Transport::Tcp,
            "127.0.0.1",
            SignatureScheme::HmacSha256,
            crate::files::random_key(),
            ports,
        );
        let path = dir.0.join("classic.json");
        write_private_atomic(&path, &file.to_json_pretty()).unwrap();
        let mut events = Vec::new();
        let started = start_kernel(&ctx, &path, &KernelOptions::default(), &mut |_, e| {
            events.push(e.clone())
        })
        .unwrap();
        assert_eq!(started.connection, file);
        assert_eq!(states(&events), [KernelState::Connected]);

        // The same ports again: taken now, and the error says where.
        let error = start_kernel(&ctx, &path, &KernelOptions::default(), &mut |_, _| {})
            .err()
            .unwrap();
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot bind the shell socket on tcp://127.0.0.1:{}: ",
                ports.shell
            )),
            "{text}"
        );
    }

    #[test]
    fn unreadable_and_invalid_files_say_which_file() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let missing = dir.0.join("missing.json");
        let error = start_kernel(&ctx, &missing, &KernelOptions::default(), &mut |_, _| {})
            .err()
            .unwrap();
        assert!(matches!(error, Error::ReadFile { .. }));
        assert!(error.to_string().starts_with("cannot read "));
        let bad = dir.0.join("bad.json");
        std::fs::write(&bad, br#"{"transport":"tcp","ip":"127.0.0.1","key":"SECRETKEY","signature_scheme":"hmac-sha256"}"#).unwrap();
        let error = start_kernel(&ctx, &bad, &KernelOptions::default(), &mut |_, _| {})
            .err()
            .unwrap();
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("{}: invalid connection file", bad.display())),
            "{text}"
        );
        assert!(!text.contains("SECRETKEY"));
    }
}
