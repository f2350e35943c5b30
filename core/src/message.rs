//! Message headers, the handshake messages, and a [`Session`] that builds signed messages.
//!
//! What we emit matches what every peer parses (`protocol.md` W9–W14): all six header fields,
//! compact JSON, `date` in UTC with six fraction digits, a unique `msg_id` per message. What we
//! accept is what real peers send: ark's nine fraction digits and `+00:00`, Kallichore's
//! millisecond dates, `null` metadata and rebuilt parent headers, extra header fields
//! (`subshell_id`) and extra content fields (`capabilities`).

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::Value;

use crate::connection::{KernelPorts, PortsError};
use crate::json::{self, JsonError};
use crate::sign::Signer;
use crate::time::Instant;
use crate::wire::{self, Parts};

/// The protocol version our headers carry: 5.5, the version that signals JEP 66.
pub const PROTOCOL_VERSION: &str = "5.5";
/// `msg_type` of the kernel's registration.
pub const HANDSHAKE_REQUEST: &str = "handshake_request";
/// `msg_type` of the launcher's acknowledgement.
pub const HANDSHAKE_REPLY: &str = "handshake_reply";

/// Which of the four signed dicts a [`MessageError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The header.
    Header,
    /// The parent header.
    ParentHeader,
    /// The metadata.
    Metadata,
    /// The content.
    Content,
}

impl core::fmt::Display for Part {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::ParentHeader => "parent_header",
            Self::Metadata => "metadata",
            Self::Content => "content",
        })
    }
}

/// A verified message whose JSON is not what its type requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A dict is malformed.
    #[error("{part}: {error}")]
    Json {
        /// Which dict.
        part: Part,
        /// What is wrong with it.
        error: JsonError,
    },
    /// The content's ports cannot be a kernel's bound ports.
    #[error("content: {0}")]
    Ports(#[from] PortsError),
}

impl MessageError {
    fn json(part: Part) -> impl FnOnce(JsonError) -> Self {
        move |error| Self::Json { part, error }
    }
}

/// A Jupyter message header: the six fields every peer requires.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Header {
    /// Unique id of this message.
    pub msg_id: String,
    /// Id of the sending session (one per process; regenerated on restart).
    pub session: String,
    /// User name of the sender.
    pub username: String,
    /// ISO 8601 date. Kept as text: peers differ in precision and suffix, and nothing here
    /// depends on its value.
    pub date: String,
    /// The message type.
    pub msg_type: String,
    /// The protocol version of the sender.
    pub version: String,
}

impl Header {
    /// Reads a header. Extra fields are ignored; all six are required strings.
    pub fn from_json(bytes: &[u8]) -> Result<Self, JsonError> {
        // Fast path: straight into borrowed fields, no intermediate map. Anything it refuses
        // goes through the map below, which says precisely which field is wrong.
        if let Ok(raw) = serde_json::from_slice::<RawHeader<'_>>(bytes) {
            return Ok(Self {
                msg_id: raw.msg_id.into_owned(),
                session: raw.session.into_owned(),
                username: raw.username.into_owned(),
                date: raw.date.into_owned(),
                msg_type: raw.msg_type.into_owned(),
                version: raw.version.into_owned(),
            });
        }
        let map = json::object(bytes)?;
        let field = |name| json::string(&map, name).map(ToString::to_string);
        Ok(Self {
            msg_id: field("msg_id")?,
            session: field("session")?,
            username: field("username")?,
            date: field("date")?,
            msg_type: field("msg_type")?,
            version: field("version")?,
        })
    }

    /// Compact JSON, keys in the order msg_id, session, username, date, msg_type, version.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a parent header: an empty frame, `{}` or `null` mean "no parent" (ark and
    /// Kallichore send each); anything else must be a full header.
    pub fn parse_parent(bytes: &[u8]) -> Result<Option<Self>, JsonError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Null) => Ok(None),
            Ok(Value::Object(map)) if map.is_empty() => Ok(None),
            _ => Self::from_json(bytes).map(Some),
        }
    }
}

/// A header's six fields, borrowed from the JSON text where no escape forces a copy.
#[derive(serde::Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    msg_id: Cow<'a, str>,
    #[serde(borrow)]
    session: Cow<'a, str>,
    #[serde(borrow)]
    username: Cow<'a, str>,
    #[serde(borrow)]
    date: Cow<'a, str>,
    #[serde(borrow)]
    msg_type: Cow<'a, str>,
    #[serde(borrow)]
    version: Cow<'a, str>,
}

/// A `handshake_request`'s five ports, as integers (other fields ignored).
#[derive(serde::Deserialize)]
struct RawPorts {
    control_port: u16,
    shell_port: u16,
    stdin_port: u16,
    iopub_port: u16,
    hb_port: u16,
}

/// A parent header's `msg_id`, if it has a string one.
#[derive(serde::Deserialize)]
struct ParentId<'a> {
    #[serde(borrow)]
    msg_id: Option<Cow<'a, str>>,
}

/// The content of a `handshake_request`: the kernel's five ports as integers.
pub fn request_ports(content: &[u8]) -> Result<KernelPorts, MessageError> {
    // Fast path: straight into five integers. Anything it refuses goes through the map below,
    // which names the field and what was wrong with it.
    if let Ok(raw) = serde_json::from_slice::<RawPorts>(content) {
        let ports = KernelPorts {
            shell: raw.shell_port,
            iopub: raw.iopub_port,
            stdin: raw.stdin_port,
            control: raw.control_port,
            hb: raw.hb_port,
        };
        ports.validate()?;
        return Ok(ports);
    }
    let map = json::object(content).map_err(MessageError::json(Part::Content))?;
    let ports = KernelPorts::from_map(&map, true)
        .map_err(MessageError::json(Part::Content))?
        .ok_or(MessageError::Json {
            part: Part::Content,
            error: JsonError::MissingField {
                field: "control_port",
            },
        })?;
    ports.validate()?;
    Ok(ports)
}

/// The content of a `handshake_request` for `ports`, compact, in ark's key order.
pub fn request_content(ports: &KernelPorts) -> Vec<u8> {
    let [control, shell, stdin, iopub, hb] = ports.as_array();
    format!(
        r#"{{"control_port":{control},"shell_port":{shell},"stdin_port":{stdin},"iopub_port":{iopub},"hb_port":{hb}}}"#
    )
    .into_bytes()
}

/// The upstream dialect's acknowledgement: the content xeus-zmq's launcher sends, signed, as a
/// single frame. Any verified content that is not a JSON `status: error` counts as acceptance
/// on the kernel side, so a launcher that answers `{"status":"ok"}` is understood too.
pub(crate) const UPSTREAM_ACK: &[u8] = b"ACK";

/// The content of an upstream-dialect request for `ports`: compact JSON with the keys in sorted
/// order and the ports as strings, byte for byte what xeus sends (nlohmann's default object
/// sorts its keys).
///
/// Written out field by field rather than through a `serde_json::Map`: the map's iteration order
/// depends on whether some crate in the build enables serde_json's `preserve_order` feature, and
/// these bytes must not.
pub fn upstream_request_content(kernel_id: &str, ports: &KernelPorts) -> Vec<u8> {
    // Sorted: control_port < hb_port < iopub_port < kernel_id < shell_port < stdin_port.
    let kernel_id = json::quoted(kernel_id);
    let [control, shell, stdin, iopub, hb] = ports.as_array();
    format!(
        r#"{{"control_port":"{control}","hb_port":"{hb}","iopub_port":"{iopub}","kernel_id":{kernel_id},"shell_port":"{shell}","stdin_port":"{stdin}"}}"#
    )
    .into_bytes()
}

/// An upstream-dialect request, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// The kernel's `kernel_id`, as its registration file gave it.
    pub kernel_id: String,
    /// The ports it bound.
    pub ports: KernelPorts,
}

/// Reads the content of an upstream-dialect request: `kernel_id` and the five ports, as strings
/// (xeus) or integers; the ports must be usable.
pub fn upstream_request(content: &[u8]) -> Result<UpstreamRequest, MessageError> {
    let map = json::object(content).map_err(MessageError::json(Part::Content))?;
    let kernel_id = json::string(&map, "kernel_id")
        .map_err(MessageError::json(Part::Content))?
        .to_string();
    let mut ports = [0u16; 5];
    for (slot, field) in ports.iter_mut().zip(KernelPorts::FIELDS) {
        let value = map.get(field).ok_or(MessageError::Json {
            part: Part::Content,
            error: JsonError::MissingField { field },
        })?;
        *slot = json::port_text_or_number(value, field, true)
            .map_err(MessageError::json(Part::Content))?;
    }
    let ports = KernelPorts::from_array(ports);
    ports.validate()?;
    Ok(UpstreamRequest { kernel_id, ports })
}

/// The `kernel_id` an upstream request names, read *before* its signature is checked, only to
/// find the one launch whose key can verify it (a [`Registrar`](crate::Registrar) then pays one
/// HMAC, not one per launch). Never trusted: the verified content is read again.
pub(crate) fn upstream_kernel_id(content: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        kernel_id: Cow<'a, str>,
    }
    serde_json::from_slice::<Peek<'_>>(content)
        .ok()
        .map(|peek| peek.kernel_id)
}

/// The `status` of a `handshake_reply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyStatus {
    /// Registration accepted.
    Ok,
    /// Registration refused.
    Error,
}

/// The content of a `handshake_reply`. Kallichore adds `capabilities` (ignored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeReply {
    /// Accepted or refused.
    pub status: ReplyStatus,
    /// Why it was refused, if the launcher said.
    pub error: Option<String>,
}

impl HandshakeReply {
    /// The acceptance.
    pub const OK: Self = Self {
        status: ReplyStatus::Ok,
        error: None,
    };

    /// Reads the content of a reply.
    pub fn from_json(content: &[u8]) -> Result<Self, JsonError> {
        let map = json::object(content)?;
        let status = match json::string(&map, "status")? {
            "ok" => ReplyStatus::Ok,
            "error" => ReplyStatus::Error,
            _ => {
                return Err(JsonError::InvalidValue {
                    field: "status",
                    expected: "\"ok\" or \"error\"",
                });
            }
        };
        // A non-string `error` is tolerated and dropped: the status already says it all.
        let error = json::optional_string(&map, "error")
            .ok()
            .flatten()
            .map(ToString::to_string);
        Ok(Self { status, error })
    }

    /// Compact JSON with sorted keys: `{"status":"ok"}` or `{"error":…,"status":"error"}`
    /// (written field by field, so the bytes do not depend on serde_json's features).
    pub fn to_json(&self) -> Vec<u8> {
        let status = match self.status {
            ReplyStatus::Ok => "ok",
            ReplyStatus::Error => "error",
        };
        match &self.error {
            None => format!(r#"{{"status":"{status}"}}"#),
            Some(error) => format!(r#"{{"error":{},"status":"{status}"}}"#, json::quoted(error)),
        }
        .into_bytes()
    }
}

/// Builds signed messages for one side of a connection: unique ids, dates, signatures.
///
/// Message ids are `{session}_{n}` with a counter, so the caller chooses the session id (a UUID,
/// say) and the core needs no randomness. A session id must be unique per process: that is what
/// makes every signature unique, which jupyter_client's replay check requires.
#[derive(Clone, Debug)]
pub struct Session {
    id: String,
    username: String,
    counter: u64,
    signer: Signer,
}

impl Session {
    /// A session with the caller's id and user name, signing with `signer`.
    pub fn new(id: impl Into<String>, username: impl Into<String>, signer: Signer) -> Self {
        Self {
            id: id.into(),
            username: username.into(),
            counter: 0,
            signer,
        }
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The signer.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// A fresh header of `msg_type` dated `now`.
    pub fn header(&mut self, msg_type: &str, now: Instant) -> Header {
        self.counter = self.counter.saturating_add(1);
        Header {
            msg_id: format!("{}_{}", self.id, self.counter),
            session: self.id.clone(),
            username: self.username.clone(),
            date: now.to_iso8601().as_str().to_string(),
            msg_type: msg_type.to_string(),
            version: PROTOCOL_VERSION.to_string(),
        }
    }

    /// Builds the signed frames of a message. `parent` is the parent header's exact bytes (a copy
    /// of the request's header frame, as the spec asks) or `None` for `{}`; `metadata` `None`
    /// is `{}`.
    pub fn message<I: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        identities: &[I],
        msg_type: &str,
        parent: Option<&[u8]>,
        metadata: Option<&[u8]>,
        content: &[u8],
    ) -> (Header, Vec<Vec<u8>>) {
        let header = self.header(msg_type, now);
        let header_json = header.to_json();
        let parts = Parts {
            header: &header_json,
            parent_header: parent.unwrap_or(b"{}"),
            metadata: metadata.unwrap_or(b"{}"),
            content,
        };
        let frames = wire::join::<I, &[u8]>(identities, &self.signer, &parts, &[]);
        (header, frames)
    }
}

/// What routing a verified message needs: its type, and the `msg_id` of the message it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The header's `msg_type`.
    pub msg_type: String,
    /// The parent header's `msg_id`; `None` only when there is no parent (empty, `{}` or
    /// `null`). A parent that is neither absent nor an object with a string `msg_id` is an
    /// error, never "no parent".
    pub parent_msg_id: Option<String>,
}

/// Reads the header (all six fields required) and the parent's `msg_id`, the rule both machines
/// and the drivers' clients use. Only the `msg_id` of the parent matters: Kallichore rebuilds the
/// parent rather than copying it (`protocol.md` §3.5).
pub fn classify(parts: &Parts<'_>) -> Result<Classified, MessageError> {
    let header = Header::from_json(parts.header).map_err(MessageError::json(Part::Header))?;
    let parent = parts.parent_header;
    // Fast path: an object with a string `msg_id` (every reply). The rest (no parent, or a
    // malformed one) goes through the exact reading below.
    if let Ok(Some(ParentId {
        msg_id: Some(id), ..
    })) = serde_json::from_slice::<Option<ParentId<'_>>>(parent)
    {
        return Ok(Classified {
            msg_type: header.msg_type,
            parent_msg_id: Some(id.into_owned()),
        });
    }
    let no_parent = Header::parse_parent(parent).is_ok_and(|p| p.is_none());
    let parent_msg_id = if no_parent {
        None
    } else {
        let map = json::object(parent).map_err(MessageError::json(Part::ParentHeader))?;
        let id = json::string(&map, "msg_id").map_err(MessageError::json(Part::ParentHeader))?;
        Some(id.to_string())
    };
    Ok(Classified {
        msg_type: header.msg_type,
        parent_msg_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::{Key, SignatureScheme};

    #[test]
    fn header_round_trip_and_key_order() {
        let mut session = Session::new(
            "sess",
            "kernel",
            Signer::new(SignatureScheme::HmacSha256, &Key::new("k")),
        );
        let h = session.header(HANDSHAKE_REQUEST, Instant::from_micros(1_000_000));
        let json = String::from_utf8(h.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"msg_id":"sess_1","session":"sess","username":"kernel","date":"1970-01-01T00:00:01.000000Z","msg_type":"handshake_request","version":"5.5"}"#
        );
        assert_eq!(Header::from_json(json.as_bytes()).unwrap(), h);
        assert_eq!(session.header("x", Instant::default()).msg_id, "sess_2");
    }

    #[test]
    fn accepts_what_ark_and_kallichore_send() {
        let ark = br#"{"msg_id":"9b1d","session":"s","username":"kernel","date":"2026-01-02T03:04:05.123456789+00:00","msg_type":"handshake_request","version":"5.3"}"#;
        assert_eq!(Header::from_json(ark).unwrap().version, "5.3");
        let extra = br#"{"msg_id":"a","session":"s","username":"u","date":"d","msg_type":"t","version":"5.5","subshell_id":null}"#;
        assert!(Header::from_json(extra).is_ok());
        for none in [&b""[..], b"{}", b"null", b" { } "] {
            assert_eq!(Header::parse_parent(none).unwrap(), None);
        }
        let reply = br#"{"status":"ok","capabilities":{}}"#;
        assert_eq!(
            HandshakeReply::from_json(reply).unwrap(),
            HandshakeReply::OK
        );
        let refused = br#"{"status":"error","error":"ports in use","capabilities":{}}"#;
        assert_eq!(
            HandshakeReply::from_json(refused).unwrap().error.as_deref(),
            Some("ports in use")
        );
        assert!(HandshakeReply::from_json(br#"{"status":"aborted"}"#).is_err());
    }

    #[test]
    fn a_header_missing_a_field_is_an_error() {
        let e = Header::from_json(
            br#"{"msg_id":"a","session":"s","username":"u","date":"d","msg_type":"t"}"#,
        )
        .unwrap_err();
        assert_eq!(e, JsonError::MissingField { field: "version" });
    }

    #[test]
    fn request_content_round_trips_and_is_validated() {
        let ports = KernelPorts {
            shell: 1,
            iopub: 2,
            stdin: 3,
            control: 4,
            hb: 5,
        };
        let content = request_content(&ports);
        assert_eq!(
            content,
            br#"{"control_port":4,"shell_port":1,"stdin_port":3,"iopub_port":2,"hb_port":5}"#
        );
        assert_eq!(request_ports(&content), Ok(ports));
        assert!(matches!(
            request_ports(
                br#"{"control_port":"4","shell_port":1,"stdin_port":3,"iopub_port":2,"hb_port":5}"#
            ),
            Err(MessageError::Json {
                part: Part::Content,
                ..
            })
        ));
        assert!(matches!(
            request_ports(
                br#"{"control_port":0,"shell_port":1,"stdin_port":3,"iopub_port":2,"hb_port":5}"#
            ),
            Err(MessageError::Ports(PortsError::Zero { .. }))
        ));
        assert!(request_ports(b"{}").is_err());
    }

    #[test]
    fn upstream_request_content_is_sorted_compact_and_escaped() {
        let ports = KernelPorts {
            shell: 2,
            iopub: 40000,
            stdin: 3,
            control: 65535,
            hb: 1,
        };
        let kernel_id = "ké \"q\" \\ \t\u{1}";
        let content = upstream_request_content(kernel_id, &ports);
        // Same bytes as serde_json's own sorted map.
        let mut map = serde_json::Map::new();
        map.insert("kernel_id".into(), kernel_id.into());
        for (field, port) in KernelPorts::FIELDS.iter().zip(ports.as_array()) {
            map.insert((*field).to_string(), format!("{port}").into());
        }
        let sorted: alloc::collections::BTreeMap<_, _> = map.into_iter().collect();
        assert_eq!(content, serde_json::to_vec(&sorted).unwrap());
        assert_eq!(
            upstream_request(&content).unwrap(),
            UpstreamRequest {
                kernel_id: kernel_id.to_string(),
                ports
            }
        );
    }

    #[test]
    fn reply_content_bytes() {
        assert_eq!(HandshakeReply::OK.to_json(), br#"{"status":"ok"}"#);
        let refusal = HandshakeReply {
            status: ReplyStatus::Error,
            error: Some("bad \"ports\"".into()),
        };
        assert_eq!(
            refusal.to_json(),
            br#"{"error":"bad \"ports\"","status":"error"}"#
        );
        assert_eq!(HandshakeReply::from_json(&refusal.to_json()), Ok(refusal));
    }
}
