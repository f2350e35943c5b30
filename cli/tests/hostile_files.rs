//! A kernel that does hostile things to the registration file it was handed: replaces it with a
//! FIFO (whose open blocks a blocking reader forever), or with a symbolic link to `/dev/zero`
//! (which a reader without a cap reads until memory runs out). The launcher watches every
//! pending file on every wake-up, so one such kernel must never delay or hurt another launch:
//! the healthy kernels next to it register and answer, the hostile one fails at its deadline,
//! the launcher exits, and its peak memory stays small.
//!
//! No test asserts a time: a hang is caught by the hard timeout of the launcher's run.

#![cfg(unix)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{HARD_TIMEOUT, TempDir, binary_str, launch_command, path_string};

/// The launcher's peak resident memory (`VmHWM`, kB) may not exceed this: a few MB is what
/// it needs; reading `/dev/zero` without a cap would pass it within a fraction of a second.
const MAX_PEAK_KB: u64 = 200 * 1024;

/// What a run of the launcher printed, how it ended, and its peak resident memory.
struct Measured {
    success: bool,
    stdout: String,
    stderr: String,
    peak_kb: u64,
}

/// Runs `command` (in its own process group) to completion, sampling its `VmHWM` from
/// `/proc` while it runs; kills the group and fails the test past [`HARD_TIMEOUT`] or once the
/// peak passes [`MAX_PEAK_KB`].
fn run_measured(mut command: Command) -> Measured {
    use std::os::unix::process::CommandExt;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn().expect("the tool starts");
    let pid = child.id();
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let start = Instant::now();
    let mut peak_kb = 0;
    let status = loop {
        if let Some(kb) = vm_hwm_kb(pid) {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > HARD_TIMEOUT || peak_kb > MAX_PEAK_KB {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            let _ = child.wait();
            panic!(
                "the launcher hung or grew: killed after {:?} at a peak of {peak_kb} kB\n{}",
                start.elapsed(),
                readers.1.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Measured {
        success: status.success(),
        stdout: readers.0.join().unwrap_or_default(),
        stderr: readers.1.join().unwrap_or_default(),
        peak_kb,
    }
}

/// `VmHWM` of process `pid`, in kB.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A kernel command line: the first of the kernels to start (whoever wins `mkdir` of a marker)
/// runs `hostile` on its file `$1` and then sleeps past its deadline; every other one is our
/// kernel.
fn one_hostile_kernel(marker: &std::path::Path, hostile: &str) -> Vec<String> {
    let script = format!(
        "if mkdir \"$2\" 2>/dev/null; then {hostile}; exec sleep 60; else exec \"$3\" kernel -f \"$1\"; fi"
    );
    vec![
        "sh".into(),
        "-c".into(),
        script,
        "sh".into(),
        "{connection_file}".into(),
        path_string(marker),
        binary_str(),
    ]
}

/// Launches three kernels through one registration socket, one of them hostile; checks that
/// the two others answered, that the hostile one failed, and that the launcher's memory stayed
/// small.
fn healthy_kernels_launch_next_to(hostile: &str) -> Measured {
    let runtime = TempDir::new("rt");
    let marker = runtime.join("hostile-chosen");
    let argv = one_hostile_kernel(&marker, hostile);
    let out = run_measured(launch_command(
        runtime.path(),
        &["--count", "3", "--timeout", "8"],
        &argv,
    ));
    let why = format!(
        "peak {} kB\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.peak_kb, out.stdout, out.stderr
    );
    assert!(marker.is_dir(), "no kernel was hostile\n{why}");
    assert!(
        !out.success,
        "the hostile kernel cannot have succeeded\n{why}"
    );
    let ok = out
        .stdout
        .lines()
        .filter(|l| l.contains(r#""status":"ok""#))
        .count();
    assert_eq!(ok, 2, "both healthy kernels answer kernel_info\n{why}");
    assert!(
        out.stderr.contains("1 of 3 kernels failed"),
        "exactly the hostile one failed\n{why}"
    );
    assert!(out.peak_kb <= MAX_PEAK_KB, "{why}");
    out
}

/// The file replaced by a FIFO: a blocking open would wait for a writer forever.
#[test]
fn a_registration_file_replaced_by_a_fifo_delays_no_launch() {
    healthy_kernels_launch_next_to("rm -f \"$1\" && mkfifo -m 600 \"$1\"");
}

/// The file replaced by a symbolic link to `/dev/zero`: an uncapped read never ends.
#[test]
fn a_registration_file_replaced_by_a_link_to_dev_zero_is_not_read() {
    healthy_kernels_launch_next_to("ln -sf /dev/zero \"$1\"");
}

/// The file replaced by a (sparse) 1 GiB one: read at most up to the cap, never whole.
#[test]
fn a_registration_file_grown_huge_is_not_read_whole() {
    let out =
        healthy_kernels_launch_next_to("truncate -s 1G \"$1.big\" && mv -f \"$1.big\" \"$1\"");
    assert!(out.peak_kb <= MAX_PEAK_KB);
}
