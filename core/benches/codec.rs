//! The codec against its physical limit, and whole handshakes in memory.
//!
//! * `receive`: `wire::split` + `verify` (decode and verify a received message) next to
//!   `raw_hmac`, HMAC-SHA256 of the same bytes in one pass: the least any verification costs.
//!   `receive_and_parse` adds what jupyter_client's `deserialize` also does: parsing the header
//!   and the content as JSON.
//! * `send`: `Session::message` (header, signature, frames) next to `raw_hmac`.
//! * `sign`: `Signer::sign` of the four dicts (MAC and hex), what jupyter_client's
//!   `Session.sign` does.
//! * `handshake`: a kernel machine and a launcher machine registering with each other in
//!   memory, no sockets, per dialect.
//!
//! `cargo bench -p jupyter-handshake --bench codec`; `bench/run.sh` runs it with the rest and
//! computes the ratios.

use divan::{Bencher, black_box};
use hmac::{Hmac, KeyInit, Mac};
use jupyter_handshake::message::{Header, Session};
use jupyter_handshake::wire::{self, Limits};
use jupyter_handshake::*;
use sha2::Sha256;
use std::time::Duration;

/// Each benchmark samples for at least half a second (divan's default can be under a
/// millisecond for the handshakes: 100 samples of one call), so that one burst of noise on a
/// shared machine cannot move a median. `--min-time`, `--sample-count` etc. still override.
fn main() {
    divan::Divan::default()
        .min_time(Duration::from_millis(500))
        .config_with_args()
        .main();
}

/// Content sizes: 256 B, 4 KiB, 64 KiB, 1 MiB.
const SIZES: [usize; 4] = [256, 4 << 10, 64 << 10, 1 << 20];

/// The same key as in `bench/python_bench.py`.
const KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";

/// A JSON content of exactly `size` bytes: `{"data":"xxx…"}`.
fn content(size: usize) -> Vec<u8> {
    let mut text = br#"{"data":""#.to_vec();
    text.resize(size - 2, b'x');
    text.extend_from_slice(br#""}"#);
    text
}

/// A signed `execute_reply`-shaped message with `size` bytes of content, as received (no
/// identities).
fn message(size: usize) -> Vec<Vec<u8>> {
    let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new(KEY));
    let mut session = Session::new("bench-session", "bench", signer);
    let none: [&[u8]; 0] = [];
    let parent = br#"{"msg_id":"parent","session":"s","username":"u","date":"2026-11-28T00:00:00.000000Z","msg_type":"execute_request","version":"5.3"}"#;
    session
        .message(
            Instant::from_micros(1_764_288_000_000_000),
            &none,
            "execute_reply",
            Some(parent),
            None,
            &content(size),
        )
        .1
}

#[divan::bench(args = SIZES)]
fn receive(bencher: Bencher, size: usize) {
    let frames = message(size);
    let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new(KEY));
    bencher
        .counter(divan::counter::BytesCount::new(size))
        .bench(|| {
            let m = wire::split(black_box(&frames), &Limits::default()).unwrap();
            black_box(m.verify(&signer).unwrap().parts().content.len())
        });
}

#[divan::bench(args = SIZES)]
fn receive_and_parse(bencher: Bencher, size: usize) {
    let frames = message(size);
    let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new(KEY));
    bencher
        .counter(divan::counter::BytesCount::new(size))
        .bench(|| {
            let m = wire::split(black_box(&frames), &Limits::default()).unwrap();
            let parts = m.verify(&signer).unwrap().parts();
            let header = Header::from_json(parts.header).unwrap();
            let content: serde_json::Value = serde_json::from_slice(parts.content).unwrap();
            black_box((header, content))
        });
}

#[divan::bench(args = SIZES)]
fn send(bencher: Bencher, size: usize) {
    let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new(KEY));
    let mut session = Session::new("bench-session", "bench", signer);
    let body = content(size);
    let none: [&[u8]; 0] = [];
    let now = Instant::from_micros(1_764_288_000_000_000);
    bencher
        .counter(divan::counter::BytesCount::new(size))
        .bench_local(|| {
            black_box(session.message(now, &none, "execute_reply", None, None, black_box(&body)))
        });
}

/// The hex signature of the four dicts, as `Session.sign` computes it in jupyter_client.
#[divan::bench(args = SIZES)]
fn sign(bencher: Bencher, size: usize) {
    let frames = message(size);
    let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new(KEY));
    let parts: Vec<&[u8]> = frames[2..6].iter().map(Vec::as_slice).collect();
    bencher
        .counter(divan::counter::BytesCount::new(size))
        .bench(|| black_box(signer.sign(black_box(&parts))));
}

/// HMAC-SHA256 over exactly the bytes `receive` verifies (the four dicts), in one pass, with a
/// pre-keyed state as the core uses: the floor for verification.
#[divan::bench(args = SIZES)]
fn raw_hmac(bencher: Bencher, size: usize) {
    let frames = message(size);
    let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(KEY.as_bytes()).unwrap();
    bencher
        .counter(divan::counter::BytesCount::new(size))
        .bench(|| {
            let mut mac = mac.clone();
            for part in &frames[2..6] {
                mac.update(black_box(part));
            }
            black_box(mac.finalize().into_bytes())
        });
}

/// One complete handshake, both machines in memory: bind actions answered at once, request and
/// reply handed across.
fn handshake(dialect: Dialect) {
    let now = Instant::from_micros(1_764_288_000_000_000);
    let config = match dialect {
        Dialect::Posit => LauncherConfig::new(Key::new(KEY)),
        Dialect::Upstream => LauncherConfig::upstream(Key::new(KEY), "bench-kernel"),
    };
    let mut launcher = LauncherHandshake::new(config.unwrap());
    let mut file = None;
    loop {
        match launcher.poll_output() {
            Output::Action(LauncherAction::BindRegistration { .. }) => launcher
                .handle_input(now, LauncherInput::RegistrationBound { port: 5555 })
                .unwrap(),
            Output::Action(LauncherAction::WriteRegistrationFile(f)) => file = Some(f),
            Output::Timeout(_) => break,
            _ => {}
        }
    }
    let file = KernelFile::Registration(file.unwrap());
    let mut kernel = KernelHandshake::new(file, KernelConfig::default());
    let ports = KernelPorts {
        shell: 1,
        iopub: 2,
        stdin: 3,
        control: 4,
        hb: 5,
    };
    let mut request = None;
    loop {
        match kernel.poll_output() {
            Output::Action(KernelAction::BindChannels { .. }) => {
                kernel.handle_input(now, KernelInput::Bound(ports)).unwrap()
            }
            Output::Action(KernelAction::ConnectRegistration { .. }) => kernel
                .handle_input(now, KernelInput::RegistrationConnected)
                .unwrap(),
            Output::Transmit(t) => request = Some(t.frames),
            Output::Timeout(_) => break,
            _ => {}
        }
    }
    let mut frames = vec![b"peer".to_vec()];
    frames.extend(request.unwrap());
    launcher.receive(now, &frames);
    let mut reply = None;
    loop {
        match launcher.poll_output() {
            Output::Transmit(t) => reply = Some(t.frames),
            Output::Timeout(_) => break,
            _ => {}
        }
    }
    let reply = reply.unwrap();
    kernel.receive(now, &reply[1..]);
    assert_eq!(kernel.state(), KernelState::Connected);
    assert_eq!(launcher.state(), LauncherState::Connected);
}

#[divan::bench(args = [Dialect::Posit, Dialect::Upstream])]
fn in_memory_handshake(dialect: Dialect) {
    handshake(black_box(dialect));
}
