//! Field-by-field JSON reading with errors that name the field, what was expected and the *kind*
//! of value that arrived — never the value itself, which may be attacker bytes or a secret.

use alloc::string::String;
use core::fmt;

use serde_json::{Map, Value};

/// The kind of a JSON value, for error messages that must not echo the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool,
    /// a number
    Number,
    /// a string
    String,
    /// an array
    Array,
    /// an object
    Object,
}

impl JsonKind {
    pub(crate) fn of(value: &Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(_) => Self::Bool,
            Value::Number(_) => Self::Number,
            Value::String(_) => Self::String,
            Value::Array(_) => Self::Array,
            Value::Object(_) => Self::Object,
        }
    }
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Null => "null",
            Self::Bool => "a boolean",
            Self::Number => "a number",
            Self::String => "a string",
            Self::Array => "an array",
            Self::Object => "an object",
        })
    }
}

/// A JSON document that is not what was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON at all.
    #[error("not valid JSON (line {line}, column {column})")]
    Syntax {
        /// 1-based line of the first error.
        line: usize,
        /// 1-based column of the first error.
        column: usize,
    },
    /// JSON, but not an object.
    #[error("expected a JSON object, got {got}")]
    NotAnObject {
        /// What arrived.
        got: JsonKind,
    },
    /// A required field is absent.
    #[error("missing field `{field}`")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}, got {got}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What the field must hold.
        expected: &'static str,
        /// What arrived.
        got: JsonKind,
    },
    /// A field has the right type but an unacceptable value.
    #[error("field `{field}` must be {expected}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// What the field must hold.
        expected: &'static str,
    },
}

/// Parses `bytes` as a JSON object.
pub(crate) fn object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(JsonError::NotAnObject {
            got: JsonKind::of(&other),
        }),
        Err(e) => Err(JsonError::Syntax {
            line: e.line(),
            column: e.column(),
        }),
    }
}

/// A required string field.
pub(crate) fn string<'m>(
    map: &'m Map<String, Value>,
    field: &'static str,
) -> Result<&'m str, JsonError> {
    match map.get(field) {
        None => Err(JsonError::MissingField { field }),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(JsonError::WrongType {
            field,
            expected: "a string",
            got: JsonKind::of(other),
        }),
    }
}

/// An optional string field; `null` counts as absent.
pub(crate) fn optional_string<'m>(
    map: &'m Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'m str>, JsonError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(JsonError::WrongType {
            field,
            expected: "a string",
            got: JsonKind::of(other),
        }),
    }
}

/// A TCP port held as a JSON integer, 0 to 65535 (`allow_zero`) or 1 to 65535.
pub(crate) fn port(value: &Value, field: &'static str, allow_zero: bool) -> Result<u16, JsonError> {
    let expected = if allow_zero {
        "an integer port from 0 to 65535"
    } else {
        "an integer port from 1 to 65535"
    };
    let Value::Number(n) = value else {
        return Err(JsonError::WrongType {
            field,
            expected: "an integer port",
            got: JsonKind::of(value),
        });
    };
    match n.as_u64().and_then(|p| u16::try_from(p).ok()) {
        Some(0) if !allow_zero => Err(JsonError::InvalidValue { field, expected }),
        Some(p) => Ok(p),
        None => Err(JsonError::InvalidValue { field, expected }),
    }
}

/// A port written either as an integer or, as xeus writes and reads ports, as a JSON string of
/// decimal digits.
pub(crate) fn port_text_or_number(
    value: &Value,
    field: &'static str,
    allow_zero: bool,
) -> Result<u16, JsonError> {
    match value {
        Value::String(text) => {
            let expected = "a port from 1 to 65535 (as decimal digits)";
            if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(JsonError::InvalidValue { field, expected });
            }
            match text.parse::<u16>() {
                Ok(0) if !allow_zero => Err(JsonError::InvalidValue { field, expected }),
                Ok(port) => Ok(port),
                Err(_) => Err(JsonError::InvalidValue { field, expected }),
            }
        }
        Value::Number(_) => port(value, field, allow_zero),
        other => Err(JsonError::WrongType {
            field,
            expected: "a port, as a string or an integer",
            got: JsonKind::of(other),
        }),
    }
}

/// `text` as a JSON string literal, quotes included (serde_json's escaping: `"`, `\\`, and
/// control characters; other characters as raw UTF-8, as nlohmann and Python's
/// `ensure_ascii=False` write them).
pub(crate) fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn errors_name_the_field_but_not_the_value() {
        let map = object(br#"{"a": "s3cr3t", "p": 70000, "q": "1", "z": 0}"#).unwrap();
        let e = port(&map["a"], "a", true).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"));
        assert_eq!(
            e.to_string(),
            "field `a` must be an integer port, got a string"
        );
        assert!(matches!(
            port(&map["p"], "p", true),
            Err(JsonError::InvalidValue { .. })
        ));
        assert!(matches!(
            port(&map["q"], "q", true),
            Err(JsonError::WrongType { .. })
        ));
        assert_eq!(port(&map["z"], "z", true), Ok(0));
        assert!(port(&map["z"], "z", false).is_err());
        assert_eq!(
            string(&map, "missing"),
            Err(JsonError::MissingField { field: "missing" })
        );
    }

    #[test]
    fn syntax_and_shape_errors() {
        assert!(matches!(object(b"{"), Err(JsonError::Syntax { .. })));
        assert_eq!(
            object(b"[1]"),
            Err(JsonError::NotAnObject {
                got: JsonKind::Array
            })
        );
    }
}
