//! The launcher's registration socket: a small ZMTP 3.0/3.1 ROUTER of our own (NULL mechanism,
//! as-server), bounded in everything a peer can make it hold.
//!
//! Any local process can connect to a registration socket, and before the core has judged a
//! message nobody is authenticated. zeromq 0.6's `RouterSocket` bounds nothing (no
//! `ZMQ_MAXMSGSIZE`, no per-peer high-water mark, no limit on a multipart message, no handshake
//! timeout) and loses registrations in a burst of connections, so the [`Launcher`] binds this
//! one instead (the kernel side and the client keep `zeromq`). It only moves frames: every
//! message goes to the core's `Registrar`, which decides everything.
//!
//! Each connection is a task of its own: it sends our greeting whole at once (libzmq sends its
//! own in parts, signature first, and waits for ours), decodes the peer's bytes (a sans-IO ZMTP
//! codec, `router/zmtp.rs`), answers READY with `Socket-Type: ROUTER` (REQ, DEALER and ROUTER
//! peers are served), replies to PING with PONG, ignores other commands within the frame
//! bound, and hands each complete message to the launcher with the peer's routing id as its
//! first frame, exactly as a ROUTER does. Routing ids are ours (`0x00` and a counter
//! that never repeats), never the peer's `Identity`. The bounds, each a constant below:
//!
//! | bound | value | what it bounds |
//! |---|---|---|
//! | [`MAX_FRAME`] | 2 KiB | one frame's body, judged on its header (1- or 8-byte length) |
//! | [`MAX_FRAMES`] | 15 | frames of one message (16 with the routing id: the registrar's bound) |
//! | [`MAX_MESSAGE`] | 16 KiB | bytes of one message, judged on each frame's header |
//! | [`HANDSHAKE_TIMEOUT`] | 10 s | greeting + READY, from the accept (silent or slow peers) |
//! | [`PEER_QUEUE`] | 4 | messages of one peer received and not yet handled by the launcher |
//! | [`MESSAGES_PER_WAKE`] | 16 | messages one connection hands over before it yields |
//! | [`WRITE_QUEUE`] | 4 | replies queued for a peer; one more and the peer is dropped |
//! | [`WRITE_TIMEOUT`] | 1 s | one write to a peer that does not read |
//! | [`MAX_CONNECTIONS`] | 1024 | connections at once (then the longest idle one goes, if idle ≥ [`IDLE_EVICT`]; else the new one) |
//! | [`STRIKES`] | 4 | messages of one connection the core rejected (no key verified them); then it is disconnected |
//! | [`INCOMING`] | 256 | messages of all peers waiting for the launcher |
//!
//! A peer that breaks a bound is disconnected at once, and what it sent is not kept: a frame is
//! refused on its header, before its body is read. A peer whose queue is full is simply not read
//! until the launcher has taken its messages (its bytes wait in its own socket buffers, not in
//! ours). So, whatever the peers send, the launcher holds at most about `MAX_CONNECTIONS ×
//! (MAX_FRAME + 16 KiB of read buffers + 2 × MAX_MESSAGE)` (a message being decoded and one
//! waiting for its place) `+ INCOMING × MAX_MESSAGE`: some 55 MiB at the cap, with every
//! connection sending the largest messages; 4 × 100 flooding connections measured 21 MiB peak
//! RSS for the whole launcher (`bench/flood.py`, README).
//!
//! Replies never wait: they go to the peer named by the first frame, are
//! dropped if that peer is gone (as libzmq's ROUTER does), and drop the peer if its write queue
//! is full.
//!
//! Transports: tcp (IPv4, IPv6) and, on Unix, ipc (`ipc://{ip}-{N}`, a random `N` claimed with
//! a lock file as the zmq driver does; a bind never replaces an existing file, and the socket
//! file is removed with the socket). On Windows an ipc registration socket is refused
//! ([`Error::Endpoint`]): tokio serves no AF_UNIX sockets there.
//!
//! [`Launcher`]: crate::Launcher

#[cfg(unix)]
use jupyter_handshake_host::files::IpcClaim;
use jupyter_handshake_host::files::IpcFile;
use jupyter_handshake_host::quote;
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use jupyter_handshake::Transport;
use jupyter_handshake::wire::Limits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use crate::error::Error;

mod zmtp;

use zmtp::{Bounds, Decoder, Event};

/// The longest frame body a peer may send: 2 KiB, as the zmq driver's `ZMQ_MAXMSGSIZE` on its
/// registration socket (a real request's largest frame, its header, is a few hundred bytes),
/// and the registrar's [`REGISTRATION_LIMITS`] frame bound.
pub const MAX_FRAME: usize = REGISTRATION_LIMITS.max_frame_len;

/// The most frames in one message from a peer: 15, the registrar's bound (16, as the zmq
/// driver's) less the routing id we put first. A REQ's request is 7 (the empty delimiter,
/// `<IDS|MSG>`, the signature, four parts).
pub const MAX_FRAMES: usize = REGISTRATION_LIMITS.max_frames - 1;

/// What the launcher's registrar accepts of a message (the core checks it before any HMAC):
/// [`Limits::REGISTRATION`], frames of [`MAX_FRAME`], 16 frames with the routing id.
pub const REGISTRATION_LIMITS: Limits = Limits::REGISTRATION;

/// The most bytes in one message from a peer (a real request is 1–2 KiB): what libzmq cannot
/// bound, and what an endless multipart message breaks.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// How long a peer has, from the accept, to complete its greeting and READY.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages of one peer received and not yet handled by the launcher; with this many queued,
/// the peer's connection is not read.
pub const PEER_QUEUE: usize = 4;

/// Messages one connection hands to the launcher in a row before it yields to the others.
pub const MESSAGES_PER_WAKE: usize = 16;

/// Replies waiting to be written to one peer; a reply beyond it drops the peer.
pub const WRITE_QUEUE: usize = 4;

/// The longest one write to a peer may take; a peer that does not read is dropped then.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections at once. At the cap, a new connection evicts the established one that has been
/// idle longest if it has been idle for [`IDLE_EVICT`]; otherwise the new one is closed.
pub const MAX_CONNECTIONS: usize = 1024;

/// The listen backlog of a tcp registration socket (Linux caps it at `net.core.somaxconn`, 4096
/// by default; tokio's `TcpListener::bind` gives 128). Connections past the backlog have their
/// SYNs dropped and connect a second later: a fleet's kernels arriving next to a few hundred
/// hostile connections. The same as the zmq driver's.
pub const BACKLOG: u32 = 4096;

/// How long an established connection must have been idle to be evicted at the cap.
pub const IDLE_EVICT: Duration = Duration::from_secs(1);

/// How many of its messages the core may reject (no pending launch's key verified them) before
/// a connection is closed: a kernel sends one request per connection (a restarted kernel
/// connects anew), so a connection past this many is a flooder, and each more message of it
/// would cost a verification against every pending key. Routing ids never repeat, so a
/// flooder that reconnects gets this many again, for the price of a new connection.
pub const STRIKES: u32 = 4;

/// Messages of all peers waiting for the launcher.
pub const INCOMING: usize = 256;

/// After an accept error other than an aborted connection (out of descriptors), the accept
/// loop waits this long, so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// The largest read from a connection at once.
const READ_CHUNK: usize = 8 * 1024;

const BOUNDS: Bounds = Bounds {
    max_frame: MAX_FRAME,
    max_frames: MAX_FRAMES,
    max_message: MAX_MESSAGE,
};

/// A message from a peer: its routing id first, then its frames. Holding it holds one of the
/// peer's [`PEER_QUEUE`] places.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The routing id, then the peer's frames.
    pub(crate) frames: Vec<Bytes>,
    _place: OwnedSemaphorePermit,
}

/// The registration ROUTER: its accept task, its peers; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Router {
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    /// The ipc socket file, removed with the router.
    _ipc_file: Option<IpcFile>,
}

#[derive(Debug, Default)]
struct Shared {
    peers: Mutex<Peers>,
}

#[derive(Debug, Default)]
struct Peers {
    map: HashMap<u64, Peer>,
    next: u64,
}

#[derive(Debug)]
struct Peer {
    writes: mpsc::Sender<Vec<u8>>,
    task: AbortHandle,
    /// Greeting and READY done.
    established: bool,
    /// The accept, the end of its handshake, or its last message.
    last_active: Instant,
    /// Its messages the core rejected ([`Router::strike`]).
    strikes: u32,
}

impl Shared {
    fn peers(&self) -> MutexGuard<'_, Peers> {
        // No code panics while holding the lock; a poisoned table is still consistent.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Disconnects `id` (its task is aborted; its entry removed).
    fn drop_peer(&self, id: u64) {
        let removed = self.peers().map.remove(&id);
        if let Some(peer) = removed {
            peer.task.abort();
        }
    }

    fn touch(&self, id: u64, established: bool) {
        if let Some(peer) = self.peers().map.get_mut(&id) {
            peer.established |= established;
            peer.last_active = Instant::now();
        }
    }
}

/// Removes a connection's entry when its task ends (returned, failed or aborted).
struct Leave {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.shared.peers().map.remove(&self.id);
    }
}

/// The routing id of connection `id`: `0x00` then `id`, big-endian (9 bytes).
fn routing_id(id: u64) -> Bytes {
    let mut bytes = Vec::with_capacity(9);
    bytes.push(0);
    bytes.extend_from_slice(&id.to_be_bytes());
    Bytes::from(bytes)
}

fn parse_routing_id(frame: &[u8]) -> Option<u64> {
    match frame {
        [0, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

impl Router {
    /// Binds on `transport`/`ip`, port 0 (tcp: the OS picks; ipc: a random free number), and
    /// starts accepting. Returns the router, the messages of its peers, and the port.
    pub(crate) async fn bind(
        transport: Transport,
        ip: &str,
    ) -> Result<(Self, mpsc::Receiver<Incoming>, u16), Error> {
        let (listener, port, ipc_file) = listen(transport, ip).await?;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(INCOMING);
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), tx));
        Ok((
            Self {
                shared,
                accept,
                _ipc_file: ipc_file,
            },
            rx,
            port,
        ))
    }

    /// Sends `frames[1..]` to the peer whose routing id is `frames[0]`, without waiting.
    /// `false`: dropped, because there is no such peer (gone, or never ours), no frame to send,
    /// or the peer's [`WRITE_QUEUE`] is full (the peer is disconnected too).
    pub(crate) fn send<F: AsRef<[u8]>>(&self, frames: &[F]) -> bool {
        let Some((first, rest)) = frames.split_first() else {
            return false;
        };
        let Some(id) = parse_routing_id(first.as_ref()) else {
            return false;
        };
        if rest.is_empty() {
            return false;
        }
        let mut bytes = Vec::new();
        zmtp::message(&mut bytes, rest);
        let writes = match self.shared.peers().map.get(&id) {
            Some(peer) => peer.writes.clone(),
            None => return false,
        };
        match writes.try_send(bytes) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.drop_peer(id);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl Router {
    /// Counts one more message of the peer whose routing id is `routing_id` that the core
    /// rejected, and disconnects the peer at its [`STRIKES`]th. Returns whether it was.
    pub(crate) fn strike(&self, routing_id: &[u8]) -> bool {
        let Some(id) = parse_routing_id(routing_id) else {
            return false;
        };
        let struck_out = match self.shared.peers().map.get_mut(&id) {
            Some(peer) => {
                peer.strikes += 1;
                peer.strikes >= STRIKES
            }
            None => false,
        };
        if struck_out {
            self.shared.drop_peer(id);
        }
        struck_out
    }
}

impl Drop for Router {
    /// Stops accepting, closes every peer's write queue, removes the ipc socket file.
    ///
    /// A connection first writes the replies already queued for it, then ends (its queue reads
    /// as closed): the reply to a single launch's kernel is typically still queued when that
    /// launch returns and drops its launcher, and aborting at once lost it (the kernel then
    /// timed out waiting). Each write is bounded by [`WRITE_TIMEOUT`], and a connection still
    /// running that long after the drop is aborted. Outside a tokio runtime every connection is
    /// aborted at once.
    fn drop(&mut self) {
        self.accept.abort();
        // Dropping each `Peer` drops its queue's sender.
        let tasks: Vec<AbortHandle> = self
            .shared
            .peers()
            .map
            .drain()
            .map(|(_, peer)| peer.task)
            .collect();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(WRITE_TIMEOUT).await;
                    tasks.iter().for_each(AbortHandle::abort);
                });
            }
            Err(_) => tasks.iter().for_each(AbortHandle::abort),
        }
    }
}

async fn listen(transport: Transport, ip: &str) -> Result<(Listener, u16, Option<IpcFile>), Error> {
    let fail = |source| Error::Io {
        action: "bind",
        socket: "registration",
        endpoint: Some(quote(&transport.endpoint(ip, 0))),
        source,
    };
    match transport {
        Transport::Tcp => {
            let host = ip
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(ip);
            let listener = listen_tcp(host).await.map_err(fail)?;
            let port = listener.local_addr().map_err(fail)?.port();
            Ok((Listener::Tcp(listener), port, None))
        }
        #[cfg(unix)]
        Transport::Ipc => {
            let (listener, port, file) = listen_ipc(ip)?;
            Ok((Listener::Unix(listener), port, file))
        }
        #[cfg(not(unix))]
        Transport::Ipc => Err(Error::Endpoint {
            endpoint: quote(&transport.endpoint(ip, 0)),
            reason: "ipc registration sockets need Unix (tokio serves no AF_UNIX sockets on Windows); use tcp",
        }),
    }
}

/// Binds `host`, port 0, with [`BACKLOG`]: the first of its addresses that binds, as
/// `TcpListener::bind` would (it too sets `SO_REUSEADDR` on Unix, never on Windows, where it
/// would let another socket take the port).
async fn listen_tcp(host: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, 0)).await? {
        let bound = (|| {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            #[cfg(unix)]
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(BACKLOG)
        })();
        match bound {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

/// How many claimed ipc paths a bind tries before giving up (a path is only taken between the
/// claim and the bind by a process that does not claim: not ours).
#[cfg(unix)]
const IPC_BIND_TRIES: usize = 16;

/// Binds `{ip}-{N}` for a random `N` claimed with the host crate's [`IpcClaim`] (an `O_EXCL`
/// lock file, an existing socket file never replaced), and returns the listener, `N`, and the
/// socket file to remove with the socket.
#[cfg(unix)]
fn listen_ipc(ip: &str) -> Result<(tokio::net::UnixListener, u16, Option<IpcFile>), Error> {
    let fail = |action, port, source| Error::Io {
        action,
        socket: "registration",
        endpoint: Some(quote(&Transport::Ipc.endpoint(ip, port))),
        source,
    };
    for _ in 0..IPC_BIND_TRIES {
        let claim = IpcClaim::new(ip).map_err(|e| fail("claim a path for", 0, e))?;
        let port = claim.number();
        match tokio::net::UnixListener::bind(format!("{ip}-{port}")) {
            // The claim's lock goes once the path is bound: whoever claims `port` later sees
            // the socket file.
            Ok(listener) => return Ok((listener, port, IpcFile::of(Transport::Ipc, ip, port))),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(fail("bind", port, e)),
        }
    }
    Err(Error::Endpoint {
        endpoint: quote(&Transport::Ipc.endpoint(ip, 0)),
        reason: "every claimed ipc path was taken before it could be bound",
    })
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>, tx: mpsc::Sender<Incoming>) {
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
            #[cfg(unix)]
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
        };
        match accepted {
            Ok(stream) => admit(stream, &shared, &tx),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) => {}
            // Out of descriptors, most likely: the connection waits in the backlog.
            Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// Takes a new connection on, within [`MAX_CONNECTIONS`].
fn admit(stream: Stream, shared: &Arc<Shared>, tx: &mpsc::Sender<Incoming>) {
    let now = Instant::now();
    let mut evict = None;
    let mut peers = shared.peers();
    if peers.map.len() >= MAX_CONNECTIONS {
        let idlest = peers
            .map
            .iter()
            .filter(|(_, p)| p.established && now.duration_since(p.last_active) >= IDLE_EVICT)
            .min_by_key(|(_, p)| p.last_active)
            .map(|(&id, _)| id);
        match idlest.and_then(|id| peers.map.remove(&id)) {
            Some(evicted) => evict = Some(evicted.task),
            // Closed at once (dropped).
            None => return,
        }
    }
    let id = peers.next;
    peers.next += 1;
    let (writes, queued) = mpsc::channel(WRITE_QUEUE);
    let connection = Connection {
        id,
        shared: Arc::clone(shared),
        tx: tx.clone(),
        queued,
        places: Arc::new(Semaphore::new(PEER_QUEUE)),
    };
    // Spawned under the lock: the task's `Leave` cannot run before its entry exists. (The
    // `Leave` is made at the task's first poll: a runtime that is shutting down drops a new
    // task inside `spawn`, here, and a `Leave` dropped then would wait for this lock.)
    let task = match stream {
        Stream::Tcp(s) => tokio::spawn(connection.serve(s)),
        #[cfg(unix)]
        Stream::Unix(s) => tokio::spawn(connection.serve(s)),
    };
    peers.map.insert(
        id,
        Peer {
            writes,
            task: task.abort_handle(),
            established: false,
            last_active: now,
            strikes: 0,
        },
    );
    drop(peers);
    if let Some(task) = evict {
        task.abort();
    }
}

/// Why a connection ended (not reported anywhere: a peer that breaks a bound is simply gone;
/// kept for the tests and for reading).
#[derive(Debug)]
#[allow(dead_code)]
enum Closed {
    Zmtp(zmtp::ZmtpError),
    HandshakeTimeout,
    Io(io::Error),
    WriteTimeout,
    EndOfStream,
    LauncherGone,
}

/// One connection's task.
struct Connection {
    id: u64,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Incoming>,
    queued: mpsc::Receiver<Vec<u8>>,
    places: Arc<Semaphore>,
}

enum Step {
    Read(io::Result<usize>),
    Write(Option<Vec<u8>>),
    Deliver(Option<(OwnedSemaphorePermit, mpsc::OwnedPermit<Incoming>)>),
    HandshakeTimeout,
}

impl Connection {
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut self, mut stream: S) {
        // Removes the entry however the task ends from here on. A task dropped before its
        // first poll has no `Leave`: whoever aborts a task removes its entry first (eviction,
        // `drop_peer`, the router's drop), and a runtime shutting down drops the table too.
        let _leave = Leave {
            shared: Arc::clone(&self.shared),
            id: self.id,
        };
        let _closed = self.run(&mut stream).await;
        // Dropping the stream closes the connection; `_leave` removes the entry.
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, stream: &mut S) -> Closed {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        if let Err(closed) = write(stream, &zmtp::greeting()).await {
            return closed;
        }
        let mut decoder = Decoder::new(BOUNDS);
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut pending: Option<Vec<Bytes>> = None;
        let mut in_a_row = 0;
        loop {
            // Everything the buffer holds, up to the next complete message.
            while pending.is_none() {
                match decoder.decode(&mut buf) {
                    Ok(None) => break,
                    Ok(Some(Event::Greeted)) => {
                        let mut ready = Vec::new();
                        zmtp::ready(&mut ready);
                        if let Err(closed) = write(stream, &ready).await {
                            return closed;
                        }
                    }
                    Ok(Some(Event::Ready)) => self.shared.touch(self.id, true),
                    Ok(Some(Event::Ping(context))) => {
                        let mut pong = Vec::new();
                        zmtp::pong(&mut pong, &context);
                        if let Err(closed) = write(stream, &pong).await {
                            return closed;
                        }
                    }
                    Ok(Some(Event::Message(frames))) => pending = Some(frames),
                    Err(e) => return Closed::Zmtp(e),
                }
            }
            let handshaking = !decoder.is_ready();
            let step = {
                let places = Arc::clone(&self.places);
                let tx = self.tx.clone();
                let place = async move {
                    let place = places.acquire_owned().await.ok()?;
                    let slot = tx.reserve_owned().await.ok()?;
                    Some((place, slot))
                };
                tokio::select! {
                    delivered = place, if pending.is_some() => Step::Deliver(delivered),
                    reply = self.queued.recv() => Step::Write(reply),
                    read = stream.read(&mut chunk), if pending.is_none() => Step::Read(read),
                    () = tokio::time::sleep_until(deadline), if handshaking => Step::HandshakeTimeout,
                }
            };
            match step {
                Step::Read(Ok(0)) => return Closed::EndOfStream,
                Step::Read(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Step::Read(Err(e)) => return Closed::Io(e),
                Step::Write(Some(bytes)) => {
                    if let Err(closed) = write(stream, &bytes).await {
                        return closed;
                    }
                }
                // The router is gone.
                Step::Write(None) => return Closed::LauncherGone,
                Step::Deliver(None) => return Closed::LauncherGone,
                Step::Deliver(Some((place, slot))) => {
                    let mut frames = pending.take().unwrap_or_default();
                    frames.insert(0, routing_id(self.id));
                    slot.send(Incoming {
                        frames,
                        _place: place,
                    });
                    self.shared.touch(self.id, false);
                    in_a_row += 1;
                    if in_a_row >= MESSAGES_PER_WAKE {
                        in_a_row = 0;
                        tokio::task::yield_now().await;
                    }
                }
                Step::HandshakeTimeout => return Closed::HandshakeTimeout,
            }
        }
    }
}

/// Writes `bytes` whole, within [`WRITE_TIMEOUT`].
async fn write<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<(), Closed> {
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Closed::Io(e)),
        Err(_) => Err(Closed::WriteTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeromq::util::PeerIdentity;
    use zeromq::{DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

    const WAIT: Duration = Duration::from_secs(30);

    /// A tcp registration socket listens with [`BACKLOG`] (as far as the OS allows), not
    /// tokio's 128. Read with `ss` (iproute2), which shows a listening socket's backlog as its
    /// Send-Q.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_registration_socket_listens_with_a_deep_backlog() {
        let (router, _incoming, port) = Router::bind(Transport::Tcp, "127.0.0.1").await.unwrap();
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let out = std::process::Command::new("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) runs");
        let listing = String::from_utf8_lossy(&out.stdout);
        // State, Recv-Q, Send-Q (the backlog), local address, peer address.
        let backlog: u32 = listing
            .split_whitespace()
            .nth(2)
            .and_then(|q| q.parse().ok())
            .unwrap_or_else(|| panic!("no listening socket on port {port}: {listing:?}"));
        assert_eq!(backlog, BACKLOG.min(somaxconn), "{listing}");
        drop(router);
    }

    /// A runtime shut down while its router admits connections ends. (A connection task that
    /// a shutting-down runtime dropped inside `spawn`, under the peers lock, used to wait for
    /// that same lock: both workers hung in `Leave::drop`, seen once in a flooded
    /// `launch --count 50` of the tool's tokio build.)
    #[test]
    fn a_runtime_shut_down_while_connections_arrive_ends() {
        for round in 0..50 {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let (router, incoming, port) = runtime
                .block_on(Router::bind(Transport::Tcp, "127.0.0.1"))
                .unwrap();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let connectors: Vec<_> = (0..2)
                .map(|_| {
                    let stop = Arc::clone(&stop);
                    std::thread::spawn(move || {
                        let mut held = Vec::new();
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) && held.len() < 200 {
                            let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                            let timeout = Duration::from_millis(200);
                            if let Ok(s) = std::net::TcpStream::connect_timeout(&to, timeout) {
                                held.push(s);
                            }
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(5));
            let (done, ended) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                // The router outlives the runtime here, as a value a task still held would.
                drop(runtime);
                let _ = done.send(());
                drop((router, incoming));
            });
            let ended = ended.recv_timeout(WAIT);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for c in connectors {
                c.join().unwrap();
            }
            assert!(ended.is_ok(), "round {round}: the runtime's shutdown hung");
        }
    }

    async fn next(incoming: &mut mpsc::Receiver<Incoming>) -> Incoming {
        tokio::time::timeout(WAIT, incoming.recv())
            .await
            .expect("a message in time")
            .expect("the router runs")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replies_go_by_our_routing_id_whatever_identity_peers_claim() {
        let (router, mut incoming, port) = Router::bind(Transport::Tcp, "127.0.0.1").await.unwrap();
        let endpoint = format!("tcp://127.0.0.1:{port}");
        let mut dealers = Vec::new();
        for name in ["first", "second"] {
            let mut options = SocketOptions::default();
            options.peer_identity(PeerIdentity::try_from(&b"same"[..]).unwrap());
            let mut dealer = DealerSocket::with_options(options);
            dealer.connect(&endpoint).await.unwrap();
            dealer.send(ZmqMessage::from(name)).await.unwrap();
            dealers.push(dealer);
        }
        let mut ids = HashMap::new();
        for _ in 0..2 {
            let message = next(&mut incoming).await;
            assert_eq!(message.frames.len(), 2, "routing id, then the one frame");
            ids.insert(message.frames[1].clone(), message.frames[0].clone());
        }
        assert_ne!(
            ids[&b"first"[..]],
            ids[&b"second"[..]],
            "two peers, two ids"
        );
        for (name, dealer) in ["first", "second"].iter().zip(&mut dealers) {
            let reply = format!("to {name}");
            assert!(router.send(&[&ids[name.as_bytes()][..], reply.as_bytes()]));
            let got = tokio::time::timeout(WAIT, dealer.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.get(0).map(|b| b.as_ref()), Some(reply.as_bytes()));
        }
        // Not a peer of ours (a peer-chosen identity, an unknown id, nothing to send): dropped.
        assert!(!router.send(&[&b"same"[..], b"x"]));
        assert!(!router.send(&[&routing_id(999)[..], b"x"]));
        assert!(!router.send(&[&ids[&b"first"[..]][..]]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_never_reads_its_replies_is_dropped_and_no_send_waits() {
        let (router, mut incoming, port) = Router::bind(Transport::Tcp, "127.0.0.1").await.unwrap();
        let mut peer = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // A ROUTER peer (our own greeting and READY are a valid peer's), one message, and from
        // then on nothing read.
        let mut hello = zmtp::greeting().to_vec();
        zmtp::ready(&mut hello);
        zmtp::message(&mut hello, &[b"hello"]);
        peer.write_all(&hello).await.unwrap();
        let id = next(&mut incoming).await.frames[0].clone();
        let reply = vec![0u8; 1 << 20];
        let mut sent = 0;
        while router.send(&[&id[..], &reply[..]]) {
            sent += 1;
            assert!(sent < 10_000, "a peer that does not read was never dropped");
        }
        assert!(!router.send(&[&id[..], b"x"]), "the peer is gone");
        // The peer sees its connection closed once it reads what reached it.
        let mut buf = vec![0u8; 1 << 16];
        let closed = async {
            loop {
                match peer.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(WAIT, closed)
            .await
            .expect("closed by the router");
    }

    #[test]
    fn routing_ids_are_ours_and_parse_back() {
        for id in [0, 1, u64::MAX] {
            assert_eq!(parse_routing_id(&routing_id(id)), Some(id));
        }
        assert_eq!(parse_routing_id(b"same"), None);
        assert_eq!(parse_routing_id(&[0; 8]), None);
        assert_eq!(parse_routing_id(&[1; 9]), None);
    }
}
