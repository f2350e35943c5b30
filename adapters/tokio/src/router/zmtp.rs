//! ZMTP 3.0/3.1 (RFC 23, RFC 37) as the server side of a ROUTER with the NULL mechanism: a
//! sans-IO decoder of what a peer sends and encoders of what we send. No I/O, no clock: the
//! caller reads bytes into a buffer, asks [`Decoder::decode`] for events, and writes what the
//! encoders return.
//!
//! Every bound is checked on a frame's *header*, before its body is waited for, so a peer that
//! announces too much is refused having sent at most a header past the bound; nothing it sent
//! beyond [`Bounds`] is ever held.

use bytes::{Buf, Bytes, BytesMut};

/// The greeting's length: signature (10), version (2), mechanism (20), as-server (1), filler
/// (31).
pub(crate) const GREETING_LEN: usize = 64;

/// The longest command name and body we accept before the handshake is over (a READY with
/// `Socket-Type` and `Identity` is some 50 bytes; libzmq's largest has a few more properties).
pub(crate) const MAX_COMMAND: usize = 1024;

/// What a peer may send in one frame and one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Longest frame body (message frame or command), in bytes.
    pub max_frame: usize,
    /// Most frames in one message.
    pub max_frames: usize,
    /// Most bytes of frame bodies in one message.
    pub max_message: usize,
}

/// Why a peer's bytes are refused; the connection is closed on any of these. Names sizes and
/// fields only, never the bytes received.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ZmtpError {
    /// The first 10 bytes are not a ZMTP signature (`0xFF`, 8 bytes, a byte with bit 0 set).
    #[error("not a ZMTP 3 greeting: bad signature")]
    Signature,
    /// A major version below 3 (ZMTP 1.0 and 2.0 are not served).
    #[error("ZMTP major version {0} is not served (3 and later are)")]
    Version(u8),
    /// A mechanism other than NULL (the only one Jupyter peers use).
    #[error("security mechanism is not NULL (the only one served)")]
    Mechanism,
    /// A flags byte with reserved bits set, or a command with MORE.
    #[error("frame flags {0:#04x} are invalid")]
    Flags(u8),
    /// A frame announcing more than [`Bounds::max_frame`] (or a command more than
    /// [`MAX_COMMAND`] during the handshake).
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced size.
        size: u64,
        /// The bound.
        max: usize,
    },
    /// A message with more than [`Bounds::max_frames`] frames.
    #[error("message exceeds {max} frames")]
    TooManyFrames {
        /// The bound.
        max: usize,
    },
    /// A message whose frames add up to more than [`Bounds::max_message`] bytes.
    #[error("message of at least {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Bytes announced so far.
        size: u64,
        /// The bound.
        max: usize,
    },
    /// A command that does not parse (its name or a property runs past its end).
    #[error("malformed {0} command")]
    Command(&'static str),
    /// Something other than READY (or ERROR) before READY.
    #[error("expected READY, got another command or a message")]
    ExpectedReady,
    /// READY without `Socket-Type`.
    #[error("READY has no Socket-Type")]
    NoSocketType,
    /// A `Socket-Type` that cannot talk to a ROUTER (REQ, DEALER and ROUTER can).
    #[error("Socket-Type is not REQ, DEALER or ROUTER")]
    SocketType,
    /// The peer sent ERROR (its reason is not kept).
    #[error("the peer sent ERROR")]
    PeerError,
}

/// What the peer's bytes amount to, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Its greeting is a valid ZMTP 3 NULL greeting: send [`ready`] now.
    Greeted,
    /// Its READY: the handshake is done.
    Ready,
    /// A complete message (its frames; empty frames included).
    Message(Vec<Bytes>),
    /// A PING: send [`pong`] with this context.
    Ping(Bytes),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Greeting,
    Ready,
    Traffic,
}

/// The decoder of one connection; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Decoder {
    bounds: Bounds,
    state: State,
    /// The frames of the message in progress, and their total length.
    frames: Vec<Bytes>,
    bytes: u64,
}

impl Decoder {
    pub(crate) fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            state: State::Greeting,
            frames: Vec::new(),
            bytes: 0,
        }
    }

    /// Whether the handshake (greeting and READY) is over.
    pub(crate) fn is_ready(&self) -> bool {
        self.state == State::Traffic
    }

    /// The next event from `buf`, consuming its bytes; `Ok(None)`: more bytes are needed (the
    /// bytes of an incomplete frame stay in `buf`: once its header passed the bounds, at most
    /// the header and [`Bounds::max_frame`] bytes).
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, ZmtpError> {
        loop {
            match self.state {
                State::Greeting => {
                    // Check the signature as soon as it is there: garbage is refused early.
                    if buf.len() >= 10 {
                        check_signature(&buf[..10])?;
                    }
                    if buf.len() < GREETING_LEN {
                        return Ok(None);
                    }
                    let greeting = buf.split_to(GREETING_LEN);
                    check_greeting(&greeting)?;
                    self.state = State::Ready;
                    return Ok(Some(Event::Greeted));
                }
                State::Ready => {
                    let Some((flags, body)) = self.frame(buf, MAX_COMMAND)? else {
                        return Ok(None);
                    };
                    if flags & COMMAND == 0 {
                        return Err(ZmtpError::ExpectedReady);
                    }
                    let (name, data) = split_command(&body)?;
                    return match name {
                        b"READY" => {
                            check_ready(data)?;
                            self.state = State::Traffic;
                            Ok(Some(Event::Ready))
                        }
                        b"ERROR" => Err(ZmtpError::PeerError),
                        _ => Err(ZmtpError::ExpectedReady),
                    };
                }
                State::Traffic => {
                    let max = self.bounds.max_frame;
                    let Some((flags, body)) = self.frame(buf, max)? else {
                        return Ok(None);
                    };
                    if flags & COMMAND != 0 {
                        let (name, data) = split_command(&body)?;
                        match name {
                            b"PING" => {
                                // TTL (2 bytes), then a context of at most 16 bytes.
                                if data.len() < 2 || data.len() > 2 + 16 {
                                    return Err(ZmtpError::Command("PING"));
                                }
                                return Ok(Some(Event::Ping(
                                    body.slice(body.len() - (data.len() - 2)..),
                                )));
                            }
                            b"ERROR" => return Err(ZmtpError::PeerError),
                            // PONG, SUBSCRIBE, CANCEL, and commands of later versions: ignored
                            // (each one was bounded as a frame).
                            _ => continue,
                        }
                    }
                    self.frames.push(body);
                    if flags & MORE == 0 {
                        self.bytes = 0;
                        return Ok(Some(Event::Message(std::mem::take(&mut self.frames))));
                    }
                }
            }
        }
    }

    /// One complete frame from `buf` (flags, body), its bounds checked on the header.
    fn frame(&mut self, buf: &mut BytesMut, max: usize) -> Result<Option<(u8, Bytes)>, ZmtpError> {
        let Some((flags, len, size)) = header(buf) else {
            return Ok(None);
        };
        if flags & !(MORE | LONG | COMMAND) != 0 || (flags & COMMAND != 0 && flags & MORE != 0) {
            return Err(ZmtpError::Flags(flags));
        }
        if flags & COMMAND != 0 && !self.frames.is_empty() {
            // A command in the middle of a message: RFC 23 forbids it.
            return Err(ZmtpError::Flags(flags));
        }
        if size > max as u64 {
            return Err(ZmtpError::FrameTooLarge { size, max });
        }
        if flags & COMMAND == 0 {
            if self.frames.len() >= self.bounds.max_frames {
                return Err(ZmtpError::TooManyFrames {
                    max: self.bounds.max_frames,
                });
            }
            let total = self.bytes.saturating_add(size);
            if total > self.bounds.max_message as u64 {
                return Err(ZmtpError::MessageTooLarge {
                    size: total,
                    max: self.bounds.max_message,
                });
            }
        }
        // `size` ≤ `max`, a usize.
        let size = size as usize;
        if buf.len() < len + size {
            return Ok(None);
        }
        buf.advance(len);
        // Copied out, so that a small frame never keeps a larger read buffer alive.
        let body = Bytes::copy_from_slice(&buf[..size]);
        buf.advance(size);
        if flags & COMMAND == 0 {
            self.bytes += size as u64;
        }
        Ok(Some((flags, body)))
    }
}

const MORE: u8 = 0x01;
const LONG: u8 = 0x02;
const COMMAND: u8 = 0x04;

/// A frame header at the start of `buf`: flags, header length, announced body size.
fn header(buf: &[u8]) -> Option<(u8, usize, u64)> {
    let flags = *buf.first()?;
    if flags & LONG == 0 {
        Some((flags, 2, u64::from(*buf.get(1)?)))
    } else {
        let size: [u8; 8] = buf.get(1..9)?.try_into().ok()?;
        Some((flags, 9, u64::from_be_bytes(size)))
    }
}

fn check_signature(signature: &[u8]) -> Result<(), ZmtpError> {
    if signature[0] == 0xFF && signature[9] & 0x01 == 0x01 {
        Ok(())
    } else {
        Err(ZmtpError::Signature)
    }
}

fn check_greeting(greeting: &[u8]) -> Result<(), ZmtpError> {
    check_signature(&greeting[..10])?;
    let major = greeting[10];
    if major < 3 {
        return Err(ZmtpError::Version(major));
    }
    let mechanism = &greeting[12..32];
    if &mechanism[..4] != b"NULL" || mechanism[4..].iter().any(|&b| b != 0) {
        return Err(ZmtpError::Mechanism);
    }
    Ok(())
}

/// A command body: its name, and the data after it.
fn split_command(body: &[u8]) -> Result<(&[u8], &[u8]), ZmtpError> {
    let (&len, rest) = body.split_first().ok_or(ZmtpError::Command("unnamed"))?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(ZmtpError::Command("unnamed"));
    }
    Ok(rest.split_at(len))
}

/// READY's properties: a `Socket-Type` of a peer a ROUTER serves. Other properties
/// (`Identity` among them: we assign routing ids ourselves) are ignored.
fn check_ready(mut data: &[u8]) -> Result<(), ZmtpError> {
    let mut socket_type = None;
    while !data.is_empty() {
        let (name, rest) = split_command(data).map_err(|_| ZmtpError::Command("READY"))?;
        let Some((size, rest)) = rest.split_first_chunk::<4>() else {
            return Err(ZmtpError::Command("READY"));
        };
        let size = u32::from_be_bytes(*size) as usize;
        if rest.len() < size {
            return Err(ZmtpError::Command("READY"));
        }
        let (value, rest) = rest.split_at(size);
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            socket_type = Some(value);
        }
        data = rest;
    }
    match socket_type {
        None => Err(ZmtpError::NoSocketType),
        Some(b"REQ" | b"DEALER" | b"ROUTER") => Ok(()),
        Some(_) => Err(ZmtpError::SocketType),
    }
}

/// Our greeting, whole: ZMTP 3.1, NULL, as-server.
pub(crate) fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 1;
    g[12..16].copy_from_slice(b"NULL");
    g[32] = 1;
    g
}

/// Our READY: `Socket-Type: ROUTER`.
pub(crate) fn ready(out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(32);
    body.push(5);
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&6u32.to_be_bytes());
    body.extend_from_slice(b"ROUTER");
    command(out, &body);
}

/// A PONG with the PING's context.
pub(crate) fn pong(out: &mut Vec<u8>, context: &[u8]) {
    let mut body = Vec::with_capacity(5 + context.len());
    body.push(4);
    body.extend_from_slice(b"PONG");
    body.extend_from_slice(context);
    command(out, &body);
}

fn command(out: &mut Vec<u8>, body: &[u8]) {
    put_header(out, COMMAND, body.len());
    out.extend_from_slice(body);
}

/// One message: its frames, MORE on all but the last. `frames` is not empty.
pub(crate) fn message<F: AsRef<[u8]>>(out: &mut Vec<u8>, frames: &[F]) {
    for (i, frame) in frames.iter().enumerate() {
        let frame = frame.as_ref();
        let more = if i + 1 < frames.len() { MORE } else { 0 };
        put_header(out, more, frame.len());
        out.extend_from_slice(frame);
    }
}

fn put_header(out: &mut Vec<u8>, flags: u8, len: usize) {
    match u8::try_from(len) {
        Ok(short) => out.extend_from_slice(&[flags, short]),
        Err(_) => {
            out.push(flags | LONG);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        max_frame: 100,
        max_frames: 4,
        max_message: 250,
    };

    /// A peer's greeting (as libzmq sends it: 3.1, NULL, as-server 0).
    fn peer_greeting() -> Vec<u8> {
        let mut g = greeting().to_vec();
        g[32] = 0;
        g
    }

    fn ready_of(socket_type: &[u8], extra: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut body = vec![5];
        body.extend_from_slice(b"READY");
        for (name, value) in extra
            .iter()
            .copied()
            .chain([(&b"Socket-Type"[..], socket_type)])
        {
            body.push(name.len() as u8);
            body.extend_from_slice(name);
            body.extend_from_slice(&(value.len() as u32).to_be_bytes());
            body.extend_from_slice(value);
        }
        let mut out = Vec::new();
        command(&mut out, &body);
        out
    }

    /// A decoder past the handshake with a DEALER.
    fn ready_decoder() -> Decoder {
        let mut d = Decoder::new(BOUNDS);
        let mut buf = BytesMut::from(&peer_greeting()[..]);
        buf.extend_from_slice(&ready_of(b"DEALER", &[(b"Identity", b"me")]));
        assert_eq!(d.decode(&mut buf), Ok(Some(Event::Greeted)));
        assert_eq!(d.decode(&mut buf), Ok(Some(Event::Ready)));
        assert!(d.is_ready() && buf.is_empty());
        d
    }

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Event>, ZmtpError> {
        let mut buf = BytesMut::from(bytes);
        let mut events = Vec::new();
        while let Some(event) = d.decode(&mut buf)? {
            events.push(event);
        }
        Ok(events)
    }

    #[test]
    fn a_greeting_in_parts_then_ready_then_messages_decode_in_order() {
        let mut d = Decoder::new(BOUNDS);
        let mut buf = BytesMut::new();
        let greeting = peer_greeting();
        // libzmq sends the signature first, then the rest.
        buf.extend_from_slice(&greeting[..10]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&greeting[10..]);
        assert_eq!(d.decode(&mut buf), Ok(Some(Event::Greeted)));
        buf.extend_from_slice(&ready_of(b"REQ", &[]));
        assert_eq!(d.decode(&mut buf), Ok(Some(Event::Ready)));
        let mut wire = Vec::new();
        message(&mut wire, &[&b""[..], b"hello", &[7u8; 99]]);
        message(&mut wire, &[&b"x"[..]]);
        let events = decode_all(&mut d, &wire).unwrap();
        assert_eq!(
            events,
            vec![
                Event::Message(vec![
                    Bytes::new(),
                    Bytes::from_static(b"hello"),
                    Bytes::from(vec![7u8; 99])
                ]),
                Event::Message(vec![Bytes::from_static(b"x")]),
            ]
        );
    }

    #[test]
    fn a_long_frame_header_byte_by_byte_waits_then_decodes() {
        let mut d = Decoder::new(Bounds {
            max_frame: 1000,
            max_message: 1000,
            ..BOUNDS
        });
        let mut buf = BytesMut::from(&peer_greeting()[..]);
        buf.extend_from_slice(&ready_of(b"ROUTER", &[]));
        d.decode(&mut buf).unwrap();
        d.decode(&mut buf).unwrap();
        let mut wire = Vec::new();
        message(&mut wire, &[vec![1u8; 300]]);
        assert_eq!(wire[0], LONG);
        for (i, b) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let event = d.decode(&mut buf).unwrap();
            assert_eq!(event.is_some(), i + 1 == wire.len(), "at byte {i}");
        }
    }

    #[test]
    fn garbage_and_foreign_greetings_are_refused_with_their_reason() {
        type Edit = fn(&mut Vec<u8>);
        let cases: [(Edit, ZmtpError); 5] = [
            (|g| g[0] = b'G', ZmtpError::Signature),
            (|g| g[9] = 0x7E, ZmtpError::Signature),
            (|g| g[10] = 2, ZmtpError::Version(2)),
            (
                |g| g[12..17].copy_from_slice(b"PLAIN"),
                ZmtpError::Mechanism,
            ),
            (|g| g[16] = b'X', ZmtpError::Mechanism),
        ];
        for (edit, expected) in cases {
            let mut g = peer_greeting();
            edit(&mut g);
            let mut d = Decoder::new(BOUNDS);
            assert_eq!(decode_all(&mut d, &g), Err(expected));
        }
        // An HTTP request is refused on its first 10 bytes, before a full greeting arrived.
        let mut d = Decoder::new(BOUNDS);
        assert_eq!(
            decode_all(&mut d, b"GET / HTTP/1.1\r\n"),
            Err(ZmtpError::Signature)
        );
    }

    #[test]
    fn ready_must_come_first_and_name_a_socket_type_a_router_serves() {
        let handshake = |tail: &[u8]| {
            let mut d = Decoder::new(BOUNDS);
            let mut bytes = peer_greeting();
            bytes.extend_from_slice(tail);
            decode_all(&mut d, &bytes)
        };
        let mut message_first = Vec::new();
        message(&mut message_first, &[&b"hi"[..]]);
        assert_eq!(handshake(&message_first), Err(ZmtpError::ExpectedReady));
        assert_eq!(
            handshake(&ready_of(b"PUB", &[])),
            Err(ZmtpError::SocketType)
        );
        assert_eq!(
            handshake(&ready_of(b"req", &[])),
            Err(ZmtpError::SocketType)
        );
        let mut no_type = Vec::new();
        command(&mut no_type, b"\x05READY");
        assert_eq!(handshake(&no_type), Err(ZmtpError::NoSocketType));
        let mut truncated = Vec::new();
        command(
            &mut truncated,
            b"\x05READY\x0bSocket-Type\x00\x00\x00\x09DEALER",
        );
        assert_eq!(handshake(&truncated), Err(ZmtpError::Command("READY")));
        let mut bad_name = Vec::new();
        command(&mut bad_name, b"\x09READY");
        assert_eq!(handshake(&bad_name), Err(ZmtpError::Command("unnamed")));
        let mut error = Vec::new();
        command(&mut error, b"\x05ERROR\x03bad");
        assert_eq!(handshake(&error), Err(ZmtpError::PeerError));
        let mut huge = vec![COMMAND | LONG];
        huge.extend_from_slice(&(MAX_COMMAND as u64 + 1).to_be_bytes());
        assert_eq!(
            handshake(&huge),
            Err(ZmtpError::FrameTooLarge {
                size: MAX_COMMAND as u64 + 1,
                max: MAX_COMMAND
            })
        );
        for socket_type in [&b"REQ"[..], b"DEALER", b"ROUTER"] {
            let events = handshake(&ready_of(socket_type, &[(b"Identity", b"x")])).unwrap();
            assert_eq!(events, vec![Event::Greeted, Event::Ready]);
        }
    }

    #[test]
    fn a_frame_announcing_more_than_the_bound_is_refused_on_its_header() {
        let mut d = ready_decoder();
        let mut header = vec![LONG];
        header.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            decode_all(&mut d, &header),
            Err(ZmtpError::FrameTooLarge {
                size: u64::MAX,
                max: 100
            })
        );
        let mut d = ready_decoder();
        assert_eq!(
            decode_all(&mut d, &[0, 101]),
            Err(ZmtpError::FrameTooLarge {
                size: 101,
                max: 100
            })
        );
    }

    #[test]
    fn an_endless_message_is_refused_at_the_frame_and_byte_bounds() {
        // Frames: the fifth frame of a message breaks `max_frames` = 4.
        let mut d = ready_decoder();
        let mut wire = Vec::new();
        for _ in 0..5 {
            wire.extend_from_slice(&[MORE, 1, b'x']);
        }
        assert_eq!(
            decode_all(&mut d, &wire),
            Err(ZmtpError::TooManyFrames { max: 4 })
        );
        // Bytes: 3 × 100 > 250, refused on the third header.
        let mut d = ready_decoder();
        let mut wire = Vec::new();
        for _ in 0..2 {
            wire.extend_from_slice(&[MORE, 100]);
            wire.extend_from_slice(&[0; 100]);
        }
        wire.extend_from_slice(&[MORE, 100]);
        assert_eq!(
            decode_all(&mut d, &wire),
            Err(ZmtpError::MessageTooLarge {
                size: 300,
                max: 250
            })
        );
        // The counts start again with each message.
        let mut d = ready_decoder();
        let mut wire = Vec::new();
        for _ in 0..3 {
            message(&mut wire, &[[0u8; 100], [0u8; 100]]);
        }
        assert_eq!(decode_all(&mut d, &wire).unwrap().len(), 3);
    }

    #[test]
    fn commands_after_the_handshake_are_answered_ignored_or_refused() {
        let mut d = ready_decoder();
        let mut wire = Vec::new();
        command(&mut wire, b"\x04PING\x00\x0actx");
        command(&mut wire, b"\x04PONG");
        command(&mut wire, b"\x09SUBSCRIBE");
        command(&mut wire, b"\x0bUNKNOWN-CMD\x01\x02");
        message(&mut wire, &[&b"m"[..]]);
        assert_eq!(
            decode_all(&mut d, &wire).unwrap(),
            vec![
                Event::Ping(Bytes::from_static(b"ctx")),
                Event::Message(vec![Bytes::from_static(b"m")])
            ]
        );
        let mut long_ping = Vec::new();
        command(
            &mut long_ping,
            &[&b"\x04PING\x00\x00"[..], &[1; 17]].concat(),
        );
        assert_eq!(
            decode_all(&mut ready_decoder(), &long_ping),
            Err(ZmtpError::Command("PING"))
        );
        let mut error = Vec::new();
        command(&mut error, b"\x05ERROR\x00");
        assert_eq!(
            decode_all(&mut ready_decoder(), &error),
            Err(ZmtpError::PeerError)
        );
        // Reserved flag bits, a command with MORE, a command inside a message.
        for bad in [
            vec![0x08, 0],
            vec![COMMAND | MORE, 0],
            vec![MORE, 0, COMMAND, 0],
        ] {
            let result = decode_all(&mut ready_decoder(), &bad);
            assert!(
                matches!(result, Err(ZmtpError::Flags(_))),
                "{bad:?}: {result:?}"
            );
        }
    }

    #[test]
    fn what_we_send_decodes_as_we_decode_a_peer() {
        // Our greeting, READY and a message, read back by our own decoder (as a peer would).
        let mut wire = greeting().to_vec();
        ready(&mut wire);
        let big = vec![9u8; 300];
        message(&mut wire, &[&b""[..], &big]);
        pong(&mut wire, b"c");
        let mut d = Decoder::new(Bounds {
            max_frame: 1000,
            max_frames: 4,
            max_message: 1000,
        });
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(d.decode(&mut buf), Ok(Some(Event::Greeted)));
        // Our READY says ROUTER, which a ROUTER peer accepts.
        assert_eq!(d.decode(&mut buf), Ok(Some(Event::Ready)));
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Event::Message(vec![Bytes::new(), Bytes::from(big)])))
        );
        assert_eq!(d.decode(&mut buf), Ok(None), "PONG is ignored");
        assert!(buf.is_empty());
    }
}
