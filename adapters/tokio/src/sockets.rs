//! zeromq plumbing: binding on port 0 and reading the port back, frames in and out of
//! `ZmqMessage`, and sends that cannot hang.

use std::time::Duration;

use bytes::Bytes;
use jupyter_handshake::Transport;
use zeromq::{Endpoint, Socket, SocketRecv, SocketSend, ZmqMessage, ZmqResult};

use crate::error::Error;
use jupyter_handshake_host::files::IpcClaim;
use jupyter_handshake_host::quote;

/// The longest a send may take (a peer that stops reading fills its queue; a registration reply
/// is small, so only such a peer ever hits this). A send that times out is dropped, as libzmq's
/// ROUTER drops what it cannot deliver.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Binds `socket` on `transport`/`ip`/`port` and returns the port actually bound.
///
/// Port 0, tcp: the OS picks, and the port is read back from the endpoint zeromq returns. Port
/// 0, ipc: a random `N`, its path `{ip}-{N}` claimed with a lock file across the bind
/// ([`IpcClaim`]), so kernels starting together never take one path. Keep an
/// [`IpcFile`](jupyter_handshake_host::files::IpcFile) for a bound ipc path.
pub(crate) async fn bind<S: Socket>(
    socket: &mut S,
    name: &'static str,
    transport: Transport,
    ip: &str,
    port: u16,
) -> Result<u16, Error> {
    let claim = match (transport, port) {
        (Transport::Ipc, 0) => Some(IpcClaim::new(ip).map_err(|_| Error::Endpoint {
            endpoint: quote(&transport.endpoint(ip, 0)),
            reason: "no ipc path could be claimed next to it (is the directory writable?)",
        })?),
        _ => None,
    };
    let port = claim.as_ref().map_or(port, IpcClaim::number);
    let endpoint = transport.endpoint(ip, port);
    let bound = socket
        .bind(&endpoint)
        .await
        .map_err(|source| Error::Socket {
            action: "bind",
            socket: name,
            endpoint: Some(quote(&endpoint)),
            source,
        })?;
    // Bound: whoever claims this number later sees the socket file.
    drop(claim);
    match bound {
        Endpoint::Tcp(_, bound) if bound != 0 => Ok(bound),
        Endpoint::Ipc(_) if port != 0 => Ok(port),
        _ => Err(Error::Endpoint {
            endpoint: quote(&endpoint),
            reason: "zeromq reported no port for the bound endpoint",
        }),
    }
}

/// Connects `socket` to `endpoint`.
pub(crate) async fn connect<S: Socket>(
    socket: &mut S,
    name: &'static str,
    endpoint: &str,
) -> Result<(), Error> {
    socket
        .connect(endpoint)
        .await
        .map_err(|source| Error::Socket {
            action: "connect",
            socket: name,
            endpoint: Some(quote(endpoint)),
            source,
        })
}

/// The frames as one message (`None` for no frames, which is no message).
pub fn message(frames: Vec<Vec<u8>>) -> Option<ZmqMessage> {
    ZmqMessage::try_from(frames.into_iter().map(Bytes::from).collect::<Vec<_>>()).ok()
}

/// The frames of a received message, borrowed.
pub fn frames(message: &ZmqMessage) -> Vec<&[u8]> {
    message.iter().map(|b| b.as_ref()).collect()
}

/// Sends `frames`, waiting at most [`SEND_TIMEOUT`]. `false`: dropped (the peer is gone or
/// does not read), which is what a ROUTER does with undeliverable messages.
///
/// The send runs outside tokio's cooperative budget (`unconstrained`). zeromq 0.6's ROUTER
/// holds a lock on its peer table across the awaited write; a write forced to yield by an
/// exhausted budget kept that lock while the runtime's workers blocked on it in zeromq's
/// synchronous disconnect handling (a peer closing its socket after its reply): with every
/// worker blocked, the runtime stopped (seen with 100 kernels registering at once on 2
/// workers). Unconstrained, a write to a socket with room in its buffer completes in the same
/// poll, so the lock is never held across a yield except for a peer that stops reading.
pub(crate) async fn send<S: SocketSend>(socket: &mut S, frames: Vec<Vec<u8>>) -> bool {
    send_until(socket, frames, tokio::time::Instant::now() + SEND_TIMEOUT).await
}

/// [`send`], waiting until `deadline` rather than [`SEND_TIMEOUT`]: for a client, whose every
/// send belongs to a request with its own timeout.
pub(crate) async fn send_until<S: SocketSend>(
    socket: &mut S,
    frames: Vec<Vec<u8>>,
    deadline: tokio::time::Instant,
) -> bool {
    let Some(message) = message(frames) else {
        return false;
    };
    let sent = tokio::task::unconstrained(tokio::time::timeout_at(deadline, socket.send(message)));
    matches!(sent.await, Ok(Ok(())))
}

/// Receives one message, outside tokio's cooperative budget.
///
/// Use this rather than `SocketRecv::recv` on a busy task. zeromq 0.6's fair queue (ROUTER,
/// DEALER, SUB, XPUB, REQ's peers) loops over its streams until one is ready; a stream that
/// answers `Pending` and wakes itself at once — which is what tokio's I/O does when the task's
/// cooperative budget is spent — is polled again at once, forever: the task spins and never
/// yields (seen here: a launcher that handled ~100 registrations in one poll hung with one
/// core at 100 %). Unconstrained, the budget never runs out, so `Pending` means "no data".
/// Cancellation-safe exactly when the socket's own `recv` is.
pub async fn recv<S: SocketRecv + Send>(socket: &mut S) -> ZmqResult<ZmqMessage> {
    tokio::task::unconstrained(socket.recv()).await
}
