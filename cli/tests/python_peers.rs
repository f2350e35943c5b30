//! Interop with the real Jupyter Python stack (pinned in `tests/python/requirements.txt`):
//! jupyter_client's `KernelManager`, stock ipykernel, xeus-python (upstream dialect), and the peers in
//! `tests/python/`. A missing `python3` or package fails these tests; nothing is skipped.

mod common;

use common::{
    TempDir, binary_str, classic_launch, launch_command, our_kernel_argv, path_string, ports_of,
    python_script, python_str, run, run_classic, successful_launch, tool,
};
use serde_json::Value;

/// `python3 -m ipykernel_launcher -f {connection_file}`.
fn ipykernel_argv() -> Vec<String> {
    vec![
        python_str(),
        "-m".into(),
        "ipykernel_launcher".into(),
        "-f".into(),
        "{connection_file}".into(),
    ]
}

/// jupyter_client's `KernelManager` finds the kernelspec that `jupyter-handshake kernelspec
/// install --dir` wrote (through `JUPYTER_PATH`), starts our kernel the classic way, and gets
/// `kernel_info`, two execute round trips (reply, `stream`, `execute_result`, busy/idle on IOPub,
/// a rising execution count) and a clean shutdown (exit status 0, not a kill).
#[test]
fn kernel_manager_runs_our_kernel_from_its_kernelspec() {
    let jupyter = TempDir::new("jpath");
    let kernels = jupyter.join("kernels");
    let name = format!("jh-test-{}", std::process::id());

    let mut install = tool(["kernelspec", "install", "--name", &name, "--dir"]);
    install.arg(&kernels);
    let installed = run(install);
    installed.assert_success();
    let spec_dir = kernels.join(&name);
    assert_eq!(
        installed.stdout.trim(),
        path_string(&spec_dir),
        "install prints the directory it wrote\n{}",
        installed.describe()
    );

    // jupyter_client picks the ports: a classic launch.
    let out = run_classic(|| {
        let mut script = std::process::Command::new(common::python());
        script
            .arg(python_script("kernel_manager_roundtrip.py"))
            .arg(&name)
            .arg("hello from jupyter_client")
            .env("JUPYTER_PATH", jupyter.path())
            .env("JUPYTER_RUNTIME_DIR", jupyter.join("runtime"));
        script
    });
    out.assert_success();
    let result = out.json_line();
    let why = out.describe();

    let spec = &result["kernelspec"];
    assert_eq!(
        spec["resource_dir"],
        path_string(&spec_dir),
        "KernelManager must use the kernelspec we installed\n{why}"
    );
    assert_eq!(spec["argv"][0], binary_str(), "{why}");
    assert_eq!(spec["argv"][1], "kernel", "{why}");
    assert_eq!(spec["kernel_protocol_version"], "5.5", "{why}");
    assert_eq!(
        result["connection_file"]["has_five_ports"], true,
        "KernelManager launches classic: it picks the ports\n{why}"
    );

    let info = &result["kernel_info"];
    assert_eq!(info["status"], "ok", "{why}");
    assert_eq!(info["implementation"], "jupyter-handshake", "{why}");
    assert_eq!(info["language_info"]["name"], "text", "{why}");

    let executions = result["executions"].as_array().expect("executions");
    assert_eq!(executions.len(), 2, "{why}");
    for (i, execution) in executions.iter().enumerate() {
        let count = i as u64 + 1;
        assert_eq!(execution["reply"]["status"], "ok", "{why}");
        assert_eq!(execution["reply"]["execution_count"], count, "{why}");
        let iopub: Vec<(&str, &Value)> = execution["iopub"]
            .as_array()
            .expect("iopub")
            .iter()
            .map(|m| (m[0].as_str().unwrap_or(""), &m[1]))
            .collect();
        let find = |kind: &str| {
            iopub
                .iter()
                .find(|(t, _)| *t == kind)
                .map(|(_, c)| *c)
                .unwrap_or_else(|| panic!("no {kind} on IOPub for execution {count}\n{why}"))
        };
        assert_eq!(find("stream")["name"], "stdout", "{why}");
        assert_eq!(find("stream")["text"], "hello from jupyter_client", "{why}");
        let result = find("execute_result");
        assert_eq!(
            result["data"]["text/plain"], "hello from jupyter_client",
            "{why}"
        );
        assert_eq!(result["execution_count"], count, "{why}");
        assert_eq!(
            iopub
                .first()
                .map(|(t, c)| (*t, c["execution_state"].as_str())),
            Some(("status", Some("busy"))),
            "{why}"
        );
        assert_eq!(
            iopub
                .last()
                .map(|(t, c)| (*t, c["execution_state"].as_str())),
            Some(("status", Some("idle"))),
            "{why}"
        );
    }
    assert_eq!(
        result["exit_code"], 0,
        "the kernel must exit 0 on KernelManager's shutdown_request (not be killed)\n{why}"
    );
}

/// Stock ipykernel implements no handshake, but given a registration file it binds its own
/// ports and rewrites the file with them: `launch` learns the ports from that rewrite (mode
/// `file`), so the launch is race-free, and ipykernel answers `kernel_info`.
#[test]
fn stock_ipykernel_registers_through_the_file_rewrite() {
    let runtime = TempDir::new("rt");
    let out = run(launch_command(runtime.path(), &[], &ipykernel_argv()));
    let report = successful_launch(&out, "file");
    assert_eq!(report["kernel_info"]["implementation"], "ipython");
}

/// Stock ipykernel launched the classic way (`--mode classic`) works too.
#[test]
fn stock_ipykernel_classic_launch() {
    let runtime = TempDir::new("rt");
    let out = classic_launch(runtime.path(), &ipykernel_argv());
    let report = successful_launch(&out, "classic");
    assert_eq!(report["kernel_info"]["implementation"], "ipython");
}

/// An independent launcher, `posit_launcher.py` (pyzmq + jupyter_client's `Session`, verifying
/// strictly), performs the Posit launcher side against `jupyter-handshake kernel`: our request
/// verifies, its reply is accepted, and a `BlockingKernelClient` gets `kernel_info` from us.
#[test]
fn posit_launcher_py_registers_our_kernel() {
    let mut launcher = std::process::Command::new(common::python());
    launcher
        .arg(python_script("posit_launcher.py"))
        .args(["--timeout", "60", "--"])
        .args(our_kernel_argv());
    let out = run(launcher);
    out.assert_success();
    let result = out.json_line();
    let why = out.describe();
    assert_eq!(result["registered"], true, "{why}");
    assert_eq!(result["kernel_info"]["status"], "ok", "{why}");
    assert_eq!(
        result["kernel_info"]["implementation"], "jupyter-handshake",
        "{why}"
    );
    ports_of(&result["ports"]);
}

/// `ipykernel_posit_kernel.py` (stock ipykernel plus the Posit kernel side, signing with
/// jupyter_client's `Session`) registers with `jupyter-handshake launch` through a
/// `handshake_request` (mode `handshake`, not a file rewrite), and answers `kernel_info`.
#[test]
fn ipykernel_posit_kernel_registers_with_our_launcher() {
    let runtime = TempDir::new("rt");
    let argv = vec![
        python_str(),
        python_script("ipykernel_posit_kernel.py"),
        "-f".into(),
        "{connection_file}".into(),
    ];
    let out = run(launch_command(runtime.path(), &[], &argv));
    let report = successful_launch(&out, "handshake");
    assert_eq!(report["kernel_info"]["implementation"], "ipython");
}

/// `python3 -m xpython_launcher -f {connection_file}`: xeus-python, the upstream dialect's
/// real kernel side.
fn xeus_python_argv() -> Vec<String> {
    vec![
        python_str(),
        "-m".into(),
        "xpython_launcher".into(),
        "-f".into(),
        "{connection_file}".into(),
    ]
}

/// The real xeus-python (pinned) registers with `jupyter-handshake launch --mode upstream`:
/// DEALER → our ROUTER, content-only signed request with string ports, our signed `ACK`; its
/// kernel_info says protocol 5.6.
#[test]
fn xeus_python_registers_through_the_upstream_dialect() {
    let runtime = TempDir::new("rt");
    let out = run(launch_command(
        runtime.path(),
        &["--mode", "upstream"],
        &xeus_python_argv(),
    ));
    let report = successful_launch(&out, "upstream");
    assert_eq!(report["kernel_info"]["implementation"], "xeus-python");
    assert_eq!(report["kernel_info"]["protocol_version"], "5.6");
}

/// `--mode auto` picks the upstream dialect from a kernelspec that declares protocol 5.6 (the
/// rule: ≥ 5.6 upstream, 5.5 Posit, else classic); xeus-python's own kernelspec declares
/// nothing, so this is how a user selects the handshake for it.
#[test]
fn a_kernelspec_declaring_5_6_is_launched_in_the_upstream_dialect() {
    let runtime = TempDir::new("rt");
    let spec_dir = TempDir::new("spec");
    let spec = serde_json::json!({
        "argv": xeus_python_argv(),
        "display_name": "xeus-python (handshake)",
        "language": "python",
        "kernel_protocol_version": "5.6",
    });
    std::fs::write(spec_dir.join("kernel.json"), spec.to_string()).unwrap();
    let mut command = tool(["launch", "--json", "--kernelspec"]);
    command
        .arg(spec_dir.join("kernel.json"))
        .env("JUPYTER_RUNTIME_DIR", runtime.path());
    let out = run(command);
    let report = successful_launch(&out, "upstream");
    assert_eq!(report["kernel_info"]["implementation"], "xeus-python");
}

/// An independent upstream-dialect launcher, `upstream_launcher.py` (pyzmq, verifying the HMAC
/// over the content and the kernel_id), registers `jupyter-handshake kernel`, which reads the
/// upstream file, registers from a DEALER, and answers a `BlockingKernelClient`.
#[test]
fn upstream_launcher_py_registers_our_kernel() {
    let mut launcher = std::process::Command::new(common::python());
    launcher
        .arg(python_script("upstream_launcher.py"))
        .args(["--timeout", "60", "--"])
        .args(our_kernel_argv());
    let out = run(launcher);
    out.assert_success();
    let result = out.json_line();
    let why = out.describe();
    assert_eq!(result["registered"], true, "{why}");
    assert_eq!(result["kernel_info"]["status"], "ok", "{why}");
    assert_eq!(
        result["kernel_info"]["implementation"], "jupyter-handshake",
        "{why}"
    );
    ports_of(&result["ports"]);
}

/// Four xeus-python kernels at once through one registration socket, upstream dialect.
#[test]
fn several_xeus_python_kernels_through_one_socket() {
    let runtime = TempDir::new("rt");
    let out = run(launch_command(
        runtime.path(),
        &["--mode", "upstream", "--count", "4"],
        &xeus_python_argv(),
    ));
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.describe());
    let mut ports = Vec::new();
    for line in lines {
        let report: Value = serde_json::from_str(line).unwrap();
        assert_eq!(report["mode"], "upstream", "{line}");
        assert_eq!(report["kernel_info"]["protocol_version"], "5.6", "{line}");
        ports.extend(ports_of(&report["connection"]));
    }
    let total = ports.len();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), total, "every kernel has its own ports");
}
