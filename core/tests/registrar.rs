//! The Registrar: many launches on one registration socket, attribution by key, isolation,
//! restarts and replays. Kernels are real kernel machines; the "socket" is a ROUTER simulated in
//! memory (it prepends the peer's identity, and routes a reply by its first frame).

mod common;

use std::time::Duration;

use common::*;
use jupyter_handshake::*;
use proptest::prelude::*;

type Drained = common::Drained<RegistrarAction, RegistrarEvent>;

fn drain_registrar(r: &mut Registrar) -> Drained {
    drain(|| r.poll_output())
}

fn key(i: usize) -> Key {
    Key::new(format!("key-{i:04}-0123456789abcdef"))
}

fn ports(i: usize) -> KernelPorts {
    let base = 20_000 + 5 * u16::try_from(i).unwrap();
    KernelPorts {
        shell: base,
        iopub: base + 1,
        stdin: base + 2,
        control: base + 3,
        hb: base + 4,
    }
}

/// A bound registrar.
fn registrar() -> Registrar {
    let mut r = Registrar::new(RegistrarConfig::default());
    let d = drain_registrar(&mut r);
    assert!(matches!(
        d.actions[..],
        [RegistrarAction::BindRegistration { .. }]
    ));
    assert_eq!(d.timeout, None);
    r.handle_input(at(0), RegistrarInput::RegistrationBound { port: REG_PORT })
        .unwrap();
    assert_eq!(r.state(), RegistrarState::Bound);
    r
}

/// Adds a launch and returns its id and the registration file it asked to write.
fn launch(r: &mut Registrar, now: Instant, i: usize) -> (LaunchId, RegistrationFile) {
    launch_in(r, now, i, Dialect::Posit)
}

/// [`launch`] in `dialect`.
fn launch_in(
    r: &mut Registrar,
    now: Instant,
    i: usize,
    dialect: Dialect,
) -> (LaunchId, RegistrationFile) {
    let config = match dialect {
        Dialect::Posit => LaunchConfig::new(key(i)),
        Dialect::Upstream => LaunchConfig::upstream(key(i), format!("kernel-{i}")),
    };
    let id = r.launch(now, config).unwrap();
    let d = drain_registrar(r);
    let [RegistrarAction::WriteRegistrationFile { launch, file }] = &d.actions[..] else {
        panic!("expected one file, got {:?}", d.actions);
    };
    assert_eq!(*launch, id);
    assert_eq!(file.registration_port, REG_PORT);
    (id, file.clone())
}

/// A kernel machine that has read `file`, bound `ports` and sent its request; the request's
/// frames as the ROUTER delivers them (identity first).
fn kernel(
    file: &RegistrationFile,
    ports: KernelPorts,
    identity: &[u8],
) -> (KernelHandshake, Vec<Vec<u8>>) {
    let mut k = KernelHandshake::new(
        KernelFile::Registration(file.clone()),
        KernelConfig {
            session_id: Some(format!("kernel-{}", String::from_utf8_lossy(identity))),
            ..KernelConfig::default()
        },
    );
    drain_kernel(&mut k);
    k.handle_input(at(1), KernelInput::Bound(ports)).unwrap();
    drain_kernel(&mut k);
    k.handle_input(at(1), KernelInput::RegistrationConnected)
        .unwrap();
    let d = drain_kernel(&mut k);
    let [request] = &d.transmits[..] else {
        panic!("expected one request");
    };
    let mut frames = vec![identity.to_vec()];
    frames.extend(request.iter().cloned());
    (k, frames)
}

/// The launches an event stream speaks of, in order, with their events.
fn launch_events(d: &Drained) -> Vec<(LaunchId, LauncherEvent)> {
    d.events
        .iter()
        .filter_map(|e| match e {
            RegistrarEvent::Launch { launch, event } => Some((*launch, event.clone())),
            _ => None,
        })
        .collect()
}

fn rejected(d: &Drained) -> usize {
    d.events
        .iter()
        .filter(|e| matches!(e, RegistrarEvent::Rejected(_)))
        .count()
}

/// Delivers a reply to the kernel whose identity is its first frame.
fn deliver_reply(kernels: &mut [(Vec<u8>, KernelHandshake)], reply: &[Vec<u8>], now: Instant) {
    let (identity, rest) = reply.split_first().unwrap();
    let (_, k) = kernels
        .iter_mut()
        .find(|(id, _)| id == identity)
        .expect("a reply routed to a known identity");
    k.receive(now, rest);
    drain_kernel(k);
}

#[test]
fn requests_are_attributed_by_key_and_replies_routed_by_identity() {
    let mut r = registrar();
    let (a, file_a) = launch(&mut r, at(0), 0);
    let (b, file_b) = launch(&mut r, at(0), 1);
    assert_ne!(a, b);
    assert_eq!(r.pending(), 2);
    let (ka, req_a) = kernel(&file_a, ports(0), b"peer-a");
    let (kb, req_b) = kernel(&file_b, ports(1), b"peer-b");
    let mut kernels = vec![(b"peer-a".to_vec(), ka), (b"peer-b".to_vec(), kb)];

    // b's request first: only b is affected.
    r.receive(at(2), &req_b);
    let d = drain_registrar(&mut r);
    assert_eq!(d.transmits.len(), 1);
    assert_eq!(d.transmits[0][0], b"peer-b");
    assert!(launch_events(&d).iter().all(|(id, _)| *id == b));
    assert!(launch_events(&d).iter().any(|(_, e)| matches!(
        e,
        LauncherEvent::Registered {
            evidence: Evidence::Request,
            ..
        }
    )));
    assert_eq!(r.launch_state(b), Some(LauncherState::Connected));
    assert_eq!(r.launch_state(a), Some(LauncherState::Bound));
    deliver_reply(&mut kernels, &d.transmits[0], at(2));

    r.receive(at(3), &req_a);
    let d = drain_registrar(&mut r);
    assert_eq!(d.transmits[0][0], b"peer-a");
    deliver_reply(&mut kernels, &d.transmits[0], at(3));

    assert_eq!(r.connection(a).unwrap().ports, ports(0));
    assert_eq!(r.connection(b).unwrap().ports, ports(1));
    assert!(r.connection(a).unwrap().key.ct_eq(&key(0)));
    for (_, k) in &kernels {
        assert_eq!(k.state(), KernelState::Connected);
    }
    assert_eq!(r.pending(), 0);
    assert_eq!(d.timeout, None, "nothing left to wait for");
}

#[test]
fn garbage_forgeries_and_strangers_reach_no_launch() {
    let mut r = registrar();
    let (a, file_a) = launch(&mut r, at(0), 0);
    let (_b, _file_b) = launch(&mut r, at(0), 1);
    // Garbage, and a request signed with a key no launch has.
    let stranger = RegistrationFile::new(
        Transport::Tcp,
        "127.0.0.1",
        SignatureScheme::HmacSha256,
        Key::new("nobody's key"),
        REG_PORT,
    );
    let (_, forged) = kernel(&stranger, ports(7), b"forger");
    for frames in [
        vec![b"x".to_vec(), b"garbage".to_vec()],
        vec![b"x".to_vec(), b"<IDS|MSG>".to_vec(), b"not-hex".to_vec()],
        forged,
    ] {
        r.receive(at(1), &frames);
        let d = drain_registrar(&mut r);
        assert_eq!(rejected(&d), 1, "one registrar-level rejection");
        assert!(launch_events(&d).is_empty(), "no launch heard of it");
        assert!(d.transmits.is_empty(), "no reply to a stranger");
    }
    assert_eq!(r.pending(), 2);
    // The real kernel still gets through.
    let (_, req_a) = kernel(&file_a, ports(0), b"peer-a");
    r.receive(at(2), &req_a);
    drain_registrar(&mut r);
    assert_eq!(r.launch_state(a), Some(LauncherState::Connected));
}

#[test]
fn one_launch_timing_out_or_dying_leaves_the_others_waiting() {
    let mut r = registrar();
    let (a, _) = launch(&mut r, at(0), 0);
    let (b, file_b) = launch(&mut r, at(10_000), 1);
    let (c, _) = launch(&mut r, at(10_000), 2);
    r.handle_input(
        at(10_001),
        RegistrarInput::KernelExited {
            launch: c,
            status: ExitStatus::Code(1),
        },
    )
    .unwrap();
    // The exit takes effect at the end of its instant, a microsecond later.
    let settled = drain_registrar(&mut r).timeout.unwrap();
    assert_eq!(settled, at(10_001) + Duration::from_micros(1));
    r.handle_input(settled, RegistrarInput::Timeout).unwrap();
    let d = drain_registrar(&mut r);
    assert!(launch_events(&d).iter().all(|(id, _)| *id == c));
    assert_eq!(
        r.launch_state(c),
        Some(LauncherState::Failed),
        "c failed at once"
    );
    // a's deadline (30 s) passes; b's (40 s) has not.
    assert_eq!(d.timeout, Some(at(30_000)));
    r.handle_input(at(30_000), RegistrarInput::Timeout).unwrap();
    let d = drain_registrar(&mut r);
    assert!(launch_events(&d).iter().all(|(id, _)| *id == a));
    assert_eq!(r.launch_state(a), Some(LauncherState::Failed));
    assert_eq!(r.launch_state(b), Some(LauncherState::Bound));
    assert_eq!(d.timeout, Some(at(40_000)));
    let (_, req_b) = kernel(&file_b, ports(1), b"peer-b");
    r.receive(at(39_999), &req_b);
    drain_registrar(&mut r);
    assert_eq!(r.launch_state(b), Some(LauncherState::Connected));
}

#[test]
fn a_passed_deadline_is_acted_on_before_the_input_that_arrives_with_it() {
    let mut r = registrar();
    let (a, file_a) = launch(&mut r, at(0), 0);
    let (_, req_a) = kernel(&file_a, ports(0), b"peer-a");
    drain_registrar(&mut r);
    r.receive(at(30_000), &req_a);
    let d = drain_registrar(&mut r);
    assert_eq!(r.launch_state(a), Some(LauncherState::Failed));
    assert!(d.transmits.is_empty());
    assert!(launch_events(&d).iter().any(|(_, e)| matches!(
        e,
        LauncherEvent::Failed(Failure::Timeout {
            waiting_for: Waiting::Registration,
            ..
        })
    )));
}

#[test]
fn a_restart_supersedes_the_connection_only_when_the_new_kernel_registers_and_replays_are_dropped()
{
    let mut r = registrar();
    let (a, file) = launch(&mut r, at(0), 0);
    let (_, first) = kernel(&file, ports(0), b"run-1");
    r.receive(at(1), &first);
    drain_registrar(&mut r);
    assert_eq!(r.connection(a).unwrap().ports, ports(0));
    assert_eq!(
        r.rearm(at(2), a),
        Ok(()),
        "a connected launch can be re-armed"
    );
    let d = drain_registrar(&mut r);
    let [
        RegistrarAction::WriteRegistrationFile {
            launch,
            file: again,
        },
    ] = &d.actions[..]
    else {
        panic!("the file is asked for again");
    };
    assert_eq!(*launch, a);
    assert!(again.key.ct_eq(&file.key), "same key");
    assert_eq!(d.timeout, Some(at(2) + Duration::from_secs(30)));
    assert_eq!(r.launch_state(a), Some(LauncherState::Bound));
    assert_eq!(
        r.connection(a).unwrap().ports,
        ports(0),
        "the old information stands until the new registration"
    );
    assert_eq!(r.rearm(at(3), a), Err(RegistrarError::StillPending(a)));

    // A recording of the first run's request verifies, but is a replay.
    r.receive(at(4), &first);
    let d = drain_registrar(&mut r);
    assert_eq!(
        launch_events(&d),
        [(a, LauncherEvent::Rejected(Rejection::Replayed))]
    );
    assert!(d.transmits.is_empty());
    assert_eq!(r.launch_state(a), Some(LauncherState::Bound));

    let (_, second) = kernel(again, ports(3), b"run-2");
    r.receive(at(5), &second);
    drain_registrar(&mut r);
    assert_eq!(r.launch_state(a), Some(LauncherState::Connected));
    assert_eq!(r.connection(a).unwrap().ports, ports(3));
}

#[test]
fn a_failed_launch_can_be_rearmed_and_removed() {
    let mut r = registrar();
    let (a, _) = launch(&mut r, at(0), 0);
    r.handle_input(at(1), RegistrarInput::Abort { launch: a })
        .unwrap();
    drain_registrar(&mut r);
    assert_eq!(r.launch_state(a), Some(LauncherState::Failed));
    assert_eq!(r.connection(a), None);
    r.rearm(at(2), a).unwrap();
    drain_registrar(&mut r);
    assert_eq!(r.launch_state(a), Some(LauncherState::Bound));
    assert_eq!(r.remove(a), Ok(None));
    assert_eq!(r.launch_state(a), None);
    assert_eq!(r.remove(a), Err(RegistrarError::UnknownLaunch(a)));
    // Its key is free again, and ids are not reused.
    let (b, _) = launch(&mut r, at(3), 0);
    assert_ne!(a, b);
}

#[test]
fn launches_that_could_not_be_attributed_are_refused() {
    let mut r = Registrar::new(RegistrarConfig::default());
    assert_eq!(
        r.launch(at(0), LaunchConfig::new(key(0))),
        Err(RegistrarError::NotBound)
    );
    r.handle_input(at(0), RegistrarInput::RegistrationBound { port: REG_PORT })
        .unwrap();
    assert!(matches!(
        r.handle_input(at(0), RegistrarInput::RegistrationBound { port: REG_PORT }),
        Err(RegistrarError::Usage(_))
    ));
    assert_eq!(
        r.launch(at(0), LaunchConfig::new(Key::new(""))),
        Err(RegistrarError::EmptyKey)
    );
    let a = r.launch(at(0), LaunchConfig::new(key(0))).unwrap();
    assert_eq!(
        r.launch(at(0), LaunchConfig::new(key(0))),
        Err(RegistrarError::KeyInUse(a))
    );
    let ghost = {
        let mut other = registrar();
        let mut id = other.launch(at(0), LaunchConfig::new(key(0))).unwrap();
        for i in 1..5 {
            id = other.launch(at(0), LaunchConfig::new(key(i))).unwrap();
        }
        id
    };
    assert_eq!(
        r.handle_input(at(1), RegistrarInput::Abort { launch: ghost }),
        Err(RegistrarError::UnknownLaunch(ghost))
    );
    // Errors name no key.
    let text = RegistrarError::KeyInUse(a).to_string();
    assert!(!text.contains("key-0000"), "{text}");
}

#[test]
fn a_rewritten_file_registers_its_own_launch() {
    let mut r = registrar();
    let (a, file_a) = launch(&mut r, at(0), 0);
    let (b, _) = launch(&mut r, at(0), 1);
    let rewritten = file_a.with_ports(ports(0)).to_json_pretty();
    r.handle_input(
        at(1),
        RegistrarInput::FileChanged {
            launch: a,
            bytes: &rewritten,
        },
    )
    .unwrap();
    let d = drain_registrar(&mut r);
    assert!(launch_events(&d).iter().any(|(id, e)| *id == a
        && matches!(
            e,
            LauncherEvent::Registered {
                evidence: Evidence::FileRewrite,
                ..
            }
        )));
    // The same bytes reported for b: another key, refused, b still waits.
    r.handle_input(
        at(2),
        RegistrarInput::FileChanged {
            launch: b,
            bytes: &rewritten,
        },
    )
    .unwrap();
    let d = drain_registrar(&mut r);
    assert_eq!(
        launch_events(&d),
        [(b, LauncherEvent::Rejected(Rejection::FileKeyMismatch))]
    );
    assert_eq!(r.launch_state(b), Some(LauncherState::Bound));
}

/// What one kernel of the property test does.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Registers.
    Healthy,
    /// Sends a request signed with another key first, then registers.
    ForgesFirst,
    /// Sends garbage, then dies.
    Dies,
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        17 => Just(Behaviour::Healthy),
        2 => Just(Behaviour::ForgesFirst),
        1 => Just(Behaviour::Dies),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any mix of healthy, forging and dying kernels of both dialects, their messages
    /// interleaved in any order: every healthy or forging kernel registers with its own ports
    /// and its reply reaches it alone; every dying one is reported as exited; nothing else
    /// happens.
    #[test]
    fn many_kernels_in_any_order(
        behaviours in prop::collection::vec((behaviour(), prop_oneof![Just(Dialect::Posit), Just(Dialect::Upstream)]), 1..24),
        order in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let mut r = registrar();
        let mut ids = Vec::new();
        let mut kernels = Vec::new();
        // Every kernel's messages, as (kernel index, frames or None for "it exits").
        let mut queues: Vec<std::collections::VecDeque<Option<Vec<Vec<u8>>>>> = Vec::new();
        for (i, (b, dialect)) in behaviours.iter().enumerate() {
            let (id, file) = launch_in(&mut r, at(0), i, *dialect);
            ids.push(id);
            let identity = format!("peer-{i}").into_bytes();
            let (k, request) = kernel(&file, ports(i), &identity);
            kernels.push((identity.clone(), k));
            let mut q = std::collections::VecDeque::new();
            match b {
                Behaviour::Healthy => q.push_back(Some(request)),
                Behaviour::ForgesFirst => {
                    let mut forged_file = file.clone();
                    forged_file.key = Key::new(format!("forged-{i}"));
                    let (_, forged) = kernel(&forged_file, ports(i), &identity);
                    q.push_back(Some(forged));
                    q.push_back(Some(request));
                }
                Behaviour::Dies => {
                    q.push_back(Some(vec![identity.clone(), b"garbage".to_vec()]));
                    q.push_back(None);
                }
            }
            queues.push(q);
        }
        // Interleave: pick a kernel with messages left, pseudo-randomly, until all are sent.
        let mut state = seed ^ (order.index(usize::MAX) as u64);
        let mut now_ms = 1;
        while queues.iter().any(|q| !q.is_empty()) {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
            let i = live[(state >> 33) as usize % live.len()];
            let now = at(now_ms);
            now_ms += 1;
            match queues[i].pop_front().unwrap() {
                Some(frames) => {
                    r.receive(now, &frames);
                }
                None => {
                    r.handle_input(now, RegistrarInput::KernelExited { launch: ids[i], status: ExitStatus::Code(9) }).unwrap();
                    // The driver wakes at the deadline it is given: the end of the exit's instant.
                    let settled = r.deadline().unwrap();
                    prop_assert_eq!(settled.at, now + Duration::from_micros(1));
                    r.handle_input(settled.at, RegistrarInput::Timeout).unwrap();
                }
            }
            let d = drain_registrar(&mut r);
            // A reply goes only to the kernel whose message it answers.
            for reply in &d.transmits {
                prop_assert_eq!(&reply[0], &kernels[i].0);
                deliver_reply(&mut kernels, reply, now);
            }
            for (id, _) in launch_events(&d) {
                prop_assert_eq!(id, ids[i], "only the sender's launch hears of it");
            }
        }
        for (i, (b, _)) in behaviours.iter().enumerate() {
            match b {
                Behaviour::Healthy | Behaviour::ForgesFirst => {
                    prop_assert_eq!(r.launch_state(ids[i]), Some(LauncherState::Connected));
                    prop_assert_eq!(r.connection(ids[i]).unwrap().ports, ports(i));
                    prop_assert_eq!(kernels[i].1.state(), KernelState::Connected);
                }
                Behaviour::Dies => {
                    prop_assert_eq!(r.launch_state(ids[i]), Some(LauncherState::Failed));
                    prop_assert_eq!(r.connection(ids[i]), None);
                }
            }
        }
        prop_assert_eq!(r.pending(), 0);
    }
}
