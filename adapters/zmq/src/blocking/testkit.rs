//! Test support: a launcher driven by hand with the core's machine, and a tiny kernel that this
//! test binary runs as a child process (so `launch` and `start_kernel` meet end to end).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jupyter_handshake::message::Header;
use jupyter_handshake::message::Session;
use jupyter_handshake::wire::{self, Limits};
use jupyter_handshake::{
    ConnectionFile, KernelFile, KernelPorts, Key, LauncherAction, LauncherConfig, LauncherEvent,
    LauncherHandshake, LauncherInput, Output, RegistrationFile, SignatureScheme, Signer,
};
use serde_json::{Value, json};

use super::{bind, socket};
use crate::clock::Clock;
use crate::files::{random_key, write_private_atomic};

/// The launcher side, by hand: the core's machine over a ROUTER this test owns.
pub(crate) struct HandLauncher {
    pub(crate) machine: LauncherHandshake,
    pub(crate) router: zmq::Socket,
    pub(crate) file: PathBuf,
    pub(crate) registration: RegistrationFile,
    pub(crate) events: Vec<LauncherEvent>,
    clock: Clock,
}

impl HandLauncher {
    pub(crate) fn new(ctx: &zmq::Context, dir: &Path) -> Self {
        let clock = Clock::new();
        let mut config = LauncherConfig::new(random_key()).unwrap();
        config.session_id = Some("hand-launcher".into());
        let mut machine = LauncherHandshake::new(config);
        let router = socket(ctx, zmq::ROUTER, "registration").unwrap();
        let mut registration = None;
        loop {
            match machine.poll_output() {
                Output::Action(LauncherAction::BindRegistration { transport, ip }) => {
                    let port = bind(&router, "registration", transport, &ip, 0).unwrap();
                    machine
                        .handle_input(clock.now(), LauncherInput::RegistrationBound { port })
                        .unwrap();
                }
                Output::Action(LauncherAction::WriteRegistrationFile(file)) => {
                    registration = Some(file);
                }
                Output::Event(_) => {}
                Output::Timeout(_) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        let registration = registration.unwrap();
        let file = dir.join("registration.json");
        write_private_atomic(&file, &registration.to_json_pretty()).unwrap();
        Self {
            machine,
            router,
            file,
            registration,
            events: Vec::new(),
            clock,
        }
    }

    /// Feeds everything received to the machine and sends its replies, until it is finished.
    pub(crate) fn serve(&mut self) {
        while !self.machine.state().is_terminal() {
            if self.router.poll(zmq::POLLIN, 100).unwrap() > 0 {
                let frames = self.router.recv_multipart(0).unwrap();
                self.machine.receive(self.clock.now(), &frames);
            }
            self.machine
                .handle_input(self.clock.now(), LauncherInput::Timeout)
                .unwrap();
            loop {
                match self.machine.poll_output() {
                    Output::Transmit(t) => self.router.send_multipart(t.frames, 0).unwrap(),
                    Output::Event(e) => self.events.push(e),
                    Output::Timeout(_) => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }

    pub(crate) fn connection(&self) -> &ConnectionFile {
        self.machine.connection().unwrap()
    }
}

/// Launch options for tests: files in `dir`, the kernel's stdout on stderr.
pub(crate) fn options(dir: &crate::temp::TempDir) -> crate::launch::LaunchOptions {
    crate::launch::LaunchOptions {
        dir: Some(dir.0.clone()),
        stdout: crate::launch::ChildStdio::Stderr,
        ..crate::launch::LaunchOptions::default()
    }
}

/// How many times a test tries a classic launch before it fails.
///
/// A classic kernel binds ports the launcher picked and released a moment earlier. In a test
/// binary that starts hundreds of kernels in parallel, one of them can be handed such a port
/// first, and the classic kernel dies with "Address already in use": the race this project
/// exists to remove, which classic mode keeps by design (CI saw it once). A classic test
/// retries exactly that, a kernel that exited before it answered, and nothing else.
pub(crate) const CLASSIC_TRIES: usize = 3;

/// How long [`answers_or_races`] waits for a kernel that neither answers nor exits.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a launched kernel answers `kernel_info` (`true`) or loses the classic race first
/// (`false`, see [`CLASSIC_TRIES`]): it exits, or `raced()` says so. (Stock ipykernel does not
/// exit when a bind fails: it prints "Address already in use" and hangs, so its test reads
/// its stderr.) A kernel that does neither within 30 s fails the test.
pub(crate) fn answers_or_races(
    ctx: &zmq::Context,
    launched: &mut crate::launch::Launched,
    raced: &dyn Fn() -> bool,
) -> bool {
    let mut client = super::Client::connect(ctx, &launched.connection).unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < READY_TIMEOUT {
        match client.wait_for_ready(Duration::from_secs(1)) {
            Ok(_) => return true,
            Err(crate::error::Error::Timeout { .. }) => {}
            Err(e) => panic!("waiting for kernel_info: {e}"),
        }
        if let Some(status) = launched.child.try_wait().unwrap() {
            assert!(
                !status.success(),
                "a kernel that exits before it answers failed"
            );
            return false;
        }
        if raced() {
            return false;
        }
    }
    panic!("the kernel neither answered nor exited within {READY_TIMEOUT:?}");
}

/// Everything a child writes on the pipe `from`, collected by a thread as it comes.
pub(crate) fn collect(mut from: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
            sink.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// Kills the kernel when a test ends early (a failed assertion), so none is left behind.
#[derive(Debug)]
pub(crate) struct Guard(pub(crate) crate::launch::Launched);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.child.try_wait(), Ok(None)) {
            let _ = self.0.child.kill();
        }
        let _ = self.0.child.wait();
    }
}

impl std::ops::Deref for Guard {
    type Target = crate::launch::Launched;
    fn deref(&self) -> &crate::launch::Launched {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut crate::launch::Launched {
        &mut self.0
    }
}

/// What a launch's observer saw: its states, and how many inputs it dropped or refused.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) states: Vec<jupyter_handshake::LauncherState>,
    pub(crate) rejected: usize,
    pub(crate) refused: usize,
}

/// An observer that records into `seen`.
pub(crate) fn observe(
    seen: &mut Seen,
) -> impl FnMut(jupyter_handshake::Instant, &LauncherEvent) + '_ {
    |_, event| match event {
        LauncherEvent::StateChanged { to, .. } => seen.states.push(*to),
        LauncherEvent::Rejected(_) => seen.rejected += 1,
        LauncherEvent::Refused(_) => seen.refused += 1,
        _ => {}
    }
}

/// The argv that runs [`helper_kernel_main`] in a child copy of this test binary, with the
/// file's path as its argument and `mode` in its environment.
#[cfg(unix)]
pub(crate) fn helper_kernel_argv(mode: &str) -> Vec<String> {
    let exe = std::env::current_exe().unwrap().display().to_string();
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "JH_HELPER_FILE=\"$1\" JH_HELPER_MODE={mode} exec \"$0\" --exact \
             blocking::testkit::helper_kernel --ignored --nocapture --test-threads=1 --quiet"
        ),
        exe,
        "{connection_file}".into(),
    ]
}

/// Runs only as a child started through [`helper_kernel_argv`]; a no-op otherwise.
#[test]
#[ignore = "runs as a child process of the launcher tests"]
fn helper_kernel() {
    let (Some(file), Some(mode)) = (
        std::env::var_os("JH_HELPER_FILE"),
        std::env::var("JH_HELPER_MODE").ok(),
    ) else {
        return;
    };
    helper_kernel_main(Path::new(&file), &mode);
}

/// A small kernel. Modes: `forge` sends junk to the registration socket first; `die` does that,
/// then exits with status 7 instead of registering; `async` registers with the async
/// `start_kernel`; anything else with the blocking one. Then it answers `kernel_info_request` and `shutdown_request` and echoes
/// heartbeats until shut down.
fn helper_kernel_main(file: &Path, mode: &str) {
    let ctx = zmq::Context::new();
    if mode == "forge" || mode == "die" {
        forge(&ctx, file);
    }
    if mode == "die" {
        // Dies mid-handshake: connected, heard back (a refusal), never registered.
        std::process::exit(7);
    }
    let options = super::kernel::KernelOptions::default();
    #[cfg(feature = "async")]
    let async_started;
    let blocking_started;
    let (connection, s) = if mode == "async" {
        #[cfg(feature = "async")]
        {
            let mut ignore = |_, _: &_| {};
            let start = crate::asynchronous::start_kernel(&ctx, file, &options, &mut ignore);
            async_started = futures_executor::block_on(start).unwrap();
            let s = &async_started.sockets;
            let raw = Raw {
                shell: s.shell.as_raw_socket(),
                control: s.control.as_raw_socket(),
                hb: s.hb.as_raw_socket(),
                iopub: s.iopub.as_raw_socket(),
            };
            (async_started.connection.clone(), raw)
        }
        #[cfg(not(feature = "async"))]
        panic!("mode async needs the async feature")
    } else {
        blocking_started =
            super::kernel::start_kernel(&ctx, file, &options, &mut |_, _| {}).unwrap();
        let s = &blocking_started.sockets;
        let raw = Raw {
            shell: &s.shell,
            control: &s.control,
            hb: &s.hb,
            iopub: &s.iopub,
        };
        (blocking_started.connection.clone(), raw)
    };
    let signer = Signer::new(connection.signature_scheme, &connection.key);
    let mut session = Session::new(options.session_id.clone(), "kernel", signer);
    let clock = Clock::new();
    loop {
        let mut items = [
            s.shell.as_poll_item(zmq::POLLIN),
            s.control.as_poll_item(zmq::POLLIN),
            s.hb.as_poll_item(zmq::POLLIN),
            s.iopub.as_poll_item(zmq::POLLIN),
        ];
        zmq::poll(&mut items, -1).unwrap();
        let ready: Vec<bool> = items.iter().map(zmq::PollItem::is_readable).collect();
        if ready[2] {
            let ping = s.hb.recv_multipart(0).unwrap();
            s.hb.send_multipart(ping, 0).unwrap();
        }
        if ready[3] {
            let _subscription = s.iopub.recv_multipart(0).unwrap();
        }
        for (socket, is_ready) in [(s.shell, ready[0]), (s.control, ready[1])] {
            if !is_ready {
                continue;
            }
            let frames = socket.recv_multipart(0).unwrap();
            let Ok(message) = wire::split(&frames, &Limits::default())
                .map_err(drop)
                .and_then(|m| m.verify(session.signer()).map_err(drop))
            else {
                continue;
            };
            let parts = message.parts();
            let header = Header::from_json(parts.header).unwrap();
            let identities: Vec<Vec<u8>> = message.identities().to_vec();
            let no_identities: [&[u8]; 0] = [];
            let publish = |session: &mut Session, msg_type: &str, content: Value| {
                let (_, frames) = session.message(
                    clock.now(),
                    &no_identities,
                    msg_type,
                    Some(parts.header),
                    None,
                    &serde_json::to_vec(&content).unwrap(),
                );
                s.iopub.send_multipart(frames, 0).unwrap();
            };
            publish(&mut session, "status", json!({"execution_state": "busy"}));
            let (reply_type, content, last) = match header.msg_type.as_str() {
                "kernel_info_request" => (
                    "kernel_info_reply",
                    json!({"status": "ok", "protocol_version": "5.5", "implementation": "helper",
                           "implementation_version": "0", "banner": "",
                           "language_info": {"name": "text"}}),
                    false,
                ),
                "shutdown_request" => (
                    "shutdown_reply",
                    json!({"status": "ok", "restart": false}),
                    true,
                ),
                _ => ("error_reply", json!({"status": "error"}), false),
            };
            let (_, reply) = session.message(
                clock.now(),
                &identities,
                reply_type,
                Some(parts.header),
                None,
                &serde_json::to_vec(&content).unwrap(),
            );
            socket.send_multipart(reply, 0).unwrap();
            publish(&mut session, "status", json!({"execution_state": "idle"}));
            if last {
                std::thread::sleep(Duration::from_millis(100));
                std::process::exit(0);
            }
        }
    }
}

/// The helper kernel's sockets, whichever driver bound them.
struct Raw<'a> {
    shell: &'a zmq::Socket,
    control: &'a zmq::Socket,
    hb: &'a zmq::Socket,
    iopub: &'a zmq::Socket,
}

/// Sends, on one connection (so the launcher sees them in this order): a garbage message, a
/// `handshake_request` signed with the wrong key, and a well-signed request with unusable ports,
/// whose `status: error` reply proves the launcher has handled all three and kept waiting.
fn forge(ctx: &zmq::Context, file: &Path) {
    let bytes = std::fs::read(file).unwrap();
    let KernelFile::Registration(registration) = KernelFile::from_json(&bytes).unwrap() else {
        panic!("expected a registration file");
    };
    let dealer = ctx.socket(zmq::DEALER).unwrap();
    dealer.set_linger(0).unwrap();
    dealer
        .connect(&registration.registration_endpoint())
        .unwrap();
    let clock = Clock::new();
    let no_identities: [&[u8]; 0] = [];
    let good_ports = KernelPorts {
        shell: 1,
        iopub: 2,
        stdin: 3,
        control: 4,
        hb: 5,
    };
    let wrong_key = Signer::new(SignatureScheme::HmacSha256, &Key::new("not-the-key"));
    let right_key = Signer::new(registration.signature_scheme, &registration.key);
    dealer
        .send_multipart([b"garbage".to_vec(), b"<IDS|MSG>".to_vec()], 0)
        .unwrap();
    match registration.kernel_id() {
        // Upstream: content-only requests, signed with the wrong key, then the right key with
        // unusable ports.
        Some(kernel_id) => {
            let forged =
                jupyter_handshake::message::upstream_request_content(kernel_id, &good_ports);
            dealer
                .send_multipart(
                    wire::join_content_only(&no_identities, &wrong_key, &forged),
                    0,
                )
                .unwrap();
            let zero = jupyter_handshake::message::upstream_request_content(
                kernel_id,
                &KernelPorts::default(),
            );
            dealer
                .send_multipart(
                    wire::join_content_only(&no_identities, &right_key, &zero),
                    0,
                )
                .unwrap();
        }
        None => {
            let mut forger = Session::new("forger", "kernel", wrong_key);
            let (_, forged) = forger.message(
                clock.now(),
                &no_identities,
                "handshake_request",
                None,
                None,
                &jupyter_handshake::message::request_content(&good_ports),
            );
            dealer.send_multipart(forged, 0).unwrap();
            let mut insider = Session::new("insider", "kernel", right_key.clone());
            let (_, zero_ports) = insider.message(
                clock.now(),
                &no_identities,
                "handshake_request",
                None,
                None,
                &jupyter_handshake::message::request_content(&KernelPorts::default()),
            );
            dealer.send_multipart(zero_ports, 0).unwrap();
        }
    }
    assert!(
        dealer.poll(zmq::POLLIN, 10_000).unwrap() > 0,
        "no refusal came back"
    );
    let reply = dealer.recv_multipart(0).unwrap();
    let content = match registration.kernel_id() {
        Some(_) => wire::split_content_only(&reply, &Limits::HANDSHAKE)
            .unwrap()
            .verify(&right_key)
            .unwrap()
            .to_vec(),
        None => wire::split(&reply, &Limits::HANDSHAKE)
            .unwrap()
            .verify(&right_key)
            .unwrap()
            .parts()
            .content
            .to_vec(),
    };
    let content: Value = serde_json::from_slice(&content).unwrap();
    assert_eq!(content["status"], "error");
}
