//! The tokio launcher's registration socket (`jupyter_handshake_tokio::router`) under attack by
//! raw ZMTP peers while a launch is pending: each test asserts that the launch still succeeds
//! and that the bound held, seen from the attacker: the connection is closed by the launcher.
//! Also: ipc and IPv6 registration sockets with the tokio kernel.

#![cfg(unix)]

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{TempDir, WAIT, options, round_trip, tokio_kernel_argv};
use jupyter_handshake::{Dialect, Transport};
use jupyter_handshake_tokio::Launcher;
use jupyter_handshake_tokio::router::{
    IDLE_EVICT, MAX_CONNECTIONS, MAX_FRAME, MAX_MESSAGE, STRIKES,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A ZMTP 3.0 NULL greeting, as a client sends it.
fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// READY with `Socket-Type: DEALER`.
fn ready() -> Vec<u8> {
    ready_as(b"DEALER")
}

/// READY with this `Socket-Type`.
fn ready_as(socket_type: &[u8]) -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&u32::try_from(socket_type.len()).unwrap().to_be_bytes());
    body.extend_from_slice(socket_type);
    let mut out = vec![0x04, u8::try_from(body.len()).unwrap()];
    out.extend_from_slice(&body);
    out
}

/// One message of short frames (MORE on all but the last).
fn message(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        out.push(u8::from(i + 1 < frames.len()));
        out.push(u8::try_from(frame.len()).unwrap());
        out.extend_from_slice(frame);
    }
    out
}

/// A frame header: flags (MORE = 1), a long (8-byte) size.
fn long_header(more: bool, size: u64) -> Vec<u8> {
    let mut out = vec![0x02 | u8::from(more)];
    out.extend_from_slice(&size.to_be_bytes());
    out
}

/// Connects and completes the handshake as a DEALER; our greeting and READY are read.
async fn handshake(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&greeting()).await.unwrap();
    s.write_all(&ready()).await.unwrap();
    let mut theirs = [0u8; 64];
    s.read_exact(&mut theirs).await.unwrap();
    assert_eq!((theirs[0], theirs[10]), (0xFF, 3), "a ZMTP 3 greeting");
    let mut header = [0u8; 2];
    s.read_exact(&mut header).await.unwrap();
    assert_eq!(header[0], 0x04, "a command: READY");
    let mut body = vec![0u8; usize::from(header[1])];
    s.read_exact(&mut body).await.unwrap();
    assert!(body.starts_with(b"\x05READY"), "READY first");
    assert!(
        body.windows(6).any(|w| w == b"ROUTER"),
        "Socket-Type ROUTER"
    );
    s
}

/// Reads until the launcher closes the connection (EOF or reset); `Ok(bytes read)`, or
/// `Err` if it is still open after [`WAIT`].
async fn closed_by_launcher(s: &mut TcpStream) -> Result<usize, &'static str> {
    let mut total = 0;
    let mut buf = [0u8; 4096];
    let until_closed = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("read: {e}"),
            }
        }
    };
    match tokio::time::timeout(WAIT, until_closed).await {
        Ok(()) => Ok(total),
        Err(_) => Err("the launcher kept the connection open"),
    }
}

/// Waits until the launch's file exists in `dir` (the launch is pending then).
async fn launch_pending(dir: &Path) {
    let wait = async {
        loop {
            let pending = std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".json"));
            if pending {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("a launch file appears");
}

/// Runs `attack(port)` once a launch of the tokio kernel is pending, and asserts that the
/// launch succeeds (a round trip with the kernel); returns what the attack returned.
async fn during_a_launch<F, T>(label: &str, attack: impl FnOnce(u16) -> F + Send + 'static) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let dir = TempDir::new(label);
    let mut launcher = Launcher::bind(options(&dir, Dialect::Posit)).await.unwrap();
    let port = launcher.port();
    let path = dir.path().to_path_buf();
    let attack = tokio::spawn(async move {
        launch_pending(&path).await;
        attack(port).await
    });
    let launched = launcher
        .launch(&tokio_kernel_argv())
        .await
        .expect("the launch succeeds during the attack");
    let outcome = attack.await.expect("the attack task");
    round_trip(launched, label).await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_multipart_message_is_cut_off_at_the_message_bound() {
    // Frames of MAX_FRAME bytes with MORE set, forever: the launcher closes the connection once
    // the message passes MAX_MESSAGE, so the writes fail long before 64 MiB (what a launcher
    // that buffered the message would have taken whole).
    const GIVE_UP: usize = 64 << 20;
    let sent = during_a_launch("endless", |port| async move {
        let mut s = handshake(port).await;
        let mut frame = long_header(true, MAX_FRAME as u64);
        frame.resize(frame.len() + MAX_FRAME, b'x');
        let mut sent = 0;
        while sent < GIVE_UP {
            if s.write_all(&frame).await.is_err() {
                return sent;
            }
            sent += frame.len();
        }
        panic!("{sent} bytes of one message were accepted");
    })
    .await;
    assert!(
        sent >= MAX_MESSAGE,
        "cut off past the bound ({sent} bytes sent)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_announcing_a_huge_size_is_refused_on_its_header() {
    let read = during_a_launch("huge-frame", |port| async move {
        let mut s = handshake(port).await;
        s.write_all(&long_header(false, 1 << 40)).await.unwrap();
        closed_by_launcher(&mut s).await
    })
    .await;
    assert_eq!(read, Ok(0), "closed, nothing more sent to it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_partial_greeting_is_dropped_at_the_handshake_deadline() {
    let read = during_a_launch("slowloris", |port| async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // The signature only (what libzmq sends first), then nothing.
        s.write_all(&greeting()[..10]).await.unwrap();
        closed_by_launcher(&mut s).await
    })
    .await;
    assert_eq!(read, Ok(64), "our greeting, then the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_foreign_greetings_are_closed() {
    let mut zmtp2 = greeting();
    zmtp2[10] = 1;
    let mut plain = greeting();
    plain[12..17].copy_from_slice(b"PLAIN");
    let mut pub_socket = greeting().to_vec();
    pub_socket.extend_from_slice(&ready_as(b"PUB"));
    let mut message_first = greeting().to_vec();
    message_first.extend_from_slice(&message(&[b"hello"]));
    let greetings: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0u8; 64],
        zmtp2.to_vec(),
        plain.to_vec(),
        pub_socket,
        message_first,
    ];
    let results = during_a_launch("garbage", |port| async move {
        let mut results = Vec::new();
        for bytes in greetings {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.write_all(&bytes).await.unwrap();
            results.push(closed_by_launcher(&mut s).await);
        }
        results
    })
    .await;
    for (i, result) in results.iter().enumerate() {
        assert!(result.is_ok(), "greeting {i}: {result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_connections_than_the_cap_are_closed_and_a_kernel_still_registers() {
    jupyter_handshake_tokio::process::raise_open_files_limit();
    let dir = TempDir::new("cap");
    let mut launcher = Launcher::bind(options(&dir, Dialect::Posit)).await.unwrap();
    let port = launcher.port();
    let extra = 16;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut watchers = Vec::new();
    for _ in 0..MAX_CONNECTIONS + extra {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // Established (greeting and READY), then idle; closes are counted as they come. A
        // write fails on a connection already refused at the cap.
        let _ = s.write_all(&greeting()).await;
        let _ = s.write_all(&ready()).await;
        let closed = Arc::clone(&closed);
        watchers.push(tokio::spawn(async move {
            if closed_by_launcher(&mut s).await.is_ok() {
                closed.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Now every connection has been idle for IDLE_EVICT: the kernel's connection evicts one.
    tokio::time::sleep(IDLE_EVICT + Duration::from_millis(500)).await;
    let launched = launcher
        .launch(&tokio_kernel_argv())
        .await
        .expect("the kernel registers past a full connection table");
    // `extra` refused or evicted at the cap, and one evicted for the kernel.
    let enough = async {
        while closed.load(Ordering::SeqCst) < extra + 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, enough)
        .await
        .unwrap_or_else(|_| panic!("only {} closed", closed.load(Ordering::SeqCst)));
    round_trip(launched, "past the cap").await;
    drop(launcher);
    for w in watchers {
        w.await.unwrap();
    }
    assert_eq!(
        closed.load(Ordering::SeqCst),
        MAX_CONNECTIONS + extra,
        "the rest closed with the launcher"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_that_never_reads_does_not_delay_the_launch() {
    // Forged messages as fast as the socket takes them, nothing ever read (not even our
    // greeting). The launcher stops reading it when its queue is full, never buffers more, and
    // closes it at its STRIKES-th rejected message.
    let closed = during_a_launch("never-reads", |port| async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(&greeting()).await.unwrap();
        s.write_all(&ready()).await.unwrap();
        let forged = message(&[b"", b"<IDS|MSG>", b"00", b"{}", b"{}", b"{}", b"{}"]);
        for _ in 0..100_000 {
            if s.write_all(&forged).await.is_err() {
                return true;
            }
        }
        false
    })
    .await;
    assert!(closed, "a forging flooder is disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_at_its_strikes_th_rejected_message_and_not_before() {
    // A launch that stays pending (its kernel never registers), so the launcher keeps reading.
    let dir = TempDir::new("strikes");
    let mut launcher = Launcher::bind(options(&dir, Dialect::Posit)).await.unwrap();
    let port = launcher.port();
    let pending = tokio::spawn(async move {
        let _ = launcher.launch(&["sleep".into(), "60".into()]).await;
    });
    launch_pending(dir.path()).await;
    let mut s = handshake(port).await;
    let forged = message(&[b"", b"<IDS|MSG>", b"00", b"{}", b"{}", b"{}", b"{}"]);
    for _ in 1..STRIKES {
        s.write_all(&forged).await.unwrap();
    }
    // Still open after STRIKES - 1 rejections: nothing to read, no close.
    let mut byte = [0u8; 1];
    let before = tokio::time::timeout(Duration::from_millis(500), s.read(&mut byte)).await;
    assert!(before.is_err(), "open until the last strike: {before:?}");
    s.write_all(&forged).await.unwrap();
    assert_eq!(
        closed_by_launcher(&mut s).await,
        Ok(0),
        "closed at the last strike, nothing sent to it"
    );
    // A new connection is heard again.
    let mut again = handshake(port).await;
    again.write_all(&forged).await.unwrap();
    let open = tokio::time::timeout(Duration::from_millis(500), again.read(&mut byte)).await;
    assert!(
        open.is_err(),
        "a new connection starts with no strike: {open:?}"
    );
    pending.abort();
}

async fn launch_on(transport: Transport, ip: &str, label: &str) {
    let dir = TempDir::new(label);
    let mut opts = options(&dir, Dialect::Posit);
    opts.transport = transport;
    opts.ip = match transport {
        Transport::Ipc => dir.join("jh").to_string_lossy().into_owned(),
        Transport::Tcp => ip.into(),
    };
    let mut launcher = Launcher::bind(opts).await.unwrap();
    let launched = launcher.launch(&tokio_kernel_argv()).await.unwrap();
    assert_eq!(launched.connection.transport, transport);
    round_trip(launched, label).await;
    if transport == Transport::Ipc {
        let socket = dir.join(&format!("jh-{}", launcher.port()));
        assert!(socket.exists(), "the registration socket file");
        drop(launcher);
        assert!(!socket.exists(), "removed with the launcher");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registration_socket_serves_ipc() {
    launch_on(Transport::Ipc, "", "ipc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registration_socket_serves_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    launch_on(Transport::Tcp, "::1", "ipv6").await;
}
