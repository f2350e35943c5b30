//! The launcher side, blocking: [`launch`] and [`Launcher`] wait with `zmq::poll` on the
//! registration socket.
//!
//! The sequence, classic mode and what is left on disk are described in [`crate::launch`];
//! its types are re-exported here.
//!
//! ```no_run
//! use jupyter_handshake_zmq::blocking::launcher::{LaunchOptions, launch};
//! # fn main() -> Result<(), jupyter_handshake_zmq::LaunchError> {
//! let ctx = zmq::Context::new();
//! let argv: Vec<String> = ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
//!     .map(String::from)
//!     .to_vec();
//! let launched = launch(&ctx, &argv, &LaunchOptions::default(), &mut |_, _| {})?;
//! println!("shell port {} ({:?})", launched.connection.ports.shell, launched.evidence);
//! # Ok(()) }
//! ```

use jupyter_handshake::RegistrarEvent;
use jupyter_handshake::{Dialect, Instant, LauncherEvent};

pub use crate::launch::{
    ChildStdio, LaunchOptions, Launched, exit_status, substitute_connection_file,
};

/// The one [`Launcher`](crate::launch::Launcher) type, waiting with `zmq::poll`.
pub type Launcher = crate::launch::Launcher<zmq::Socket>;

use crate::error::LaunchError;
use crate::kernelspec::LaunchMode;
use crate::launch::{launch_classic, only, single};
use crate::wait::block;

/// Launches the kernel `argv` (`{connection_file}` is replaced by the file's path) and waits
/// until it has registered: a launch of one through a [`Launcher`] of its own (classic mode:
/// the ports are picked, the file written, the kernel spawned, and that is all).
///
/// `observer` sees every event of the launch (state changes, dropped messages and file
/// changes, refusals, the outcome) with the instant it happened. See [`crate::launch`] for the
/// sequence, classic mode, and what is left on disk.
pub fn launch(
    ctx: &zmq::Context,
    argv: &[String],
    options: &LaunchOptions,
    observer: &mut dyn FnMut(Instant, &LauncherEvent),
) -> Result<Launched, LaunchError> {
    if options.mode == LaunchMode::Classic {
        return launch_classic(argv, options);
    }
    let mut launcher = Launcher::new(ctx, options)?;
    let launches = launcher.fleet.same_dialect(&[argv.to_vec()]);
    only(launcher.launch_mixed(&launches, &mut single(observer)))
}

impl Launcher {
    /// Launches one kernel per command, all at once, and waits until each has registered or
    /// failed. The result for each command is at its index. `Err` only when the launcher itself
    /// failed (its socket); every kernel it started is then stopped.
    ///
    /// `observer` sees every event: a launch's own (tagged with its id, which
    /// [`Launched::launch_id`] carries) and the shared socket's drops.
    pub fn launch_all(
        &mut self,
        argvs: &[Vec<String>],
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<Vec<Result<Launched, LaunchError>>, LaunchError> {
        let launches = self.fleet.same_dialect(argvs);
        self.launch_mixed(&launches, observer)
    }

    /// Like `launch_all`, each kernel with its own dialect: Posit and upstream kernels share
    /// the one registration socket.
    pub fn launch_mixed(
        &mut self,
        launches: &[(Vec<String>, Dialect)],
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<Vec<Result<Launched, LaunchError>>, LaunchError> {
        let started = self.fleet.start(launches, observer)?;
        let outcome = block(&mut self.fleet.driving(observer));
        self.fleet.conclude(started, outcome)
    }

    /// Restarts `launched` through the same socket: kills its process if it still runs, writes
    /// its file again (same key) and spawns its command again, and waits until the new process
    /// registers. On success `launched` describes the new process (new ports, new child); until
    /// then, and on failure, it keeps the old information.
    pub fn restart(
        &mut self,
        launched: &mut Launched,
        observer: &mut dyn FnMut(Instant, &RegistrarEvent),
    ) -> Result<(), LaunchError> {
        let id = self.fleet.restart(launched, observer)?;
        let outcome = block(&mut self.fleet.driving(observer));
        *launched = self.fleet.conclude_restart(id, outcome)?;
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::blocking::client::Client;
    use crate::blocking::testkit::{
        CLASSIC_TRIES, Guard, Seen, answers_or_races, collect, helper_kernel_argv, observe, options,
    };
    use crate::kernelspec::LaunchMode;
    use crate::temp::TempDir;
    use jupyter_handshake::{ConnectionFile, Evidence, ExitStatus, Failure};
    use jupyter_handshake::{LauncherState, Waiting};
    use serde_json::json;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn files_in(dir: &TempDir) -> usize {
        std::fs::read_dir(&dir.0).unwrap().count()
    }

    /// Whether `python3` can import `module`; tests that need it are skipped (with a note)
    /// otherwise.
    /// Fails the test (never skips it) when python3 cannot import `module`: `.ci/run` installs
    /// the pinned peers, so a missing one is a broken set-up, not a reason to pass.
    fn require_python(module: &str) {
        let ok = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "python3 cannot import {module}: pip install -r tests/python/requirements.txt"
        );
    }

    #[test]
    fn a_kernel_that_exits_is_reported_with_its_status_and_the_file_removed() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut seen = Seen::default();
        let error = launch(
            &ctx,
            &argv(&["sh", "-c", "exit 3"]),
            &LaunchOptions {
                // Far away: the exit must be reported when it happens, not at the deadline.
                timeout: Duration::from_secs(600),
                ..options(&dir)
            },
            &mut observe(&mut seen),
        )
        .unwrap_err();
        assert!(
            matches!(
                error,
                LaunchError::Failed {
                    failure: Failure::KernelExited(ExitStatus::Code(3)),
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "the kernel exited before it registered (exit status 3)"
        );
        assert_eq!(seen.states, [LauncherState::Bound, LauncherState::Failed]);
        assert_eq!(files_in(&dir), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_silent_kernel_times_out_and_is_killed() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let pid_file = dir.0.join("pid");
        let script = format!("echo $$ > {}; exec sleep 600", pid_file.display());
        let error = launch(
            &ctx,
            &argv(&["sh", "-c", &script]),
            &LaunchOptions {
                timeout: Duration::from_millis(300),
                ..options(&dir)
            },
            &mut |_, _| {},
        )
        .unwrap_err();
        let LaunchError::Failed {
            failure: Failure::Timeout { waiting_for, .. },
            ..
        } = &error
        else {
            panic!("expected a timeout, got {error}");
        };
        assert_eq!(*waiting_for, Waiting::Registration);
        assert!(
            error.to_string().starts_with("timed out after 0."),
            "{error}"
        );
        // The child was killed and reaped, and only the pid file is left.
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists());
        }
        assert_eq!(files_in(&dir), usize::from(pid_file.exists()));
    }

    #[test]
    fn bad_commands_are_errors() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let error = launch(&ctx, &[], &options(&dir), &mut |_, _| {}).unwrap_err();
        assert!(matches!(error, LaunchError::EmptyCommand));
        let error = launch(
            &ctx,
            &argv(&["/nonexistent/kernel", "{connection_file}"]),
            &options(&dir),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot start the kernel `/nonexistent/kernel`: "),
            "{error}"
        );
        assert_eq!(files_in(&dir), 0);
    }

    #[test]
    fn substitutes_the_file_everywhere() {
        let path = Path::new("/run/k.json");
        assert_eq!(
            substitute_connection_file(
                &argv(&[
                    "k",
                    "-f",
                    "{connection_file}",
                    "--x={connection_file}",
                    "{other}"
                ]),
                path
            ),
            argv(&["k", "-f", "/run/k.json", "--x=/run/k.json", "{other}"])
        );
    }

    /// Our launcher and our kernel side, end to end: a helper kernel (this test binary, run as a
    /// child) first sends garbage, a forged request and a well-signed request with unusable
    /// ports to the registration socket, then registers for real with `start_kernel`.
    #[test]
    fn forged_and_garbage_messages_are_dropped_and_the_launch_succeeds() {
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut seen = Seen::default();
        let mut launched = Guard(
            launch(
                &ctx,
                &helper_kernel_argv("forge"),
                &options(&dir),
                &mut observe(&mut seen),
            )
            .unwrap(),
        );
        eprintln!(
            "helper kernel registered after {:?}",
            launched.registered_after
        );
        assert_eq!(launched.evidence, Evidence::Request);
        assert_eq!(
            seen.states,
            [LauncherState::Bound, LauncherState::Connected]
        );
        assert_eq!(seen.rejected, 2, "garbage and forgery");
        assert_eq!(seen.refused, 1, "signed request with unusable ports");
        let key = launched.connection.key.expose_secret().to_string();
        assert!(!format!("{launched:?}").contains(&key));

        let mut client = Client::connect(&ctx, &launched.connection).unwrap();
        let info = client.wait_for_ready(Duration::from_secs(30)).unwrap();
        assert_eq!(info["implementation"], "helper");
        assert!(client.heartbeat(Duration::from_secs(10)).unwrap());
        let reply = client
            .request(
                Channel::Shell,
                "comm_info_request",
                json!({}),
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(reply["status"], "error");
        assert_eq!(
            client.shutdown(Duration::from_secs(10)).unwrap()["status"],
            "ok"
        );
        assert!(launched.child.wait().unwrap().success());
        assert!(
            launched.file.exists(),
            "the launcher removes nothing on success"
        );
        launched.remove_file().unwrap();
        launched.remove_file().unwrap();
    }

    use crate::blocking::client::Channel;

    #[test]
    fn stock_ipykernel_registers_by_rewriting_the_file() {
        require_python("ipykernel");
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let mut seen = Seen::default();
        let mut launched = Guard(
            launch(
                &ctx,
                &argv(&[
                    "python3",
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ]),
                &options(&dir),
                &mut observe(&mut seen),
            )
            .unwrap(),
        );
        eprintln!(
            "ipykernel (file rewrite) registered after {:?}",
            launched.registered_after
        );
        assert_eq!(launched.evidence, Evidence::FileRewrite);
        let mut client = Client::connect(&ctx, &launched.connection).unwrap();
        let info = client.wait_for_ready(Duration::from_secs(30)).unwrap();
        assert_eq!(info["status"], "ok");
        assert_eq!(info["implementation"], "ipython");
        let outcome = client
            .execute("print('hi'); 1 + 1", Duration::from_secs(30))
            .unwrap();
        assert_eq!(outcome.reply["status"], "ok");
        let types: Vec<&str> = outcome.iopub.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types.first(), Some(&"status"));
        assert_eq!(types.last(), Some(&"status"));
        let result = outcome
            .iopub
            .iter()
            .find(|(t, _)| t == "execute_result")
            .unwrap();
        assert_eq!(result.1["data"]["text/plain"], "2");
        let stream = outcome.iopub.iter().find(|(t, _)| t == "stream").unwrap();
        assert_eq!(stream.1["text"], "hi\n");
        assert!(client.heartbeat(Duration::from_secs(10)).unwrap());
        assert_eq!(
            client.shutdown(Duration::from_secs(10)).unwrap()["status"],
            "ok"
        );
        let _ = launched.child.wait();
        launched.remove_file().unwrap();
    }

    #[test]
    fn the_posit_ipykernel_wrapper_registers_with_a_handshake_request() {
        require_python("ipykernel");
        let wrapper = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/python/ipykernel_posit_kernel.py");
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let wrapper = wrapper.display().to_string();
        let mut launched = Guard(
            launch(
                &ctx,
                &argv(&["python3", &wrapper, "-f", "{connection_file}"]),
                &options(&dir),
                &mut |_, _| {},
            )
            .unwrap(),
        );
        eprintln!(
            "posit wrapper (request) registered after {:?}",
            launched.registered_after
        );
        assert_eq!(launched.evidence, Evidence::Request);
        let mut client = Client::connect(&ctx, &launched.connection).unwrap();
        let info = client.wait_for_ready(Duration::from_secs(30)).unwrap();
        assert_eq!(info["status"], "ok");
        assert_eq!(
            client.shutdown(Duration::from_secs(10)).unwrap()["status"],
            "ok"
        );
        let _ = launched.child.wait();
        launched.remove_file().unwrap();
    }

    #[test]
    fn classic_mode_launches_ipykernel_with_a_connection_file() {
        require_python("ipykernel");
        let ctx = zmq::Context::new();
        let dir = TempDir::new();
        let classic = || {
            launch(
                &ctx,
                &argv(&[
                    "python3",
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ]),
                &LaunchOptions {
                    mode: LaunchMode::Classic,
                    kernel_name: Some("python3".into()),
                    stderr: ChildStdio::Piped,
                    ..options(&dir)
                },
                &mut |_, _| {},
            )
            .unwrap()
        };
        let mut launched = (0..CLASSIC_TRIES)
            .map(|_| Guard(classic()))
            .find_map(|mut launched| {
                let stderr = collect(launched.0.child.stderr.take().unwrap());
                let raced = || stderr.lock().unwrap().contains("Address already in use");
                answers_or_races(&ctx, &mut launched.0, &raced).then_some(launched)
            })
            .expect("a classic launch whose kernel bound its ports");
        assert_eq!(launched.evidence, Evidence::Classic);
        assert_eq!(launched.registered_after, Duration::ZERO);
        assert_eq!(launched.connection.kernel_name.as_deref(), Some("python3"));
        let on_disk = ConnectionFile::from_json(&std::fs::read(&launched.file).unwrap()).unwrap();
        assert_eq!(on_disk.ports, launched.connection.ports);
        assert_eq!(on_disk.kernel_name.as_deref(), Some("python3"));
        let mut client = Client::connect(&ctx, &launched.connection).unwrap();
        let info = client.wait_for_ready(Duration::from_secs(30)).unwrap();
        assert_eq!(info["status"], "ok");
        assert_eq!(
            client.shutdown(Duration::from_secs(10)).unwrap()["status"],
            "ok"
        );
        let _ = launched.child.wait();
        launched.remove_file().unwrap();
    }
}
