//! Golden frames produced by jupyter_client's real `Session` (see `tests/python/golden.py`):
//! core must verify and decode every one, and must produce the very same signatures. The
//! upstream-dialect cases (`upstream_cases`) are built by the same script with `hmac` and
//! `json.dumps`; the core must produce exactly those bytes and accept them. (The frames of the
//! real xeus-python are in `upstream.rs`.)

use jupyter_handshake::VerifyError;
use jupyter_handshake::message::{self, HandshakeReply, Header, ReplyStatus};
use jupyter_handshake::wire::{self, Limits};
use jupyter_handshake::*;
use serde_json::Value;

struct Case {
    name: String,
    key: Key,
    scheme: SignatureScheme,
    frames: Vec<Vec<u8>>,
    identities: usize,
    buffers: usize,
    msg_type: String,
    msg_id: String,
    parent_msg_id: Option<String>,
    content: Value,
}

fn cases() -> Vec<Case> {
    let text = include_str!("fixtures/golden.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    assert!(
        doc["generator"]
            .as_str()
            .unwrap()
            .starts_with("jupyter_client")
    );
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().into(),
            key: Key::new(c["key"].as_str().unwrap()),
            scheme: c["signature_scheme"].as_str().unwrap().parse().unwrap(),
            frames: c["frames_hex"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
                .collect(),
            identities: c["identities"].as_u64().unwrap() as usize,
            buffers: c["buffers"].as_u64().unwrap() as usize,
            msg_type: c["msg_type"].as_str().unwrap().into(),
            msg_id: c["msg_id"].as_str().unwrap().into(),
            parent_msg_id: c["parent_msg_id"].as_str().map(Into::into),
            content: c["content"].clone(),
        })
        .collect()
}

fn case(name: &str) -> Case {
    cases().into_iter().find(|c| c.name == name).unwrap()
}

#[test]
fn every_golden_message_verifies_and_decodes() {
    let all = cases();
    assert!(all.len() >= 12, "fixtures went missing");
    for c in all {
        let signer = Signer::new(c.scheme, &c.key);
        let message = wire::split(&c.frames, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", c.name))
            .verify(&signer)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(message.identities().len(), c.identities, "{}", c.name);
        assert_eq!(message.buffers().len(), c.buffers, "{}", c.name);
        let parts = message.parts();
        let header = Header::from_json(parts.header).unwrap();
        assert_eq!(header.msg_type, c.msg_type, "{}", c.name);
        assert_eq!(header.msg_id, c.msg_id, "{}", c.name);
        let parent = Header::parse_parent(parts.parent_header).unwrap();
        assert_eq!(parent.map(|p| p.msg_id), c.parent_msg_id, "{}", c.name);
        let content: Value = serde_json::from_slice(parts.content).unwrap();
        assert_eq!(content, c.content, "{}", c.name);
    }
}

#[test]
fn core_signs_exactly_as_jupyter_client() {
    for c in cases() {
        let signer = Signer::new(c.scheme, &c.key);
        let message = wire::split(&c.frames, &Limits::default()).unwrap();
        let ours = signer.sign(&message.verify(&signer).unwrap().parts().as_array());
        let theirs = &c.frames[c.identities + 1];
        assert_eq!(ours.as_bytes(), theirs.as_slice(), "{}", c.name);
        // And re-joining the parts with core gives jupyter_client's frames byte for byte.
        let split = wire::split(&c.frames, &Limits::default())
            .unwrap()
            .verify(&signer)
            .unwrap();
        let joined = wire::join(split.identities(), &signer, &split.parts(), split.buffers());
        assert_eq!(joined, c.frames, "{}", c.name);
    }
}

#[test]
fn tampering_with_any_signed_part_is_detected() {
    for c in cases().into_iter().filter(|c| !c.key.is_empty()) {
        let signer = Signer::new(c.scheme, &c.key);
        for part in 0..4 {
            let mut frames = c.frames.clone();
            frames[c.identities + 2 + part].push(b' ');
            let result = wire::split(&frames, &Limits::default())
                .unwrap()
                .verify(&signer);
            assert_eq!(result.unwrap_err(), VerifyError::Mismatch, "{}", c.name);
        }
    }
}

#[test]
fn the_launcher_registers_a_request_from_jupyter_client() {
    for name in ["handshake_request", "handshake_request_non_ascii_key"] {
        let c = case(name);
        let mut launcher = LauncherHandshake::new(LauncherConfig::new(c.key.clone()).unwrap());
        let now = Instant::from_micros(1_000);
        launcher
            .handle_input(now, LauncherInput::RegistrationBound { port: 9999 })
            .unwrap();
        // As a ROUTER receives it from a REQ peer: identity, empty envelope, message.
        let mut frames: Vec<&[u8]> = vec![b"peer", b""];
        frames.extend(c.frames.iter().map(Vec::as_slice));
        launcher.receive(now, &frames);
        assert_eq!(launcher.state(), LauncherState::Connected, "{name}");
        let ports = launcher.connection().unwrap().ports;
        assert_eq!(ports.as_array(), [50101, 50102, 50103, 50104, 50105]);
        // The reply goes back through the same envelope and is a signed handshake_reply
        // whose parent is jupyter_client's request.
        let reply = loop {
            match launcher.poll_output() {
                Output::Transmit(t) => break t.frames,
                Output::Timeout(_) => panic!("no reply"),
                _ => {}
            }
        };
        assert_eq!(&reply[..2], &[b"peer".to_vec(), Vec::new()]);
        let signer = Signer::new(c.scheme, &c.key);
        let msg = wire::split(&reply, &Limits::default())
            .unwrap()
            .verify(&signer)
            .unwrap();
        let parent = Header::parse_parent(msg.parts().parent_header)
            .unwrap()
            .unwrap();
        assert_eq!(parent.msg_id, c.msg_id);
        assert_eq!(
            HandshakeReply::from_json(msg.parts().content).unwrap(),
            HandshakeReply::OK
        );
    }
}

#[test]
fn the_kernel_accepts_a_reply_from_jupyter_client() {
    let c = case("handshake_reply_to_core_kernel");
    let file = RegistrationFile::new(Transport::Tcp, "127.0.0.1", c.scheme, c.key.clone(), 9999);
    let mut kernel = KernelHandshake::new(
        KernelFile::Registration(file),
        KernelConfig {
            session_id: Some("golden-kernel".into()),
            ..Default::default()
        },
    );
    let now = Instant::from_micros(1_000);
    let ports = KernelPorts {
        shell: 1,
        iopub: 2,
        stdin: 3,
        control: 4,
        hb: 5,
    };
    kernel.handle_input(now, KernelInput::Bound(ports)).unwrap();
    kernel
        .handle_input(now, KernelInput::RegistrationConnected)
        .unwrap();
    let frames: Vec<&[u8]> = c.frames.iter().map(Vec::as_slice).collect();
    kernel.receive(now, &frames);
    assert_eq!(kernel.state(), KernelState::Connected);
}

#[test]
fn replies_shaped_like_kallichore_and_refusals_are_understood() {
    let ok = case("handshake_reply_ok_capabilities_metadata_null");
    let refused = case("handshake_reply_error");
    for (c, status) in [(ok, ReplyStatus::Ok), (refused, ReplyStatus::Error)] {
        let signer = Signer::new(c.scheme, &c.key);
        let msg = wire::split(&c.frames, &Limits::default())
            .unwrap()
            .verify(&signer)
            .unwrap();
        if c.name.contains("metadata_null") {
            assert_eq!(msg.parts().metadata, b"null");
        }
        let reply = HandshakeReply::from_json(msg.parts().content).unwrap();
        assert_eq!(reply.status, status, "{}", c.name);
    }
    assert_eq!(message::HANDSHAKE_REPLY, "handshake_reply");
}

// --- Upstream dialect (jupyter_client docs 5.6, xeus) -------------------------------------------
//
// `upstream_cases` are built by golden.py independently of this crate: sorted compact JSON with
// string ports, HMAC over the content frame alone, `ACK` signed the same way.

struct UpstreamCase {
    name: String,
    key: Key,
    scheme: SignatureScheme,
    identities: usize,
    frames: Vec<Vec<u8>>,
    /// Requests only.
    kernel_id: String,
    ports: Option<KernelPorts>,
    string_ports: bool,
    ack: Vec<Vec<u8>>,
    /// Replies only.
    status: Option<ReplyStatus>,
    error: Option<String>,
}

fn upstream_cases() -> Vec<UpstreamCase> {
    let doc: Value = serde_json::from_str(include_str!("fixtures/golden.json")).unwrap();
    let hex_frames = |v: &Value| -> Vec<Vec<u8>> {
        v.as_array()
            .map(|frames| {
                frames
                    .iter()
                    .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    };
    doc["upstream_cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let port = |name: &str| u16::try_from(c["ports"][name].as_u64().unwrap()).unwrap();
            let request = c["kind"] == "request";
            UpstreamCase {
                name: c["name"].as_str().unwrap().into(),
                key: Key::new(c["key"].as_str().unwrap()),
                scheme: c["signature_scheme"].as_str().unwrap().parse().unwrap(),
                identities: c["identities"].as_u64().unwrap() as usize,
                frames: hex_frames(&c["frames_hex"]),
                kernel_id: c["kernel_id"].as_str().unwrap_or_default().into(),
                ports: request.then(|| KernelPorts {
                    shell: port("shell_port"),
                    iopub: port("iopub_port"),
                    stdin: port("stdin_port"),
                    control: port("control_port"),
                    hb: port("hb_port"),
                }),
                string_ports: c["string_ports"].as_bool().unwrap_or(false),
                ack: hex_frames(&c["ack_frames_hex"]),
                status: match c["status"].as_str() {
                    Some("ok") => Some(ReplyStatus::Ok),
                    Some("error") => Some(ReplyStatus::Error),
                    _ => None,
                },
                error: c["error"].as_str().map(Into::into),
            }
        })
        .collect()
}

/// An upstream kernel for `c`'s file, with its request sent; returns it and what it sent.
fn upstream_kernel(c: &UpstreamCase, ports: KernelPorts) -> (KernelHandshake, Vec<Vec<u8>>) {
    let file = RegistrationFile::upstream(
        Transport::Tcp,
        "127.0.0.1",
        c.scheme,
        c.key.clone(),
        9999,
        c.kernel_id.clone(),
    );
    let mut kernel = KernelHandshake::new(KernelFile::Registration(file), KernelConfig::default());
    let now = Instant::from_micros(1_000);
    kernel.handle_input(now, KernelInput::Bound(ports)).unwrap();
    let mut sent = Vec::new();
    loop {
        match kernel.poll_output() {
            Output::Action(KernelAction::ConnectRegistration { socket, .. }) => {
                assert_eq!(socket, RegistrationSocket::Dealer);
                kernel
                    .handle_input(now, KernelInput::RegistrationConnected)
                    .unwrap();
            }
            Output::Transmit(t) => sent.push(t.frames),
            Output::Timeout(_) => break,
            _ => {}
        }
    }
    assert_eq!(sent.len(), 1, "{}: one request", c.name);
    assert_eq!(kernel.state(), KernelState::AwaitingReply);
    (kernel, sent.remove(0))
}

#[test]
fn upstream_golden_frames_verify_and_core_signs_and_joins_them_identically() {
    let all = upstream_cases();
    assert!(all.len() >= 8, "upstream fixtures went missing");
    for c in &all {
        let signer = Signer::new(c.scheme, &c.key);
        for frames in [&c.frames, &c.ack].into_iter().filter(|f| !f.is_empty()) {
            let split = wire::split_content_only(frames, &Limits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(split.identities().len(), c.identities, "{}", c.name);
            let content = split
                .verify(&signer)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(
                signer.sign(&[content]).as_bytes(),
                split.signature(),
                "{}",
                c.name
            );
            assert_eq!(
                &wire::join_content_only(split.identities(), &signer, content),
                frames,
                "{}",
                c.name
            );
            if !c.key.is_empty() {
                let mut tampered = frames.clone();
                tampered.last_mut().unwrap().push(b' ');
                let result = wire::split_content_only(&tampered, &Limits::default())
                    .unwrap()
                    .verify(&signer);
                assert_eq!(result.unwrap_err(), VerifyError::Mismatch, "{}", c.name);
            }
        }
    }
}

#[test]
fn upstream_our_kernel_sends_exactly_the_python_request() {
    let requests = upstream_cases().into_iter().filter(|c| c.string_ports);
    let mut seen = 0;
    for c in requests {
        let ports = c.ports.unwrap();
        let (_, sent) = upstream_kernel(&c, ports);
        // A DEALER sends no identities; the ROUTER adds the peer's on receipt.
        assert_eq!(sent, c.frames[c.identities..], "{}", c.name);
        assert_eq!(
            message::upstream_request_content(&c.kernel_id, &ports),
            *c.frames.last().unwrap(),
            "{}",
            c.name
        );
        seen += 1;
    }
    assert_eq!(seen, 4);
}

#[test]
fn upstream_our_launcher_accepts_python_requests_and_answers_exactly_the_python_ack() {
    let requests = upstream_cases().into_iter().filter(|c| c.ports.is_some());
    let mut seen = 0;
    for c in requests {
        // The capture includes an unsigned connection (empty key): that takes the opt-in.
        let mut config = LauncherConfig::upstream(c.key.clone(), c.kernel_id.clone())
            .unwrap_or_else(|_| {
                let mut unsigned = LauncherConfig::unsigned();
                unsigned.dialect = Dialect::Upstream;
                unsigned.kernel_id = c.kernel_id.clone();
                unsigned
            });
        config.signature_scheme = c.scheme;
        let mut launcher = LauncherHandshake::new(config);
        let now = Instant::from_micros(1_000);
        launcher
            .handle_input(now, LauncherInput::RegistrationBound { port: 9999 })
            .unwrap();
        launcher.receive(now, &c.frames);
        let mut replies = Vec::new();
        let mut registered = None;
        loop {
            match launcher.poll_output() {
                Output::Transmit(t) => replies.push(t.frames),
                Output::Event(LauncherEvent::Registered {
                    connection,
                    evidence,
                }) => registered = Some((connection, evidence)),
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        assert_eq!(launcher.state(), LauncherState::Connected, "{}", c.name);
        let (connection, evidence) = registered.unwrap();
        assert_eq!(connection.ports, c.ports.unwrap(), "{}", c.name);
        assert_eq!(evidence, Evidence::Request);
        assert_eq!(replies, std::slice::from_ref(&c.ack), "{}", c.name);
        seen += 1;
    }
    assert_eq!(seen, 5);
}

#[test]
fn upstream_our_kernel_takes_python_replies() {
    let all = upstream_cases();
    let request = all.iter().find(|c| c.name == "upstream_request").unwrap();
    let replies = all.iter().filter(|c| c.status.is_some());
    let mut seen = 0;
    for reply in replies {
        assert!(reply.key.ct_eq(&request.key));
        let (mut kernel, _) = upstream_kernel(request, request.ports.unwrap());
        kernel.receive(Instant::from_micros(2_000), &reply.frames);
        match reply.status.unwrap() {
            ReplyStatus::Ok => {
                assert_eq!(kernel.state(), KernelState::Connected, "{}", reply.name);
                assert_eq!(kernel.connection().unwrap().ports, request.ports.unwrap());
            }
            ReplyStatus::Error => assert_eq!(
                kernel.failure(),
                Some(&Failure::Refused {
                    reason: reply.error.clone()
                }),
                "{}",
                reply.name
            ),
        }
        seen += 1;
    }
    assert_eq!(seen, 3);
}
