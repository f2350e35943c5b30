//! ZeroMQ plumbing shared by the blocking and async drivers: creating, binding and connecting
//! sockets with errors that say which socket and which endpoint, non-blocking receive, and the
//! [`Wrap`] seam that lets one driver engine hold either a plain `zmq::Socket` (blocking) or an
//! `async_zmq` wrapper around one (async).
//!
//! Sockets are always created and bound with the `zmq` crate, then wrapped: `async_zmq` can only
//! wrap a socket that exists, and the port of a socket bound on port 0 must be read back before
//! anyone is told about it.

use jupyter_handshake::Transport;

use crate::error::{Error, quote};

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
            endpoint: quote(endpoint),
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

/// Whether `host` is an IPv6 address: only an IPv6 literal holds a `:` (a name or an IPv4
/// address cannot).
fn is_ipv6(host: &str) -> bool {
    host.contains(':')
}

/// Sets `ZMQ_IPV6` on `socket`: without it libzmq cannot bind or connect an IPv6 address
/// ("No such device").
fn enable_ipv6(socket: &zmq::Socket, name: &'static str) -> Result<(), Error> {
    socket
        .set_ipv6(true)
        .map_err(|source| configure(name, source))
}

/// A socket file this process bound (`ipc://{ip}-{N}`), removed when dropped: libzmq removes
/// only the files of the wildcard `ipc://*`, not a named path, on close.
#[derive(Debug)]
pub(crate) struct IpcFile(std::path::PathBuf);

impl Drop for IpcFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The socket file of a bound endpoint, to remove when its socket is gone; `None` for tcp.
pub(crate) fn ipc_file(transport: Transport, ip: &str, port: u16) -> Option<IpcFile> {
    match transport {
        Transport::Ipc => Some(IpcFile(format!("{ip}-{port}").into())),
        Transport::Tcp => None,
    }
}

/// How many random ipc numbers a bind on port 0 tries before giving up.
const IPC_TRIES: usize = 256;

/// Binds `socket` on `transport`/`ip`/`port` and returns the port actually bound.
///
/// Port 0 means "any". For tcp, libzmq asks the OS for an ephemeral port and the port is read
/// back from `ZMQ_LAST_ENDPOINT` (the text after the last `:`). For ipc ("ports" are only
/// file-name suffixes, `{ip}-{N}`), see [`bind_ipc_any`]: a random `N`, claimed atomically.
/// An IPv6 `ip` gets `ZMQ_IPV6` first.
pub(crate) fn bind(
    socket: &zmq::Socket,
    name: &'static str,
    transport: Transport,
    ip: &str,
    port: u16,
) -> Result<u16, Error> {
    if let (Transport::Ipc, 0) = (transport, port) {
        return bind_ipc_any(socket, name, ip);
    }
    if transport == Transport::Tcp && is_ipv6(ip) {
        enable_ipv6(socket, name)?;
    }
    let endpoint = transport.endpoint(ip, port);
    bind_endpoint(socket, name, &endpoint)?;
    if port != 0 {
        return Ok(port);
    }
    let last = socket
        .get_last_endpoint()
        .map_err(|source| configure(name, source))?
        .map_err(|_| Error::Endpoint {
            endpoint: quote(&endpoint),
            reason: "libzmq reported a bound endpoint that is not UTF-8",
        })?;
    port_of(&last).ok_or_else(|| Error::Endpoint {
        endpoint: quote(&last),
        reason: "no port after its last ':'",
    })
}

fn bind_endpoint(socket: &zmq::Socket, name: &'static str, endpoint: &str) -> Result<(), Error> {
    check_endpoint(endpoint)?;
    socket.bind(endpoint).map_err(|source| Error::Socket {
        action: "bind",
        socket: name,
        endpoint: Some(quote(endpoint)),
        source,
    })
}

/// Binds `ipc://{ip}-{N}` for an unpredictable `N` no other process of ours can be binding or
/// have bound, and returns `N`.
///
/// libzmq unlinks an existing socket file when it binds an ipc path, so "is `{ip}-{N}` free?"
/// followed by a bind is a race (two kernels starting together take one path, and the first
/// loses its socket). Instead, for a random `N`:
///
/// 1. the lock file `{ip}-{N}.lock` is created with `O_CREAT | O_EXCL` (mode 0600): exactly
///    one process can, whoever starts when; anyone else draws another `N`;
/// 2. holding it, `{ip}-{N}` is checked: a socket file there (a live socket, or one a crashed
///    process left) is never replaced, another `N` is drawn;
/// 3. the path is bound, then the lock is removed. Whoever locks `N` later sees the socket file
///    in step 2, since the bind happened before the lock was released.
///
/// The socket file itself stays until the caller's [`IpcFile`] is dropped.
fn bind_ipc_any(socket: &zmq::Socket, name: &'static str, ip: &str) -> Result<u16, Error> {
    for _ in 0..IPC_TRIES {
        let port = random_ipc_number()?;
        let path = format!("{ip}-{port}");
        let lock = format!("{path}.lock");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&lock) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                return Err(Error::Endpoint {
                    endpoint: quote(&format!("ipc://{path}")),
                    reason: "cannot create the lock file next to it (is the directory writable?)",
                });
            }
        }
        let taken = std::fs::symlink_metadata(&path).is_ok();
        let bound = if taken {
            None
        } else {
            Some(bind_endpoint(socket, name, &format!("ipc://{path}")))
        };
        let _ = std::fs::remove_file(&lock);
        match bound {
            None => continue,
            Some(Ok(())) => return Ok(port),
            Some(Err(error)) => return Err(error),
        }
    }
    Err(Error::Endpoint {
        endpoint: quote(&Transport::Ipc.endpoint(ip, 0)),
        reason: "no free ipc number found in 256 random tries",
    })
}

/// A random ipc number in 1..=65535, from the OS's secure generator.
fn random_ipc_number() -> Result<u16, Error> {
    loop {
        let mut bytes = [0u8; 2];
        getrandom::fill(&mut bytes).map_err(|_| Error::Internal("no random bytes from the OS"))?;
        let n = u16::from_le_bytes(bytes);
        if n != 0 {
            return Ok(n);
        }
    }
}

/// The port of a bound tcp endpoint such as `tcp://127.0.0.1:40123` or `tcp://[::1]:40123`.
fn port_of(endpoint: &str) -> Option<u16> {
    let (_, port) = endpoint.rsplit_once(':')?;
    port.parse().ok().filter(|&p| p != 0)
}

/// Connects `socket` to `endpoint`, with `ZMQ_IPV6` for a `tcp://[…]` one.
pub(crate) fn connect(
    socket: &zmq::Socket,
    name: &'static str,
    endpoint: &str,
) -> Result<(), Error> {
    check_endpoint(endpoint)?;
    if endpoint.starts_with("tcp://[") {
        enable_ipv6(socket, name)?;
    }
    socket.connect(endpoint).map_err(|source| Error::Socket {
        action: "connect",
        socket: name,
        endpoint: Some(quote(endpoint)),
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
    fn ipc_binds_on_port_0_take_distinct_random_paths_and_never_replace_a_file() {
        let dir = crate::temp::TempDir::new();
        let ip = dir.0.join("kernel").display().to_string();
        let ctx = zmq::Context::new();
        let mut ports = Vec::new();
        let mut files = Vec::new();
        for _ in 0..32 {
            let s = socket(&ctx, zmq::ROUTER, "a").unwrap();
            let port = bind(&s, "a", Transport::Ipc, &ip, 0).unwrap();
            files.push(ipc_file(Transport::Ipc, &ip, port).unwrap());
            ports.push((port, s));
        }
        let mut numbers: Vec<u16> = ports.iter().map(|(p, _)| *p).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), 32, "distinct paths");
        // Only the socket files remain (no lock file), and they go with their guards.
        let names = || -> Vec<String> {
            std::fs::read_dir(&dir.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names().len(), 32);
        assert!(names().iter().all(|n| !n.ends_with(".lock")));
        drop(ports);
        drop(files);
        assert_eq!(names(), Vec::<String>::new());
    }

    #[test]
    fn ipv6_loopback_binds_and_connects() {
        let ctx = zmq::Context::new();
        let server = socket(&ctx, zmq::REP, "server").unwrap();
        let port = bind(&server, "server", Transport::Tcp, "::1", 0).unwrap();
        let client = socket(&ctx, zmq::REQ, "client").unwrap();
        connect(&client, "client", &Transport::Tcp.endpoint("::1", port)).unwrap();
        client.send("ping", 0).unwrap();
        assert_eq!(server.recv_bytes(0).unwrap(), b"ping");
    }

    #[test]
    fn errors_quote_a_short_escaped_prefix_of_an_endpoint() {
        let ctx = zmq::Context::new();
        let s = socket(&ctx, zmq::ROUTER, "test").unwrap();
        let huge = format!("{}\n{}", "h".repeat(100), "x".repeat(10_000_000));
        let e = bind(&s, "test", Transport::Tcp, &huge, 0)
            .unwrap_err()
            .to_string();
        assert!(e.len() < 300, "{} bytes: {e:.300}", e.len());
        assert!(e.contains(&format!("tcp://{}…", "h".repeat(58))), "{e}");
        let e = connect(&s, "test", &format!("tcp://a\n\0{huge}:1"))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 300 && !e.contains('\n'), "{e:.300}");
    }
}
