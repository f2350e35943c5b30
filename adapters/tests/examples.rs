//! The own-loop examples are part of the contract: run each one and check its verdict.

#![cfg(feature = "blocking")]

use std::process::Command;

fn run_example(name: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "run",
            "--quiet",
            "-p",
            "jupyter-handshake-zmq",
            "--example",
            name,
            "--",
        ])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
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
