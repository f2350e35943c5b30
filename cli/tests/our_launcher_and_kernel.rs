//! Our launcher ⇄ our kernel over real loopback sockets, and each side facing a misbehaving peer.
//!
//! Every process runs under the helpers' hard timeout, so a hang is a failure; no test asserts
//! how long anything took.

mod common;

use std::time::{Duration, Instant};

use common::{
    TempDir, classic_launch, contains_ignore_case, launch_command, our_kernel_argv, ports_of,
    python_script, python_str, run, successful_launch, tool,
};
use jupyter_handshake::{Evidence, Key, SignatureScheme, Signer};
use jupyter_handshake_zmq::blocking::{ChildStdio, Client, LaunchOptions, launch};
use jupyter_handshake_zmq::kernelspec::LaunchMode;
use serde_json::{Value, json};

/// Names of the files the launcher left in `dir` (it should remove the key-bearing file once the
/// kernel has exited).
fn leftover_files(dir: &TempDir) -> Vec<String> {
    match std::fs::read_dir(dir.path()) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `launch` ⇄ `kernel` through the handshake: the kernel binds port 0, registers its ports with
/// a signed `handshake_request`, and answers `kernel_info`; the report says so and carries no
/// key; the launcher removes the registration file (it holds the key) once the kernel is gone.
#[test]
fn handshake_launch_of_our_kernel() {
    let runtime = TempDir::new("rt");
    let out = run(launch_command(runtime.path(), &[], &our_kernel_argv()));
    let report = successful_launch(&out, "handshake");
    assert_eq!(report["kernel_info"]["implementation"], "jupyter-handshake");
    assert_eq!(report["kernel_info"]["protocol_version"], "5.5");
    assert_eq!(
        leftover_files(&runtime),
        Vec::<String>::new(),
        "the registration file must not outlive the launch\n{}",
        out.describe()
    );
}

/// `--mode classic`: the launcher picks the five ports and writes a classic connection file; our
/// kernel binds exactly those and answers `kernel_info`.
#[test]
fn classic_launch_of_our_kernel() {
    let runtime = TempDir::new("rt");
    let out = classic_launch(runtime.path(), &our_kernel_argv());
    let report = successful_launch(&out, "classic");
    assert_eq!(report["kernel_info"]["implementation"], "jupyter-handshake");
    assert_eq!(leftover_files(&runtime), Vec::<String>::new());
}

/// `kernel --write-connection-file PATH` (JEP 66's suggestion): after a handshake launch the
/// kernel's own connection file holds the ports the launcher reported, with the key, mode 0600;
/// that key (shared by launcher and kernel) appears nowhere in either side's output, even
/// with the launcher's `--verbose` events and the kernel's trace switched on; and the file, which
/// holds the key, is gone once the kernel has shut down cleanly. A wrapper copies it, mode and
/// all, while the kernel runs: `--count 2`, where the second copy never registers, keeps the
/// first kernel running until that launch times out; then the first is checked and shut down.
#[test]
fn kernel_writes_its_own_connection_file() {
    let runtime = TempDir::new("rt");
    let own = TempDir::new("own");
    let own_file = own.join("kernel-own.json");
    let copy = own.join("copy.json");
    let script = r#"own="$2"
if mkdir "$own.claim" 2>/dev/null; then
  "$0" kernel -f "$1" --write-connection-file "$own" & k=$!
  while [ ! -e "$own" ] && kill -0 "$k" 2>/dev/null; do sleep 0.01; done
  cp -p "$own" "$3"; wait "$k"
else sleep 300; fi"#;
    let argv = vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        common::binary_str(),
        "{connection_file}".into(),
        common::path_string(&own_file),
        common::path_string(&copy),
    ];
    // As verbose as both sides can be: launcher events, and the kernel's trace lines.
    let mut command = launch_command(
        runtime.path(),
        &["--verbose", "--count", "2", "--timeout", "3"],
        &argv,
    );
    command.env("JUPYTER_HANDSHAKE_TRACE", "1");
    let out = run(command);
    assert_eq!(
        out.code(),
        Some(1),
        "the second copy timed out\n{}",
        out.describe()
    );
    let report = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON lines"))
        // Whichever copy won the claim (the launches start in either order) is the one reported.
        .find(|r| r["kernel_info"]["status"] == "ok")
        .unwrap_or_else(|| panic!("no report of the kernel that claimed\n{}", out.describe()));
    assert!(
        out.stderr.contains("jupyter-handshake-trace "),
        "the kernel's trace was on\n{}",
        out.describe()
    );
    assert!(
        !own_file.exists(),
        "the kernel's own connection file (it holds the key) is removed at a clean exit"
    );
    let text = std::fs::read_to_string(&copy)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", copy.display(), out.describe()));
    let written: Value = serde_json::from_str(&text).expect("the connection file is JSON");
    assert_eq!(
        ports_of(&written),
        ports_of(&report["connection"]),
        "the kernel's connection file must name the ports it registered"
    );
    let key = written["key"].as_str().unwrap_or_default();
    assert!(key.len() >= 16, "the connection file carries the key");
    assert!(
        !out.stdout.contains(key) && !out.stderr.contains(key),
        "the key must never appear in any output or log\n{}",
        out.describe()
    );
    assert_eq!(written["signature_scheme"], "hmac-sha256");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a file with the key must be private");
    }
}

/// Before the real kernel registers, a process sends the launcher's registration socket a
/// `handshake_request` signed with a wrong key (naming ports 1..5), the same request unsigned,
/// and two kinds of garbage. Each is dropped (the launcher logs four drops before it registers),
/// none gets a reply or ends the launch, and the real kernel's request then succeeds: the ports
/// reported are the real kernel's, not the forger's.
#[test]
fn forged_and_garbage_registrations_are_dropped() {
    let runtime = TempDir::new("rt");
    let mut argv = vec![
        python_str(),
        python_script("hostile_then_exec.py"),
        "{connection_file}".into(),
        "--".into(),
    ];
    argv.extend(our_kernel_argv());
    let out = run(launch_command(runtime.path(), &["--verbose"], &argv));
    let report = successful_launch(&out, "handshake");
    assert_eq!(report["kernel_info"]["implementation"], "jupyter-handshake");
    assert_ne!(
        ports_of(&report["connection"]),
        [1, 2, 3, 4, 5],
        "the forged request was accepted"
    );

    let why = out.describe();
    let sent = out
        .stderr
        .lines()
        .filter(|l| l.contains("hostile_then_exec: sent "))
        .count();
    assert_eq!(
        sent, 4,
        "the hostile helper must have sent its 4 messages\n{why}"
    );
    // `--verbose` logs each launcher event; everything dropped before the registration counts.
    let registered_at = out
        .stderr
        .find("launcher registered (handshake)")
        .unwrap_or_else(|| panic!("no registration logged\n{why}"));
    let before = &out.stderr[..registered_at];
    let drops: Vec<&str> = before
        .lines()
        .filter(|l| l.contains("launcher dropped:"))
        .collect();
    assert_eq!(
        drops.len(),
        4,
        "each hostile message must be dropped, before the real kernel registered\n{why}"
    );
    assert!(
        drops
            .iter()
            .filter(|l| contains_ignore_case(l, "signature"))
            .count()
            >= 2,
        "the wrong-key and the unsigned request must be refused for their signature\n{why}"
    );
    assert!(
        !out.stderr.contains("launcher refused"),
        "messages without a valid signature must be dropped, not answered with a refusal\n{why}"
    );
}

/// A kernel whose launcher never replies gives up at its ack timeout: the registration socket
/// is a ROUTER that receives the (correctly signed) `handshake_request` and never answers; the
/// kernel exits non-zero with one error line saying it timed out waiting for the reply.
#[test]
fn kernel_without_reply_gives_up_at_its_ack_timeout() {
    let dir = TempDir::new("ack");
    let key = "0123456789abcdef0123456789abcdef";
    let (_ctx, router, file) = common::silent_registration(dir.path(), key);

    let mut kernel = tool(["kernel", "--ack-timeout", "1", "-f"]);
    kernel.arg(&file);
    let kernel = std::thread::spawn(move || run(kernel));

    // The request arrives (so the kernel really is waiting for a reply), and is left unanswered.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut request = None;
    loop {
        if router.poll(zmq::POLLIN, 100).unwrap() > 0 {
            request = Some(router.recv_multipart(0).unwrap());
            break;
        }
        // Checked after an empty poll, so a request queued before the kernel exited is read.
        if kernel.is_finished() || Instant::now() > deadline {
            break;
        }
    }
    let out = kernel.join().expect("the runner thread");
    let why = out.describe();
    let frames = request.unwrap_or_else(|| panic!("no handshake_request arrived\n{why}"));
    // [identity, "", "<IDS|MSG>", signature, header, parent, metadata, content]
    let delim = frames
        .iter()
        .position(|f| f == b"<IDS|MSG>")
        .unwrap_or_else(|| panic!("no delimiter in {} frames", frames.len()));
    let parts: Vec<&[u8]> = frames[delim + 2..delim + 6]
        .iter()
        .map(Vec::as_slice)
        .collect();
    Signer::new(SignatureScheme::HmacSha256, &Key::new(key))
        .verify(&frames[delim + 1], &parts)
        .expect("the kernel signs its request with the file's key");
    let header: Value = serde_json::from_slice(parts[0]).unwrap();
    assert_eq!(header["msg_type"], "handshake_request");
    let content: Value = serde_json::from_slice(parts[3]).unwrap();
    ports_of(&content);

    out.assert_failure();
    assert!(
        !out.stderr.contains(key),
        "the key must never be printed\n{why}"
    );
    let errors = out.error_lines();
    assert_eq!(errors.len(), 1, "one error line\n{why}");
    assert!(
        contains_ignore_case(errors[0], "timed out") && errors[0].contains("handshake_reply"),
        "the error must say it timed out waiting for the handshake_reply\n{why}"
    );
}

/// A launcher whose kernel exits mid-handshake reports the exit at once: with a 600 s
/// registration timeout, far beyond the helper's hard timeout, only noticing the exit can end the
/// launch in time, and the error line names the kernel's exit status.
#[test]
fn launcher_reports_a_kernel_that_exits_mid_handshake() {
    let runtime = TempDir::new("rt");
    let argv: Vec<String> = ["sh", "-c", "exit 3"].map(String::from).to_vec();
    let out = run(launch_command(runtime.path(), &["--timeout", "600"], &argv));
    out.assert_failure();
    let why = out.describe();
    assert_eq!(out.stdout, "", "no report on failure\n{why}");
    let errors = out.error_lines();
    assert_eq!(errors.len(), 1, "one error line\n{why}");
    assert!(
        contains_ignore_case(errors[0], "exited") && errors[0].contains("status 3"),
        "the error must say the kernel exited with status 3\n{why}"
    );
    assert!(
        !contains_ignore_case(errors[0], "timed out"),
        "it was the exit, not the deadline\n{why}"
    );
    assert_eq!(
        leftover_files(&runtime),
        Vec::<String>::new(),
        "a failed launch removes its file (it holds the key)"
    );
}

/// A kernel that never registers (it neither dials back nor rewrites the file) makes the launch
/// fail at `--timeout` with a message saying so, and the launcher kills and reaps it rather than
/// leave it running, and removes the file that holds the key.
#[test]
fn launcher_times_out_and_kills_a_silent_kernel() {
    let runtime = TempDir::new("rt");
    let scratch = TempDir::new("pid");
    let pid_file = scratch.join("pid");
    let script = format!(
        "echo $$ > '{}'; exec sleep 600",
        common::path_string(&pid_file)
    );
    let argv = vec!["sh".to_owned(), "-c".to_owned(), script];
    let out = run(launch_command(runtime.path(), &["--timeout", "1"], &argv));
    out.assert_failure();
    let why = out.describe();
    assert_eq!(out.stdout, "", "no report on failure\n{why}");
    let errors = out.error_lines();
    assert_eq!(errors.len(), 1, "one error line\n{why}");
    assert!(
        contains_ignore_case(errors[0], "timed out") && errors[0].contains("registration"),
        "the error must say it timed out waiting for the registration\n{why}"
    );
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("the kernel never started ({e})\n{why}"));
    let alive = std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("kill -0")
        .success();
    if alive {
        // Clean up after the failure this reports.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status();
    }
    assert!(!alive, "the launcher left the silent kernel running\n{why}");
    assert_eq!(leftover_files(&runtime), Vec::<String>::new());
}

/// The README's main command, `jupyter-handshake demo`: it launches our kernel through the
/// handshake and prints both machines' states on one timeline, ending registered, answered and
/// shut down cleanly.
#[test]
fn demo_shows_both_machines_through_the_handshake() {
    let runtime = TempDir::new("rt");
    let mut demo = tool(["demo"]);
    demo.env("JUPYTER_RUNTIME_DIR", runtime.path());
    let out = run(demo);
    out.assert_success();
    let why = out.describe();
    // Column padding is presentation: compare with runs of spaces collapsed.
    let text = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for line in [
        "launcher state Init -> Bound",
        "kernel state Bound -> AwaitingReply",
        "launcher state Bound -> Connected",
        "kernel state AwaitingReply -> Connected",
        "registered (handshake)",
        "kernel_info_reply: status ok",
    ] {
        assert!(text.contains(line), "the demo must show {line:?}\n{why}");
    }
    assert_eq!(leftover_files(&runtime), Vec::<String>::new());
}

/// The library, without the tool's front end: `launch` through the handshake, then a connected
/// `Client` gets `kernel_info`, executes code twice (the kernel echoes it as a `stream` and an
/// `execute_result` on IOPub, with a rising execution count) and shuts the kernel down; the
/// kernel exits 0.
#[test]
fn library_launch_client_execute_and_shutdown() {
    let dir = TempDir::new("lib");
    let options = LaunchOptions {
        mode: LaunchMode::Handshake,
        timeout: Duration::from_secs(60),
        dir: Some(dir.path().to_path_buf()),
        stdout: ChildStdio::Null,
        ..LaunchOptions::default()
    };
    let ctx = zmq::Context::new();
    let mut launched = launch(&ctx, &our_kernel_argv(), &options, &mut |_, _| {}).expect("launch");
    assert_eq!(launched.evidence, Evidence::Request);

    let mut client = Client::connect(&ctx, &launched.connection).expect("connect");
    let info = client
        .wait_for_ready(Duration::from_secs(30))
        .expect("ready");
    assert_eq!(info["implementation"], "jupyter-handshake");
    for expected_count in 1..=2 {
        let outcome = client
            .execute("echo me", Duration::from_secs(30))
            .expect("execute");
        assert_eq!(outcome.reply["status"], "ok");
        assert_eq!(outcome.reply["execution_count"], expected_count);
        let of = |kind: &str| {
            outcome
                .iopub
                .iter()
                .find(|(t, _)| t == kind)
                .map(|(_, c)| c.clone())
                .unwrap_or_else(|| panic!("no {kind} on IOPub: {:?}", outcome.iopub))
        };
        assert_eq!(of("stream")["name"], "stdout");
        assert_eq!(of("stream")["text"], "echo me");
        assert_eq!(of("execute_result")["data"]["text/plain"], "echo me");
        assert_eq!(
            outcome
                .iopub
                .last()
                .map(|(t, c)| (t.as_str(), &c["execution_state"])),
            Some(("status", &json!("idle")))
        );
    }
    let reply = client.shutdown(Duration::from_secs(30)).expect("shutdown");
    assert_eq!(reply["status"], "ok");
    drop(client);

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = launched.child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = launched.child.kill();
            let _ = launched.child.wait();
            panic!("the kernel did not exit after shutdown_request");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "kernel exit status {status}");
    launched.remove_file().unwrap();
}

/// `--count 24`: 24 copies of our kernel through ONE registration socket; one JSON line each,
/// in launch order, each with its own ports and an ok kernel_info; nothing left on disk.
#[test]
fn count_launches_many_kernels_through_one_socket() {
    const N: usize = 24;
    let runtime = TempDir::new("rt");
    let count = N.to_string();
    let out = run(launch_command(
        runtime.path(),
        &["--count", &count],
        &our_kernel_argv(),
    ));
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), N, "one line per kernel\n{}", out.describe());
    let mut all_ports = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let report: Value = serde_json::from_str(line).unwrap();
        assert_eq!(report["index"], i, "{line}");
        assert_eq!(report["mode"], "handshake", "{line}");
        assert_eq!(report["kernel_info"]["status"], "ok", "{line}");
        assert!(report["connection"].get("key").is_none());
        all_ports.extend(ports_of(&report["connection"]));
    }
    let total = all_ports.len();
    all_ports.sort_unstable();
    all_ports.dedup();
    assert_eq!(all_ports.len(), total, "every kernel has its own ports");
    assert_eq!(leftover_files(&runtime), Vec::<String>::new());
    // Classic mode has no registration socket to share.
    let out = run(launch_command(
        runtime.path(),
        &["--count", "2", "--mode", "classic"],
        &our_kernel_argv(),
    ));
    assert_eq!(out.code(), Some(2), "{}", out.describe());
}

/// A path is whatever bytes the OS allows: a non-UTF-8 `-f` is read as given (here it does not
/// exist, so the kernel fails to read it: exit 1, not a usage error), while a kernel command
/// line, which goes into JSON, must be text (exit 2, naming the argument).
#[cfg(unix)]
#[test]
fn non_utf8_paths_are_paths_and_non_utf8_commands_are_usage_errors() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let dir = TempDir::new("bytes");
    let mut bad = dir.path().as_os_str().to_owned().into_vec();
    bad.extend_from_slice(b"/k\xff.json");
    let bad = OsString::from_vec(bad);
    let out = run(tool([OsString::from("kernel"), "-f".into(), bad.clone()]));
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        !contains_ignore_case(&out.stderr, "utf-8"),
        "{}",
        out.describe()
    );
    let out = run(tool([
        OsString::from("launch"),
        "--".into(),
        "kernel".into(),
        bad,
    ]));
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("not valid UTF-8"), "{}", out.describe());
}
