//! ZeroMQ plumbing shared by the blocking and async drivers: creating, binding and connecting
//! sockets with errors that say which socket and which endpoint, non-blocking receive, and the
//! [`Wrap`] seam that lets one driver engine hold either a plain `zmq::Socket` (blocking) or an
//! `async_zmq` wrapper around one (async).
//!
//! Sockets are always created and bound with the `zmq` crate, then wrapped: `async_zmq` can only
//! wrap a socket that exists, and the port of a socket bound on port 0 must be read back before
//! anyone is told about it.

use jupyter_handshake::Transport;

use crate::files::free_ipc_port;

use crate::error::Error;

/// How long closing a socket may keep unsent messages (a handshake reply, say) before dropping
/// them, in milliseconds.
pub(crate) const LINGER_MS: i32 = 1000;

/// Creates a socket of `kind`, with [`LINGER_MS`].
pub(crate) fn socket(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    name: &'static str,
) -> Result<zmq::Socket, Error> {
    let socket = ctx.socket(kind).map_err(|source| Error::Socket {
        action: "create",
        socket: name,
        endpoint: None,
        source,
    })?;
    socket
        .set_linger(LINGER_MS)
        .map_err(|source| configure(name, source))?;
    Ok(socket)
}

pub(crate) fn configure(name: &'static str, source: zmq::Error) -> Error {
    Error::Socket {
        action: "configure",
        socket: name,
        endpoint: None,
        source,
    }
}

/// The `zmq` crate panics on an endpoint with a NUL byte (it makes a C string of it); an `ip`
/// from a file could hold one.
fn check_endpoint(endpoint: &str) -> Result<(), Error> {
    if endpoint.contains('\0') {
        return Err(Error::Endpoint {
            endpoint: endpoint.escape_default().to_string(),
            reason: "it contains a NUL character",
        });
    }
    Ok(())
}

/// A socket as a driver engine holds it: a plain `zmq::Socket`, or an async wrapper that owns
/// one. Engines send and configure through [`raw`](Wrap::raw); only waiting differs.
pub(crate) trait Wrap {
    /// Takes ownership of a created (and bound or connected) socket.
    fn wrap(socket: zmq::Socket) -> Self;
    /// The socket itself.
    fn raw(&self) -> &zmq::Socket;
}

impl Wrap for zmq::Socket {
    fn wrap(socket: zmq::Socket) -> Self {
        socket
    }
    fn raw(&self) -> &zmq::Socket {
        self
    }
}

/// Binds `socket` on `transport`/`ip`/`port` and returns the port actually bound.
///
/// Port 0 means "any": for tcp, libzmq asks the OS for an ephemeral port and the port is read
/// back from `ZMQ_LAST_ENDPOINT` (the text after the last `:`); for ipc, the first number `N`
/// from 1 up such that no file `{ip}-{N}` exists is used, as jupyter_client does (ipc "ports" are
/// just file-name suffixes; libzmq would replace an existing socket file, so taken ones are
/// skipped).
pub(crate) fn bind(
    socket: &zmq::Socket,
    name: &'static str,
    transport: Transport,
    ip: &str,
    port: u16,
) -> Result<u16, Error> {
    let port = match (transport, port) {
        (Transport::Ipc, 0) => free_ipc_port(ip, &[]).ok_or(Error::Endpoint {
            endpoint: Transport::Ipc.endpoint(ip, 0),
            reason: "every ipc number from 1 to 65535 is taken",
        })?,
        _ => port,
    };
    let endpoint = transport.endpoint(ip, port);
    check_endpoint(&endpoint)?;
    socket.bind(&endpoint).map_err(|source| Error::Socket {
        action: "bind",
        socket: name,
        endpoint: Some(endpoint.clone()),
        source,
    })?;
    if port != 0 {
        return Ok(port);
    }
    let last = socket
        .get_last_endpoint()
        .map_err(|source| configure(name, source))?
        .map_err(|_| Error::Endpoint {
            endpoint: endpoint.clone(),
            reason: "libzmq reported a bound endpoint that is not UTF-8",
        })?;
    port_of(&last).ok_or(Error::Endpoint {
        endpoint: last,
        reason: "no port after its last ':'",
    })
}

/// The port of a bound tcp endpoint such as `tcp://127.0.0.1:40123` or `tcp://[::1]:40123`.
fn port_of(endpoint: &str) -> Option<u16> {
    let (_, port) = endpoint.rsplit_once(':')?;
    port.parse().ok().filter(|&p| p != 0)
}

/// Connects `socket` to `endpoint`.
pub(crate) fn connect(
    socket: &zmq::Socket,
    name: &'static str,
    endpoint: &str,
) -> Result<(), Error> {
    check_endpoint(endpoint)?;
    socket.connect(endpoint).map_err(|source| Error::Socket {
        action: "connect",
        socket: name,
        endpoint: Some(endpoint.to_string()),
        source,
    })
}

/// Sends a multipart message.
pub(crate) fn send(
    socket: &zmq::Socket,
    name: &'static str,
    frames: Vec<Vec<u8>>,
) -> Result<(), Error> {
    socket
        .send_multipart(frames, 0)
        .map_err(|source| Error::Io {
            action: "send",
            socket: name,
            source,
        })
}

/// Receives one multipart message if one is waiting.
pub(crate) fn try_recv(
    socket: &zmq::Socket,
    name: &'static str,
) -> Result<Option<Vec<Vec<u8>>>, Error> {
    match socket.recv_multipart(zmq::DONTWAIT) {
        Ok(frames) => Ok(Some(frames)),
        Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => Ok(None),
        Err(source) => Err(Error::Io {
            action: "receive",
            socket: name,
            source,
        }),
    }
}

#[cfg_attr(not(feature = "blocking"), allow(dead_code))]
/// `zmq::poll`, with an interrupted wait counted as "nothing happened".
pub(crate) fn poll(
    items: &mut [zmq::PollItem<'_>],
    timeout_ms: i64,
    name: &'static str,
) -> Result<(), Error> {
    match zmq::poll(items, timeout_ms) {
        Ok(_) | Err(zmq::Error::EINTR) => Ok(()),
        Err(source) => Err(Error::Io {
            action: "poll",
            socket: name,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_back_from_last_endpoint() {
        assert_eq!(port_of("tcp://127.0.0.1:40123"), Some(40123));
        assert_eq!(port_of("tcp://[::1]:5"), Some(5));
        assert_eq!(port_of("tcp://127.0.0.1:0"), None);
        assert_eq!(port_of("tcp://127.0.0.1"), None);
        assert_eq!(port_of("ipc:///tmp/x"), None);
        let ctx = zmq::Context::new();
        let s = socket(&ctx, zmq::ROUTER, "test").unwrap();
        let port = bind(&s, "test", Transport::Tcp, "127.0.0.1", 0).unwrap();
        assert_ne!(port, 0);
    }

    #[test]
    fn a_nul_in_an_endpoint_is_an_error_not_a_panic() {
        let ctx = zmq::Context::new();
        let s = socket(&ctx, zmq::ROUTER, "test").unwrap();
        let e = bind(&s, "test", Transport::Tcp, "127.0.0.1\0", 0).unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
        assert!(connect(&s, "test", "tcp://a\0:1").is_err());
        let e = bind(&s, "test", Transport::Tcp, "no-such-host.invalid", 0).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot bind the test socket on tcp://no-such-host.invalid:0: "),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn ipc_ports_skip_existing_files() {
        let dir = crate::files::tests::TempDir::new();
        let ip = dir.0.join("kernel").display().to_string();
        std::fs::write(format!("{ip}-1"), b"").unwrap();
        assert_eq!(free_ipc_port(&ip, &[]).unwrap(), 2);
        assert_eq!(free_ipc_port(&ip, &[2, 3]).unwrap(), 4);
        let ctx = zmq::Context::new();
        let a = socket(&ctx, zmq::ROUTER, "a").unwrap();
        let b = socket(&ctx, zmq::ROUTER, "b").unwrap();
        let pa = bind(&a, "a", Transport::Ipc, &ip, 0).unwrap();
        let pb = bind(&b, "b", Transport::Ipc, &ip, 0).unwrap();
        assert_eq!((pa, pb), (2, 3));
    }
}
