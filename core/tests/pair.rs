//! Both machines against each other over a simulated network with a virtual clock, in the
//! manner of quinn-proto's test pair: random latency, loss, duplication, forged and garbage
//! input, and the properties users rely on.

mod common;

use std::time::Duration;

use common::*;
use jupyter_handshake::*;
use jupyter_handshake::{message, wire};
use proptest::prelude::*;

fn assert_terminal_and_consistent(pair: &Pair) {
    let kernel = pair.kernel.as_ref().expect("the kernel was started");
    // Never Connected with ports other than the kernel's.
    if pair.launcher.state() == LauncherState::Connected {
        assert_eq!(pair.launcher.connection().unwrap().ports, PORTS);
    }
    if kernel.state() == KernelState::Connected {
        assert_eq!(kernel.connection().unwrap().ports, PORTS);
    }
    // The launcher is never Failed because of anything it received: only by its deadline.
    if let Some(f) = pair.launcher.failure() {
        assert!(
            matches!(
                f,
                Failure::Timeout {
                    waiting_for: Waiting::Registration,
                    ..
                }
            ),
            "{f:?}"
        );
    }
    assert!(kernel.state().is_terminal(), "{:?}", kernel.state());
    assert!(pair.launcher.state().is_terminal());
}

#[test]
fn reliable_delivery_connects_both_sides() {
    let mut pair = Pair::new(
        launcher_config(KEY),
        KernelConfig::default(),
        vec![Fate::RELIABLE; 4],
    );
    pair.run(vec![]);
    assert_terminal_and_consistent(&pair);
    assert_eq!(pair.launcher.state(), LauncherState::Connected);
    assert_eq!(
        pair.kernel.as_ref().unwrap().state(),
        KernelState::Connected
    );
    assert!(pair.launcher_events.iter().any(|e| matches!(
        e,
        LauncherEvent::Registered {
            evidence: Evidence::Request,
            ..
        }
    )));
}

#[test]
fn a_lost_request_times_out_on_both_sides() {
    let lost = Fate {
        lost: true,
        ..Fate::RELIABLE
    };
    let mut pair = Pair::new(launcher_config(KEY), KernelConfig::default(), vec![lost]);
    pair.run(vec![]);
    assert_terminal_and_consistent(&pair);
    let kernel = pair.kernel.as_ref().unwrap();
    assert_eq!(
        kernel.failure(),
        Some(&Failure::Timeout {
            waiting_for: Waiting::Reply,
            waited: Duration::from_secs(10)
        })
    );
    assert_eq!(pair.launcher.state(), LauncherState::Failed);
}

#[test]
fn forged_and_garbage_messages_first_do_not_derail_the_launch() {
    let forged = message(
        "wrong-key",
        "handshake_request",
        None,
        br#"{"control_port":1,"shell_port":2,"stdin_port":3,"iopub_port":4,"hb_port":5}"#,
        &[b"attacker", b""],
    );
    let unsigned = message(
        "",
        "handshake_request",
        None,
        br#"{"control_port":1,"shell_port":2,"stdin_port":3,"iopub_port":4,"hb_port":5}"#,
        &[b"attacker", b""],
    );
    let garbage = vec![b"attacker".to_vec(), b"\xff\x00garbage".to_vec()];
    let injections = vec![
        Injection {
            at: Duration::ZERO,
            to_launcher: true,
            frames: forged,
        },
        Injection {
            at: Duration::ZERO,
            to_launcher: true,
            frames: unsigned,
        },
        Injection {
            at: Duration::ZERO,
            to_launcher: true,
            frames: garbage,
        },
    ];
    let slow = Fate {
        latency: Duration::from_millis(50),
        ..Fate::RELIABLE
    };
    let mut pair = Pair::new(launcher_config(KEY), KernelConfig::default(), vec![slow]);
    pair.run(injections);
    assert_terminal_and_consistent(&pair);
    assert_eq!(pair.launcher.state(), LauncherState::Connected);
    let rejected = pair
        .launcher_events
        .iter()
        .filter(|e| matches!(e, LauncherEvent::Rejected(_)))
        .count();
    assert_eq!(rejected, 3);
    assert!(pair.checks >= 3);
}

#[test]
fn upstream_reliable_delivery_connects_both_sides_through_a_dealer() {
    let mut pair = Pair::new(
        config(Dialect::Upstream),
        KernelConfig::default(),
        vec![Fate::RELIABLE; 4],
    );
    pair.run(vec![]);
    assert_terminal_and_consistent(&pair);
    assert_eq!(pair.socket, Some(RegistrationSocket::Dealer));
    assert_eq!(pair.launcher.state(), LauncherState::Connected);
    assert_eq!(
        pair.kernel.as_ref().unwrap().state(),
        KernelState::Connected
    );
}

#[test]
fn upstream_a_lost_request_or_a_lost_ack_times_out() {
    for lost_at in 0..2 {
        let mut fates = vec![Fate::RELIABLE; 2];
        fates[lost_at].lost = true;
        let mut pair = Pair::new(config(Dialect::Upstream), KernelConfig::default(), fates);
        pair.run(vec![]);
        assert_terminal_and_consistent(&pair);
        let kernel = pair.kernel.as_ref().unwrap();
        assert_eq!(
            kernel.failure(),
            Some(&Failure::Timeout {
                waiting_for: Waiting::Reply,
                waited: Duration::from_secs(10)
            })
        );
        // A lost request leaves the launcher waiting; a lost ACK does not (it has the ports).
        let expected = [LauncherState::Failed, LauncherState::Connected][lost_at];
        assert_eq!(pair.launcher.state(), expected);
    }
}

#[test]
fn upstream_forgeries_first_do_not_derail_either_side() {
    let injections = vec![
        // To the launcher: a request signed with another key, an unsigned one, garbage.
        Injection {
            at: Duration::ZERO,
            to_launcher: true,
            frames: [
                vec![b"attacker".to_vec()],
                upstream_frames("wrong-key", &upstream_ports_content()),
            ]
            .concat(),
        },
        Injection {
            at: Duration::ZERO,
            to_launcher: true,
            frames: [
                vec![b"attacker".to_vec()],
                upstream_frames("", &upstream_ports_content()),
            ]
            .concat(),
        },
        Injection {
            at: Duration::ZERO,
            to_launcher: true,
            frames: vec![b"attacker".to_vec(), b"\xff\x00garbage".to_vec()],
        },
        // To the kernel's DEALER, before the real ACK: a forged ACK and a forged refusal.
        Injection {
            at: Duration::from_millis(10),
            to_launcher: false,
            frames: upstream_frames("wrong-key", b"ACK"),
        },
        Injection {
            at: Duration::from_millis(10),
            to_launcher: false,
            frames: upstream_frames("wrong-key", br#"{"status":"error","error":"no"}"#),
        },
    ];
    let slow = Fate {
        latency: Duration::from_millis(50),
        ..Fate::RELIABLE
    };
    let mut pair = Pair::new(
        config(Dialect::Upstream),
        KernelConfig::default(),
        vec![slow; 2],
    );
    pair.run(injections);
    assert_terminal_and_consistent(&pair);
    assert_eq!(pair.launcher.state(), LauncherState::Connected);
    assert_eq!(
        pair.kernel.as_ref().unwrap().state(),
        KernelState::Connected
    );
    let rejected = |events: &[KernelEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, KernelEvent::Rejected(_)))
            .count()
    };
    assert_eq!(rejected(&pair.kernel_events), 2);
    let launcher_rejected = pair
        .launcher_events
        .iter()
        .filter(|e| matches!(e, LauncherEvent::Rejected(_)))
        .count();
    assert_eq!(launcher_rejected, 3);
    assert!(pair.checks >= 5);
}

/// A stray message for the network model.
fn stray() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let ports = br#"{"control_port":1,"shell_port":2,"stdin_port":3,"iopub_port":4,"hb_port":5}"#;
    prop_oneof![
        // Random frames.
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
        // A well-formed request signed with another key.
        "[a-z]{1,12}".prop_map(move |k| message(
            &format!("x{k}"),
            "handshake_request",
            None,
            ports,
            &[]
        )),
        // A well-formed reply signed with another key.
        "[a-z]{1,12}".prop_map(|k| message(
            &format!("x{k}"),
            "handshake_reply",
            None,
            br#"{"status":"ok"}"#,
            &[]
        )),
        // Unsigned request.
        Just(message("", "handshake_request", None, ports, &[])),
        // A delimiter and too few frames.
        Just(vec![b"<IDS|MSG>".to_vec(), b"".to_vec(), b"{}".to_vec()]),
        // Upstream framing: a request signed with another key, an unsigned one, an ACK signed
        // with another key.
        "[a-z]{1,12}".prop_map(|k| upstream_frames(&format!("x{k}"), &upstream_ports_content())),
        Just(upstream_frames("", &upstream_ports_content())),
        "[a-z]{1,12}".prop_map(|k| upstream_frames(&format!("x{k}"), b"ACK")),
    ]
}

/// An upstream request content naming our test kernel, with ports 1..5.
fn upstream_ports_content() -> Vec<u8> {
    message::upstream_request_content(
        "kernel",
        &KernelPorts {
            shell: 2,
            iopub: 4,
            stdin: 3,
            control: 1,
            hb: 5,
        },
    )
}

/// `[<IDS|MSG>, HMAC(content), content]` with `key`.
fn upstream_frames(key: &str, content: &[u8]) -> Vec<Vec<u8>> {
    let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new(key));
    let no_identities: [&[u8]; 0] = [];
    wire::join_content_only(&no_identities, &signer, content)
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![Just(Dialect::Posit), Just(Dialect::Upstream)]
}

fn config(dialect: Dialect) -> LauncherConfig {
    match dialect {
        Dialect::Posit => launcher_config(KEY),
        Dialect::Upstream => upstream_config(KEY, "kernel"),
    }
}

fn fate() -> impl Strategy<Value = Fate> {
    (
        0u64..3000,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(ms, lost, duplicated)| Fate {
            latency: Duration::from_millis(ms),
            lost,
            duplicated,
        })
}

fn injection() -> impl Strategy<Value = Injection> {
    (0u64..40_000, any::<bool>(), stray()).prop_map(|(ms, to_launcher, mut frames)| {
        if to_launcher {
            let mut wrapped = vec![b"attacker".to_vec(), Vec::new()];
            wrapped.append(&mut frames);
            frames = wrapped;
        }
        Injection {
            at: Duration::from_millis(ms),
            to_launcher,
            frames,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Under any delays, loss, duplication and stray input: no panic, never Connected with
    /// other ports, the launcher never fails on input, both sides end terminal.
    #[test]
    fn any_network_any_noise(
        fates in prop::collection::vec(fate(), 0..6),
        injections in prop::collection::vec(injection(), 0..12),
        wait_for_iopub in prop::bool::ANY,
        dialect in dialect(),
    ) {
        let kernel = KernelConfig {
            wait_for_iopub: wait_for_iopub.then_some(Duration::from_secs(1)),
            ..KernelConfig::default()
        };
        let mut pair = Pair::new(config(dialect), kernel, fates);
        pair.run(injections);
        assert_terminal_and_consistent(&pair);
        let k = pair.kernel.as_ref().unwrap();
        if let Some(Failure::Timeout { waiting_for: Waiting::IopubSubscription, .. }) = k.failure() {
            // Nobody subscribes in this model: the kernel gave up on IOPub after its reply came.
            prop_assert!(wait_for_iopub);
            prop_assert_eq!(pair.launcher.state(), LauncherState::Connected);
        }
    }

    /// With reliable delivery within the deadlines, both sides always connect, whatever
    /// stray input arrives.
    #[test]
    fn reliable_delivery_always_connects(
        latency_ms in 0u64..4000,
        injections in prop::collection::vec(injection(), 0..12),
        dialect in dialect(),
    ) {
        let fate = Fate { latency: Duration::from_millis(latency_ms), ..Fate::RELIABLE };
        let mut pair = Pair::new(config(dialect), KernelConfig::default(), vec![fate; 4]);
        pair.run(injections);
        assert_terminal_and_consistent(&pair);
        prop_assert_eq!(pair.launcher.state(), LauncherState::Connected);
        prop_assert_eq!(pair.kernel.as_ref().unwrap().state(), KernelState::Connected);
    }

    /// Terminal states stay terminal, whatever is fed afterwards.
    #[test]
    fn terminal_states_are_terminal(
        lose in any::<bool>(),
        later in prop::collection::vec(stray(), 1..6),
        dialect in dialect(),
    ) {
        let fate = Fate { lost: lose, ..Fate::RELIABLE };
        let mut pair = Pair::new(config(dialect), KernelConfig::default(), vec![fate]);
        pair.run(vec![]);
        let k = pair.kernel.as_mut().unwrap();
        let (ks, ls) = (k.state(), pair.launcher.state());
        prop_assert!(ks.is_terminal() && ls.is_terminal());
        let now = pair.now + Duration::from_secs(100);
        for frames in &later {
            let frames = refs(frames);
            k.receive(now, &frames);
            k.handle_input(now, KernelInput::Timeout).unwrap();
            k.handle_input(now, KernelInput::Abort).unwrap();
            pair.launcher.receive(now, &frames);
            pair.launcher.handle_input(now, LauncherInput::KernelExited(ExitStatus::Signal(9))).unwrap();
            pair.launcher.handle_input(now, LauncherInput::Abort).unwrap();
        }
        prop_assert_eq!(k.state(), ks);
        prop_assert_eq!(pair.launcher.state(), ls);
        prop_assert_eq!(k.deadline().map(|d| d.at), None);
        prop_assert!(drain_launcher(&mut pair.launcher).transmits.is_empty());
    }
}
