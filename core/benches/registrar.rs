//! What one message on a shared registration socket costs, with many launches held.
//!
//! A supervisor that runs for weeks holds the launches it has served (finished, kept for their
//! restarts) and a few pending ones. Anyone on the host can send to the socket, so the cost of
//! one message must not grow with the launches held, only with the ones that can still accept
//! it. Per load (H launches held, of which P pending, the rest connected):
//!
//! * `forged`: a Posit-framed request signed with a key no launch has: tried against the P
//!   pending keys (P HMACs), then dropped;
//! * `valid`: the request of the *last* pending launch to be tried (P HMACs, the last one
//!   matching), accepted and answered, then the launch re-armed for the next sample (a restart:
//!   the figure includes it);
//! * `raw_hmac`: HMAC-SHA256 of the forged request's four signed parts (283 bytes: a real
//!   `handshake_request`), pre-keyed: the least one key check costs. `forged` at P = 100 is judged against 100 of these.
//!
//! `cargo bench -p jupyter-handshake --bench registrar`; `bench/run.sh` runs it with the rest.

use std::fmt;
use std::time::Duration;

use divan::{Bencher, black_box};
use hmac::{Hmac, KeyInit, Mac};
use jupyter_handshake::message::{HANDSHAKE_REQUEST, Session, request_content};
use jupyter_handshake::wire;
use jupyter_handshake::*;
use sha2::Sha256;

fn main() {
    divan::Divan::default()
        .min_time(Duration::from_millis(500))
        .config_with_args()
        .main();
}

/// H launches held, P of them pending.
#[derive(Clone, Copy)]
struct Load {
    held: usize,
    pending: usize,
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "H={}/P={}", self.held, self.pending)
    }
}

const LOADS: [Load; 7] = [
    Load {
        held: 1,
        pending: 1,
    },
    Load {
        held: 100,
        pending: 1,
    },
    Load {
        held: 1_000,
        pending: 1,
    },
    Load {
        held: 10_000,
        pending: 1,
    },
    Load {
        held: 100,
        pending: 100,
    },
    Load {
        held: 1_000,
        pending: 100,
    },
    Load {
        held: 10_000,
        pending: 100,
    },
];

fn now() -> Instant {
    Instant::from_micros(1_764_288_000_000_000)
}

fn key(i: usize) -> Key {
    Key::new(format!("{i:08}-bench-key-0123456789abcdef0123456789"))
}

fn ports(i: usize) -> KernelPorts {
    let base = 10_000 + (5 * i % 50_000) as u16;
    KernelPorts {
        shell: base,
        iopub: base + 1,
        stdin: base + 2,
        control: base + 3,
        hb: base + 4,
    }
}

/// The kernel side of launch `i`: its session signs its requests (fresh `msg_id` each time).
fn kernel_session(i: usize) -> Session {
    Session::new(
        format!("kernel-{i}"),
        "kernel",
        Signer::new(SignatureScheme::HmacSha256, &key(i)),
    )
}

/// A request as a ROUTER delivers it from a REQ: identity, empty frame, message.
fn request(session: &mut Session, i: usize) -> Vec<Vec<u8>> {
    let ids: [&[u8]; 2] = [b"peer", b""];
    session
        .message(
            now(),
            &ids,
            HANDSHAKE_REQUEST,
            None,
            None,
            &request_content(&ports(i)),
        )
        .1
}

fn drain(r: &mut Registrar) {
    while !matches!(r.poll_output(), Output::Timeout(_)) {}
}

/// A bound registrar holding `load.held` launches: the first `held - pending` connected, the
/// last `pending` waiting.
fn registrar(load: Load) -> (Registrar, Vec<LaunchId>) {
    let mut r = Registrar::new(RegistrarConfig {
        max_pending: load.held,
        ..RegistrarConfig::default()
    });
    r.handle_input(now(), RegistrarInput::RegistrationBound { port: 5555 })
        .unwrap();
    let ids: Vec<LaunchId> = (0..load.held)
        .map(|i| r.launch(now(), LaunchConfig::new(key(i))).unwrap())
        .collect();
    for i in 0..load.held - load.pending {
        r.receive(now(), &request(&mut kernel_session(i), i));
        drain(&mut r);
    }
    drain(&mut r);
    assert_eq!(r.pending(), load.pending);
    (r, ids)
}

#[divan::bench(args = LOADS)]
fn forged(bencher: Bencher, load: Load) {
    let (mut r, _) = registrar(load);
    let stranger = usize::MAX / 2;
    let forged = request(&mut kernel_session(stranger), 0);
    bencher.bench_local(|| {
        r.receive(now(), black_box(&forged));
        drain(&mut r);
    });
    assert_eq!(r.pending(), load.pending, "a forgery registered a launch");
}

#[divan::bench(args = LOADS)]
fn valid(bencher: Bencher, load: Load) {
    let (mut r, ids) = registrar(load);
    let last = load.held - 1;
    let id = ids[last];
    let mut session = kernel_session(last);
    bencher
        .with_inputs(|| request(&mut session, last))
        .bench_local_refs(|frames| {
            r.receive(now(), black_box(frames));
            drain(&mut r);
            r.rearm(now(), id).unwrap();
            drain(&mut r);
        });
}

/// HMAC-SHA256 of the forged request's four signed parts (the bytes `forged` verifies).
#[divan::bench]
fn raw_hmac(bencher: Bencher) {
    let forged = request(&mut kernel_session(usize::MAX / 2), 0);
    let frames: Vec<&[u8]> = forged.iter().map(Vec::as_slice).collect();
    let parts = wire::split(&frames, &wire::Limits::HANDSHAKE)
        .unwrap()
        .verify(&Signer::new(SignatureScheme::HmacSha256, &Key::default()))
        .unwrap()
        .parts()
        .as_array();
    let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key(0).expose_secret().as_bytes()).unwrap();
    bencher.bench_local(|| {
        let mut mac = mac.clone();
        for part in black_box(&parts) {
            mac.update(part);
        }
        black_box(mac.finalize().into_bytes())
    });
}
