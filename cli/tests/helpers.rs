//! The test helpers themselves (`common/`): a hang becomes a failure, output is captured, temp
//! dirs are private. Here, once, rather than in every test binary that includes `common`.

#![cfg(unix)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TempDir, run, run_with_timeout, write_private};

#[test]
#[should_panic(expected = "hard timeout")]
fn a_hung_process_fails_at_the_hard_timeout() {
    let mut command = Command::new("sh");
    command.args(["-c", "sleep 60 & sleep 60"]);
    run_with_timeout(command, Duration::from_millis(300));
}

#[test]
fn output_and_status_are_captured() {
    let mut command = Command::new("sh");
    command.args(["-c", "echo out; echo err >&2; exit 7"]);
    let out = run(command);
    assert_eq!(out.code(), Some(7));
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    out.assert_failure();
}

#[test]
fn temp_dirs_are_private_and_removed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("self");
    let path = dir.path().to_path_buf();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    write_private(&dir.join("f"), b"x");
    drop(dir);
    assert!(!path.exists());
}
