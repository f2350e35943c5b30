//! `jupyter-handshake kernelspec install`: makes the built-in kernel visible to Jupyter.
//!
//! The kernelspec declares `kernel_protocol_version` "5.5", the signal that a launcher may start
//! the kernel with a registration file (JEP 66). Launchers that do not know the handshake, such
//! as jupyter_client's `KernelManager`, ignore that field and hand over a classic connection file,
//! which the kernel binds as is: the same kernelspec serves both.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::CliError;
use super::args::{Arg, Args, is_help, joined};

pub(crate) const HELP: &str = "\
jupyter-handshake kernelspec install: install a kernelspec for the built-in kernel

Usage:
  jupyter-handshake kernelspec install [--user | --prefix PREFIX | --dir DIR] [--name NAME]

Writes NAME/kernel.json with argv [THIS_BINARY, \"kernel\", \"-f\", \"{connection_file}\"],
language \"text\" and kernel_protocol_version \"5.5\" (handshake-capable), then prints the
directory it wrote. The argv holds the absolute path of this binary: reinstall if you move it.

Options:
  --user           the user's Jupyter data dir (default): $JUPYTER_DATA_DIR, else
                   ~/.local/share/jupyter ($XDG_DATA_HOME/jupyter), ~/Library/Jupyter on
                   macOS, %APPDATA%\\jupyter on Windows; kernels go in its kernels/ folder
  --prefix PREFIX  PREFIX/share/jupyter/kernels (e.g. a virtualenv: --prefix \"$VIRTUAL_ENV\")
  --dir DIR        DIR itself (the kernelspec goes in DIR/NAME)
  --name NAME      the kernel name (default jupyter-handshake); letters, digits, '.', '_', '-'
  -h, --help       this help
";

/// The default kernel name.
const DEFAULT_NAME: &str = "jupyter-handshake";

/// Where to install.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    User,
    Prefix(PathBuf),
    Dir(PathBuf),
}

/// `jupyter-handshake kernelspec …`.
pub(crate) fn run(rest: Vec<OsString>) -> Result<ExitCode, CliError> {
    let mut rest = rest.into_iter();
    let sub = rest.next().map(|s| s.to_string_lossy().into_owned());
    match sub.as_deref() {
        Some("install") => install(Args::new("kernelspec install", rest.collect())),
        Some(h) if is_help(h) => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        None => Err(CliError::usage(
            "'kernelspec' needs a subcommand: install (see 'jupyter-handshake kernelspec --help')",
        )),
        Some(other) => Err(CliError::usage(format!(
            "unknown kernelspec subcommand '{other}' (only 'install' exists; see 'jupyter-handshake kernelspec --help')"
        ))),
    }
}

fn install(mut args: Args) -> Result<ExitCode, CliError> {
    let mut target: Option<Target> = None;
    let mut name = DEFAULT_NAME.to_owned();
    let mut set_target = |args: &Args, new: Target| {
        if target.is_some() {
            return Err(CliError::usage(format!(
                "'{}' takes only one of --user, --prefix and --dir",
                args.command()
            )));
        }
        target = Some(new);
        Ok(())
    };
    while let Some(arg) = args.next_arg()? {
        match arg {
            Arg::Option(o) if is_help(&o) => {
                print!("{HELP}");
                return Ok(ExitCode::SUCCESS);
            }
            Arg::Option(o) if o == "--user" => set_target(&args, Target::User)?,
            Arg::Option(o) if o == "--prefix" => {
                let p = args.path(&o)?;
                set_target(&args, Target::Prefix(p))?;
            }
            Arg::Option(o) if o == "--dir" => {
                let d = args.path(&o)?;
                set_target(&args, Target::Dir(d))?;
            }
            Arg::Option(o) if o == "--name" => name = args.value(&o)?,
            Arg::Option(o) => return Err(args.unknown(&o)),
            Arg::Positional(p) => return Err(args.unexpected(&p)),
            Arg::Rest(r) => return Err(args.unexpected(&joined(&r))),
        }
    }
    if !valid_name(&name) {
        return Err(CliError::usage(format!(
            "invalid kernel name '{name}': use letters, digits, '.', '_' and '-' only"
        )));
    }
    let kernels = match target.unwrap_or(Target::User) {
        Target::User => user_data_dir()?.join("kernels"),
        Target::Prefix(p) => p.join("share").join("jupyter").join("kernels"),
        Target::Dir(d) => d,
    };
    let dir = kernels.join(&name);
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| CliError::failed(format!("cannot find this program's own path: {e}")))?;
    let exe = exe.to_str().ok_or_else(|| {
        CliError::failed(format!(
            "this program's path {} is not valid UTF-8, so it cannot go in kernel.json",
            exe.display()
        ))
    })?;
    write_kernel_json(&dir, &kernel_json(exe))?;
    println!("{}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The kernelspec for the built-in kernel run from `exe`.
fn kernel_json(exe: &str) -> serde_json::Value {
    serde_json::json!({
        "argv": [exe, "kernel", "-f", "{connection_file}"],
        "display_name": "jupyter-handshake (text)",
        "language": "text",
        // "5.5" signals JEP 66 support to launchers that know it (Kallichore, ours).
        "kernel_protocol_version": "5.5",
        // Interrupts as `interrupt_request` on control: the kernel has no SIGINT handler, and a
        // signal would kill it instead of interrupting it.
        "interrupt_mode": "message",
        "metadata": { "jupyter_handshake": { "version": env!("CARGO_PKG_VERSION") } },
    })
}

/// Writes `kernel.json` into `dir` (created if needed) through a temporary file and a rename,
/// so that Jupyter never lists a half-written kernelspec.
fn write_kernel_json(dir: &Path, spec: &serde_json::Value) -> Result<(), CliError> {
    let fail = |what: &str, path: &Path, e: std::io::Error| {
        CliError::failed(format!("cannot {what} {}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create", dir, e))?;
    let mut text = serde_json::to_string_pretty(spec)
        .map_err(|e| CliError::failed(format!("cannot encode kernel.json: {e}")))?;
    text.push('\n');
    let final_path = dir.join("kernel.json");
    let temp_path = dir.join(format!(".kernel.json.{}.tmp", std::process::id()));
    std::fs::write(&temp_path, text).map_err(|e| fail("write", &temp_path, e))?;
    std::fs::rename(&temp_path, &final_path).map_err(|e| {
        let _ = std::fs::remove_file(&temp_path);
        fail("write", &final_path, e)
    })
}

/// Jupyter's rule for kernel names (jupyter_client `_is_valid_kernel_name`), minus `.` and `..`,
/// which would escape the kernels directory.
fn valid_name(name: &str) -> bool {
    !name.chars().all(|c| c == '.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The user's Jupyter data directory, as jupyter_core's `jupyter_data_dir` finds it.
fn user_data_dir() -> Result<PathBuf, CliError> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("JUPYTER_DATA_DIR") {
        return Ok(dir);
    }
    if cfg!(windows) {
        return var("APPDATA")
            .map(|d| d.join("jupyter"))
            .ok_or_else(|| CliError::failed("%APPDATA% is not set; use --dir or --prefix"));
    }
    let home =
        var("HOME").ok_or_else(|| CliError::failed("$HOME is not set; use --dir or --prefix"))?;
    if cfg!(target_os = "macos") {
        return Ok(home.join("Library").join("Jupyter"));
    }
    Ok(var("XDG_DATA_HOME")
        .unwrap_or_else(|| home.join(".local").join("share"))
        .join("jupyter"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_follow_jupyter() {
        assert!(valid_name("jupyter-handshake"));
        assert!(valid_name("py3.12_x"));
        for bad in ["", ".", "..", "a b", "../x", "a/b", "é"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_spec_declares_the_handshake() {
        let spec = kernel_json("/opt/jh");
        assert_eq!(spec["argv"][0], "/opt/jh");
        assert_eq!(spec["argv"][3], "{connection_file}");
        assert_eq!(spec["kernel_protocol_version"], "5.5");
        assert_eq!(spec["language"], "text");
    }
}
