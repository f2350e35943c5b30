//! The race the handshake exists to remove: many launches at once, and a port thief.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{
    Finished, PORT_NAMES, TempDir, classic_launch, contains_ignore_case, launch_command,
    our_kernel_argv, ports_of, run, successful_launch,
};
use serde_json::Value;

/// The two tests of this file run one at a time: 32 kernels binding 160 ports next to the
/// thief test's classic control would be a port race of the tests' own making.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How many launches run at once in the concurrency test.
const CONCURRENT: usize = 32;

/// Runs `launch --json [extra] -- argv` `n` times at once, all in the runtime dir `runtime`.
fn launch_many(n: usize, runtime: &Path, extra: &[&str], argv: &[String]) -> Vec<Finished> {
    let handles: Vec<JoinHandle<Finished>> = (0..n)
        .map(|_| {
            let command = launch_command(runtime, extra, argv);
            std::thread::spawn(move || run(command))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("a launch thread panicked"))
        .collect()
}

/// 32 launches of our kernel at once through the handshake, sharing one runtime dir: every one
/// registers and answers `kernel_info`, each kernel on five distinct ports it bound itself on
/// port 0 (nobody picked a port for anybody).
///
/// Ports are not compared across kernels: each launch shuts its kernel down once checked, and
/// the OS may hand a port a finished kernel released to a kernel that starts later (seen on the
/// tokio build, whose kernels come and go at other times). Two live kernels cannot share one:
/// each reports the ports it holds bound.
#[test]
fn thirty_two_simultaneous_handshake_launches_all_succeed() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = TempDir::new("many");
    let results = launch_many(CONCURRENT, runtime.path(), &[], &our_kernel_argv());
    for out in &results {
        let report = successful_launch(out, "handshake");
        assert_eq!(report["kernel_info"]["implementation"], "jupyter-handshake");
        let ports: HashSet<u16> = ports_of(&report["connection"]).into_iter().collect();
        assert_eq!(ports.len(), 5, "five distinct ports\n{}", out.describe());
    }
}

/// What the thief saw in one file, and what it managed to take.
#[derive(Debug)]
struct Sighting {
    file: String,
    /// Whether the file named kernel ports (a classic connection file).
    classic: bool,
    /// Ports the thief bound (and holds until it stops).
    stolen: Vec<u16>,
    /// Ports it could not bind: someone holds them already.
    refused: Vec<u16>,
}

/// A thread that watches a runtime dir and, for each new `kernel-*.json`, at once binds every
/// port the file names (the five kernel ports of a classic file, the registration port of a
/// registration file) on 127.0.0.1, and holds what it got until it is stopped.
struct Thief {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Sighting>>,
}

impl Thief {
    fn watch(dir: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            let mut sightings = Vec::new();
            let mut held = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    // Launchers write `kernel-<session>.json` atomically (a hidden temporary
                    // file, then a rename), so a visible name is a complete file.
                    if !name.starts_with("kernel-") || !name.ends_with(".json") {
                        continue;
                    }
                    if seen.contains(&name) {
                        continue;
                    }
                    let Ok(text) = std::fs::read_to_string(entry.path()) else {
                        continue;
                    };
                    let Ok(info) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    seen.insert(name.clone());
                    let mut sighting = Sighting {
                        file: name,
                        classic: PORT_NAMES.iter().all(|p| info.get(*p).is_some()),
                        stolen: Vec::new(),
                        refused: Vec::new(),
                    };
                    for key in PORT_NAMES.iter().copied().chain(["registration_port"]) {
                        let Some(port) = info[key].as_u64().and_then(|p| u16::try_from(p).ok())
                        else {
                            continue;
                        };
                        // Two classic launches at once may be handed the same free port by
                        // the OS (each closes its listeners before the other picks): a port
                        // the thief holds already is stolen for this file too.
                        let held_already = held
                            .iter()
                            .any(|l: &TcpListener| l.local_addr().is_ok_and(|a| a.port() == port));
                        if held_already {
                            sighting.stolen.push(port);
                            continue;
                        }
                        match TcpListener::bind(("127.0.0.1", port)) {
                            Ok(listener) => {
                                held.push(listener);
                                sighting.stolen.push(port);
                            }
                            Err(_) => sighting.refused.push(port),
                        }
                    }
                    sightings.push(sighting);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(held);
            sightings
        });
        Self { stop, handle }
    }

    fn stop(self) -> Vec<Sighting> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the thief thread panicked")
    }
}

/// Our kernel behind a wrapper that sleeps 0.5 s before `exec`: a slow-starting kernel, so the
/// window between "the launcher wrote the file" and "the kernel binds" is wide and deterministic.
fn slow_kernel_argv() -> Vec<String> {
    let mut argv: Vec<String> = ["sh", "-c", r#"sleep 0.5; exec "$0" "$@""#]
        .map(String::from)
        .to_vec();
    argv.extend(our_kernel_argv());
    argv
}

/// With a port thief watching the runtime dir, every classic launch fails — the thief binds the
/// five ports the launcher picked before the slow kernel does; the kernel cannot bind ("Address
/// already in use") and the launcher reports that it exited — while every handshake launch under
/// the same thief succeeds: all the thief can see is the registration port, already bound by the
/// launcher, and the kernel's own ports are never written anywhere before they are bound.
#[test]
fn port_thief_breaks_classic_launches_but_not_handshake_launches() {
    const EACH: usize = 4;
    let argv = slow_kernel_argv();

    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    // Control: without a thief, the slow kernel launches fine the classic way. Classic launches
    // are racy by nature (the subject of this test): anything on the machine may take a picked
    // port in the half second before the kernel binds it, so the control is tried again when
    // that happens (`classic_launch`).
    let quiet = TempDir::new("quiet");
    let control = classic_launch(quiet.path(), &argv);
    successful_launch(&control, "classic");

    let runtime = TempDir::new("thief");
    let thief = Thief::watch(runtime.path().to_path_buf());
    let classic = {
        let runtime = runtime.path().to_path_buf();
        let argv = argv.clone();
        std::thread::spawn(move || launch_many(EACH, &runtime, &["--mode", "classic"], &argv))
    };
    let handshake = launch_many(EACH, runtime.path(), &["--mode", "handshake"], &argv);
    let classic = classic.join().expect("the classic launches");
    let sightings = thief.stop();
    let seen = format!("{sightings:#?}");

    for out in &handshake {
        let report = successful_launch(out, "handshake");
        assert_eq!(report["kernel_info"]["implementation"], "jupyter-handshake");
    }
    for out in &classic {
        out.assert_failure();
        let why = format!("{}\nthief: {seen}", out.describe());
        assert_eq!(out.stdout, "", "no report for a failed launch\n{why}");
        // The kernel's own error (it inherits the launcher's stderr), then the launcher's.
        assert!(
            out.stderr.contains("Address already in use"),
            "the kernel must have failed to bind a stolen port\n{why}"
        );
        let last = out.error_lines().last().copied().unwrap_or_default();
        assert!(
            contains_ignore_case(last, "kernel exited"),
            "the launcher must report that the kernel exited\n{why}"
        );
    }

    let (classic_seen, registration_seen): (Vec<&Sighting>, Vec<&Sighting>) =
        sightings.iter().partition(|s| s.classic);
    assert_eq!(
        classic_seen.len(),
        EACH,
        "one classic file per launch\n{seen}"
    );
    assert_eq!(
        registration_seen.len(),
        EACH,
        "one registration file per launch\n{seen}"
    );
    for s in classic_seen {
        assert_eq!(
            (s.stolen.len(), s.refused.len()),
            (5, 0),
            "the thief takes every port of a classic file ({})\n{seen}",
            s.file
        );
    }
    for s in registration_seen {
        assert!(
            s.stolen.is_empty() && s.refused.len() == 1,
            "a registration file names only the registration port, already bound ({})\n{seen}",
            s.file
        );
    }
}
