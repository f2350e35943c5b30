//! The upstream dialect (jupyter_client docs 5.6, xeus): golden frames captured from the real
//! xeus-python 0.19.0 (`tests/python/golden_upstream.py`), each transition of both machines, the
//! file, and both dialects sharing one Registrar.

mod common;

use common::*;
use jupyter_handshake::message::{self, HandshakeReply, ReplyStatus};
use jupyter_handshake::wire::{self, DecodeError, Limits};
use jupyter_handshake::*;
use serde_json::Value;

/// What xeus-python sent and what we answered, from the fixture.
struct Capture {
    key: Key,
    kernel_id: String,
    registration_port: u16,
    ports: KernelPorts,
    request: Vec<Vec<u8>>,
    ack: Vec<Vec<u8>>,
}

fn capture() -> Capture {
    let doc: Value = serde_json::from_str(include_str!("fixtures/golden_upstream.json")).unwrap();
    assert!(
        doc["generator"]
            .as_str()
            .unwrap()
            .contains("xeus-python 0.19.0")
    );
    assert_eq!(doc["kernel_info"]["protocol_version"], "5.6");
    let hex_frames = |name: &str| -> Vec<Vec<u8>> {
        doc[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| hex::decode(f.as_str().unwrap()).unwrap())
            .collect()
    };
    let port = |name: &str| u16::try_from(doc["ports"][name].as_u64().unwrap()).unwrap();
    Capture {
        key: Key::new(doc["key"].as_str().unwrap()),
        kernel_id: doc["kernel_id"].as_str().unwrap().into(),
        registration_port: u16::try_from(doc["registration_port"].as_u64().unwrap()).unwrap(),
        ports: KernelPorts {
            shell: port("shell_port"),
            iopub: port("iopub_port"),
            stdin: port("stdin_port"),
            control: port("control_port"),
            hb: port("hb_port"),
        },
        request: hex_frames("request_frames_hex"),
        ack: hex_frames("ack_frames_hex"),
    }
}

fn upstream_file(c: &Capture) -> RegistrationFile {
    RegistrationFile::upstream(
        Transport::Tcp,
        "127.0.0.1",
        SignatureScheme::HmacSha256,
        c.key.clone(),
        c.registration_port,
        c.kernel_id.clone(),
    )
}

fn upstream_launcher(c: &Capture) -> LauncherHandshake {
    let mut config = LauncherConfig::upstream(c.key.clone(), c.kernel_id.clone()).unwrap();
    config.session_id = Some("launcher-session".into());
    let (l, file) = bound_launcher(config);
    assert_eq!(file.dialect(), Dialect::Upstream);
    assert_eq!(file.kernel_id(), Some(c.kernel_id.as_str()));
    l
}

fn with_identity(identity: &[u8], frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = vec![identity.to_vec()];
    out.extend(frames.iter().cloned());
    out
}

fn signer(key: &Key) -> Signer {
    Signer::new(SignatureScheme::HmacSha256, key)
}

#[test]
fn golden_our_request_content_is_byte_for_byte_what_xeus_sends() {
    let c = capture();
    let split = wire::split_content_only(&c.request, &Limits::HANDSHAKE).unwrap();
    let content = split.verify(&signer(&c.key)).unwrap();
    let request = message::upstream_request(content).unwrap();
    assert_eq!(request.kernel_id, c.kernel_id);
    assert_eq!(request.ports, c.ports);
    assert_eq!(
        message::upstream_request_content(&c.kernel_id, &c.ports),
        content
    );
    let none: [&[u8]; 0] = [];
    assert_eq!(
        wire::join_content_only(&none, &signer(&c.key), content),
        c.request
    );
}

#[test]
fn golden_our_kernel_sends_exactly_the_frames_xeus_sends_and_accepts_its_ack() {
    let c = capture();
    let mut k = KernelHandshake::new(
        KernelFile::Registration(upstream_file(&c)),
        KernelConfig::default(),
    );
    drain_kernel(&mut k);
    k.handle_input(at(0), KernelInput::Bound(c.ports)).unwrap();
    let d = drain_kernel(&mut k);
    assert_eq!(
        d.actions,
        [KernelAction::ConnectRegistration {
            endpoint: format!("tcp://127.0.0.1:{}", c.registration_port),
            socket: RegistrationSocket::Dealer,
        }]
    );
    k.handle_input(at(1), KernelInput::RegistrationConnected)
        .unwrap();
    let d = drain_kernel(&mut k);
    assert_eq!(d.transmits, std::slice::from_ref(&c.request));
    assert_eq!(k.state(), KernelState::AwaitingReply);
    k.receive(at(2), &c.ack);
    assert_eq!(k.state(), KernelState::Connected);
    assert_eq!(k.connection().unwrap().ports, c.ports);
}

#[test]
fn golden_our_launcher_accepts_xeus_request_and_answers_exactly_the_ack_xeus_accepts() {
    let c = capture();
    let mut l = upstream_launcher(&c);
    let received = with_identity(b"xeus-peer", &c.request);
    l.receive(at(1), &received);
    let d = drain_launcher(&mut l);
    assert_eq!(d.transmits, [with_identity(b"xeus-peer", &c.ack)]);
    assert_eq!(l.state(), LauncherState::Connected);
    assert_eq!(l.connection().unwrap().ports, c.ports);
    assert!(d.events.iter().any(|e| matches!(
        e,
        LauncherEvent::Registered {
            evidence: Evidence::Request,
            ..
        }
    )));
}

#[test]
fn the_kernel_drops_forged_and_malformed_replies_and_keeps_listening_on_its_dealer() {
    let c = capture();
    let mut k = KernelHandshake::new(
        KernelFile::Registration(upstream_file(&c)),
        KernelConfig::default(),
    );
    drain_kernel(&mut k);
    k.handle_input(at(0), KernelInput::Bound(c.ports)).unwrap();
    k.handle_input(at(0), KernelInput::RegistrationConnected)
        .unwrap();
    drain_kernel(&mut k);
    let none: [&[u8]; 0] = [];
    let forged = wire::join_content_only(&none, &signer(&Key::new("forger")), b"ACK");
    let garbage = vec![b"<IDS|MSG>".to_vec()];
    let posit_shaped = message(KEY, "handshake_reply", None, br#"{"status":"ok"}"#, &[]);
    for frames in [forged, garbage, posit_shaped] {
        k.receive(at(1), &frames);
        let d = drain_kernel(&mut k);
        assert!(
            matches!(d.events[..], [KernelEvent::Rejected(_)]),
            "{:?}",
            d.events
        );
        assert_eq!(k.state(), KernelState::AwaitingReply);
    }
    // A launcher that answers `{"status":"ok"}` instead of ACK is understood too.
    let ok = wire::join_content_only(&none, &signer(&c.key), &HandshakeReply::OK.to_json());
    k.receive(at(2), &ok);
    assert_eq!(k.state(), KernelState::Connected);
}

#[test]
fn a_signed_json_error_is_a_refusal_with_its_reason() {
    let c = capture();
    let mut k = KernelHandshake::new(
        KernelFile::Registration(upstream_file(&c)),
        KernelConfig::default(),
    );
    drain_kernel(&mut k);
    k.handle_input(at(0), KernelInput::Bound(c.ports)).unwrap();
    k.handle_input(at(0), KernelInput::RegistrationConnected)
        .unwrap();
    drain_kernel(&mut k);
    let refusal = HandshakeReply {
        status: ReplyStatus::Error,
        error: Some("busy".into()),
    };
    let none: [&[u8]; 0] = [];
    let frames = wire::join_content_only(&none, &signer(&c.key), &refusal.to_json());
    k.receive(at(1), &frames);
    assert_eq!(
        k.failure(),
        Some(&Failure::Refused {
            reason: Some("busy".into())
        })
    );
}

#[test]
fn the_launcher_refuses_well_signed_bad_requests_and_keeps_waiting() {
    let c = capture();
    let mut l = upstream_launcher(&c);
    let none: [&[u8]; 0] = [];
    let signed = |content: &[u8]| {
        with_identity(
            b"peer",
            &wire::join_content_only(&none, &signer(&c.key), content),
        )
    };
    let other_kernel = message::upstream_request_content("someone-else", &c.ports);
    let zero_ports = message::upstream_request_content(&c.kernel_id, &KernelPorts::default());
    for (content, why) in [
        (other_kernel, Rejection::WrongKernel),
        (
            zero_ports,
            Rejection::Malformed(message::MessageError::Ports(PortsError::Zero {
                field: "control_port",
            })),
        ),
    ] {
        l.receive(at(1), &signed(&content));
        let d = drain_launcher(&mut l);
        assert_eq!(d.events, [LauncherEvent::Refused(why)]);
        // The refusal is signed over its content and goes back through the identity.
        let [reply] = &d.transmits[..] else {
            panic!("one refusal")
        };
        assert_eq!(reply[0], b"peer");
        let content = wire::split_content_only(reply, &Limits::HANDSHAKE)
            .unwrap()
            .verify(&signer(&c.key))
            .unwrap();
        assert_eq!(
            HandshakeReply::from_json(content).unwrap().status,
            ReplyStatus::Error
        );
        assert_eq!(l.state(), LauncherState::Bound);
    }
    // Unsigned, forged, and Posit-framed requests are dropped without a reply.
    let forged = with_identity(
        b"peer",
        &wire::join_content_only(
            &none,
            &signer(&Key::new("forger")),
            &message::upstream_request_content(&c.kernel_id, &c.ports),
        ),
    );
    let unsigned = with_identity(
        b"peer",
        &[b"<IDS|MSG>".to_vec(), Vec::new(), b"{}".to_vec()],
    );
    let posit = message(
        c.key.expose_secret(),
        "handshake_request",
        None,
        &message::request_content(&c.ports),
        &[b"peer"],
    );
    for frames in [forged, unsigned, posit] {
        l.receive(at(2), &frames);
        let d = drain_launcher(&mut l);
        assert!(d.transmits.is_empty());
        assert!(
            matches!(d.events[..], [LauncherEvent::Rejected(_)]),
            "{:?}",
            d.events
        );
    }
    // Integer ports (what a non-xeus upstream kernel might send) are accepted.
    let integers = format!(
        r#"{{"kernel_id":"{}","control_port":1,"shell_port":2,"stdin_port":3,"iopub_port":4,"hb_port":5}}"#,
        c.kernel_id
    );
    l.receive(at(3), &signed(integers.as_bytes()));
    drain_launcher(&mut l);
    assert_eq!(l.state(), LauncherState::Connected);
    assert_eq!(l.connection().unwrap().ports.hb, 5);
}

#[test]
fn upstream_files_are_written_as_xeus_reads_them_and_read_in_every_form() {
    let c = capture();
    let file = upstream_file(&c);
    let json: Value = serde_json::from_slice(&file.to_json_pretty()).unwrap();
    assert_eq!(json["registration_port"], c.registration_port.to_string());
    assert_eq!(json["kernel_id"], c.kernel_id);
    assert_eq!(json["registration_ip"], "127.0.0.1");
    assert_eq!(json["ip"], "127.0.0.1");
    assert_eq!(
        RegistrationFile::from_json(&file.to_json_pretty()).unwrap(),
        file
    );
    // The jupyter_client docs' example: no `ip`, an integer port.
    let docs = br#"{"kernel_id":"k1","transport":"tcp","registration_ip":"127.0.0.1","registration_port":51587,"signature_scheme":"hmac-sha256","key":"a0436f6c"}"#;
    let read = RegistrationFile::from_json(docs).unwrap();
    assert_eq!(read.dialect(), Dialect::Upstream);
    assert_eq!(read.ip, "127.0.0.1");
    assert_eq!(read.registration_port, 51587);
    assert_eq!(read.registration_endpoint(), "tcp://127.0.0.1:51587");
    // An empty `registration_ip` is not the upstream marker (xeus's rule).
    let posit = br#"{"transport":"tcp","ip":"127.0.0.1","registration_ip":"","registration_port":5,"signature_scheme":"hmac-sha256","key":"k"}"#;
    assert_eq!(
        RegistrationFile::from_json(posit).unwrap().dialect(),
        Dialect::Posit
    );
    // Bad string ports say what was expected.
    for port in [
        r#""""#,
        r#""0""#,
        r#""65536""#,
        r#""5a""#,
        r#""+5""#,
        "true",
    ] {
        let text = format!(
            r#"{{"kernel_id":"k","transport":"tcp","ip":"x","registration_ip":"x","registration_port":{port},"signature_scheme":"hmac-sha256","key":"k"}}"#
        );
        let error = KernelFile::from_json(text.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("registration_port"), "{error}");
    }
    // A kernel that rewrote an upstream file with its ports made it a connection file.
    let rewritten = file.with_ports(c.ports).to_json_pretty();
    let mut map: Value = serde_json::from_slice(&rewritten).unwrap();
    map["registration_ip"] = "127.0.0.1".into();
    let kind = KernelFile::from_json(&serde_json::to_vec(&map).unwrap())
        .unwrap()
        .kind();
    assert_eq!(kind, FileKind::Connection);
    // Too few or too many frames after the delimiter.
    let one = [b"<IDS|MSG>".to_vec(), b"sig".to_vec()];
    assert_eq!(
        wire::split_content_only(&one, &Limits::HANDSHAKE).unwrap_err(),
        DecodeError::NotContentOnly { got: 1 }
    );
}

#[test]
fn both_dialects_share_one_registrar() {
    let mut r = Registrar::new(RegistrarConfig::default());
    drain(|| r.poll_output());
    r.handle_input(at(0), RegistrarInput::RegistrationBound { port: REG_PORT })
        .unwrap();
    let posit = r
        .launch(at(0), LaunchConfig::new(Key::new("posit-key")))
        .unwrap();
    let upstream = r
        .launch(
            at(0),
            LaunchConfig::upstream(Key::new("upstream-key"), "kernel-u"),
        )
        .unwrap();
    let d = drain(|| r.poll_output());
    let files: Vec<RegistrationFile> = d
        .actions
        .into_iter()
        .filter_map(|a| match a {
            RegistrarAction::WriteRegistrationFile { file, .. } => Some(file),
            _ => None,
        })
        .collect();
    assert_eq!(files[0].dialect(), Dialect::Posit);
    assert_eq!(files[1].kernel_id(), Some("kernel-u"));
    let mut kernels = Vec::new();
    for (i, file) in files.into_iter().enumerate() {
        let mut k = KernelHandshake::new(KernelFile::Registration(file), KernelConfig::default());
        drain_kernel(&mut k);
        let ports = KernelPorts {
            shell: 100 + i as u16,
            iopub: 200 + i as u16,
            stdin: 300 + i as u16,
            control: 400 + i as u16,
            hb: 500 + i as u16,
        };
        k.handle_input(at(1), KernelInput::Bound(ports)).unwrap();
        k.handle_input(at(1), KernelInput::RegistrationConnected)
            .unwrap();
        let request = drain_kernel(&mut k).transmits.remove(0);
        kernels.push((k, request, ports));
    }
    // The upstream kernel first, then the Posit one; each reply reaches its own kernel.
    for i in [1, 0] {
        let (k, request, _) = &mut kernels[i];
        let identity = format!("peer-{i}").into_bytes();
        r.receive(at(2), &with_identity(&identity, request));
        let d = drain(|| r.poll_output());
        let [reply] = &d.transmits[..] else {
            panic!("one reply, got {:?}", d.events)
        };
        assert_eq!(reply[0], identity);
        k.receive(at(3), &reply[1..]);
        assert_eq!(k.state(), KernelState::Connected);
    }
    assert_eq!(r.connection(posit).unwrap().ports, kernels[0].2);
    assert_eq!(r.connection(upstream).unwrap().ports, kernels[1].2);
}

// --- Transitions not covered by the golden capture above -------------------------------------

/// An upstream launcher in `Bound` with our test key, and its file.
fn test_upstream_launcher() -> (LauncherHandshake, RegistrationFile) {
    bound_launcher(upstream_config(KEY, "kernel-7"))
}

fn signed_upstream(content: &[u8]) -> Vec<Vec<u8>> {
    with_identity(
        b"peer",
        &wire::join_content_only(&[] as &[&[u8]], &signer(&Key::new(KEY)), content),
    )
}

fn ack(key: &str) -> Vec<Vec<u8>> {
    wire::join_content_only(&[] as &[&[u8]], &signer(&Key::new(key)), b"ACK")
}

#[test]
fn the_upstream_file_handed_out_is_what_the_kernel_reads_back() {
    let (_, file) = test_upstream_launcher();
    assert_eq!(file.dialect(), Dialect::Upstream);
    assert_eq!(file.kernel_id(), Some("kernel-7"));
    assert_eq!(file.registration_endpoint(), "tcp://127.0.0.1:5555");
    let read = KernelFile::from_json(&file.to_json_pretty()).unwrap();
    assert_eq!(read, KernelFile::Registration(file.clone()));
    // The key is in the file, never in Debug.
    assert!(!format!("{file:?}").contains(KEY));
    // The default launcher still writes a Posit file.
    let (_, posit) = bound_launcher(launcher_config(KEY));
    assert_eq!(posit.dialect(), Dialect::Posit);
    let json: Value = serde_json::from_slice(&posit.to_json_pretty()).unwrap();
    assert_eq!(json["registration_port"], REG_PORT);
    assert!(json.get("registration_ip").is_none());
}

#[test]
fn an_upstream_kernel_waits_for_iopub_after_the_ack_unless_it_saw_it_already() {
    let (_, file) = test_upstream_launcher();
    let config = KernelConfig {
        wait_for_iopub: Some(std::time::Duration::from_secs(10)),
        ..KernelConfig::default()
    };
    let (mut k, _) = awaiting_kernel(file.clone(), config.clone(), at(0));
    k.receive(at(1), &ack(KEY));
    assert_eq!(k.state(), KernelState::Registered);
    assert_eq!(drain_kernel(&mut k).timeout, Some(at(10_001)));
    k.handle_input(at(2), KernelInput::IopubSubscribed).unwrap();
    assert_eq!(k.state(), KernelState::Connected);

    let (mut k, _) = awaiting_kernel(file, config, at(0));
    k.handle_input(at(1), KernelInput::IopubSubscribed).unwrap();
    k.receive(at(2), &ack(KEY));
    assert_eq!(k.state(), KernelState::Connected);
}

#[test]
fn an_upstream_kernel_without_an_ack_fails_at_the_deadline_and_ignores_a_late_one() {
    let (_, file) = test_upstream_launcher();
    let (mut k, _) = awaiting_kernel(file, KernelConfig::default(), at(0));
    assert_eq!(drain_kernel(&mut k).timeout, Some(at(10_000)));
    // The ACK arrives exactly at the deadline: time is looked at first.
    k.receive(at(10_000), &ack(KEY));
    assert_eq!(
        k.failure(),
        Some(&Failure::Timeout {
            waiting_for: Waiting::Reply,
            waited: std::time::Duration::from_secs(10),
        })
    );
    drain_kernel(&mut k);
    k.receive(at(10_001), &ack(KEY));
    assert_eq!(
        drain_kernel(&mut k).events,
        [KernelEvent::Rejected(Rejection::Finished)]
    );
}

#[test]
fn an_upstream_kernel_drops_a_reply_before_its_request() {
    let (_, file) = test_upstream_launcher();
    let mut k = KernelHandshake::new(KernelFile::Registration(file), KernelConfig::default());
    drain_kernel(&mut k);
    k.handle_input(at(0), KernelInput::Bound(PORTS)).unwrap();
    drain_kernel(&mut k);
    k.receive(at(1), &ack(KEY));
    assert_eq!(
        drain_kernel(&mut k).events,
        [KernelEvent::Rejected(Rejection::Unsolicited)]
    );
    assert_eq!(k.state(), KernelState::Bound);
}

#[test]
fn a_posit_kernel_drops_an_upstream_ack_and_still_takes_its_reply() {
    let (_, posit_file) = bound_launcher(launcher_config(KEY));
    let (mut k, request) = awaiting_kernel(posit_file, KernelConfig::default(), at(0));
    k.receive(at(1), &ack(KEY));
    assert!(matches!(
        drain_kernel(&mut k).events[..],
        [KernelEvent::Rejected(_)]
    ));
    assert_eq!(k.state(), KernelState::AwaitingReply);
    // The same kernel still takes the real Posit reply afterwards.
    let header = header_of(&request);
    let reply = message(
        KEY,
        "handshake_reply",
        Some(&header),
        br#"{"status":"ok"}"#,
        &[],
    );
    k.receive(at(2), &reply);
    assert_eq!(k.state(), KernelState::Connected);
}

#[test]
fn the_upstream_launcher_refuses_duplicate_ports_and_signed_non_requests() {
    let (mut l, _) = test_upstream_launcher();
    let duplicate = message::upstream_request_content(
        "kernel-7",
        &KernelPorts {
            hb: PORTS.shell,
            ..PORTS
        },
    );
    // A reflected ACK or refusal is signed with our key but is no request.
    let reflected_refusal = HandshakeReply {
        status: ReplyStatus::Error,
        error: Some("x".into()),
    }
    .to_json();
    type Check = fn(&Rejection) -> bool;
    let cases: [(&[u8], Check); 4] = [
        (&duplicate, |r| {
            matches!(
                r,
                Rejection::Malformed(message::MessageError::Ports(PortsError::Duplicate { .. }))
            )
        }),
        (b"ACK", |r| matches!(r, Rejection::Malformed(_))),
        (&reflected_refusal, |r| matches!(r, Rejection::Malformed(_))),
        (br#"{"kernel_id":"kernel-7"}"#, |r| {
            matches!(r, Rejection::Malformed(_))
        }),
    ];
    for (content, expected) in cases {
        l.receive(at(1), &signed_upstream(content));
        let d = drain_launcher(&mut l);
        let [LauncherEvent::Refused(why)] = &d.events[..] else {
            panic!("{:?}", d.events)
        };
        assert!(expected(why), "{why:?}");
        // The refusal names fields, never echoes what was received.
        let [reply] = &d.transmits[..] else {
            panic!("one refusal")
        };
        let content = wire::split_content_only(reply, &Limits::HANDSHAKE)
            .unwrap()
            .verify(&signer(&Key::new(KEY)))
            .unwrap();
        let refusal = HandshakeReply::from_json(content).unwrap();
        assert_eq!(refusal.status, ReplyStatus::Error);
        assert!(!refusal.error.unwrap().contains("40001"));
        assert_eq!(l.state(), LauncherState::Bound);
        assert_eq!(d.timeout, Some(at(30_000)));
    }
}

#[test]
fn the_upstream_launcher_registers_once_and_drops_duplicates_without_a_reply() {
    let (mut l, file) = test_upstream_launcher();
    let request = signed_upstream(&message::upstream_request_content("kernel-7", &PORTS));
    l.receive(at(1), &request);
    let d = drain_launcher(&mut l);
    assert_eq!(d.transmits.len(), 1);
    assert_eq!(
        d.events.last(),
        Some(&LauncherEvent::Registered {
            connection: file.with_ports(PORTS),
            evidence: Evidence::Request,
        })
    );
    assert_eq!(d.timeout, None);
    l.receive(at(2), &request);
    let d = drain_launcher(&mut l);
    assert!(d.transmits.is_empty());
    assert_eq!(d.events, [LauncherEvent::Rejected(Rejection::Finished)]);
}

#[test]
fn a_posit_launcher_drops_an_upstream_request_without_a_reply() {
    let (mut l, _) = bound_launcher(launcher_config(KEY));
    let request = signed_upstream(&message::upstream_request_content("kernel", &PORTS));
    l.receive(at(1), &request);
    let d = drain_launcher(&mut l);
    assert!(d.transmits.is_empty());
    assert!(
        matches!(d.events[..], [LauncherEvent::Rejected(_)]),
        "{:?}",
        d.events
    );
    assert_eq!(l.state(), LauncherState::Bound);
}

#[test]
fn the_upstream_launcher_fails_only_by_deadline_exit_or_abort() {
    for (input, failure) in [
        (
            LauncherInput::Timeout,
            Failure::Timeout {
                waiting_for: Waiting::Registration,
                waited: std::time::Duration::from_secs(30),
            },
        ),
        (
            LauncherInput::KernelExited(ExitStatus::Code(1)),
            Failure::KernelExited(ExitStatus::Code(1)),
        ),
        (LauncherInput::Abort, Failure::Aborted),
    ] {
        let (mut l, _) = test_upstream_launcher();
        let now = if matches!(input, LauncherInput::Timeout) {
            at(30_000)
        } else {
            at(5)
        };
        l.handle_input(now, input).unwrap();
        // An exit takes effect at the end of its instant (the deadline it arms).
        l.handle_input(
            now + std::time::Duration::from_micros(1),
            LauncherInput::Timeout,
        )
        .unwrap();
        assert_eq!(l.failure(), Some(&failure));
    }
}
