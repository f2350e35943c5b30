//! The examples are part of the contract: run each one and check its verdict.

#![cfg(feature = "blocking")]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The example `name`, as `cargo test` built it before running any test: examples land in
/// `<target>/<profile>/examples/`, next to this test's `deps/` directory. No test runs cargo.
fn example(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/<profile>/deps/");
    let exe = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        exe.is_file(),
        "example {name} not built at {} (cargo test builds the examples whose features are on)",
        exe.display()
    );
    exe
}

fn run_example(name: &str, args: &[&str]) -> String {
    let out = Command::new(example(name))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn one_pair_from_a_hand_written_poll_loop() {
    let out = run_example("own_loop", &[]);
    assert!(
        out.contains("launcher Connected, kernel Some(Connected)"),
        "{out}"
    );
    assert!(out.contains("ports match"), "{out}");
}

#[test]
fn a_hundred_handshakes_in_one_thread() {
    let out = run_example("many_in_one_thread", &["100"]);
    assert!(out.contains("100 of 100 handshakes connected"), "{out}");
}

#[cfg(feature = "async")]
#[test]
fn the_latency_benchmark_measures_all_three_drivers() {
    let out = run_example("latency", &["3"]);
    for driver in ["blocking", "async", "own loop"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(driver))
            .unwrap_or_else(|| panic!("no {driver} line in {out}"));
        // Three figures in µs: the benchmark measured, whatever the values.
        assert_eq!(line.matches(" µs").count(), 3, "{line}");
    }
}
