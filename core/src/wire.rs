//! The Jupyter multipart wire format: split received frames, join frames to send.
//!
//! ```text
//! [identity…, <IDS|MSG>, signature, header, parent_header, metadata, content, buffer…]
//! ```
//!
//! [`split`] borrows every part from the caller's frames (any `AsRef<[u8]>`: `Vec<u8>`,
//! `&[u8]`, `zmq::Message`…), checks every length before it looks at a frame, and allocates
//! nothing. The result is an [`UnverifiedMessage`]: its JSON is out of reach until
//! [`UnverifiedMessage::verify`] has checked the signature, so nothing an attacker sends reaches
//! a JSON parser before the HMAC has been checked.
//!
//! ```
//! use jupyter_handshake::{Key, SignatureScheme, Signer};
//! use jupyter_handshake::wire::{self, Limits, Parts};
//!
//! let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new("secret"));
//! let parts = Parts { header: br#"{"msg_type":"x"}"#, parent_header: b"{}", metadata: b"{}", content: b"{}" };
//! let frames = wire::join::<&[u8], &[u8]>(&[b"peer"], &signer, &parts, &[]);
//! let message = wire::split(&frames, &Limits::default())?.verify(&signer)?;
//! assert_eq!(message.identities().len(), 1);
//! assert_eq!(message.parts().header, parts.header);
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use alloc::vec::Vec;

use crate::sign::{Signer, VerifyError};

/// The frame that separates routing identities from the message.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";

/// Bounds applied by [`split`] before anything else is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest frame accepted, in bytes.
    pub max_frame_len: usize,
    /// Most frames accepted in one message (identities and buffers included).
    pub max_frames: usize,
}

impl Limits {
    /// Limits for handshake traffic: no handshake frame comes near 64 KiB.
    pub const HANDSHAKE: Self = Self {
        max_frame_len: 64 * 1024,
        max_frames: 64,
    };

    /// Limits for a registration socket that anyone on the host can reach: frames of 2 KiB, 16
    /// frames.
    ///
    /// A real request is tiny: a REQ's is 8 frames with its routing id (the empty delimiter,
    /// `<IDS|MSG>`, the signature, four parts), the largest its header, a few hundred bytes,
    /// well under 1 KiB in all. Twice the frames leaves room for proxies. So a whole message
    /// is at most 32 KiB, and a forgery costs at most 8 KiB of HMAC (its four signed parts)
    /// per pending key. The drivers give the same frame bound to their ZeroMQ library, which
    /// then disconnects a peer sending more before anything of it is kept.
    pub const REGISTRATION: Self = Self {
        max_frame_len: 2 * 1024,
        max_frames: 16,
    };
}

impl Default for Limits {
    /// Generous limits for general traffic: 256 MiB frames, 4096 frames.
    fn default() -> Self {
        Self {
            max_frame_len: 256 * 1024 * 1024,
            max_frames: 4096,
        }
    }
}

/// Why a frame list is not a Jupyter message. Sizes and positions only, never the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// More frames than [`Limits::max_frames`].
    #[error("message has {got} frames, at most {max} are accepted")]
    TooManyFrames {
        /// The limit.
        max: usize,
        /// Frames received.
        got: usize,
    },
    /// A frame longer than [`Limits::max_frame_len`].
    #[error("frame {index} is {len} bytes long, at most {max} are accepted")]
    FrameTooLarge {
        /// Position of the frame in the received list.
        index: usize,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No frame equals `<IDS|MSG>`.
    #[error("no <IDS|MSG> delimiter among {frames} frames")]
    NoDelimiter {
        /// Frames received.
        frames: usize,
    },
    /// Fewer than the five frames (signature and four dicts) after the delimiter.
    #[error(
        "expected at least 5 frames after <IDS|MSG> (signature, header, parent_header, metadata, content), got {got}"
    )]
    TooFewFrames {
        /// Frames found after the delimiter.
        got: usize,
    },
    /// An upstream-dialect handshake message is exactly a signature and one content frame
    /// after the delimiter.
    #[error("expected exactly 2 frames after <IDS|MSG> (signature, content), got {got}")]
    NotContentOnly {
        /// Frames after the delimiter.
        got: usize,
    },
}

/// The four signed JSON frames of a message, as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The header dict.
    pub header: &'a [u8],
    /// The parent header dict (`{}` when there is none).
    pub parent_header: &'a [u8],
    /// The metadata dict.
    pub metadata: &'a [u8],
    /// The content dict.
    pub content: &'a [u8],
}

impl<'a> Parts<'a> {
    /// The parts in signing order.
    pub fn as_array(&self) -> [&'a [u8]; 4] {
        [self.header, self.parent_header, self.metadata, self.content]
    }
}

/// A split message whose signature has not been checked yet.
#[derive(Debug)]
pub struct UnverifiedMessage<'a, F> {
    identities: &'a [F],
    signature: &'a [u8],
    parts: Parts<'a>,
    buffers: &'a [F],
}

/// A message whose signature checked out (or whose connection is unsigned).
#[derive(Debug)]
pub struct Message<'a, F> {
    identities: &'a [F],
    parts: Parts<'a>,
    buffers: &'a [F],
}

/// Checks the bounds, then finds the first `<IDS|MSG>`.
fn locate_delimiter<F: AsRef<[u8]>>(frames: &[F], limits: &Limits) -> Result<usize, DecodeError> {
    if frames.len() > limits.max_frames {
        return Err(DecodeError::TooManyFrames {
            max: limits.max_frames,
            got: frames.len(),
        });
    }
    if let Some((index, frame)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| f.as_ref().len() > limits.max_frame_len)
    {
        return Err(DecodeError::FrameTooLarge {
            index,
            len: frame.as_ref().len(),
            max: limits.max_frame_len,
        });
    }
    frames
        .iter()
        .position(|f| f.as_ref() == DELIMITER)
        .ok_or(DecodeError::NoDelimiter {
            frames: frames.len(),
        })
}

/// Splits `frames` at the first `<IDS|MSG>`, borrowing every part. Never panics, never allocates.
pub fn split<'a, F: AsRef<[u8]>>(
    frames: &'a [F],
    limits: &Limits,
) -> Result<UnverifiedMessage<'a, F>, DecodeError> {
    let at = locate_delimiter(frames, limits)?;
    let (identities, rest) = frames.split_at(at);
    let after = rest.get(1..).unwrap_or(&[]);
    let [
        signature,
        header,
        parent_header,
        metadata,
        content,
        buffers @ ..,
    ] = after
    else {
        return Err(DecodeError::TooFewFrames { got: after.len() });
    };
    Ok(UnverifiedMessage {
        identities,
        signature: signature.as_ref(),
        parts: Parts {
            header: header.as_ref(),
            parent_header: parent_header.as_ref(),
            metadata: metadata.as_ref(),
            content: content.as_ref(),
        },
        buffers,
    })
}

impl<'a, F: AsRef<[u8]>> UnverifiedMessage<'a, F> {
    /// The routing identities before the delimiter (not signed; public routing data).
    pub fn identities(&self) -> &'a [F] {
        self.identities
    }

    /// The received signature frame.
    pub fn signature(&self) -> &'a [u8] {
        self.signature
    }

    /// [`verify`](Self::verify) with the signature already decoded (by a signer of the same
    /// scheme): for trying one message against many keys.
    pub(crate) fn verify_decoded(
        &self,
        signer: &Signer,
        tag: &crate::sign::Tag,
    ) -> Result<Message<'a, F>, VerifyError> {
        signer.check_decoded(tag, &self.parts.as_array())?;
        Ok(Message {
            identities: self.identities,
            parts: self.parts,
            buffers: self.buffers,
        })
    }

    /// Checks the signature over the four dicts (buffers are not signed), in constant time.
    /// Borrows, so one split message can be tried against several keys.
    pub fn verify(&self, signer: &Signer) -> Result<Message<'a, F>, VerifyError> {
        signer.verify(self.signature, &self.parts.as_array())?;
        Ok(Message {
            identities: self.identities,
            parts: self.parts,
            buffers: self.buffers,
        })
    }
}

impl<'a, F: AsRef<[u8]>> Message<'a, F> {
    /// The routing identities before the delimiter, to echo when replying through a ROUTER.
    pub fn identities(&self) -> &'a [F] {
        self.identities
    }

    /// The four signed dicts, still as bytes.
    pub fn parts(&self) -> Parts<'a> {
        self.parts
    }

    /// The raw buffers after the content frame.
    pub fn buffers(&self) -> &'a [F] {
        self.buffers
    }
}

/// Builds the frames of a message: identities, delimiter, signature of `parts`, the four parts,
/// then buffers (which are not signed).
pub fn join<I: AsRef<[u8]>, B: AsRef<[u8]>>(
    identities: &[I],
    signer: &Signer,
    parts: &Parts<'_>,
    buffers: &[B],
) -> Vec<Vec<u8>> {
    let signature = signer.sign(&parts.as_array());
    let mut frames = Vec::with_capacity(identities.len() + 6 + buffers.len());
    frames.extend(identities.iter().map(|i| i.as_ref().to_vec()));
    frames.push(DELIMITER.to_vec());
    frames.push(signature.as_bytes().to_vec());
    frames.extend(parts.as_array().iter().map(|p| p.to_vec()));
    frames.extend(buffers.iter().map(|b| b.as_ref().to_vec()));
    frames
}

/// A split upstream-dialect handshake message (jupyter_client docs 5.6, xeus-zmq): identities,
/// `<IDS|MSG>`, a signature over the **content frame alone**, and that one content frame. It is
/// "not a full Jupyter message": no header, so no `msg_id`, `date` or parent.
#[derive(Debug)]
pub struct ContentOnly<'a, F> {
    identities: &'a [F],
    signature: &'a [u8],
    content: &'a [u8],
}

/// Splits an upstream-dialect handshake message. Never panics, never allocates; the same
/// bounds as [`split`] apply first.
pub fn split_content_only<'a, F: AsRef<[u8]>>(
    frames: &'a [F],
    limits: &Limits,
) -> Result<ContentOnly<'a, F>, DecodeError> {
    let at = locate_delimiter(frames, limits)?;
    let (identities, rest) = frames.split_at(at);
    match rest.get(1..).unwrap_or(&[]) {
        [signature, content] => Ok(ContentOnly {
            identities,
            signature: signature.as_ref(),
            content: content.as_ref(),
        }),
        after => Err(DecodeError::NotContentOnly { got: after.len() }),
    }
}

impl<'a, F: AsRef<[u8]>> ContentOnly<'a, F> {
    /// The routing identities before the delimiter, to echo when replying through a ROUTER.
    pub fn identities(&self) -> &'a [F] {
        self.identities
    }

    /// The received signature frame.
    pub fn signature(&self) -> &'a [u8] {
        self.signature
    }

    /// The content before its signature is checked: only for routing (a registrar reads the
    /// `kernel_id` it names to pick the one key to verify it with), never to act on.
    pub(crate) fn unverified_content(&self) -> &'a [u8] {
        self.content
    }

    /// Checks the signature over the content frame, in constant time; the content once verified.
    pub fn verify(&self, signer: &Signer) -> Result<&'a [u8], VerifyError> {
        signer.verify(self.signature, &[self.content])?;
        Ok(self.content)
    }
}

/// Builds an upstream-dialect handshake message: identities, delimiter, the signature of
/// `content` alone, `content`.
pub fn join_content_only<I: AsRef<[u8]>>(
    identities: &[I],
    signer: &Signer,
    content: &[u8],
) -> Vec<Vec<u8>> {
    let signature = signer.sign(&[content]);
    let mut frames = Vec::with_capacity(identities.len() + 3);
    frames.extend(identities.iter().map(|i| i.as_ref().to_vec()));
    frames.push(DELIMITER.to_vec());
    frames.push(signature.as_bytes().to_vec());
    frames.push(content.to_vec());
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::{Key, SignatureScheme};
    use alloc::vec;

    fn signer() -> Signer {
        Signer::new(SignatureScheme::HmacSha256, &Key::new("key"))
    }

    const PARTS: Parts<'static> = Parts {
        header: b"{\"h\":1}",
        parent_header: b"{}",
        metadata: b"{}",
        content: b"{\"c\":2}",
    };

    #[test]
    fn round_trips_with_identities_and_buffers() {
        let frames = join(&[b"a".as_slice(), b""], &signer(), &PARTS, &[b"buf"]);
        let msg = split(&frames, &Limits::default())
            .unwrap()
            .verify(&signer())
            .unwrap();
        assert_eq!(msg.identities().len(), 2);
        assert_eq!(msg.parts(), PARTS);
        assert_eq!(msg.buffers(), &[b"buf".to_vec()]);
    }

    #[test]
    fn buffers_are_outside_the_signature() {
        let mut frames = join::<&[u8], &[u8]>(&[], &signer(), &PARTS, &[b"one"]);
        frames[6] = b"tampered buffer".to_vec();
        frames.push(b"extra".to_vec());
        assert!(
            split(&frames, &Limits::default())
                .unwrap()
                .verify(&signer())
                .is_ok()
        );
    }

    #[test]
    fn short_lists_are_errors_not_panics() {
        let limits = Limits::default();
        let empty: [&[u8]; 0] = [];
        assert_eq!(
            split(&empty, &limits).unwrap_err(),
            DecodeError::NoDelimiter { frames: 0 }
        );
        assert_eq!(
            split(&[DELIMITER], &limits).unwrap_err(),
            DecodeError::TooFewFrames { got: 0 }
        );
        let four: [&[u8]; 5] = [DELIMITER, b"", b"{}", b"{}", b"{}"];
        assert_eq!(
            split(&four, &limits).unwrap_err(),
            DecodeError::TooFewFrames { got: 4 }
        );
        let ok: [&[u8]; 6] = [DELIMITER, b"", b"{}", b"{}", b"{}", b"{}"];
        assert!(split(&ok, &limits).is_ok());
    }

    #[test]
    fn first_delimiter_wins() {
        let frames: [&[u8]; 8] = [b"id", DELIMITER, b"", DELIMITER, b"{}", b"{}", b"{}", b"x"];
        let msg = split(&frames, &Limits::default()).unwrap();
        assert_eq!(msg.identities().len(), 1);
        assert_eq!(msg.signature(), b"");
        assert_eq!(msg.parts.header, DELIMITER);
    }

    #[test]
    fn limits_are_checked_first() {
        let limits = Limits {
            max_frame_len: 4,
            max_frames: 3,
        };
        let big = vec![vec![0u8; 5]];
        assert_eq!(
            split(&big, &limits).unwrap_err(),
            DecodeError::FrameTooLarge {
                index: 0,
                len: 5,
                max: 4
            }
        );
        let many = vec![vec![0u8; 1]; 4];
        assert_eq!(
            split(&many, &limits).unwrap_err(),
            DecodeError::TooManyFrames { max: 3, got: 4 }
        );
    }

    #[test]
    fn a_wrong_key_is_refused() {
        let frames = join::<&[u8], &[u8]>(&[], &signer(), &PARTS, &[]);
        let other = Signer::new(SignatureScheme::HmacSha256, &Key::new("other"));
        assert_eq!(
            split(&frames, &Limits::default())
                .unwrap()
                .verify(&other)
                .unwrap_err(),
            VerifyError::Mismatch
        );
    }
}
