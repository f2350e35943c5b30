//! Connection and registration files: see [`KernelFile`](crate::KernelFile).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use crate::json::{self, JsonError, JsonKind};
use crate::sign::{Key, SignatureScheme};

/// The ZeroMQ transport of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// `tcp`: endpoints are `tcp://{ip}:{port}` (IPv6 addresses in brackets).
    #[default]
    Tcp,
    /// `ipc`: endpoints are `ipc://{ip}-{port}`, as jupyter_client forms them.
    Ipc,
}

impl Transport {
    /// The name as written in files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Ipc => "ipc",
        }
    }

    /// The ZeroMQ endpoint for `ip` and `port`.
    ///
    /// ```
    /// use jupyter_handshake::Transport;
    /// assert_eq!(Transport::Tcp.endpoint("127.0.0.1", 5555), "tcp://127.0.0.1:5555");
    /// assert_eq!(Transport::Tcp.endpoint("::1", 5555), "tcp://[::1]:5555");
    /// assert_eq!(Transport::Ipc.endpoint("/tmp/kernel", 1), "ipc:///tmp/kernel-1");
    /// ```
    pub fn endpoint(self, ip: &str, port: u16) -> String {
        match self {
            Self::Tcp if ip.contains(':') && !ip.starts_with('[') => {
                format!("tcp://[{ip}]:{port}")
            }
            Self::Tcp => format!("tcp://{ip}:{port}"),
            Self::Ipc => format!("ipc://{ip}-{port}"),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = ConnectionFileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Self::Tcp),
            "ipc" => Ok(Self::Ipc),
            _ => Err(ConnectionFileError::UnknownTransport),
        }
    }
}

/// The five ports of a kernel, one per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct KernelPorts {
    /// Shell (ROUTER on the kernel).
    pub shell: u16,
    /// IOPub (XPUB on the kernel).
    pub iopub: u16,
    /// Stdin (ROUTER on the kernel).
    pub stdin: u16,
    /// Control (ROUTER on the kernel).
    pub control: u16,
    /// Heartbeat (REP on the kernel).
    pub hb: u16,
}

/// Ports that cannot be a kernel's bound ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortsError {
    /// A port is 0, i.e. not bound.
    #[error("`{field}` is 0, expected the bound port (1 to 65535)")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// Two channels claim the same port.
    #[error("`{first}` and `{second}` are the same port, expected five distinct ports")]
    Duplicate {
        /// One field.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
}

impl KernelPorts {
    /// The JSON field names, in ark's order (control, shell, stdin, iopub, hb).
    pub(crate) const FIELDS: [&'static str; 5] = [
        "control_port",
        "shell_port",
        "stdin_port",
        "iopub_port",
        "hb_port",
    ];

    /// The ports in ark's order: control, shell, stdin, iopub, hb.
    pub fn as_array(&self) -> [u16; 5] {
        [self.control, self.shell, self.stdin, self.iopub, self.hb]
    }

    pub(crate) fn from_array([control, shell, stdin, iopub, hb]: [u16; 5]) -> Self {
        Self {
            shell,
            iopub,
            stdin,
            control,
            hb,
        }
    }

    /// Checks that these can be five bound ports: none is 0 and no two are equal.
    pub fn validate(&self) -> Result<(), PortsError> {
        let ports = self.as_array();
        for (i, (&port, &field)) in ports.iter().zip(&Self::FIELDS).enumerate() {
            if port == 0 {
                return Err(PortsError::Zero { field });
            }
            for (&other, &second) in ports.iter().zip(&Self::FIELDS).skip(i + 1) {
                if other == port {
                    return Err(PortsError::Duplicate {
                        first: field,
                        second,
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads the five ports from a JSON object holding integers (`handshake_request` content,
    /// connection file). `None` when none of the five keys is present.
    pub(crate) fn from_map(
        map: &Map<String, Value>,
        allow_zero: bool,
    ) -> Result<Option<Self>, JsonError> {
        if Self::FIELDS.iter().all(|f| !map.contains_key(*f)) {
            return Ok(None);
        }
        let mut ports = [0u16; 5];
        for (slot, field) in ports.iter_mut().zip(Self::FIELDS) {
            let value = map.get(field).ok_or(JsonError::MissingField { field })?;
            *slot = json::port(value, field, allow_zero)?;
        }
        Ok(Some(Self::from_array(ports)))
    }

    /// Writes the five ports as integers into `map`.
    pub(crate) fn write_to(&self, map: &mut Map<String, Value>) {
        for (field, port) in Self::FIELDS.iter().zip(self.as_array()) {
            map.insert((*field).to_string(), Value::from(port));
        }
    }
}

/// Why a file is not a usable connection or registration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionFileError {
    /// The JSON is malformed or a field has the wrong type or value.
    #[error("invalid connection file: {0}")]
    Json(#[from] JsonError),
    /// Neither the five ports nor a registration port.
    #[error(
        "invalid connection file: expected either the five ports (shell_port, iopub_port, stdin_port, control_port, hb_port) or a registration_port, found neither"
    )]
    NoPortsAndNoRegistrationPort,
    /// `transport` is neither `tcp` nor `ipc`.
    #[error("invalid connection file: field `transport` must be \"tcp\" or \"ipc\"")]
    UnknownTransport,
    /// `signature_scheme` is not one we implement.
    #[error(
        "invalid connection file: field `signature_scheme` must be hmac-sha256, hmac-sha384 or hmac-sha512"
    )]
    UnknownSignatureScheme,
    /// The file is of the other kind than the one asked for.
    #[error("expected a {expected} file, got a {got} file")]
    WrongKind {
        /// The kind asked for.
        expected: FileKind,
        /// The kind found.
        got: FileKind,
    },
}

/// Which kind of file [`KernelFile::from_json`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Classic connection file: five ports.
    Connection,
    /// Registration file, in either dialect: a registration port.
    Registration,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connection => "connection",
            Self::Registration => "registration",
        })
    }
}

/// Fields every kind of file shares.
#[derive(Clone, PartialEq)]
struct Common {
    transport: Transport,
    ip: String,
    signature_scheme: SignatureScheme,
    key: Key,
}

impl Common {
    fn read(map: &Map<String, Value>) -> Result<Self, ConnectionFileError> {
        Ok(Self {
            transport: json::string(map, "transport")?.parse()?,
            ip: json::string(map, "ip")?.to_string(),
            signature_scheme: json::string(map, "signature_scheme")?
                .parse()
                .map_err(|_| ConnectionFileError::UnknownSignatureScheme)?,
            key: Key::new(json::string(map, "key")?),
        })
    }

    fn write_to(&self, map: &mut Map<String, Value>) {
        map.insert("transport".into(), self.transport.as_str().into());
        map.insert(
            "signature_scheme".into(),
            self.signature_scheme.as_str().into(),
        );
        map.insert("ip".into(), self.ip.as_str().into());
        map.insert("key".into(), self.key.expose_secret().into());
    }
}

const COMMON_FIELDS: [&str; 4] = ["transport", "signature_scheme", "ip", "key"];

/// Unknown fields kept for a faithful rewrite. `Debug` lists their names only.
#[derive(Clone, Default, PartialEq)]
pub struct ExtraFields(Map<String, Value>);

impl ExtraFields {
    /// The field, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Adds or replaces a field.
    pub fn insert(&mut self, name: impl Into<String>, value: Value) -> Option<Value> {
        self.0.insert(name.into(), value)
    }

    /// The names of the preserved fields, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Number of preserved fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn from_rest(mut map: Map<String, Value>, known: &[&str]) -> Self {
        for field in known {
            map.remove(*field);
        }
        Self(map)
    }
}

impl fmt::Debug for ExtraFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets (curve_secretkey): names only.
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A classic connection file: the five ports the kernel binds and the client connects to.
#[derive(Clone, PartialEq)]
pub struct ConnectionFile {
    /// Transport of all five channels.
    pub transport: Transport,
    /// Address the kernel binds and clients connect to.
    pub ip: String,
    /// HMAC algorithm.
    pub signature_scheme: SignatureScheme,
    /// HMAC key (empty: unsigned).
    pub key: Key,
    /// The five ports.
    pub ports: KernelPorts,
    /// `kernel_name`, written by jupyter_client and ipykernel (may be empty).
    pub kernel_name: Option<String>,
    /// Every other field, preserved on rewrite.
    pub extra: ExtraFields,
}

impl ConnectionFile {
    /// A connection file with no extra fields and no kernel name.
    pub fn new(
        transport: Transport,
        ip: impl Into<String>,
        signature_scheme: SignatureScheme,
        key: Key,
        ports: KernelPorts,
    ) -> Self {
        Self {
            transport,
            ip: ip.into(),
            signature_scheme,
            key,
            ports,
            kernel_name: None,
            extra: ExtraFields::default(),
        }
    }

    /// Reads a connection file; a registration file is [`ConnectionFileError::WrongKind`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConnectionFileError> {
        match KernelFile::from_json(bytes)? {
            KernelFile::Connection(file) => Ok(file),
            KernelFile::Registration(_) => Err(ConnectionFileError::WrongKind {
                expected: FileKind::Connection,
                got: FileKind::Registration,
            }),
        }
    }

    /// Pretty JSON (2-space indent, like jupyter_client), extra fields included.
    pub fn to_json_pretty(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The endpoint of one channel's port.
    pub fn endpoint(&self, port: u16) -> String {
        self.transport.endpoint(&self.ip, port)
    }

    fn to_map(&self) -> Map<String, Value> {
        let mut map = self.extra.0.clone();
        self.ports.write_to(&mut map);
        Common {
            transport: self.transport,
            ip: self.ip.clone(),
            signature_scheme: self.signature_scheme,
            key: self.key.clone(),
        }
        .write_to(&mut map);
        if let Some(name) = &self.kernel_name {
            map.insert("kernel_name".into(), name.as_str().into());
        }
        map
    }
}

impl fmt::Debug for ConnectionFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionFile")
            .field("transport", &self.transport)
            .field("ip", &self.ip)
            .field("signature_scheme", &self.signature_scheme)
            .field("key", &self.key)
            .field("ports", &self.ports)
            .field("kernel_name", &self.kernel_name)
            .field("extra", &self.extra)
            .finish()
    }
}

/// The two incompatible JEP 66 dialects deployed today (`protocol.md`, TL;DR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// ark ⇄ Kallichore (kernelspec protocol 5.5): the kernel's REQ sends a full signed
    /// `handshake_request` message with integer ports; the launcher answers a full
    /// `handshake_reply`. Also the file stock ipykernel rewrites with its ports.
    #[default]
    Posit,
    /// jupyter_client docs 5.6 ⇄ xeus (xeus-python ≥ 0.19): the kernel's DEALER sends
    /// `[<IDS|MSG>, signature over the content, content]` with `kernel_id` and the ports as
    /// strings; the launcher answers one signed content frame (xeus-zmq sends `ACK`).
    Upstream,
}

impl Dialect {
    /// `posit` or `upstream`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Posit => "posit",
            Self::Upstream => "upstream",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which launch mode a kernelspec's `kernel_protocol_version` calls for: the protocol's rule,
/// kept next to the dialects it chooses between.
///
/// * **≥ 5.6 ⇒ [`Upstream`](Self::Upstream)**: the handshake "is implemented in version 5.6 of
///   the protocol" (jupyter_client docs), in the upstream dialect xeus speaks.
/// * **5.5 ⇒ [`Handshake`](Self::Handshake)** (the Posit dialect): Kallichore's rule, and safe for
///   stock ipykernel too, which declares 5.5 without implementing the handshake but rewrites the
///   Posit file with its ports, which the launcher accepts as evidence.
/// * **anything else ⇒ [`Classic`](Self::Classic)**: the kernel cannot be assumed to register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum LaunchMode {
    /// Write a Posit-dialect registration file and wait for the kernel to register its ports (a
    /// `handshake_request`, or a rewrite of the file): no port race.
    #[default]
    Handshake,
    /// Write an upstream-dialect registration file (with a `kernel_id`) and wait for the
    /// kernel's content-only signed request on the registration socket: no port race.
    Upstream,
    /// Pick five free ports, write a classic connection file and hope the kernel gets to bind
    /// them before anything else does: racy, for kernels that cannot register.
    Classic,
}

impl LaunchMode {
    /// The handshake dialect of this mode; `None` for classic.
    pub fn dialect(self) -> Option<Dialect> {
        match self {
            Self::Handshake => Some(Dialect::Posit),
            Self::Upstream => Some(Dialect::Upstream),
            Self::Classic => None,
        }
    }

    /// The mode a kernelspec's `kernel_protocol_version` implies: `major.minor` ≥ 5.6 ⇒
    /// [`Upstream`](Self::Upstream); 5.5 ⇒ [`Handshake`](Self::Handshake); missing, lower or
    /// unparseable ⇒ [`Classic`](Self::Classic).
    ///
    /// Both `major` and `minor` must be decimal integers; further components are ignored, so
    /// `"5.5.0"` means 5.5 (Kallichore, which splits at the first dot only, would call it
    /// unparseable). A version without a minor (`"5"`, `"6"`) is unparseable, as in Kallichore.
    ///
    /// ```
    /// use jupyter_handshake::LaunchMode;
    /// assert_eq!(LaunchMode::from_protocol_version(Some("5.5")), LaunchMode::Handshake);
    /// assert_eq!(LaunchMode::from_protocol_version(Some("5.10")), LaunchMode::Upstream);
    /// assert_eq!(LaunchMode::from_protocol_version(Some("5.4")), LaunchMode::Classic);
    /// assert_eq!(LaunchMode::from_protocol_version(None), LaunchMode::Classic);
    /// ```
    pub fn from_protocol_version(version: Option<&str>) -> Self {
        let Some(version) = version else {
            return Self::Classic;
        };
        let mut components = version.trim().split('.');
        let number = |c: Option<&str>| {
            c.filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|c| c.parse::<u32>().ok())
        };
        match (number(components.next()), number(components.next())) {
            (Some(major), Some(minor)) if (major, minor) >= (5, 6) => Self::Upstream,
            (Some(5), Some(5)) => Self::Handshake,
            _ => Self::Classic,
        }
    }

    /// `"handshake"`, `"upstream"` or `"classic"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Upstream => "upstream",
            Self::Classic => "classic",
        }
    }
}

impl fmt::Display for LaunchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields an upstream-dialect registration file has besides the common ones
/// (`registration_port` is then written as a JSON string, as xeus reads it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamRegistration {
    /// Names the kernel to a shared registration service; echoed in its request.
    pub kernel_id: String,
    /// Address of the registration socket (the kernel binds its channels on `ip`).
    pub registration_ip: String,
}

/// A registration file, in either dialect: where the launcher's registration socket listens.
#[derive(Clone, PartialEq)]
pub struct RegistrationFile {
    /// Transport of the registration socket and of the kernel's channels.
    pub transport: Transport,
    /// Address the kernel binds its channels on and reaches the registration socket at.
    pub ip: String,
    /// HMAC algorithm.
    pub signature_scheme: SignatureScheme,
    /// HMAC key (empty: unsigned).
    pub key: Key,
    /// Port of the launcher's registration socket.
    pub registration_port: u16,
    /// The upstream dialect's own fields; `None` in the Posit dialect (see
    /// [`dialect`](Self::dialect)).
    pub upstream: Option<UpstreamRegistration>,
    /// Every other field, preserved on rewrite.
    pub extra: ExtraFields,
}

impl RegistrationFile {
    /// A Posit-dialect registration file with no extra fields.
    pub fn new(
        transport: Transport,
        ip: impl Into<String>,
        signature_scheme: SignatureScheme,
        key: Key,
        registration_port: u16,
    ) -> Self {
        Self {
            transport,
            ip: ip.into(),
            signature_scheme,
            key,
            registration_port,
            upstream: None,
            extra: ExtraFields::default(),
        }
    }

    /// An upstream-dialect registration file: the registration socket listens on `ip` too.
    pub fn upstream(
        transport: Transport,
        ip: impl Into<String>,
        signature_scheme: SignatureScheme,
        key: Key,
        registration_port: u16,
        kernel_id: impl Into<String>,
    ) -> Self {
        let ip = ip.into();
        Self {
            upstream: Some(UpstreamRegistration {
                kernel_id: kernel_id.into(),
                registration_ip: ip.clone(),
            }),
            ..Self::new(transport, ip, signature_scheme, key, registration_port)
        }
    }

    /// Which dialect the kernel must speak.
    pub fn dialect(&self) -> Dialect {
        match self.upstream {
            None => Dialect::Posit,
            Some(_) => Dialect::Upstream,
        }
    }

    /// The upstream `kernel_id`, if this is an upstream file.
    pub fn kernel_id(&self) -> Option<&str> {
        self.upstream.as_ref().map(|u| u.kernel_id.as_str())
    }

    /// Reads a registration file; a connection file is [`ConnectionFileError::WrongKind`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConnectionFileError> {
        match KernelFile::from_json(bytes)? {
            KernelFile::Registration(file) => Ok(file),
            KernelFile::Connection(_) => Err(ConnectionFileError::WrongKind {
                expected: FileKind::Registration,
                got: FileKind::Connection,
            }),
        }
    }

    /// Pretty JSON: Posit with the integer `registration_port` that ark and Kallichore read;
    /// upstream with `kernel_id`, `registration_ip` and `registration_port` as a string, as
    /// xeus reads them.
    pub fn to_json_pretty(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The endpoint of the registration socket.
    pub fn registration_endpoint(&self) -> String {
        let ip = match &self.upstream {
            None => &self.ip,
            Some(upstream) => &upstream.registration_ip,
        };
        self.transport.endpoint(ip, self.registration_port)
    }

    /// The connection file that results from the kernel binding `ports`, with the same transport,
    /// ip, scheme and key; the extra fields carry over.
    pub fn with_ports(&self, ports: KernelPorts) -> ConnectionFile {
        ConnectionFile {
            transport: self.transport,
            ip: self.ip.clone(),
            signature_scheme: self.signature_scheme,
            key: self.key.clone(),
            ports,
            kernel_name: None,
            extra: self.extra.clone(),
        }
    }

    fn to_map(&self) -> Map<String, Value> {
        let mut map = self.extra.0.clone();
        Common {
            transport: self.transport,
            ip: self.ip.clone(),
            signature_scheme: self.signature_scheme,
            key: self.key.clone(),
        }
        .write_to(&mut map);
        match &self.upstream {
            None => {
                map.insert("registration_port".into(), self.registration_port.into());
            }
            Some(UpstreamRegistration {
                kernel_id,
                registration_ip,
            }) => {
                map.insert("kernel_id".into(), kernel_id.as_str().into());
                map.insert("registration_ip".into(), registration_ip.as_str().into());
                let port = alloc::format!("{}", self.registration_port);
                map.insert("registration_port".into(), port.into());
            }
        }
        map
    }
}

impl fmt::Debug for RegistrationFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationFile")
            .field("transport", &self.transport)
            .field("ip", &self.ip)
            .field("signature_scheme", &self.signature_scheme)
            .field("key", &self.key)
            .field("registration_port", &self.registration_port)
            .field("upstream", &self.upstream)
            .field("extra", &self.extra)
            .finish()
    }
}

/// Connection files and registration files, as real peers write and read them.
///
/// * A **connection file** (classic) names the five ports the kernel must bind:
///   `{shell_port, iopub_port, stdin_port, control_port, hb_port, ip, transport,
///   signature_scheme, key, kernel_name?}` (`protocol.md` §5.7).
/// * A **registration file** names only the launcher's registration socket, in one of two
///   dialects ([`Dialect`]; the upstream one's own fields are [`UpstreamRegistration`]):
///   - **Posit** (ark ⇄ Kallichore): `{transport, signature_scheme, ip, key, registration_port}`
///     with an integer port; `handshake_port` (the name used in the ark#563 proposal) is accepted
///     as an alias when reading (`protocol.md` §2.1, §3.3).
///   - **Upstream** (jupyter_client docs 5.6 ⇄ xeus): `{kernel_id, transport, ip,
///     registration_ip, registration_port, signature_scheme, key}`. xeus reads
///     `registration_port` as a JSON *string*, so it is written as one; a string or an integer
///     is read. A file without `ip` (the jupyter_client docs' example) binds on
///     `registration_ip` (`protocol.md` §4.1, §4.3).
///
/// [`KernelFile::from_json`] reads any of them and says which it is:
/// 1. all five `*_port` keys: a **connection file**, whatever else it names (that is what stock
///    ipykernel's rewrite produces, in both dialects);
/// 2. else a non-empty string `registration_ip`: an **upstream** registration file (xeus's rule);
/// 3. else `registration_port` (or `handshake_port`): a **Posit** registration file;
/// 4. else an error naming the missing fields.
///
/// Unknown fields (jupyter_client 8.10's `curve_publickey`/`curve_secretkey`, ipykernel's kept
/// `registration_port`, …) are preserved through a read-modify-write, and — like the key — never
/// shown by `Debug`, since some of them are secrets too.
///
/// ```
/// use jupyter_handshake::KernelFile;
/// let file = br#"{"transport": "tcp", "signature_scheme": "hmac-sha256", "ip": "127.0.0.1",
///                 "key": "a0436f6c", "registration_port": 53817}"#;
/// let KernelFile::Registration(reg) = KernelFile::from_json(file)? else { unreachable!() };
/// assert_eq!(reg.registration_endpoint(), "tcp://127.0.0.1:53817");
/// assert!(!format!("{reg:?}").contains("a0436f6c"));
/// # Ok::<(), jupyter_handshake::ConnectionFileError>(())
/// ```
///
/// Either kind of file a kernel can be started with.
#[derive(Clone, Debug, PartialEq)]
pub enum KernelFile {
    /// Classic: bind these ports.
    Connection(ConnectionFile),
    /// Handshake: bind on port 0 and register.
    Registration(RegistrationFile),
}

impl KernelFile {
    /// Reads either kind and says which it is (see the module docs for the rule).
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConnectionFileError> {
        Self::from_map(json::object(bytes)?)
    }

    /// Which kind this is.
    pub fn kind(&self) -> FileKind {
        match self {
            Self::Connection(_) => FileKind::Connection,
            Self::Registration(_) => FileKind::Registration,
        }
    }

    /// The key, whichever the kind.
    pub fn key(&self) -> &Key {
        match self {
            Self::Connection(f) => &f.key,
            Self::Registration(f) => &f.key,
        }
    }

    fn from_map(mut map: Map<String, Value>) -> Result<Self, ConnectionFileError> {
        // Upstream (xeus): a non-empty `registration_ip` marks a registration file. The
        // jupyter_client docs' example has no `ip`; the kernel then binds on the registration
        // address.
        // Five ports win, in both dialects: a kernel that rewrote the file with its ports
        // (stock ipykernel) made it a connection file.
        let all_ports = KernelPorts::FIELDS.iter().all(|f| map.contains_key(*f));
        let registration_ip = match map.get("registration_ip") {
            Some(Value::String(ip)) if !ip.is_empty() && !all_ports => Some(ip.clone()),
            _ => None,
        };
        if let Some(registration_ip) = registration_ip {
            if !map.contains_key("ip") {
                map.insert("ip".into(), registration_ip.as_str().into());
            }
            let common = Common::read(&map)?;
            let kernel_id = json::string(&map, "kernel_id")?.to_string();
            let value = map
                .get("registration_port")
                .ok_or(JsonError::MissingField {
                    field: "registration_port",
                })?;
            let registration_port = json::port_text_or_number(value, "registration_port", false)?;
            let mut known: Vec<&str> = COMMON_FIELDS.to_vec();
            known.extend(["registration_port", "registration_ip", "kernel_id"]);
            return Ok(Self::Registration(RegistrationFile {
                transport: common.transport,
                ip: common.ip,
                signature_scheme: common.signature_scheme,
                key: common.key,
                registration_port,
                upstream: Some(UpstreamRegistration {
                    kernel_id,
                    registration_ip,
                }),
                extra: ExtraFields::from_rest(map, &known),
            }));
        }
        let common = Common::read(&map)?;
        let registration = ["registration_port", "handshake_port"]
            .into_iter()
            .find_map(|field| map.get(field).map(|v| (field, v)));
        if !all_ports {
            if let Some((field, value)) = registration {
                let registration_port = json::port(value, field, false)?;
                let mut known: Vec<&str> = COMMON_FIELDS.to_vec();
                known.push(field);
                return Ok(Self::Registration(RegistrationFile {
                    transport: common.transport,
                    ip: common.ip,
                    signature_scheme: common.signature_scheme,
                    key: common.key,
                    registration_port,
                    upstream: None,
                    extra: ExtraFields::from_rest(map, &known),
                }));
            }
        }
        let Some(ports) = KernelPorts::from_map(&map, true)? else {
            return Err(ConnectionFileError::NoPortsAndNoRegistrationPort);
        };
        let kernel_name = json::optional_string(&map, "kernel_name")?.map(ToString::to_string);
        let mut known: Vec<&str> = COMMON_FIELDS.to_vec();
        known.extend(KernelPorts::FIELDS);
        known.push("kernel_name");
        Ok(Self::Connection(ConnectionFile {
            transport: common.transport,
            ip: common.ip,
            signature_scheme: common.signature_scheme,
            key: common.key,
            ports,
            kernel_name,
            extra: ExtraFields::from_rest(map, &known),
        }))
    }
}

impl serde::Serialize for ConnectionFile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_map(self.to_map(), serializer)
    }
}

impl serde::Serialize for RegistrationFile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_map(self.to_map(), serializer)
    }
}

impl serde::Serialize for KernelFile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Connection(f) => f.serialize(serializer),
            Self::Registration(f) => f.serialize(serializer),
        }
    }
}

fn serialize_map<S: serde::Serializer>(
    map: Map<String, Value>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut out = serializer.serialize_map(Some(map.len()))?;
    for (k, v) in &map {
        out.serialize_entry(k, v)?;
    }
    out.end()
}

fn deserialize_via_map<'de, D, T>(
    deserializer: D,
    convert: impl FnOnce(Map<String, Value>) -> Result<T, ConnectionFileError>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let value = <Value as serde::Deserialize>::deserialize(deserializer)?;
    let Value::Object(map) = value else {
        return Err(D::Error::custom(JsonError::NotAnObject {
            got: JsonKind::of(&value),
        }));
    };
    convert(map).map_err(D::Error::custom)
}

impl<'de> serde::Deserialize<'de> for KernelFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_via_map(deserializer, Self::from_map)
    }
}

impl<'de> serde::Deserialize<'de> for ConnectionFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_via_map(deserializer, |map| match KernelFile::from_map(map)? {
            KernelFile::Connection(f) => Ok(f),
            KernelFile::Registration(_) => Err(ConnectionFileError::WrongKind {
                expected: FileKind::Connection,
                got: FileKind::Registration,
            }),
        })
    }
}

impl<'de> serde::Deserialize<'de> for RegistrationFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_via_map(deserializer, |map| match KernelFile::from_map(map)? {
            KernelFile::Registration(f) => Ok(f),
            KernelFile::Connection(_) => Err(ConnectionFileError::WrongKind {
                expected: FileKind::Registration,
                got: FileKind::Connection,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const KALLICHORE: &[u8] = br#"{
  "transport": "tcp",
  "signature_scheme": "hmac-sha256",
  "ip": "127.0.0.1",
  "key": "0123456789abcdef0123456789abcdef",
  "registration_port": 53817
}"#;

    // What ipykernel 7.4 leaves after rewriting a registration file (protocol.md §9).
    const IPYKERNEL_REWRITE: &[u8] = br#"{
  "shell_port": 40001, "iopub_port": 40002, "stdin_port": 40003, "control_port": 40004,
  "hb_port": 40005, "ip": "127.0.0.1", "key": "k", "transport": "tcp",
  "signature_scheme": "hmac-sha256", "kernel_name": "", "registration_port": 53817
}"#;

    const JUPYTER_CLIENT_CURVE: &[u8] = br#"{
  "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
  "ip": "127.0.0.1", "key": "k", "transport": "tcp", "signature_scheme": "hmac-sha256",
  "kernel_name": "python3", "curve_publickey": "pub", "curve_secretkey": "TOPSECRETCURVE"
}"#;

    #[test]
    fn version_rule() {
        let cases = [
            ("5.5", LaunchMode::Handshake),
            ("5.5.0", LaunchMode::Handshake),
            (" 5.5 ", LaunchMode::Handshake),
            ("5.6", LaunchMode::Upstream),
            ("5.10", LaunchMode::Upstream),
            ("6.0", LaunchMode::Upstream),
            ("10.1", LaunchMode::Upstream),
            (" 5.6 ", LaunchMode::Upstream),
            ("5.4", LaunchMode::Classic),
            ("4.9", LaunchMode::Classic),
            ("5.3", LaunchMode::Classic),
            ("5", LaunchMode::Classic),
            ("6", LaunchMode::Classic),
            ("", LaunchMode::Classic),
            ("x", LaunchMode::Classic),
            ("5.x", LaunchMode::Classic),
            ("5.", LaunchMode::Classic),
            (".5", LaunchMode::Classic),
            ("+5.5", LaunchMode::Classic),
            ("5.-5", LaunchMode::Classic),
            ("99999999999.5", LaunchMode::Classic),
        ];
        for (version, mode) in cases {
            assert_eq!(
                LaunchMode::from_protocol_version(Some(version)),
                mode,
                "{version:?}"
            );
        }
        assert_eq!(LaunchMode::from_protocol_version(None), LaunchMode::Classic);
    }

    #[test]
    fn reads_kallichore_registration_file() {
        let file = KernelFile::from_json(KALLICHORE).unwrap();
        assert_eq!(file.kind(), FileKind::Registration);
        let KernelFile::Registration(reg) = file else {
            unreachable!()
        };
        assert_eq!(reg.registration_port, 53817);
        assert_eq!(reg.transport, Transport::Tcp);
        assert_eq!(reg.key.expose_secret(), "0123456789abcdef0123456789abcdef");
        assert!(reg.extra.is_empty());
    }

    #[test]
    fn handshake_port_is_an_alias() {
        let json = br#"{"transport":"tcp","signature_scheme":"hmac-sha256","ip":"127.0.0.1","key":"k","handshake_port":9}"#;
        let reg = RegistrationFile::from_json(json).unwrap();
        assert_eq!(reg.registration_port, 9);
        // Written back under the name ark and Kallichore read.
        let written = String::from_utf8(reg.to_json_pretty()).unwrap();
        assert!(written.contains("\"registration_port\": 9"));
        assert!(!written.contains("handshake_port"));
    }

    #[test]
    fn five_ports_win_over_a_registration_port() {
        let file = KernelFile::from_json(IPYKERNEL_REWRITE).unwrap();
        let KernelFile::Connection(conn) = file else {
            panic!("expected a connection file")
        };
        assert_eq!(
            conn.ports,
            KernelPorts {
                shell: 40001,
                iopub: 40002,
                stdin: 40003,
                control: 40004,
                hb: 40005
            }
        );
        assert_eq!(conn.kernel_name.as_deref(), Some(""));
        assert_eq!(
            conn.extra.get("registration_port"),
            Some(&Value::from(53817))
        );
    }

    #[test]
    fn unknown_fields_survive_a_rewrite_and_stay_out_of_debug() {
        let mut conn = ConnectionFile::from_json(JUPYTER_CLIENT_CURVE).unwrap();
        conn.ports.shell = 4242;
        let again = ConnectionFile::from_json(&conn.to_json_pretty()).unwrap();
        assert_eq!(again, conn);
        assert_eq!(
            again.extra.get("curve_secretkey"),
            Some(&Value::from("TOPSECRETCURVE"))
        );
        let debug = format!("{again:?}");
        assert!(!debug.contains("TOPSECRETCURVE"), "{debug}");
        assert!(debug.contains("curve_secretkey"));
        assert!(!debug.contains("\"k\""));
    }

    #[test]
    fn serde_round_trip_through_serde_json() {
        let file: KernelFile = serde_json::from_slice(KALLICHORE).unwrap();
        let text = serde_json::to_string(&file).unwrap();
        let back: KernelFile = serde_json::from_str(&text).unwrap();
        assert_eq!(file, back);
        assert!(serde_json::from_slice::<ConnectionFile>(KALLICHORE).is_err());
    }

    #[test]
    fn every_error_says_what_was_expected() {
        let cases: &[(&[u8], ConnectionFileError)] = &[
            (
                br#"{"transport":"tcp","signature_scheme":"hmac-sha256","ip":"x","key":"k"}"#,
                ConnectionFileError::NoPortsAndNoRegistrationPort,
            ),
            (
                br#"{"transport":"tcp","signature_scheme":"hmac-sha256","ip":"x","key":"k","registration_port":70000}"#,
                ConnectionFileError::Json(JsonError::InvalidValue {
                    field: "registration_port",
                    expected: "an integer port from 1 to 65535",
                }),
            ),
            (
                br#"{"transport":"tcp","signature_scheme":"hmac-sha256","ip":"x","key":"k","registration_port":"5"}"#,
                ConnectionFileError::Json(JsonError::WrongType {
                    field: "registration_port",
                    expected: "an integer port",
                    got: JsonKind::String,
                }),
            ),
            (
                br#"{"transport":"udp","signature_scheme":"hmac-sha256","ip":"x","key":"k","registration_port":5}"#,
                ConnectionFileError::UnknownTransport,
            ),
            (
                br#"{"transport":"tcp","signature_scheme":"hmac-md5","ip":"x","key":"k","registration_port":5}"#,
                ConnectionFileError::UnknownSignatureScheme,
            ),
            (
                br#"{"transport":"tcp","signature_scheme":"hmac-sha256","ip":"x","key":7,"registration_port":5}"#,
                ConnectionFileError::Json(JsonError::WrongType {
                    field: "key",
                    expected: "a string",
                    got: JsonKind::Number,
                }),
            ),
            (
                br#"{"transport":"tcp","signature_scheme":"hmac-sha256","key":"k","registration_port":5}"#,
                ConnectionFileError::Json(JsonError::MissingField { field: "ip" }),
            ),
            (
                br#"{"transport":"tcp","signature_scheme":"hmac-sha256","ip":"x","key":"k","shell_port":1}"#,
                ConnectionFileError::Json(JsonError::MissingField {
                    field: "control_port",
                }),
            ),
            (
                br#"{"transport":"tcp","signature_scheme":"hmac-sha256","ip":"x","key":"k","shell_port":-1,"iopub_port":1,"stdin_port":1,"control_port":1,"hb_port":1}"#,
                ConnectionFileError::Json(JsonError::InvalidValue {
                    field: "shell_port",
                    expected: "an integer port from 0 to 65535",
                }),
            ),
            (
                b"[]",
                ConnectionFileError::Json(JsonError::NotAnObject {
                    got: JsonKind::Array,
                }),
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(KernelFile::from_json(json).unwrap_err(), *expected);
            assert!(!expected.to_string().is_empty());
        }
        assert_eq!(
            ConnectionFile::from_json(KALLICHORE).unwrap_err(),
            ConnectionFileError::WrongKind {
                expected: FileKind::Connection,
                got: FileKind::Registration
            }
        );
    }

    #[test]
    fn ports_validation() {
        let good = KernelPorts {
            shell: 1,
            iopub: 2,
            stdin: 3,
            control: 4,
            hb: 5,
        };
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(
            KernelPorts { hb: 0, ..good }.validate(),
            Err(PortsError::Zero { field: "hb_port" })
        );
        assert_eq!(
            KernelPorts { iopub: 1, ..good }.validate(),
            Err(PortsError::Duplicate {
                first: "shell_port",
                second: "iopub_port"
            })
        );
    }
}
