//! Kernelspecs (`kernel.json`) and the launch mode they imply.
//!
//! The rule, from a kernelspec's `kernel_protocol_version`:
//!
//! * **≥ 5.6 ⇒ [`LaunchMode::Upstream`]**: the handshake "is implemented in version 5.6 of the
//!   protocol" (jupyter_client's docs), in the upstream dialect (xeus).
//! * **≥ 5.5 ⇒ [`LaunchMode::Handshake`]** (the Posit dialect): Kallichore's rule, and safe for
//!   every kernel that says 5.5: ark registers with a `handshake_request`; stock ipykernel ≥ 7.2
//!   also says 5.5 without implementing any handshake, but it rewrites the registration file it
//!   is given with the five ports it bound, which the launcher accepts as registration evidence
//!   (the "file rewrite" path), still without a port race. That is why 5.5 does not mean
//!   upstream: an upstream file would be rewritten too, but only the Posit path is what ark
//!   speaks.
//! * **anything else ⇒ [`LaunchMode::Classic`]**.
//!
//! xeus-python's installed kernelspec declares no `kernel_protocol_version` (its kernel_info
//! says 5.6), so the rule gives it classic; select the handshake explicitly with
//! `jupyter-handshake launch --mode upstream`, [`LaunchMode::Upstream`] in the options, or by
//! adding `"kernel_protocol_version": "5.6"` to its `kernel.json`.
//!
//! ```
//! use jupyter_handshake_host::kernelspec::{KernelSpec, LaunchMode};
//! let spec = KernelSpec::from_json(br#"{
//!     "argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
//!     "display_name": "Python 3", "language": "python",
//!     "kernel_protocol_version": "5.5", "metadata": {"debugger": true}
//! }"#)?;
//! assert_eq!(spec.launch_mode(), LaunchMode::Handshake);
//! assert!(spec.extra.contains_key("metadata"));
//! # Ok::<(), jupyter_handshake_host::kernelspec::KernelSpecError>(())
//! ```

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The mode rule is the protocol's, so it lives in the core.
pub use jupyter_handshake::LaunchMode;

/// A kernelspec: the content of a `kernel.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSpec {
    /// The command line; `{connection_file}` stands for the file's path.
    pub argv: Vec<String>,
    /// Name shown to users (`""` if absent, as in jupyter_client).
    pub display_name: String,
    /// Language of the kernel (`""` if absent, as in jupyter_client).
    pub language: String,
    /// The messaging protocol version the kernel declares; decides the [`LaunchMode`].
    pub kernel_protocol_version: Option<String>,
    /// Every other field (`env`, `metadata`, `interrupt_mode`, …), preserved on write.
    pub extra: Map<String, Value>,
}

/// Why a kernelspec could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelSpecError {
    /// The file could not be read.
    #[error("cannot read kernelspec {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not JSON.
    #[error("invalid kernelspec: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is missing or has the wrong type.
    #[error("invalid kernelspec: field `{field}` must be {expected}")]
    Field {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// Reading succeeded but the content was wrong; `path` says where.
    #[error("{}: {source}", path.display())]
    In {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: Box<Self>,
    },
}

impl KernelSpec {
    /// A kernelspec with these fields and no extras.
    pub fn new(
        argv: Vec<String>,
        display_name: impl Into<String>,
        language: impl Into<String>,
        kernel_protocol_version: Option<String>,
    ) -> Self {
        Self {
            argv,
            display_name: display_name.into(),
            language: language.into(),
            kernel_protocol_version,
            extra: Map::new(),
        }
    }

    /// Parses `kernel.json` content. `argv` must be a non-empty array of strings;
    /// `display_name`, `language` and `kernel_protocol_version`, when present, must be strings.
    pub fn from_json(bytes: &[u8]) -> Result<Self, KernelSpecError> {
        let value: Value = serde_json::from_slice(bytes)?;
        let Value::Object(mut map) = value else {
            return Err(KernelSpecError::Field {
                field: "(top level)",
                expected: "a JSON object",
            });
        };
        let argv = match map.remove("argv") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    _ => Err(()),
                })
                .collect::<Result<Vec<_>, ()>>()
                .ok(),
            _ => None,
        }
        .ok_or(KernelSpecError::Field {
            field: "argv",
            expected: "a non-empty array of strings",
        })?;
        let mut string = |field: &'static str| match map.remove(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(KernelSpecError::Field {
                field,
                expected: "a string",
            }),
        };
        let display_name = string("display_name")?.unwrap_or_default();
        let language = string("language")?.unwrap_or_default();
        let kernel_protocol_version = string("kernel_protocol_version")?;
        Ok(Self {
            argv,
            display_name,
            language,
            kernel_protocol_version,
            extra: map,
        })
    }

    /// Reads a kernelspec from a `kernel.json` file, or from a kernelspec directory (the
    /// `kernel.json` inside it).
    pub fn read(path: &Path) -> Result<Self, KernelSpecError> {
        let file = if path.is_dir() {
            path.join("kernel.json")
        } else {
            path.to_path_buf()
        };
        let bytes = std::fs::read(&file).map_err(|source| KernelSpecError::Read {
            path: file.clone(),
            source,
        })?;
        Self::from_json(&bytes).map_err(|source| KernelSpecError::In {
            path: file,
            source: Box::new(source),
        })
    }

    /// The mode its `kernel_protocol_version` implies (see [`LaunchMode::from_protocol_version`]).
    pub fn launch_mode(&self) -> LaunchMode {
        LaunchMode::from_protocol_version(self.kernel_protocol_version.as_deref())
    }

    /// The `env` field's string entries (other values are skipped).
    pub fn env(&self) -> Vec<(String, String)> {
        match self.extra.get("env") {
            Some(Value::Object(env)) => env
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Pretty JSON (2-space indent, as jupyter_client writes it), extras included.
    pub fn to_json_pretty(&self) -> Vec<u8> {
        let mut map = self.extra.clone();
        map.insert("argv".into(), self.argv.clone().into());
        map.insert("display_name".into(), self.display_name.as_str().into());
        map.insert("language".into(), self.language.as_str().into());
        if let Some(version) = &self.kernel_protocol_version {
            map.insert("kernel_protocol_version".into(), version.as_str().into());
        }
        serde_json::to_vec_pretty(&Value::Object(map)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_kernel_json_keeping_unknown_fields() {
        let json = br#"{
            "argv": ["ark", "--connection_file", "{connection_file}"],
            "display_name": "R", "language": "R",
            "kernel_protocol_version": "5.5",
            "env": {"RUST_LOG": "info", "N": 1},
            "interrupt_mode": "message"
        }"#;
        let spec = KernelSpec::from_json(json).unwrap();
        assert_eq!(spec.argv[2], "{connection_file}");
        assert_eq!(spec.launch_mode(), LaunchMode::Handshake);
        assert_eq!(spec.env(), [("RUST_LOG".to_string(), "info".to_string())]);
        assert_eq!(
            spec.extra.get("interrupt_mode"),
            Some(&Value::from("message"))
        );
        let again = KernelSpec::from_json(&spec.to_json_pretty()).unwrap();
        assert_eq!(again, spec);

        let minimal = KernelSpec::from_json(br#"{"argv": ["k"]}"#).unwrap();
        assert_eq!(minimal.launch_mode(), LaunchMode::Classic);
        assert_eq!(minimal.display_name, "");
        assert!(
            !String::from_utf8(minimal.to_json_pretty())
                .unwrap()
                .contains("kernel_protocol_version")
        );
    }

    #[test]
    fn errors_name_the_field() {
        for (json, field) in [
            (&br#"{"display_name": "x"}"#[..], "argv"),
            (br#"{"argv": []}"#, "argv"),
            (br#"{"argv": ["a", 1]}"#, "argv"),
            (
                br#"{"argv": ["a"], "kernel_protocol_version": 5.5}"#,
                "kernel_protocol_version",
            ),
            (br#"{"argv": ["a"], "language": null}"#, "language"),
        ] {
            let error = KernelSpec::from_json(json).unwrap_err();
            assert!(
                matches!(error, KernelSpecError::Field { field: f, .. } if f == field),
                "{error}"
            );
        }
        assert!(matches!(
            KernelSpec::from_json(b"[1]"),
            Err(KernelSpecError::Field { .. })
        ));
        assert!(matches!(
            KernelSpec::from_json(b"{"),
            Err(KernelSpecError::Json(_))
        ));
        let missing = KernelSpec::read(Path::new("/nonexistent/kernel.json")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read kernelspec /nonexistent/kernel.json")
        );
    }

    #[test]
    fn reads_a_kernelspec_directory() {
        let dir = crate::files::tests::TempDir::new();
        std::fs::write(
            dir.0.join("kernel.json"),
            br#"{"argv": ["k"], "language": 3}"#,
        )
        .unwrap();
        let error = KernelSpec::read(&dir.0).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("kernel.json: invalid kernelspec: field `language`")
        );
        std::fs::write(
            dir.0.join("kernel.json"),
            br#"{"argv": ["k", "-f", "{connection_file}"]}"#,
        )
        .unwrap();
        assert_eq!(KernelSpec::read(&dir.0).unwrap().argv.len(), 3);
    }
}
