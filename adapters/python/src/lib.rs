//! `jupyter_handshake._core`: the jupyter-handshake sans-IO machines for Python.
//!
//! This file is the whole binding and the only place that names the core's API: the
//! [`Registrar`] (many launches on one registration socket) and the kernel machine
//! ([`Kernel`]), as thin wrappers. Bytes and the time (integer microseconds on the caller's
//! timeline) go in; actions, frames to send, events and the next deadline come out of
//! `poll_output()` as tuples whose first item names the kind:
//!
//! * `("bind_registration", transport, ip)`, `("write_registration_file", launch, Secret)`
//!   (registrar), `("bind_channels", transport, ip, ports | None)`,
//!   `("connect_registration", endpoint, "req" | "dealer")` (kernel): actions;
//! * `("transmit", [bytes, ...])`: frames to send on the registration socket;
//! * `("event", launch | None, Event)`: what happened;
//! * `("timeout", deadline_us | None)`: drained; wait until the deadline (or input).
//!
//! A driver's mistakes raise [`UsageError`]; unreadable files raise [`FileError`]; peer input
//! never raises (the core reports it as a `rejected` event). Every call takes microseconds, so
//! none releases the GIL. Nothing here prints a key: [`Secret`] and [`Connection`] hide it in
//! `repr`, and only `Secret.expose()` / `Connection.to_dict()` hand it out, for writing the
//! file and for jupyter_client.

use std::collections::HashMap;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use jupyter_handshake::wire::Limits;
use jupyter_handshake::{
    ConnectionFile, Dialect, Evidence, ExitStatus, Instant, KernelAction, KernelConfig,
    KernelEvent, KernelFile, KernelInput, KernelState, Key, LaunchConfig, LaunchId, LaunchMode,
    LauncherEvent, LauncherState, Output, RegistrarAction, RegistrarConfig, RegistrarEvent,
    RegistrarInput, RegistrationSocket,
};

create_exception!(
    _core,
    HandshakeError,
    PyException,
    "Base class of the errors raised by jupyter_handshake."
);
create_exception!(
    _core,
    UsageError,
    HandshakeError,
    "The driver fed an input the machine cannot take in its state; nothing changed."
);
create_exception!(
    _core,
    FileError,
    HandshakeError,
    "A connection or registration file could not be read (the core's reason)."
);

fn usage(e: impl std::fmt::Display) -> PyErr {
    UsageError::new_err(e.to_string())
}

fn instant(now_us: u64) -> Instant {
    Instant::from_micros(now_us)
}

fn duration(seconds: f64, field: &str) -> PyResult<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(seconds).map_err(|_| {
        PyValueError::new_err(format!("{field} must be a finite number of seconds >= 0"))
    })
}

/// Bytes that hold a key (a file to write). `repr` shows only the length.
#[pyclass(module = "jupyter_handshake._core", frozen)]
pub struct Secret(Vec<u8>);

#[pymethods]
impl Secret {
    /// The bytes, for writing them into an owner-only file. Never log them.
    fn expose<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0)
    }

    fn __len__(&self) -> usize {
        self.0.len()
    }

    fn __repr__(&self) -> String {
        format!("<Secret {} bytes>", self.0.len())
    }
}

/// A kernel's connection information. `repr` never shows the key.
#[pyclass(module = "jupyter_handshake._core", frozen)]
pub struct Connection(ConnectionFile);

#[pymethods]
impl Connection {
    /// `tcp` or `ipc`.
    #[getter]
    fn transport(&self) -> String {
        self.0.transport.to_string()
    }
    /// The address the channels are bound on.
    #[getter]
    fn ip(&self) -> &str {
        &self.0.ip
    }
    /// `hmac-sha256`, ...
    #[getter]
    fn signature_scheme(&self) -> String {
        self.0.signature_scheme.to_string()
    }
    /// The five ports as a dict `{"shell_port": .., "iopub_port": .., ...}`.
    #[getter]
    fn ports<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = &self.0.ports;
        let d = PyDict::new(py);
        for (name, port) in [
            ("shell_port", p.shell),
            ("iopub_port", p.iopub),
            ("stdin_port", p.stdin),
            ("control_port", p.control),
            ("hb_port", p.hb),
        ] {
            d.set_item(name, port)?;
        }
        Ok(d)
    }
    /// jupyter_client's connection info (`KernelConnectionInfo`): the five ports, `ip`,
    /// `transport`, `signature_scheme`, `kernel_name` if known, and `key` as bytes.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = self.ports(py)?;
        d.set_item("ip", &self.0.ip)?;
        d.set_item("transport", self.transport())?;
        d.set_item("signature_scheme", self.signature_scheme())?;
        d.set_item(
            "key",
            PyBytes::new(py, self.0.key.expose_secret().as_bytes()),
        )?;
        if let Some(name) = &self.0.kernel_name {
            d.set_item("kernel_name", name)?;
        }
        Ok(d)
    }
    /// The connection file's JSON (holds the key: write it owner-only).
    fn to_json(&self) -> Secret {
        Secret(self.0.to_json_pretty())
    }
    fn __repr__(&self) -> String {
        let p = &self.0.ports;
        format!(
            "<Connection {}://{} shell={} iopub={} stdin={} control={} hb={} key=<redacted>>",
            self.0.transport, self.0.ip, p.shell, p.iopub, p.stdin, p.control, p.hb
        )
    }
}

/// Something that happened to a machine (or to one launch of a registrar).
///
/// `kind` is one of `state_changed` (`state` is the new state), `rejected` (input dropped,
/// nothing changed), `refused` (a signed request refused, still waiting), `registered`
/// (`connection`, `evidence`), `connected` (kernel side, `connection`), `failed`. `message`
/// is the core's text for rejections, refusals and failures; `exit_code` / `exit_signal` are
/// set when a launch failed because its kernel exited.
#[pyclass(module = "jupyter_handshake._core", frozen, get_all)]
pub struct Event {
    kind: &'static str,
    state: Option<&'static str>,
    message: Option<String>,
    connection: Option<Py<Connection>>,
    evidence: Option<&'static str>,
    exit_code: Option<i32>,
    exit_signal: Option<i32>,
}

#[pymethods]
impl Event {
    fn __repr__(&self) -> String {
        let mut s = format!("<Event {}", self.kind);
        if let Some(state) = self.state {
            s += &format!(" -> {state}");
        }
        if let Some(m) = &self.message {
            s += &format!(": {m}");
        }
        s + ">"
    }
}

impl Event {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            state: None,
            message: None,
            connection: None,
            evidence: None,
            exit_code: None,
            exit_signal: None,
        }
    }
    fn with_message(kind: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            message: Some(message.to_string()),
            ..Self::new(kind)
        }
    }
}

fn launcher_state(s: LauncherState) -> &'static str {
    match s {
        LauncherState::Init => "init",
        LauncherState::Bound => "bound",
        LauncherState::Connected => "connected",
        LauncherState::Failed => "failed",
    }
}

fn kernel_state(s: KernelState) -> &'static str {
    match s {
        KernelState::Init => "init",
        KernelState::Bound => "bound",
        KernelState::AwaitingReply => "awaiting_reply",
        KernelState::Registered => "registered",
        KernelState::Connected => "connected",
        KernelState::Failed => "failed",
    }
}

fn connection(py: Python<'_>, c: &ConnectionFile) -> PyResult<Py<Connection>> {
    Py::new(py, Connection(c.clone()))
}

fn launcher_event(py: Python<'_>, event: LauncherEvent) -> PyResult<Event> {
    Ok(match event {
        LauncherEvent::StateChanged { to, .. } => Event {
            state: Some(launcher_state(to)),
            ..Event::new("state_changed")
        },
        LauncherEvent::Rejected(r) => Event::with_message("rejected", r),
        LauncherEvent::Refused(r) => Event::with_message("refused", r),
        LauncherEvent::Registered {
            connection: c,
            evidence,
        } => Event {
            connection: Some(connection(py, &c)?),
            evidence: Some(match evidence {
                Evidence::Request => "request",
                Evidence::FileRewrite => "file_rewrite",
                Evidence::Classic => "classic",
            }),
            ..Event::new("registered")
        },
        LauncherEvent::Failed(f) => {
            let (exit_code, exit_signal) = match f {
                jupyter_handshake::Failure::KernelExited(ExitStatus::Code(c)) => (Some(c), None),
                jupyter_handshake::Failure::KernelExited(ExitStatus::Signal(s)) => (None, Some(s)),
                _ => (None, None),
            };
            Event {
                exit_code,
                exit_signal,
                ..Event::with_message("failed", f)
            }
        }
        other => Event::with_message("other", format!("{other:?}")),
    })
}

fn transmit<'py>(py: Python<'py>, frames: &[Vec<u8>]) -> PyResult<Bound<'py, PyTuple>> {
    let list = PyList::new(py, frames.iter().map(|f| PyBytes::new(py, f)))?;
    ("transmit", list).into_pyobject(py)
}

fn exit_status(code: Option<i32>, signal: Option<i32>) -> ExitStatus {
    match (code, signal) {
        (_, Some(s)) => ExitStatus::Signal(s),
        (Some(c), None) => ExitStatus::Code(c),
        (None, None) => ExitStatus::Unknown,
    }
}

/// Many launches on one registration socket (a ROUTER), each with its own key.
///
/// `Registrar(ip="127.0.0.1", username="launcher")` (each launch's session id is derived from
/// its key); its first output asks to
/// bind the socket (`registration_bound(now, port)`), then `launch(...)` adds launches.
#[pyclass(module = "jupyter_handshake._core")]
pub struct Registrar {
    inner: jupyter_handshake::Registrar,
    /// The ids handed to Python, by number (`LaunchId` is only made by the registrar).
    ids: HashMap<u64, LaunchId>,
}

impl Registrar {
    fn find(&self, launch: u64) -> PyResult<LaunchId> {
        self.ids
            .get(&launch)
            .copied()
            .ok_or_else(|| usage(format!("no launch {launch}")))
    }
}

#[pymethods]
impl Registrar {
    #[new]
    #[pyo3(signature = (ip = "127.0.0.1".to_string(), username = "launcher".to_string()))]
    fn new(ip: String, username: String) -> Self {
        // Anyone on the host can reach the registration socket: its messages get the tight
        // bounds (2 KiB frames, 16 frames), checked before any HMAC.
        let inner = jupyter_handshake::Registrar::new(RegistrarConfig {
            ip,
            username,
            limits: Limits::REGISTRATION,
            ..RegistrarConfig::default()
        });
        Self {
            inner,
            ids: HashMap::new(),
        }
    }

    /// The registration socket's port, once bound.
    #[getter]
    fn port(&self) -> Option<u16> {
        self.inner.port()
    }

    /// How many launches wait for their kernel.
    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending()
    }

    /// The earliest deadline (µs), or None.
    fn poll_timeout(&self) -> Option<u64> {
        self.inner.deadline().map(|d| d.at.as_micros())
    }

    /// The next output (see the module docs); drain until `("timeout", ...)`.
    fn poll_output<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        match self.inner.poll_output() {
            Output::Action(RegistrarAction::BindRegistration { transport, ip }) => {
                ("bind_registration", transport.to_string(), ip).into_pyobject(py)
            }
            Output::Action(RegistrarAction::WriteRegistrationFile { launch, file }) => (
                "write_registration_file",
                launch.get(),
                Secret(file.to_json_pretty()),
            )
                .into_pyobject(py),
            Output::Transmit(t) => transmit(py, &t.frames),
            Output::Event(RegistrarEvent::Launch { launch, event }) => {
                ("event", Some(launch.get()), launcher_event(py, event)?).into_pyobject(py)
            }
            Output::Event(RegistrarEvent::Rejected(r)) => {
                ("event", None::<u64>, Event::with_message("rejected", r)).into_pyobject(py)
            }
            Output::Event(other) => (
                "event",
                None::<u64>,
                Event::with_message("other", format!("{other:?}")),
            )
                .into_pyobject(py),
            Output::Timeout(next) => {
                ("timeout", next.at().map(Instant::as_micros)).into_pyobject(py)
            }
        }
    }

    /// The registration socket is bound on `port`.
    fn registration_bound(&mut self, now_us: u64, port: u16) -> PyResult<()> {
        self.inner
            .handle_input(instant(now_us), RegistrarInput::RegistrationBound { port })
            .map_err(usage)
    }

    /// Starts a launch with `key` (fresh and random, unique among pending launches) in
    /// `dialect` (`posit` or `upstream`; `kernel_id` names an upstream kernel), waiting at most
    /// `timeout` seconds for its kernel. Returns the launch id; the outputs then ask to write
    /// its registration file.
    #[pyo3(signature = (now_us, key, dialect, kernel_id = String::new(), timeout = 30.0))]
    fn launch(
        &mut self,
        now_us: u64,
        key: String,
        dialect: &str,
        kernel_id: String,
        timeout: f64,
    ) -> PyResult<u64> {
        let key = Key::new(key);
        let mut config = match dialect {
            "posit" => LaunchConfig::new(key),
            "upstream" => LaunchConfig::upstream(key, kernel_id),
            _ => {
                return Err(PyValueError::new_err(
                    "dialect must be \"posit\" or \"upstream\"",
                ));
            }
        };
        config.registration_timeout = duration(timeout, "timeout")?;
        let id = self.inner.launch(instant(now_us), config).map_err(usage)?;
        self.ids.insert(id.get(), id);
        Ok(id.get())
    }

    /// Starts a finished launch over for a restarted kernel (same key, same socket).
    fn rearm(&mut self, now_us: u64, launch: u64) -> PyResult<()> {
        let id = self.find(launch)?;
        self.inner.rearm(instant(now_us), id).map_err(usage)
    }

    /// Forgets a launch; returns its last connection, if any.
    fn remove(&mut self, py: Python<'_>, launch: u64) -> PyResult<Option<Py<Connection>>> {
        let id = self.find(launch)?;
        let last = self.inner.remove(id).map_err(usage)?;
        self.ids.remove(&launch);
        match last {
            Some(c) => Ok(Some(connection(py, &c)?)),
            None => Ok(None),
        }
    }

    /// A launch's state (`bound`, `connected`, `failed`), or None if unknown.
    fn launch_state(&self, launch: u64) -> Option<&'static str> {
        let id = self.find(launch).ok()?;
        self.inner.launch_state(id).map(launcher_state)
    }

    /// A launch's latest verified connection.
    fn connection(&self, py: Python<'_>, launch: u64) -> PyResult<Option<Py<Connection>>> {
        let id = self.find(launch)?;
        self.inner
            .connection(id)
            .map(|c| connection(py, c))
            .transpose()
    }

    /// A multipart message from the ROUTER (identities first).
    fn received(&mut self, now_us: u64, frames: Vec<Vec<u8>>) {
        self.inner.receive(instant(now_us), &frames);
    }

    /// A launch's registration file now holds `data`.
    fn file_changed(&mut self, now_us: u64, launch: u64, data: &[u8]) -> PyResult<()> {
        let launch = self.find(launch)?;
        let input = RegistrarInput::FileChanged {
            launch,
            bytes: data,
        };
        self.inner
            .handle_input(instant(now_us), input)
            .map_err(usage)
    }

    /// A launch's kernel process ended with `code` (or was killed by `signal`).
    #[pyo3(signature = (now_us, launch, code = None, signal = None))]
    fn kernel_exited(
        &mut self,
        now_us: u64,
        launch: u64,
        code: Option<i32>,
        signal: Option<i32>,
    ) -> PyResult<()> {
        let launch = self.find(launch)?;
        let status = exit_status(code, signal);
        self.inner
            .handle_input(
                instant(now_us),
                RegistrarInput::KernelExited { launch, status },
            )
            .map_err(usage)
    }

    /// A deadline may have passed.
    fn timeout(&mut self, now_us: u64) -> PyResult<()> {
        self.inner
            .handle_input(instant(now_us), RegistrarInput::Timeout)
            .map_err(usage)
    }

    /// Gives up on one launch now.
    fn abort(&mut self, now_us: u64, launch: u64) -> PyResult<()> {
        let launch = self.find(launch)?;
        self.inner
            .handle_input(instant(now_us), RegistrarInput::Abort { launch })
            .map_err(usage)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Registrar port={:?} pending={}>",
            self.inner.port(),
            self.inner.pending()
        )
    }
}

fn kernel_event(py: Python<'_>, event: KernelEvent) -> PyResult<Event> {
    Ok(match event {
        KernelEvent::StateChanged { to, .. } => Event {
            state: Some(kernel_state(to)),
            ..Event::new("state_changed")
        },
        KernelEvent::Rejected(r) => Event::with_message("rejected", r),
        KernelEvent::Connected(c) => Event {
            connection: Some(connection(py, &c)?),
            ..Event::new("connected")
        },
        KernelEvent::Failed(f) => Event::with_message("failed", f),
        other => Event::with_message("other", format!("{other:?}")),
    })
}

/// The kernel side of the handshake, for a kernel written in Python.
///
/// `Kernel(file_bytes, session_id=None, ack_timeout=10.0, wait_for_iopub=None,
/// username="kernel")` (no session id: one derived from the file's key)
/// reads the file the kernel was started with (registration file: handshake; connection file:
/// classic; else [`FileError`]); the first output asks to bind the five channels.
#[pyclass(module = "jupyter_handshake._core")]
pub struct Kernel(jupyter_handshake::KernelHandshake);

#[pymethods]
impl Kernel {
    #[new]
    #[pyo3(signature = (file, session_id = None, ack_timeout = 10.0, wait_for_iopub = None, username = "kernel".to_string()))]
    fn new(
        file: &[u8],
        session_id: Option<String>,
        ack_timeout: f64,
        wait_for_iopub: Option<f64>,
        username: String,
    ) -> PyResult<Self> {
        let file = KernelFile::from_json(file).map_err(|e| FileError::new_err(e.to_string()))?;
        let config = KernelConfig {
            ack_timeout: duration(ack_timeout, "ack_timeout")?,
            wait_for_iopub: wait_for_iopub
                .map(|s| duration(s, "wait_for_iopub"))
                .transpose()?,
            session_id,
            username,
            ..KernelConfig::default()
        };
        Ok(Self(jupyter_handshake::KernelHandshake::new(file, config)))
    }

    /// `init`, `bound`, `awaiting_reply`, `registered`, `connected` or `failed`.
    #[getter]
    fn state(&self) -> &'static str {
        kernel_state(self.0.state())
    }

    /// The kernel's connection information, once its channels are bound.
    #[getter]
    fn connection(&self, py: Python<'_>) -> PyResult<Option<Py<Connection>>> {
        self.0.connection().map(|c| connection(py, c)).transpose()
    }

    /// The current deadline (µs), or None.
    fn poll_timeout(&self) -> Option<u64> {
        self.0.deadline().map(|d| d.at.as_micros())
    }

    /// The next output (see the module docs); drain until `("timeout", ...)`.
    fn poll_output<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        match self.0.poll_output() {
            Output::Action(KernelAction::BindChannels {
                transport,
                ip,
                ports,
            }) => {
                let ports = ports.map(|p| (p.shell, p.iopub, p.stdin, p.control, p.hb));
                ("bind_channels", transport.to_string(), ip, ports).into_pyobject(py)
            }
            Output::Action(KernelAction::ConnectRegistration { endpoint, socket }) => {
                let socket = match socket {
                    RegistrationSocket::Req => "req",
                    RegistrationSocket::Dealer => "dealer",
                };
                ("connect_registration", endpoint, socket).into_pyobject(py)
            }
            Output::Transmit(t) => transmit(py, &t.frames),
            Output::Event(e) => ("event", None::<u64>, kernel_event(py, e)?).into_pyobject(py),
            Output::Timeout(next) => {
                ("timeout", next.at().map(Instant::as_micros)).into_pyobject(py)
            }
        }
    }

    /// The five channels are bound on these ports.
    fn bound(
        &mut self,
        now_us: u64,
        shell: u16,
        iopub: u16,
        stdin: u16,
        control: u16,
        hb: u16,
    ) -> PyResult<()> {
        let ports = jupyter_handshake::KernelPorts {
            shell,
            iopub,
            stdin,
            control,
            hb,
        };
        self.feed(now_us, KernelInput::Bound(ports))
    }

    /// The registration socket asked for is connected.
    fn registration_connected(&mut self, now_us: u64) -> PyResult<()> {
        self.feed(now_us, KernelInput::RegistrationConnected)
    }

    /// A multipart message arrived on the registration socket.
    fn received(&mut self, now_us: u64, frames: Vec<Vec<u8>>) {
        self.0.receive(instant(now_us), &frames);
    }

    /// The IOPub socket saw a subscription.
    fn iopub_subscribed(&mut self, now_us: u64) -> PyResult<()> {
        self.feed(now_us, KernelInput::IopubSubscribed)
    }

    /// A deadline may have passed.
    fn timeout(&mut self, now_us: u64) -> PyResult<()> {
        self.feed(now_us, KernelInput::Timeout)
    }

    /// Gives up now.
    fn abort(&mut self, now_us: u64) -> PyResult<()> {
        self.feed(now_us, KernelInput::Abort)
    }

    fn __repr__(&self) -> String {
        format!("<Kernel {}>", kernel_state(self.0.state()))
    }
}

impl Kernel {
    fn feed(&mut self, now_us: u64, input: KernelInput) -> PyResult<()> {
        self.0.handle_input(instant(now_us), input).map_err(usage)
    }
}

/// The launch mode a kernelspec's `kernel_protocol_version` implies: `upstream` (>= 5.6),
/// `handshake` (5.5: the Posit dialect, which also accepts stock ipykernel's file rewrite) or
/// `classic` (anything else, or None).
#[pyfunction]
#[pyo3(signature = (kernel_protocol_version))]
fn launch_mode(kernel_protocol_version: Option<&str>) -> &'static str {
    // The one call to swap when the rule moves into the core (issue 11).
    LaunchMode::from_protocol_version(kernel_protocol_version).as_str()
}

/// The registration dialect of a launch mode (`posit`, `upstream`), or None for classic.
#[pyfunction]
fn mode_dialect(mode: &str) -> PyResult<Option<&'static str>> {
    let mode = match mode {
        "handshake" => LaunchMode::Handshake,
        "upstream" => LaunchMode::Upstream,
        "classic" => LaunchMode::Classic,
        _ => {
            return Err(PyValueError::new_err(
                "mode must be \"handshake\", \"upstream\" or \"classic\"",
            ));
        }
    };
    Ok(mode.dialect().map(Dialect::as_str))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Registrar>()?;
    m.add_class::<Kernel>()?;
    m.add_class::<Connection>()?;
    m.add_class::<Secret>()?;
    m.add_class::<Event>()?;
    m.add_function(wrap_pyfunction!(launch_mode, m)?)?;
    m.add_function(wrap_pyfunction!(mode_dialect, m)?)?;
    // The registrar's frame bound, for the driver's `ZMQ_MAXMSGSIZE`.
    m.add("REGISTRATION_MAX_FRAME", Limits::REGISTRATION.max_frame_len)?;
    let py = m.py();
    m.add("HandshakeError", py.get_type::<HandshakeError>())?;
    m.add("UsageError", py.get_type::<UsageError>())?;
    m.add("FileError", py.get_type::<FileError>())?;
    Ok(())
}
