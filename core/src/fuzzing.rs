//! Bodies of the fuzz targets (feature `fuzzing`).
//!
//! Each takes the raw fuzzer input, so that `fuzz/fuzz_targets/*.rs` are one-liners and the
//! committed corpus is replayed through the very same code by `cargo test` on stable
//! (`core/tests/fuzz_corpus.rs`). Structured inputs are decoded from the bytes with `arbitrary`.
//! Every body panics only when a property users rely on is broken.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use arbitrary::Unstructured;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};

use crate::connection::{Dialect, KernelFile, KernelPorts, RegistrationFile, Transport};
use crate::kernel::{KernelConfig, KernelEvent, KernelHandshake, KernelInput, KernelState};
use crate::launcher::{LauncherConfig, LauncherEvent, LauncherHandshake, LauncherInput};
use crate::message::{self, HANDSHAKE_REPLY, HANDSHAKE_REQUEST, Session};
use crate::output::{ExitStatus, Output};
use crate::sign::{Key, SignatureScheme, Signer};
use crate::time::Instant;
use crate::wire::{self, DELIMITER, Limits};

// Inputs are decoded front to back with `Unstructured::int_in_range` and `bytes` only, so a seed
// can be written byte for byte from a real message (`fuzz/seeds.py` does): a one-byte choice is
// `byte % (choices)`, a length is two bytes big-endian, and the bytes follow.

fn scheme(u: &mut Unstructured<'_>) -> SignatureScheme {
    match u.int_in_range(0..=2u8).unwrap_or(0) {
        0 => SignatureScheme::HmacSha256,
        1 => SignatureScheme::HmacSha384,
        _ => SignatureScheme::HmacSha512,
    }
}

/// A length-prefixed byte string: two bytes big-endian, then the bytes (cut short at the end).
fn take<'a>(u: &mut Unstructured<'a>) -> &'a [u8] {
    let len = usize::from(u.int_in_range(0..=u16::MAX).unwrap_or(0));
    u.bytes(len.min(u.len())).unwrap_or(&[])
}

/// A frame list: a count byte (mod 17), then per frame a kind byte: 0 (mod 4) is the
/// delimiter, anything else a length-prefixed frame.
fn frames(u: &mut Unstructured<'_>) -> Vec<Vec<u8>> {
    let n = u.int_in_range(0..=16usize).unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if u.int_in_range(0..=3u8).unwrap_or(1) == 0 {
            out.push(DELIMITER.to_vec());
        } else {
            out.push(take(u).to_vec());
        }
    }
    out
}

/// `wire_split`: never panics; what splits re-joins to the same frames, in both framings (a full
/// message, and the upstream dialect's `[ids…, <IDS|MSG>, signature, content]`).
pub fn wire_split(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let frames = frames(&mut u);
    // Byte 0: 0 means the default limits, anything else small ones that bite.
    let limits = match u.int_in_range(0..=255u8).unwrap_or(0) {
        0 => Limits::default(),
        n => Limits {
            max_frame_len: usize::from(n) * 16,
            max_frames: usize::from(n % 17),
        },
    };
    // The upstream framing, from the same input: what splits re-joins to the same frames.
    if let Ok(content_only) = wire::split_content_only(&frames, &limits) {
        let signer = Signer::new(SignatureScheme::HmacSha256, &Key::default());
        let content = content_only
            .verify(&signer)
            .expect("an unsigned signer accepts anything");
        let mut rejoined: Vec<&[u8]> = content_only
            .identities()
            .iter()
            .map(Vec::as_slice)
            .collect();
        rejoined.extend([DELIMITER, content_only.signature(), content]);
        assert_eq!(
            rejoined,
            frames.iter().map(Vec::as_slice).collect::<Vec<_>>()
        );
    }
    let Ok(message) = wire::split(&frames, &limits) else {
        return;
    };
    let mut rejoined: Vec<&[u8]> = message.identities().iter().map(Vec::as_slice).collect();
    rejoined.push(DELIMITER);
    rejoined.push(message.signature());
    // Verification with an empty key always succeeds and exposes the parts.
    let signer = Signer::new(SignatureScheme::HmacSha256, &Key::default());
    let verified = message
        .verify(&signer)
        .expect("an unsigned signer accepts anything");
    rejoined.extend(verified.parts().as_array());
    rejoined.extend(verified.buffers().iter().map(Vec::as_slice));
    assert_eq!(
        rejoined,
        frames.iter().map(Vec::as_slice).collect::<Vec<_>>()
    );
    assert!(
        verified
            .identities()
            .iter()
            .all(|f| f.as_slice() != DELIMITER)
    );
}

fn independent_hmac(scheme: SignatureScheme, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match scheme {
        SignatureScheme::HmacSha256 => run::<Hmac<Sha256>>(key, parts),
        SignatureScheme::HmacSha384 => run::<Hmac<Sha384>>(key, parts),
        SignatureScheme::HmacSha512 => run::<Hmac<Sha512>>(key, parts),
    }
}

/// `verify`: never panics, and never accepts a frame set whose signature was not produced with
/// that key (checked against the `hmac` crate directly), over the four parts of a full message
/// or over the content alone in the upstream framing.
pub fn verify(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let key = String::from_utf8_lossy(take(&mut u)).into_owned();
    let scheme = scheme(&mut u);
    let sign_properly = u.int_in_range(0..=2u8).unwrap_or(1) == 0;
    let mut frames = frames(&mut u);
    let signer = Signer::new(scheme, &Key::new(key.as_str()));
    if sign_properly {
        // Put a correct signature in place so the accepting path is exercised too.
        if let Some(at) = frames.iter().position(|f| f.as_slice() == DELIMITER) {
            let parts: Vec<Vec<u8>> = frames.iter().skip(at + 2).take(4).cloned().collect();
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let signature = signer.sign(&refs);
            if let Some(slot) = frames.get_mut(at + 1) {
                *slot = signature.as_bytes().to_vec();
            }
        }
    }
    // Upstream framing: `sign_properly` above signs the one frame after the signature, which
    // is exactly the content-only signature.
    if let Ok(content_only) = wire::split_content_only(&frames, &Limits::default()) {
        if let Ok(content) = content_only.verify(&signer) {
            if !key.is_empty() {
                let expected = independent_hmac(scheme, key.as_bytes(), &[content]);
                let mut hex = vec![0u8; expected.len() * 2];
                hex::encode_to_slice(&expected, &mut hex).expect("sized for the digest");
                assert_eq!(
                    content_only.signature(),
                    hex.as_slice(),
                    "accepted a content-only signature not made with the key"
                );
            }
        }
    }
    let Ok(message) = wire::split(&frames, &Limits::default()) else {
        return;
    };
    let signature = message.signature().to_vec();
    if let Ok(verified) = message.verify(&signer) {
        if !key.is_empty() {
            let expected = independent_hmac(scheme, key.as_bytes(), &verified.parts().as_array());
            let mut hex = vec![0u8; expected.len() * 2];
            hex::encode_to_slice(&expected, &mut hex).expect("sized for the digest");
            assert_eq!(signature, hex, "accepted a signature not made with the key");
        }
    }
}

/// `connection_file`: never panics; what is accepted round-trips, unknown fields and the
/// registration dialect (upstream `kernel_id`, `registration_ip`) included.
pub fn connection_file(data: &[u8]) {
    let Ok(file) = KernelFile::from_json(data) else {
        return;
    };
    let written = match &file {
        KernelFile::Connection(c) => c.to_json_pretty(),
        KernelFile::Registration(r) => r.to_json_pretty(),
    };
    let again = KernelFile::from_json(&written).expect("what we write we can read");
    assert_eq!(again.kind(), file.kind());
    assert!(again.key().ct_eq(file.key()));
    match (&file, &again) {
        (KernelFile::Connection(a), KernelFile::Connection(b)) => {
            assert_eq!(
                (
                    a.transport,
                    &a.ip,
                    a.signature_scheme,
                    a.ports,
                    &a.kernel_name
                ),
                (
                    b.transport,
                    &b.ip,
                    b.signature_scheme,
                    b.ports,
                    &b.kernel_name
                )
            );
            assert!(a.extra.names().eq(b.extra.names()));
        }
        (KernelFile::Registration(a), KernelFile::Registration(b)) => {
            assert_eq!(
                (a.transport, &a.ip, a.signature_scheme, a.registration_port),
                (b.transport, &b.ip, b.signature_scheme, b.registration_port)
            );
            // The dialect survives: upstream stays upstream, with its kernel_id and address.
            assert_eq!(a.upstream, b.upstream);
            assert_eq!(a.registration_endpoint(), b.registration_endpoint());
            assert!(a.extra.names().eq(b.extra.names()));
        }
        _ => unreachable!("kinds compared above"),
    }
}

const FUZZ_KEY: &str = "fuzz-key";
/// The upstream `kernel_id` of the fuzzed machines.
const FUZZ_KERNEL_ID: &str = "fuzz-kernel-id";

fn fuzz_ports(u: &mut Unstructured<'_>) -> KernelPorts {
    // Mostly valid, sometimes 0 or a duplicate, so every validation path is reached.
    let mut p = || match u.int_in_range(0..=7u16).unwrap_or(1) {
        0 => 0,
        n => 40_000 + n,
    };
    KernelPorts {
        shell: p(),
        iopub: p(),
        stdin: p(),
        control: p(),
        hb: p(),
    }
}

/// `kernel_machine`: arbitrary inputs and clock steps, including correctly signed replies.
pub fn kernel_machine(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let registration = RegistrationFile::new(
        Transport::Tcp,
        "127.0.0.1",
        SignatureScheme::HmacSha256,
        Key::new(FUZZ_KEY),
        5555,
    );
    // 0: classic; otherwise the parity picks the dialect (odd: Posit, even: upstream), so
    // inputs written before the upstream dialect existed keep their layout.
    let kind = u.int_in_range(0..=7u8).unwrap_or(1);
    let upstream = kind != 0 && kind % 2 == 0;
    let file = if kind == 0 {
        KernelFile::Connection(registration.with_ports(fuzz_ports(&mut u)))
    } else if upstream {
        KernelFile::Registration(RegistrationFile::upstream(
            Transport::Tcp,
            "127.0.0.1",
            SignatureScheme::HmacSha256,
            Key::new(FUZZ_KEY),
            5555,
            FUZZ_KERNEL_ID,
        ))
    } else {
        KernelFile::Registration(registration)
    };
    let config = KernelConfig {
        wait_for_iopub: (u.int_in_range(0..=1u8).unwrap_or(0) == 1)
            .then_some(Duration::from_millis(500)),
        ack_timeout: Duration::from_millis(u.int_in_range(1..=2000u64).unwrap_or(1000)),
        session_id: Some("fuzz-kernel".into()),
        ..KernelConfig::default()
    };
    let mut kernel = KernelHandshake::new(file, config);
    let mut launcher_session = Session::new(
        "fuzz-launcher",
        "launcher",
        Signer::new(SignatureScheme::HmacSha256, &Key::new(FUZZ_KEY)),
    );
    let mut now = Instant::from_micros(1_000_000);
    let mut bound: Option<KernelPorts> = None;
    let mut request_header: Option<Vec<u8>> = None;
    let mut steps = 0;
    while !u.is_empty() && steps < 64 {
        steps += 1;
        now = now + Duration::from_millis(u.int_in_range(0..=600u64).unwrap_or(0));
        let (state, deadline) = (kernel.state(), kernel.deadline());
        let op = u.int_in_range(0..=9u8).unwrap_or(0);
        let frames: Vec<Vec<u8>> = match op {
            4..=6 => {
                // A reply signed with the right key: to our request or to another one.
                let parent = if op == 4 || op == 5 {
                    request_header.clone()
                } else {
                    Some(take(&mut u).to_vec())
                };
                let content: &[u8] = match op {
                    4 => br#"{"status":"ok"}"#,
                    5 => br#"{"status":"error","error":"fuzz"}"#,
                    _ => br#"{"status":"ok","capabilities":{}}"#,
                };
                let no_ids: [&[u8]; 0] = [];
                if upstream {
                    // Upstream replies are one signed content frame: ACK, or the contents.
                    let content: &[u8] = if op == 4 {
                        message::UPSTREAM_ACK
                    } else {
                        content
                    };
                    wire::join_content_only(&no_ids, launcher_session.signer(), content)
                } else {
                    launcher_session
                        .message(
                            now,
                            &no_ids,
                            HANDSHAKE_REPLY,
                            parent.as_deref(),
                            None,
                            content,
                        )
                        .1
                }
            }
            7 => frames(&mut u),
            _ => vec![],
        };
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let input = match op {
            0 => {
                let p = fuzz_ports(&mut u);
                Some(KernelInput::Bound(p))
            }
            1 => Some(KernelInput::RegistrationConnected),
            2 => Some(KernelInput::IopubSubscribed),
            4..=7 => None,
            // 8 was the connection-lost input, which no driver could feed; kept as a plain
            // timeout so that the corpus keeps its layout.
            3 | 8 => Some(KernelInput::Timeout),
            _ => {
                if u.int_in_range(0..=3u8).unwrap_or(1) == 0 {
                    Some(KernelInput::Abort)
                } else {
                    Some(KernelInput::Timeout)
                }
            }
        };
        let result = match input {
            Some(input) => kernel.handle_input(now, input),
            None => {
                kernel.receive(now, &refs);
                Ok(())
            }
        };
        if let (Ok(()), Some(KernelInput::Bound(p)), KernelState::Init) = (&result, input, state) {
            bound = Some(p);
        }
        let mut rejected_only = true;
        loop {
            match kernel.poll_output() {
                Output::Transmit(t) => {
                    rejected_only = false;
                    request_header = t.frames.get(2).cloned();
                }
                Output::Event(KernelEvent::Rejected(_)) => {}
                Output::Event(KernelEvent::Connected(c)) => {
                    rejected_only = false;
                    assert_eq!(Some(c.ports), bound, "connected with ports never bound");
                }
                Output::Event(_) | Output::Action(_) => rejected_only = false,
                Output::Timeout(t) => {
                    assert_eq!(t.at(), kernel.deadline().map(|d| d.at));
                    break;
                }
            }
        }
        if result.is_err() || rejected_only {
            assert_eq!(kernel.state(), state, "a rejected input changed the state");
            assert_eq!(kernel.deadline(), deadline);
        }
        if state.is_terminal() {
            assert_eq!(kernel.state(), state, "left a terminal state");
            assert_eq!(kernel.deadline(), None);
        }
        if kernel.state() == state {
            assert_eq!(
                kernel.deadline(),
                deadline,
                "deadline moved without a transition"
            );
        }
        if kernel.state() == KernelState::Connected {
            assert_eq!(kernel.connection().map(|c| c.ports), bound);
        }
    }
}

/// `launcher_machine`: arbitrary inputs and clock steps, including correctly signed requests and
/// file rewrites; Connected only with ports a key holder actually sent.
pub fn launcher_machine(data: &[u8]) {
    let mut u = Unstructured::new(data);
    // The timeout's parity picks the dialect (odd: Posit, even: upstream), so inputs written
    // before the upstream dialect existed keep their layout.
    let timeout_ms = u.int_in_range(1..=5000u64).unwrap_or(3000);
    let dialect = if timeout_ms % 2 == 0 {
        Dialect::Upstream
    } else {
        Dialect::Posit
    };
    let key = Key::new(FUZZ_KEY);
    let config = match dialect {
        Dialect::Posit => LauncherConfig::new(key),
        Dialect::Upstream => LauncherConfig::upstream(key, FUZZ_KERNEL_ID),
    };
    let Ok(mut config) = config else {
        unreachable!("the fuzz key is not empty")
    };
    config.registration_timeout = Duration::from_millis(timeout_ms);
    config.session_id = Some("fuzz-launcher".into());
    let mut launcher = LauncherHandshake::new(config);
    let mut kernel_session = Session::new(
        "fuzz-kernel",
        "kernel",
        Signer::new(SignatureScheme::HmacSha256, &Key::new(FUZZ_KEY)),
    );
    let mut offered: Vec<KernelPorts> = Vec::new();
    let mut now = Instant::from_micros(1_000_000);
    let mut steps = 0;
    while !u.is_empty() && steps < 64 {
        steps += 1;
        now = now + Duration::from_millis(u.int_in_range(0..=1500u64).unwrap_or(0));
        let (state, deadline) = (launcher.state(), launcher.deadline());
        let op = u.int_in_range(0..=8u8).unwrap_or(0);
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut file: Vec<u8> = Vec::new();
        match op {
            1 | 2 => {
                // A request signed with the right key (the real kernel, or a key holder).
                let ports = fuzz_ports(&mut u);
                offered.push(ports);
                let ids: [&[u8]; 2] = [b"peer", b""];
                frames = match dialect {
                    Dialect::Posit => {
                        kernel_session
                            .message(
                                now,
                                &ids,
                                HANDSHAKE_REQUEST,
                                None,
                                None,
                                &message::request_content(&ports),
                            )
                            .1
                    }
                    Dialect::Upstream => {
                        // op 2 names another kernel: refused, never registered.
                        let kernel_id = if op == 1 {
                            FUZZ_KERNEL_ID
                        } else {
                            "another-kernel"
                        };
                        if op == 2 {
                            offered.pop();
                        }
                        let content = message::upstream_request_content(kernel_id, &ports);
                        wire::join_content_only(&ids[..1], kernel_session.signer(), &content)
                    }
                };
            }
            3 => frames = self::frames(&mut u),
            4 => {
                // The kernel's rewrite (right or wrong key), or arbitrary bytes.
                if u.int_in_range(0..=1u8).unwrap_or(0) == 1 {
                    let ports = fuzz_ports(&mut u);
                    let key = if u.int_in_range(0..=1u8).unwrap_or(0) == 0 {
                        offered.push(ports);
                        FUZZ_KEY
                    } else {
                        "other"
                    };
                    let reg = RegistrationFile::new(
                        Transport::Tcp,
                        "127.0.0.1",
                        SignatureScheme::HmacSha256,
                        Key::new(key),
                        5555,
                    );
                    file = reg.with_ports(ports).to_json_pretty();
                } else {
                    file = take(&mut u).to_vec();
                }
            }
            _ => {}
        }
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let input = match op {
            0 => Some(LauncherInput::RegistrationBound {
                port: u.int_in_range(0..=u16::MAX).unwrap_or(0),
            }),
            1..=3 => None,
            4 => Some(LauncherInput::FileChanged(&file)),
            5 => Some(LauncherInput::KernelExited(exit_status(&mut u))),
            6 => Some(LauncherInput::Abort),
            _ => Some(LauncherInput::Timeout),
        };
        let result = match input {
            Some(input) => launcher.handle_input(now, input),
            None => {
                launcher.receive(now, &refs);
                Ok(())
            }
        };
        // A kernel exit arms the settling deadline without a transition (the launch fails
        // when it passes).
        let exit = op == 5;
        let mut rejected_only = true;
        loop {
            match launcher.poll_output() {
                Output::Event(LauncherEvent::Rejected(_)) => {}
                Output::Event(LauncherEvent::Registered { connection, .. }) => {
                    rejected_only = false;
                    assert!(
                        offered.contains(&connection.ports),
                        "registered ports no key holder sent"
                    );
                }
                Output::Transmit(_) | Output::Event(_) | Output::Action(_) => rejected_only = false,
                Output::Timeout(t) => {
                    assert_eq!(t.at(), launcher.deadline().map(|d| d.at));
                    break;
                }
            }
        }
        if result.is_err() || rejected_only {
            assert_eq!(
                launcher.state(),
                state,
                "a rejected input changed the state"
            );
            if !exit {
                assert_eq!(launcher.deadline(), deadline);
            }
        }
        if state.is_terminal() {
            assert_eq!(launcher.state(), state, "left a terminal state");
        }
        if launcher.state() == state && !exit {
            assert_eq!(
                launcher.deadline(),
                deadline,
                "deadline moved without a transition"
            );
        }
    }
}

/// One launch of the fuzzed registrar: what its key holder offered, as far as the fuzzer knows.
struct FuzzLaunch {
    id: crate::registrar::LaunchId,
    dialect: Dialect,
    key: Key,
    kernel_id: String,
    /// Ports a holder of this launch's key sent in a well-formed request or rewrite.
    offered: Vec<KernelPorts>,
    /// A Posit kernel's session: its requests get fresh ids and dates, as real ones do.
    session: Session,
}

/// `registrar_machine`: a Registrar with up to 8 launches of both dialects on one socket, fed
/// well-signed requests from any launch's key holder (right or wrong `kernel_id`, any routing
/// identity), arbitrary frames, file rewrites, exits, aborts, re-arms, removals and clock steps.
///
/// Properties: no panic; a launch is registered only with ports a holder of *its own* key sent;
/// input aimed at one launch (or at none) changes no other launch, except that any launch may
/// fail by its own deadline; driver misuse is an `Err` that changes nothing.
///
/// Input layout, front to back: then per step a clock step (0..=1500 ms), an op (0..=9), a
/// launch index (mod the launches) where the op needs one, and the op's own values.
pub fn registrar_machine(data: &[u8]) {
    use crate::registrar::{
        LaunchConfig, Registrar, RegistrarConfig, RegistrarEvent, RegistrarInput,
    };
    let mut u = Unstructured::new(data);
    let mut registrar = Registrar::new(RegistrarConfig::default());
    while !matches!(registrar.poll_output(), Output::Timeout(_)) {}
    let mut now = Instant::from_micros(1_000_000);
    let _ = registrar.handle_input(now, RegistrarInput::RegistrationBound { port: 5555 });
    let mut launches: Vec<FuzzLaunch> = Vec::new();
    let mut created = 0u32;
    let mut steps = 0;
    while !u.is_empty() && steps < 96 {
        steps += 1;
        now = now + Duration::from_millis(u.int_in_range(0..=1500u64).unwrap_or(0));
        let op = u.int_in_range(0..=9u8).unwrap_or(9);
        let target = if launches.is_empty() || op == 0 || op == 3 || op == 9 {
            None
        } else {
            Some(usize::from(u.int_in_range(0..=255u8).unwrap_or(0)) % launches.len())
        };
        let before: Vec<_> = launches
            .iter()
            .map(|l| registrar.launch_state(l.id))
            .collect();
        let result = match (op, target) {
            (0, _) if launches.len() < 8 => {
                created += 1;
                let dialect = if u.int_in_range(0..=1u8).unwrap_or(0) == 0 {
                    Dialect::Posit
                } else {
                    Dialect::Upstream
                };
                let key = Key::new(alloc::format!("fuzz-key-{created}"));
                let kernel_id = alloc::format!("fuzz-kernel-{created}");
                let config = LaunchConfig {
                    registration_timeout: Duration::from_millis(
                        u.int_in_range(1..=5000u64).unwrap_or(3000),
                    ),
                    dialect,
                    kernel_id: kernel_id.clone(),
                    ..LaunchConfig::new(key.clone())
                };
                match registrar.launch(now, config) {
                    Ok(id) => {
                        let signer = Signer::new(SignatureScheme::HmacSha256, &key);
                        launches.push(FuzzLaunch {
                            id,
                            dialect,
                            key,
                            kernel_id,
                            offered: Vec::new(),
                            session: Session::new(
                                alloc::format!("fuzz-k{created}"),
                                "kernel",
                                signer,
                            ),
                        });
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            (1 | 2, Some(i)) => {
                // A request signed with launch i's key; op 2 names another kernel_id (upstream)
                // or carries the ports as strings (Posit), and is refused either way.
                let ports = fuzz_ports(&mut u);
                let identity = take(&mut u).to_vec();
                let l = &mut launches[i];
                let ids: [&[u8]; 1] = [&identity];
                let frames = match l.dialect {
                    Dialect::Posit => {
                        let content = if op == 1 {
                            message::request_content(&ports)
                        } else {
                            alloc::format!(r#"{{"shell_port":"{}"}}"#, ports.shell).into_bytes()
                        };
                        l.session
                            .message(now, &ids, HANDSHAKE_REQUEST, None, None, &content)
                            .1
                    }
                    Dialect::Upstream => {
                        let kernel_id = if op == 1 {
                            l.kernel_id.as_str()
                        } else {
                            "someone-else"
                        };
                        let content = message::upstream_request_content(kernel_id, &ports);
                        wire::join_content_only(&ids, l.session.signer(), &content)
                    }
                };
                if op == 1 {
                    l.offered.push(ports);
                }
                receive_counted(&mut registrar, now, &frames);
                Ok(())
            }
            (3, _) => {
                let frames = self::frames(&mut u);
                receive_counted(&mut registrar, now, &frames);
                Ok(())
            }
            (4, Some(i)) => {
                let l = &mut launches[i];
                let file = if u.int_in_range(0..=1u8).unwrap_or(0) == 1 {
                    let ports = fuzz_ports(&mut u);
                    let key = if u.int_in_range(0..=1u8).unwrap_or(0) == 0 {
                        l.offered.push(ports);
                        l.key.clone()
                    } else {
                        Key::new("other")
                    };
                    let reg = RegistrationFile::new(
                        Transport::Tcp,
                        "127.0.0.1",
                        SignatureScheme::HmacSha256,
                        key,
                        5555,
                    );
                    reg.with_ports(ports).to_json_pretty()
                } else {
                    take(&mut u).to_vec()
                };
                let input = RegistrarInput::FileChanged {
                    launch: l.id,
                    bytes: &file,
                };
                registrar.handle_input(now, input)
            }
            (5, Some(i)) => registrar.handle_input(
                now,
                RegistrarInput::KernelExited {
                    launch: launches[i].id,
                    status: ExitStatus::Code(i32::from(u.int_in_range(0..=255u8).unwrap_or(1))),
                },
            ),
            (6, Some(i)) => registrar.handle_input(
                now,
                RegistrarInput::Abort {
                    launch: launches[i].id,
                },
            ),
            (7, Some(i)) => registrar.rearm(now, launches[i].id),
            (8, Some(i)) => {
                let removed = registrar.remove(launches[i].id).map(drop);
                launches.remove(i);
                removed
            }
            _ => registrar.handle_input(now, RegistrarInput::Timeout),
        };
        // Which launch may have been touched by this input (besides deadlines).
        let touched = match (op, target) {
            (1 | 2 | 4..=7, Some(i)) => launches.get(i).map(|l| l.id),
            _ => None,
        };
        let mut failed_by_deadline: Vec<crate::registrar::LaunchId> = Vec::new();
        loop {
            match registrar.poll_output() {
                Output::Event(RegistrarEvent::Launch { launch, event }) => {
                    if let LauncherEvent::Registered { connection, .. } = &event {
                        let l = launches.iter().find(|l| l.id == launch);
                        assert!(
                            l.is_some_and(|l| l.offered.contains(&connection.ports)),
                            "a launch registered ports its key holder never sent"
                        );
                    }
                    // A deadline passing: a timeout, or the end of an exit's instant.
                    if let LauncherEvent::Failed(
                        crate::output::Failure::Timeout { .. }
                        | crate::output::Failure::KernelExited(_),
                    ) = event
                    {
                        failed_by_deadline.push(launch);
                    }
                }
                Output::Timeout(next) => {
                    assert_eq!(next.at(), registrar.deadline().map(|d| d.at));
                    break;
                }
                _ => {}
            }
        }
        if op == 8 {
            continue; // indexes shifted
        }
        for (l, state) in launches.iter().zip(&before) {
            let now_state = registrar.launch_state(l.id);
            if now_state == *state || Some(l.id) == touched || failed_by_deadline.contains(&l.id) {
                continue;
            }
            panic!("input aimed elsewhere changed a launch: {state:?} -> {now_state:?}");
        }
        if result.is_err() {
            // Misuse changes nothing (deadlines aside, checked above).
            if let Some(i) = target {
                if let Some(l) = launches.get(i) {
                    let unchanged = registrar.launch_state(l.id) == before[i];
                    assert!(
                        unchanged || failed_by_deadline.contains(&l.id),
                        "misuse changed a launch"
                    );
                }
            }
        }
    }
}

/// Feeds received frames to the registrar and checks what they cost: never more signature
/// checks than launches are pending (finished launches are never tried).
fn receive_counted(registrar: &mut crate::Registrar, now: Instant, frames: &[Vec<u8>]) {
    let (before, pending) = (registrar.verifications(), registrar.pending());
    registrar.receive(now, frames);
    let cost = registrar.verifications() - before;
    assert!(
        cost <= pending as u64,
        "one message cost {cost} signature checks with {pending} launches pending"
    );
}

/// An exit status from one fuzz byte.
fn exit_status(u: &mut Unstructured<'_>) -> ExitStatus {
    match u.int_in_range(0..=255u8).unwrap_or(0) {
        0 => ExitStatus::Unknown,
        n if n >= 128 => ExitStatus::Signal(i32::from(n - 128)),
        n => ExitStatus::Code(i32::from(n)),
    }
}
