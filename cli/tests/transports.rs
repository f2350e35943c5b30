//! The tool over the two other ways to reach a kernel: IPv6 loopback (`--ip ::1`), and ipc
//! (`--transport ipc`), with many kernels at once on one path prefix; and errors that quote a
//! huge value as a short prefix only.
//!
//! No test asserts a time: a hang is caught by the hard timeout of each run.

mod common;

use std::collections::HashSet;

use common::{TempDir, launch_command, our_kernel_argv, run, tool};

/// `launch --ip ::1`: the launcher's registration socket, the kernel's channels and
/// registration socket, and the checking client all on IPv6 loopback.
#[test]
fn launch_over_ipv6_loopback() {
    let runtime = TempDir::new("rt");
    let out = run(launch_command(
        runtime.path(),
        &["--ip", "::1"],
        &our_kernel_argv(),
    ));
    out.assert_success();
    let report = out.json_line();
    assert_eq!(report["connection"]["ip"], "::1", "{}", out.describe());
    assert_eq!(report["kernel_info"]["status"], "ok", "{}", out.describe());
}

/// `launch --count 16 --transport ipc`: sixteen kernels start at once with one path prefix;
/// every socket (five per kernel) gets its own path, every kernel answers, and no socket or
/// lock file is left once they are gone.
#[test]
fn sixteen_kernels_over_ipc_at_once_take_distinct_paths() {
    let runtime = TempDir::new("rt");
    let sockets = TempDir::new("ipc");
    let ip = sockets.join("k").to_string_lossy().into_owned();
    let out = run(launch_command(
        runtime.path(),
        &["--count", "16", "--transport", "ipc", "--ip", &ip],
        &our_kernel_argv(),
    ));
    out.assert_success();
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(lines.len(), 16, "{}", out.describe());
    let mut paths = HashSet::new();
    for report in &lines {
        assert_eq!(report["kernel_info"]["status"], "ok", "{}", out.describe());
        let connection = &report["connection"];
        assert_eq!(connection["transport"], "ipc");
        assert_eq!(connection["ip"], ip.as_str());
        for name in common::PORT_NAMES {
            let n = connection[name].as_u64().expect("a number");
            assert!(
                paths.insert(n),
                "two sockets on {ip}-{n}\n{}",
                out.describe()
            );
        }
    }
    assert_eq!(paths.len(), 80);
    let left: Vec<_> = std::fs::read_dir(sockets.path())
        .expect("the socket dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(
        left.is_empty(),
        "socket or lock files left: {left:?}\n{}",
        out.describe()
    );
}

/// A registration file of 10 MB is refused unread; an address of 60 kB (in a file) or 100 kB
/// (on the command line, about as much as one argument may be) makes a one-line error that
/// quotes a short, escaped prefix of it.
#[test]
fn an_error_about_a_huge_address_quotes_a_short_prefix() {
    let dir = TempDir::new("huge");
    let huge = format!("{}\u{1b}[2J{}", "a".repeat(30), "b".repeat(10_000_000));
    let file = dir.join("kernel.json");
    let registration = serde_json::json!({
        "transport": "tcp",
        "ip": huge,
        "key": "00112233445566778899aabbccddeeff",
        "signature_scheme": "hmac-sha256",
        "registration_port": 9,
    });
    common::write_private(&file, registration.to_string().as_bytes());
    let out = run(tool(["kernel".as_ref(), "-f".as_ref(), file.as_os_str()]));
    let check = |out: &common::Finished| {
        assert!(
            matches!(out.code(), Some(code) if code != 0),
            "{:.400}",
            out.stderr
        );
        assert!(
            out.stderr.len() < 1000,
            "{} bytes of stderr: {:.400}",
            out.stderr.len(),
            out.stderr
        );
        assert!(
            !out.stderr.contains('\u{1b}'),
            "escaped: {:.400}",
            out.stderr
        );
        assert!(out.stderr.contains("aaaa"), "{:.400}", out.stderr);
    };
    // Refused by size, unread (the file cap), in one short line.
    assert!(
        out.stderr.contains("larger than 65536 bytes"),
        "{:.400}",
        out.stderr
    );
    assert!(out.stderr.len() < 1000, "{:.400}", out.stderr);
    // Within the cap, the address reaches the bind, whose error quotes a prefix of it.
    let big = format!("{}\u{1b}[2J{}", "a".repeat(30), "b".repeat(60_000));
    let registration = serde_json::json!({
        "transport": "tcp",
        "ip": big,
        "key": "00112233445566778899aabbccddeeff",
        "signature_scheme": "hmac-sha256",
        "registration_port": 9,
    });
    let file = dir.join("kernel-60k.json");
    common::write_private(&file, registration.to_string().as_bytes());
    check(&run(tool([
        "kernel".as_ref(),
        "-f".as_ref(),
        file.as_os_str(),
    ])));
    let runtime = TempDir::new("rt");
    let long = format!("{}\u{1b}[2J{}", "a".repeat(30), "b".repeat(100_000));
    check(&run(launch_command(
        runtime.path(),
        &["--ip", &long],
        &our_kernel_argv(),
    )));
    let out = run(tool(["launch", "--transport", &"z".repeat(100_000)]));
    assert!(out.stderr.len() < 1000, "{:.400}", out.stderr);
}
