//! Each transition of both machines, one behaviour per test.

mod common;

use std::time::Duration;

use common::*;
use jupyter_handshake::VerifyError;
use jupyter_handshake::message::{HandshakeReply, Header, ReplyStatus};
use jupyter_handshake::wire::{self, DecodeError, Limits};
use jupyter_handshake::*;

fn registration() -> RegistrationFile {
    RegistrationFile::new(
        Transport::Tcp,
        "127.0.0.1",
        SignatureScheme::HmacSha256,
        Key::new(KEY),
        REG_PORT,
    )
}

/// The launcher's reply to `request`, with the envelope stripped as a REQ would.
fn reply_from_launcher(request: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let (mut l, _) = bound_launcher(launcher_config(KEY));
    let mut frames = vec![b"k".to_vec(), Vec::new()];
    frames.extend(request.iter().cloned());
    l.receive(at(1), &frames);
    let mut reply = drain_launcher(&mut l).transmits.remove(0);
    reply.drain(..2);
    reply
}

fn rejected_kernel(events: &[KernelEvent]) -> Vec<Rejection> {
    events
        .iter()
        .filter_map(|e| match e {
            KernelEvent::Rejected(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

// ----------------------------------------------------------------------------------- kernel

#[test]
fn kernel_asks_to_bind_then_connect_then_sends_a_signed_request() {
    let mut k = KernelHandshake::new(
        KernelFile::Registration(registration()),
        KernelConfig::default(),
    );
    assert_eq!(k.state(), KernelState::Init);
    let d = drain_kernel(&mut k);
    assert_eq!(
        d.actions,
        vec![KernelAction::BindChannels {
            transport: Transport::Tcp,
            ip: "127.0.0.1".into(),
            ports: None
        }]
    );
    assert_eq!(d.timeout, None);
    k.handle_input(at(0), KernelInput::Bound(PORTS)).unwrap();
    let d = drain_kernel(&mut k);
    assert_eq!(
        d.actions,
        vec![KernelAction::ConnectRegistration {
            endpoint: "tcp://127.0.0.1:5555".into(),
            socket: RegistrationSocket::Req,
        }]
    );
    assert_eq!(k.state(), KernelState::Bound);
    k.handle_input(at(2), KernelInput::RegistrationConnected)
        .unwrap();
    let d = drain_kernel(&mut k);
    assert_eq!(d.timeout, Some(at(2) + Duration::from_secs(10)));
    let request = &d.transmits[0];
    let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new(KEY));
    let msg = wire::split(request, &Limits::default())
        .unwrap()
        .verify(&signer)
        .unwrap();
    let header = Header::from_json(msg.parts().header).unwrap();
    assert_eq!(header.msg_type, "handshake_request");
    assert_eq!(msg.parts().parent_header, b"{}");
    assert_eq!(message::request_ports(msg.parts().content).unwrap(), PORTS);
}

use jupyter_handshake::message;

#[test]
fn kernel_connects_on_the_launchers_ok() {
    let (mut k, request) = awaiting_kernel(registration(), KernelConfig::default(), at(0));
    let reply = reply_from_launcher(&request);
    k.receive(at(5), &reply);
    assert_eq!(k.state(), KernelState::Connected);
    let d = drain_kernel(&mut k);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, KernelEvent::Connected(c) if c.ports == PORTS))
    );
    assert_eq!(d.timeout, None);
}

#[test]
fn kernel_fails_at_its_ack_deadline_and_not_before() {
    let (mut k, _) = awaiting_kernel(registration(), KernelConfig::default(), at(0));
    k.handle_input(at(9_999), KernelInput::Timeout).unwrap();
    assert_eq!(
        k.state(),
        KernelState::AwaitingReply,
        "an early timeout is a no-op"
    );
    k.handle_input(at(10_000), KernelInput::Timeout).unwrap();
    assert_eq!(k.state(), KernelState::Failed);
    assert_eq!(
        k.failure(),
        Some(&Failure::Timeout {
            waiting_for: Waiting::Reply,
            waited: Duration::from_secs(10)
        })
    );
}

#[test]
fn a_late_reply_cannot_beat_the_deadline() {
    let (mut k, request) = awaiting_kernel(registration(), KernelConfig::default(), at(0));
    let reply = reply_from_launcher(&request);
    // The driver was busy and feeds the reply after the deadline: time is checked first.
    k.receive(at(10_001), &reply);
    assert_eq!(k.state(), KernelState::Failed);
}

#[test]
fn kernel_fails_on_a_refusal_with_the_reason() {
    let (mut k, request) = awaiting_kernel(registration(), KernelConfig::default(), at(0));
    let parent = header_of(&request);
    let refusal = message(
        KEY,
        "handshake_reply",
        Some(&parent),
        br#"{"status":"error","error":"no room\u001b[2J"}"#,
        &[],
    );
    k.receive(at(1), &refusal);
    assert_eq!(
        k.failure(),
        Some(&Failure::Refused {
            reason: Some("no room[2J".into())
        })
    );
}

#[test]
fn kallichores_bare_error_frame_is_a_refusal_not_a_crash() {
    let (mut k, _) = awaiting_kernel(registration(), KernelConfig::default(), at(0));
    let bare: &[u8] =
        br#"{"status":"error","error":"Failed to parse JupyterMessage: bad hmac","capabilities":{}}"#;
    k.receive(at(1), &[bare]);
    assert_eq!(
        k.failure(),
        Some(&Failure::Refused {
            reason: Some("Failed to parse JupyterMessage: bad hmac".into())
        })
    );
}

#[test]
fn kernel_drops_forged_misdirected_and_malformed_replies() {
    let (mut k, request) = awaiting_kernel(registration(), KernelConfig::default(), at(0));
    let parent = header_of(&request);
    let ok = br#"{"status":"ok"}"#;
    let other_parent = br#"{"msg_id":"other","session":"s","username":"u","date":"d","msg_type":"handshake_request","version":"5.5"}"#;
    let inputs: Vec<Vec<Vec<u8>>> = vec![
        message("wrong", "handshake_reply", Some(&parent), ok, &[]),
        message("", "handshake_reply", Some(&parent), ok, &[]),
        message(KEY, "handshake_reply", Some(other_parent), ok, &[]),
        message(KEY, "handshake_reply", None, ok, &[]),
        message(KEY, "kernel_info_reply", Some(&parent), ok, &[]),
        message(
            KEY,
            "handshake_reply",
            Some(&parent),
            br#"{"status":"maybe"}"#,
            &[],
        ),
        vec![b"<IDS|MSG>".to_vec()],
        vec![b"{\"status\":\"ok\"}".to_vec()],
    ];
    for input in &inputs {
        k.receive(at(1), input);
    }
    assert_eq!(k.state(), KernelState::AwaitingReply);
    assert_eq!(
        k.deadline().map(|d| d.at),
        Some(at(0) + Duration::from_secs(10))
    );
    let rejected = rejected_kernel(&drain_kernel(&mut k).events);
    assert!(
        matches!(
            rejected[..],
            [
                Rejection::Signature(VerifyError::Mismatch),
                Rejection::Signature(VerifyError::Unsigned),
                Rejection::WrongParent,
                Rejection::WrongParent,
                Rejection::UnexpectedType { .. },
                Rejection::Malformed(_),
                Rejection::Decode(DecodeError::TooFewFrames { got: 0 }),
                Rejection::Decode(DecodeError::NoDelimiter { frames: 1 }),
            ]
        ),
        "{rejected:?}"
    );
    // And the real reply still gets through.
    let reply = reply_from_launcher(&request);
    k.receive(at(2), &reply);
    assert_eq!(k.state(), KernelState::Connected);
}

#[test]
fn kernel_can_wait_for_the_first_iopub_subscription() {
    let config = KernelConfig {
        wait_for_iopub: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let (mut k, request) = awaiting_kernel(registration(), config.clone(), at(0));
    let reply = reply_from_launcher(&request);
    k.receive(at(1), &reply);
    assert_eq!(k.state(), KernelState::Registered);
    assert_eq!(
        k.deadline().map(|d| d.at),
        Some(at(1) + Duration::from_secs(10))
    );
    k.handle_input(at(2), KernelInput::IopubSubscribed).unwrap();
    assert_eq!(k.state(), KernelState::Connected);

    // A subscription that beats the reply is remembered.
    let (mut k, request) = awaiting_kernel(registration(), config.clone(), at(0));
    k.handle_input(at(1), KernelInput::IopubSubscribed).unwrap();
    let reply = reply_from_launcher(&request);
    k.receive(at(2), &reply);
    assert_eq!(k.state(), KernelState::Connected);

    // No subscription: the kernel gives up, as ark does.
    let (mut k, request) = awaiting_kernel(registration(), config, at(0));
    let reply = reply_from_launcher(&request);
    k.receive(at(1), &reply);
    k.handle_input(at(10_001), KernelInput::Timeout).unwrap();
    assert!(matches!(
        k.failure(),
        Some(Failure::Timeout {
            waiting_for: Waiting::IopubSubscription,
            ..
        })
    ));
}

#[test]
fn kernel_with_a_classic_file_binds_its_ports_and_is_connected() {
    let file = registration().with_ports(PORTS);
    let mut k = KernelHandshake::new(
        KernelFile::Connection(file.clone()),
        KernelConfig::default(),
    );
    let d = drain_kernel(&mut k);
    assert_eq!(
        d.actions,
        vec![KernelAction::BindChannels {
            transport: Transport::Tcp,
            ip: "127.0.0.1".into(),
            ports: Some(PORTS)
        }]
    );
    k.handle_input(at(0), KernelInput::Bound(PORTS)).unwrap();
    assert_eq!(k.state(), KernelState::Connected);
    assert_eq!(k.connection(), Some(&file));
}

#[test]
fn kernel_fails_on_abort() {
    let (mut k, _) = awaiting_kernel(registration(), KernelConfig::default(), at(0));
    k.handle_input(at(1), KernelInput::Abort).unwrap();
    assert_eq!(k.failure(), Some(&Failure::Aborted));
}

#[test]
fn driver_mistakes_are_usage_errors_that_change_nothing() {
    let mut k = KernelHandshake::new(
        KernelFile::Registration(registration()),
        KernelConfig::default(),
    );
    let e = k
        .handle_input(at(0), KernelInput::RegistrationConnected)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "input `RegistrationConnected` is not valid in state Init"
    );
    let zero = KernelPorts { hb: 0, ..PORTS };
    assert!(k.handle_input(at(0), KernelInput::Bound(zero)).is_err());
    assert_eq!(k.state(), KernelState::Init);
    k.handle_input(at(0), KernelInput::Bound(PORTS)).unwrap();
    assert!(k.handle_input(at(0), KernelInput::Bound(PORTS)).is_err());
    assert_eq!(k.state(), KernelState::Bound);

    let (mut l, _) = bound_launcher(launcher_config(KEY));
    assert!(
        l.handle_input(at(1), LauncherInput::RegistrationBound { port: 1 })
            .is_err()
    );
    assert_eq!(l.state(), LauncherState::Bound);
}

// --------------------------------------------------------------------------------- launcher

fn request(key: &str, content: &[u8]) -> Vec<Vec<u8>> {
    message(key, "handshake_request", None, content, &[b"k", b""])
}

const GOOD: &[u8] =
    br#"{"control_port":40004,"shell_port":40001,"stdin_port":40003,"iopub_port":40002,"hb_port":40005}"#;

#[test]
fn launcher_binds_writes_the_file_and_arms_its_deadline() {
    let mut l = LauncherHandshake::new(launcher_config(KEY));
    assert!(matches!(
        drain_launcher(&mut l).actions[..],
        [LauncherAction::BindRegistration {
            transport: Transport::Tcp,
            ..
        }]
    ));
    l.handle_input(at(0), LauncherInput::RegistrationBound { port: REG_PORT })
        .unwrap();
    let d = drain_launcher(&mut l);
    let [LauncherAction::WriteRegistrationFile(file)] = &d.actions[..] else {
        panic!("{:?}", d.actions)
    };
    assert_eq!(file.registration_port, REG_PORT);
    let written: serde_json::Value = serde_json::from_slice(&file.to_json_pretty()).unwrap();
    assert_eq!(
        written,
        serde_json::json!({"transport": "tcp", "signature_scheme": "hmac-sha256",
            "ip": "127.0.0.1", "key": KEY, "registration_port": REG_PORT})
    );
    assert_eq!(d.timeout, Some(at(30_000)));
}

#[test]
fn launcher_replies_ok_through_the_envelope_and_connects() {
    let (mut l, _) = bound_launcher(launcher_config(KEY));
    let req = request(KEY, GOOD);
    l.receive(at(1), &req);
    assert_eq!(l.state(), LauncherState::Connected);
    let d = drain_launcher(&mut l);
    let reply = &d.transmits[0];
    assert_eq!(&reply[..2], &[b"k".to_vec(), vec![]]);
    let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new(KEY));
    let msg = wire::split(reply, &Limits::default())
        .unwrap()
        .verify(&signer)
        .unwrap();
    assert_eq!(msg.parts().parent_header, header_of(&req).as_slice());
    assert_eq!(
        HandshakeReply::from_json(msg.parts().content).unwrap(),
        HandshakeReply::OK
    );
    assert_eq!(l.connection().unwrap().ports, PORTS);
    assert_eq!(d.timeout, None);
}

#[test]
fn launcher_drops_forged_unsigned_and_garbage_without_replying() {
    let (mut l, _) = bound_launcher(launcher_config(KEY));
    let inputs = [
        request("wrong", GOOD),
        request("", GOOD),
        vec![b"k".to_vec(), b"".to_vec(), b"junk".to_vec()],
        message(KEY, "kernel_info_request", None, b"{}", &[b"k", b""]),
    ];
    for input in &inputs {
        l.receive(at(1), input);
    }
    let d = drain_launcher(&mut l);
    assert!(d.transmits.is_empty());
    assert_eq!(d.events.len(), 4);
    assert!(
        d.events
            .iter()
            .all(|e| matches!(e, LauncherEvent::Rejected(_)))
    );
    assert_eq!(l.state(), LauncherState::Bound);
    assert_eq!(d.timeout, Some(at(30_000)));
}

#[test]
fn a_well_signed_invalid_request_is_refused_and_the_launcher_keeps_waiting() {
    let (mut l, _) = bound_launcher(launcher_config(KEY));
    let zero = br#"{"control_port":0,"shell_port":1,"stdin_port":2,"iopub_port":3,"hb_port":4}"#;
    let strings =
        br#"{"control_port":"1","shell_port":1,"stdin_port":2,"iopub_port":3,"hb_port":4}"#;
    for bad in [&zero[..], &strings[..]] {
        l.receive(at(1), &request(KEY, bad));
        let d = drain_launcher(&mut l);
        assert!(matches!(d.events[..], [LauncherEvent::Refused(_)]));
        let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new(KEY));
        let msg = wire::split(&d.transmits[0], &Limits::default())
            .unwrap()
            .verify(&signer)
            .unwrap();
        let reply = HandshakeReply::from_json(msg.parts().content).unwrap();
        assert_eq!(reply.status, ReplyStatus::Error);
        assert!(reply.error.unwrap().contains("_port"));
    }
    assert_eq!(l.state(), LauncherState::Bound);
    l.receive(at(2), &request(KEY, GOOD));
    assert_eq!(l.state(), LauncherState::Connected);
}

#[test]
fn stock_ipykernel_registers_by_rewriting_the_file() {
    let (mut l, file) = bound_launcher(launcher_config(KEY));
    // Our own write, then a partial rewrite, then another key: all ignored.
    l.handle_input(at(1), LauncherInput::FileChanged(&file.to_json_pretty()))
        .unwrap();
    l.handle_input(at(2), LauncherInput::FileChanged(b"{\"shell_port\": 400"))
        .unwrap();
    let mut foreign = file.with_ports(PORTS);
    foreign.key = Key::new("not ours");
    l.handle_input(at(3), LauncherInput::FileChanged(&foreign.to_json_pretty()))
        .unwrap();
    let d = drain_launcher(&mut l);
    assert!(matches!(
        d.events[..],
        [
            LauncherEvent::Rejected(Rejection::FileNotReady(_)),
            LauncherEvent::Rejected(Rejection::FileNotReady(_)),
            LauncherEvent::Rejected(Rejection::FileKeyMismatch),
        ]
    ));
    assert_eq!(l.state(), LauncherState::Bound);
    // What ipykernel 7.4 writes: five ports, kernel_name, our key, registration_port kept.
    let rewritten = format!(
        r#"{{"shell_port": 40001, "iopub_port": 40002, "stdin_port": 40003, "control_port": 40004,
            "hb_port": 40005, "ip": "127.0.0.1", "key": "{KEY}", "transport": "tcp",
            "signature_scheme": "hmac-sha256", "kernel_name": "", "registration_port": 5555}}"#
    );
    l.handle_input(at(4), LauncherInput::FileChanged(rewritten.as_bytes()))
        .unwrap();
    assert_eq!(l.state(), LauncherState::Connected);
    assert!(drain_launcher(&mut l).events.iter().any(|e| matches!(
        e,
        LauncherEvent::Registered { evidence: Evidence::FileRewrite, connection } if connection.ports == PORTS
    )));
}

#[test]
fn launcher_fails_when_the_kernel_exits_or_at_its_deadline() {
    let (mut l, _) = bound_launcher(launcher_config(KEY));
    drain_launcher(&mut l);
    l.handle_input(at(5), LauncherInput::KernelExited(ExitStatus::Code(3)))
        .unwrap();
    // The exit takes effect once the other facts of its instant are in: the driver is asked
    // to wake up a microsecond later, not at the registration deadline.
    let d = drain_launcher(&mut l);
    let Some(Next::Deadline(deadline)) = d.next else {
        panic!("{:?}", d.next)
    };
    assert_eq!(deadline.at, at(5) + Duration::from_micros(1));
    assert_eq!(
        deadline.waiting_for,
        Waiting::ExitSettling(ExitStatus::Code(3))
    );
    l.handle_input(deadline.at, LauncherInput::Timeout).unwrap();
    assert_eq!(
        l.failure(),
        Some(&Failure::KernelExited(ExitStatus::Code(3)))
    );
    assert_eq!(drain_launcher(&mut l).next, Some(Next::Done));

    let (mut l, _) = bound_launcher(launcher_config(KEY));
    l.handle_input(at(29_999), LauncherInput::Timeout).unwrap();
    assert_eq!(l.state(), LauncherState::Bound);
    l.handle_input(at(30_000), LauncherInput::Timeout).unwrap();
    assert_eq!(
        l.failure(),
        Some(&Failure::Timeout {
            waiting_for: Waiting::Registration,
            waited: Duration::from_secs(30)
        })
    );
}

#[test]
fn after_connecting_the_launcher_ignores_duplicates() {
    let (mut l, _) = bound_launcher(launcher_config(KEY));
    let req = request(KEY, GOOD);
    l.receive(at(1), &req);
    drain_launcher(&mut l);
    l.receive(at(2), &req);
    let d = drain_launcher(&mut l);
    assert!(d.transmits.is_empty());
    assert!(matches!(
        d.events[..],
        [LauncherEvent::Rejected(Rejection::Finished)]
    ));
}

#[test]
fn events_and_errors_never_carry_the_key() {
    let (mut l, file) = bound_launcher(launcher_config(KEY));
    l.receive(at(1), &request("wrong", GOOD));
    l.receive(at(2), &request(KEY, GOOD));
    let d = drain_launcher(&mut l);
    let text = format!("{d:?} {l:?} {file:?}");
    assert!(!text.contains(KEY), "{text}");
}

/// One wake-up of the driver can bring several facts: the kernel rewrote its file *and* exited,
/// or its request arrived *and* it exited. Fed with the same `now`, in either order, they give
/// the same outcome: the registration counts (the exit is the supervisor's to see). An exit with
/// no evidence in its instant fails the launch with the exit status.
#[test]
fn facts_of_one_instant_give_one_outcome_in_either_order() {
    let exited = LauncherInput::KernelExited(ExitStatus::Code(1));
    let rewrite = |file: &RegistrationFile| file.with_ports(PORTS).to_json_pretty();

    let mut outcomes = Vec::new();
    for exit_first in [true, false] {
        // The file rewrite and the exit.
        let (mut l, file) = bound_launcher(launcher_config(KEY));
        let bytes = rewrite(&file);
        let facts = [exited, LauncherInput::FileChanged(&bytes)];
        let order: Vec<_> = if exit_first {
            facts.to_vec()
        } else {
            facts.iter().rev().copied().collect()
        };
        for fact in order {
            l.handle_input(at(7), fact).unwrap();
        }
        l.handle_input(at(8), LauncherInput::Timeout).unwrap();
        outcomes.push((
            l.state(),
            l.connection().map(|c| c.ports),
            l.failure().cloned(),
        ));

        // The request and the exit.
        let (mut l, _) = bound_launcher(launcher_config(KEY));
        let req = request(KEY, GOOD);
        if exit_first {
            l.handle_input(at(7), exited).unwrap();
            l.receive(at(7), &req);
        } else {
            l.receive(at(7), &req);
            l.handle_input(at(7), exited).unwrap();
        }
        l.handle_input(at(8), LauncherInput::Timeout).unwrap();
        outcomes.push((
            l.state(),
            l.connection().map(|c| c.ports),
            l.failure().cloned(),
        ));
    }
    for outcome in &outcomes {
        assert_eq!(outcome, &(LauncherState::Connected, Some(PORTS), None));
    }

    // Evidence after the exit's instant is too late.
    let (mut l, file) = bound_launcher(launcher_config(KEY));
    l.handle_input(at(7), exited).unwrap();
    let bytes = rewrite(&file);
    l.handle_input(at(8), LauncherInput::FileChanged(&bytes))
        .unwrap();
    assert_eq!(
        l.failure(),
        Some(&Failure::KernelExited(ExitStatus::Code(1)))
    );
}
