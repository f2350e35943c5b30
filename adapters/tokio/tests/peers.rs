//! The tokio driver against real peers, on tokio's multi-thread runtime: our zmq kernel, stock
//! ipykernel (file rewrite), xeus-python (upstream), the blocking zmq launcher (libzmq) starting
//! the tokio kernel, and jupyter_client's `KernelManager` starting it from a kernelspec.

#![cfg(unix)]

mod common;

use common::{TempDir, our_kernel_argv, python_script, python_str, run, run_classic};
use common::{WAIT, example, options, round_trip, tokio_kernel, tokio_kernel_argv};
use jupyter_handshake::{Dialect, Evidence};
use jupyter_handshake_tokio::{Launcher, launch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_zmq_kernel_registers_with_the_tokio_launcher_in_both_dialects() {
    let dir = TempDir::new("tokio-zmq-kernel");
    for dialect in [Dialect::Posit, Dialect::Upstream] {
        let launched = launch(&our_kernel_argv(), &options(&dir, dialect))
            .await
            .unwrap_or_else(|e| panic!("{dialect:?}: {e}"));
        assert_eq!(launched.evidence, Evidence::Request, "{dialect:?}");
        let info = round_trip(launched, "hello").await;
        assert_eq!(info["implementation"], "jupyter-handshake", "{info}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokio_kernel_registers_with_the_tokio_launcher_in_both_dialects() {
    let dir = TempDir::new("tokio-tokio");
    let mut launcher = Launcher::bind(options(&dir, Dialect::Upstream))
        .await
        .unwrap();
    let launched = launcher.launch(&tokio_kernel_argv()).await.unwrap();
    assert_eq!(launched.evidence, Evidence::Request);
    assert_eq!(
        round_trip(launched, "upstream").await["implementation"],
        "tokio_kernel"
    );
    let launched = launch(&tokio_kernel_argv(), &options(&dir, Dialect::Posit))
        .await
        .unwrap();
    assert_eq!(launched.evidence, Evidence::Request);
    assert_eq!(
        round_trip(launched, "posit").await["implementation"],
        "tokio_kernel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_ipykernel_registers_by_rewriting_its_file() {
    let dir = TempDir::new("tokio-ipykernel");
    let argv = vec![
        python_str(),
        "-m".into(),
        "ipykernel_launcher".into(),
        "-f".into(),
        "{connection_file}".into(),
    ];
    let launched = launch(&argv, &options(&dir, Dialect::Posit)).await.unwrap();
    assert_eq!(launched.evidence, Evidence::FileRewrite);
    let info = round_trip(launched, "'ipy'").await;
    assert_eq!(info["implementation"], "ipython");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xeus_python_registers_through_the_upstream_dialect() {
    let dir = TempDir::new("tokio-xeus");
    let argv = vec![
        python_str(),
        "-m".into(),
        "xpython_launcher".into(),
        "-f".into(),
        "{connection_file}".into(),
    ];
    let launched = launch(&argv, &options(&dir, Dialect::Upstream))
        .await
        .unwrap();
    assert_eq!(launched.evidence, Evidence::Request);
    let info = round_trip(launched, "'xeus'").await;
    assert_eq!(info["implementation"], "xeus-python");
    assert_eq!(info["protocol_version"], "5.6");
}

/// The libzmq side launches the tokio kernel: the blocking zmq launcher, both dialects, and its
/// blocking client talks to it.
#[test]
fn the_blocking_zmq_launcher_registers_the_tokio_kernel_in_both_dialects() {
    use jupyter_handshake_zmq::blocking::{Client, LaunchOptions, launch};
    use jupyter_handshake_zmq::{LaunchMode, launch::ChildStdio};
    let dir = TempDir::new("zmq-tokio");
    let ctx = jupyter_handshake_zmq::zmq::Context::new();
    for mode in [LaunchMode::Handshake, LaunchMode::Upstream] {
        let options = LaunchOptions {
            mode,
            dir: Some(dir.path().to_path_buf()),
            stdout: ChildStdio::Null,
            stderr: ChildStdio::Null,
            ..LaunchOptions::default()
        };
        let mut launched = launch(&ctx, &tokio_kernel_argv(), &options, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(launched.evidence, Evidence::Request);
        let mut client = Client::connect(&ctx, &launched.connection).unwrap();
        let info = client.wait_for_ready(WAIT).unwrap();
        assert_eq!(info["implementation"], "tokio_kernel");
        let outcome = client.execute("from zmq", WAIT).unwrap();
        assert_eq!(outcome.reply["status"], "ok");
        client.shutdown(WAIT).unwrap();
        assert!(launched.child.wait().unwrap().success());
        launched.remove_file().unwrap();
    }
}

/// jupyter_client's `KernelManager` starts the tokio kernel from a kernelspec (a classic launch:
/// jupyter_client 8 has no JEP 66 launcher) and gets kernel_info, executions and a clean exit.
#[test]
fn kernel_manager_runs_the_tokio_kernel_from_its_kernelspec() {
    let jupyter = TempDir::new("tokio-jpath");
    let name = format!("jh-tokio-{}", std::process::id());
    let spec_dir = jupyter.join("kernels").join(&name);
    std::fs::create_dir_all(&spec_dir).unwrap();
    let spec = serde_json::json!({
        "argv": [tokio_kernel(), "{connection_file}"],
        "display_name": "tokio kernel (test)",
        "language": "text",
        // jupyter_client interrupts before a shutdown; the kernel has no SIGINT handler.
        "interrupt_mode": "message",
    });
    std::fs::write(spec_dir.join("kernel.json"), spec.to_string()).unwrap();
    let out = run_classic(|| {
        let mut script = std::process::Command::new(python_str());
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
    assert_eq!(
        result["kernel_info"]["implementation"],
        "tokio_kernel",
        "{}",
        out.describe()
    );
    let executions = result["executions"].as_array().expect("executions");
    assert_eq!(executions.len(), 2);
    for (i, execution) in executions.iter().enumerate() {
        assert_eq!(execution["reply"]["status"], "ok");
        assert_eq!(execution["reply"]["execution_count"], i + 1);
    }
    assert_eq!(result["exit_code"], 0, "{}", out.describe());
}

/// The runtimed-style example starts stock ipykernel (Posit file, rewritten) and the tokio kernel
/// (upstream dialect) race-free, and talks to each.
#[test]
fn the_race_free_client_example_starts_ipykernel_and_the_tokio_kernel() {
    let runtime = TempDir::new("tokio-example");
    let client = example("race_free_client");
    let ipykernel = [
        python_str(),
        "-m".into(),
        "ipykernel_launcher".into(),
        "-f".into(),
        "{connection_file}".into(),
    ];
    let tokio = [
        "--upstream".to_string(),
        tokio_kernel(),
        "{connection_file}".into(),
    ];
    for (argv, implementation, evidence) in [
        (&ipykernel[..], "ipython", "FileRewrite"),
        (&tokio[..], "tokio_kernel", "Request"),
    ] {
        let mut command = std::process::Command::new(&client);
        command
            .args(argv)
            .env("JUPYTER_RUNTIME_DIR", runtime.path());
        let out = run(command);
        out.assert_success();
        assert!(out.stdout.contains(implementation), "{}", out.describe());
        assert!(out.stdout.contains(evidence), "{}", out.describe());
        assert!(out.stdout.contains("execute: \"ok\""), "{}", out.describe());
    }
}
