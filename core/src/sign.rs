//! Keys, signing and verification: see [`Signer`](crate::Signer).

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};

/// The longest digest we support (SHA-512), in bytes.
const MAX_DIGEST: usize = 64;

/// The HMAC algorithm named by a connection file's `signature_scheme`.
///
/// jupyter_client accepts `hmac-` plus any `hashlib` name; ark and Kallichore sign with SHA-256
/// whatever the field says. We accept the SHA-2 family that every peer can verify and refuse the
/// rest with [`UnknownSignatureScheme`], so a typo never silently downgrades security.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// `hmac-sha256`, the default of every Jupyter peer.
    #[default]
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl SignatureScheme {
    /// The name as written in connection files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    /// Length of the raw digest in bytes; the hex signature is twice as long.
    pub const fn digest_len(self) -> usize {
        match self {
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `signature_scheme` we do not implement. Carries no text from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature scheme (expected hmac-sha256, hmac-sha384 or hmac-sha512)")]
pub struct UnknownSignatureScheme;

impl FromStr for SignatureScheme {
    type Err = UnknownSignatureScheme;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hmac-sha256" => Ok(Self::HmacSha256),
            "hmac-sha384" => Ok(Self::HmacSha384),
            "hmac-sha512" => Ok(Self::HmacSha512),
            _ => Err(UnknownSignatureScheme),
        }
    }
}

/// The shared secret of a kernel connection.
///
/// Its `Debug` never shows it, and nothing in this crate formats it into an error or event. The
/// only way to read it is [`Key::expose_secret`], which is what writing a connection file needs.
/// An empty key disables signing, exactly as in jupyter_client.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// Wraps the key text (the `key` field of a connection file).
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key text, for writing it into a file the kernel will read. Handle with care.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether the key is empty, i.e. messages are neither signed nor verified.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares two keys without an early exit on the first differing byte.
    pub fn ct_eq(&self, other: &Self) -> bool {
        ct_eq(self.0.as_bytes(), other.0.as_bytes())
    }

    /// An id derived from the key for `context` (32 hex digits of HMAC-SHA256(key, context)):
    /// the same key and context always give the same id, different keys different ids, and the
    /// id tells nothing about the key. The machines name their sessions with it, so that two
    /// processes never share a session id by accident (keys are random per kernel) and no
    /// placeholder id exists.
    pub(crate) fn derive_id(&self, context: &[u8]) -> String {
        let digest = self.mac(b"jupyter-handshake id", context);
        let mut hex = [0u8; 32];
        // 16 bytes always fit in 32 hex digits.
        let _ = hex::encode_to_slice(&digest[..16], &mut hex);
        hex.iter().map(|&b| char::from(b)).collect()
    }

    /// A fingerprint of the key, to find launches by key in a map without comparing keys
    /// (HMAC-SHA256 keyed by the key: one-way, so a map ordered by it leaks nothing).
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        self.mac(b"jupyter-handshake fingerprint", b"")
    }

    fn mac(&self, label: &[u8], context: &[u8]) -> [u8; 32] {
        // HMAC takes keys of any length, the empty one included.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        mac.update(label);
        mac.update(&[0]);
        mac.update(context);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// Constant-time equality of two byte strings (the length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

/// Why a signature was refused. Says what was expected; never carries the received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature frame is empty although a key is set (jupyter_client: "Unsigned Message").
    #[error("message is unsigned but the connection has a key")]
    Unsigned,
    /// The signature frame has the wrong length for the scheme.
    #[error("signature is {got} bytes long, expected {expected} hex digits")]
    Length {
        /// Hex digits the scheme produces.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The signature frame holds something other than lowercase hex digits.
    #[error("signature is not lowercase hex")]
    NotLowercaseHex,
    /// The signature is well-formed but was not made with our key over these bytes.
    #[error("signature does not match the message")]
    Mismatch,
}

#[derive(Clone)]
enum Mac_ {
    Unsigned,
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
}

/// HMAC signing and constant-time verification of Jupyter messages.
///
/// The signature of a Jupyter message is the lowercase hex HMAC of the header, parent header,
/// metadata and content frames, fed in that order with no separator; buffers are not signed
/// (`protocol.md` §5.3). The key is the UTF-8 text of the connection file's `key`, used as is.
///
/// [`Signer`] is keyed once and cloned per message (the HMAC key schedule is paid once), takes
/// the parts as a list of borrowed slices (no concatenation, no copy) and produces the hex on the
/// stack. [`Signer::verify`] decodes the received hex into a fixed array, then compares MACs in
/// constant time; it never allocates.
///
/// ```
/// use jupyter_handshake::{Key, SignatureScheme, Signer, VerifyError};
/// let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new("secret"));
/// let parts: [&[u8]; 4] = [b"{}", b"{}", b"{}", b"{}"];
/// let signature = signer.sign(&parts);
/// assert_eq!(signature.as_str().len(), 64);
/// assert!(signer.verify(signature.as_bytes(), &parts).is_ok());
/// assert_eq!(signer.verify(b"", &parts), Err(VerifyError::Unsigned));
/// ```
///
/// A pre-keyed HMAC for one connection: signs outgoing messages and verifies incoming ones.
///
/// Built from an empty key it is *unsigned*: it produces empty signatures and accepts any
/// signature, as jupyter_client does. That choice is explicit ([`Signer::is_unsigned`]) rather
/// than an `Option` the caller could forget to check.
#[derive(Clone)]
pub struct Signer {
    scheme: SignatureScheme,
    mac: Mac_,
}

impl Signer {
    /// Keys an HMAC of `scheme` with `key`; an empty key gives an unsigned signer.
    pub fn new(scheme: SignatureScheme, key: &Key) -> Self {
        let bytes = key.expose_secret().as_bytes();
        // HMAC takes keys of any length, so `new_from_slice` cannot fail; the fallback keeps
        // the function total without a panic path.
        let mac = if bytes.is_empty() {
            Mac_::Unsigned
        } else {
            match scheme {
                SignatureScheme::HmacSha256 => {
                    Hmac::new_from_slice(bytes).map_or(Mac_::Unsigned, Mac_::Sha256)
                }
                SignatureScheme::HmacSha384 => {
                    Hmac::new_from_slice(bytes).map_or(Mac_::Unsigned, Mac_::Sha384)
                }
                SignatureScheme::HmacSha512 => {
                    Hmac::new_from_slice(bytes).map_or(Mac_::Unsigned, Mac_::Sha512)
                }
            }
        };
        Self { scheme, mac }
    }

    /// The scheme this signer was built for.
    pub fn scheme(&self) -> SignatureScheme {
        self.scheme
    }

    /// Whether the key was empty (no signing, no verification).
    pub fn is_unsigned(&self) -> bool {
        matches!(self.mac, Mac_::Unsigned)
    }

    /// Computes the raw MAC of `parts` into `out`, returning its length (0 when unsigned).
    fn mac_into(&self, parts: &[&[u8]], out: &mut [u8; MAX_DIGEST]) -> usize {
        fn run<M: Mac + Clone>(mac: &M, parts: &[&[u8]], out: &mut [u8]) -> usize {
            let mut mac = mac.clone();
            for part in parts {
                mac.update(part);
            }
            let tag = mac.finalize().into_bytes();
            let n = tag.len().min(out.len());
            out[..n].copy_from_slice(&tag[..n]);
            n
        }
        match &self.mac {
            Mac_::Unsigned => 0,
            Mac_::Sha256(m) => run(m, parts, out),
            Mac_::Sha384(m) => run(m, parts, out),
            Mac_::Sha512(m) => run(m, parts, out),
        }
    }

    /// Signs `parts` (for a Jupyter message: header, parent header, metadata, content).
    pub fn sign(&self, parts: &[&[u8]]) -> Signature {
        let mut raw = [0u8; MAX_DIGEST];
        let n = self.mac_into(parts, &mut raw);
        let mut hex = [0u8; 2 * MAX_DIGEST];
        // `hex` holds exactly two digits per raw byte, so this cannot fail.
        let len = match hex::encode_to_slice(&raw[..n], &mut hex[..2 * n]) {
            Ok(()) => 2 * n,
            Err(_) => 0,
        };
        Signature { hex, len }
    }

    /// Checks `signature` (the received hex frame) against `parts`, in constant time.
    ///
    /// Order of checks, all before any allocation or JSON parsing: an unsigned signer accepts
    /// anything; an empty frame is [`VerifyError::Unsigned`]; a wrong length is refused (the
    /// length is public); the hex must be lowercase, as jupyter_client emits and compares it;
    /// then the MACs are compared in constant time.
    pub fn verify(&self, signature: &[u8], parts: &[&[u8]]) -> Result<(), VerifyError> {
        if self.is_unsigned() {
            return Ok(());
        }
        let mut tag = [0u8; MAX_DIGEST];
        let tag = self.decode_tag(signature, &mut tag)?;
        self.check_tag(tag, parts)
    }

    /// Decodes a received hex signature once, for checking it against several keys of this
    /// signer's scheme with [`check_decoded`](Self::check_decoded) (a registrar trying one
    /// message against its pending launches decodes the hex once, not once per key).
    pub(crate) fn decode(&self, signature: &[u8]) -> Result<Tag, VerifyError> {
        let mut tag = Tag {
            bytes: [0u8; MAX_DIGEST],
            len: 0,
        };
        tag.len = self.decode_tag(signature, &mut tag.bytes)?.len();
        Ok(tag)
    }

    /// [`verify`](Self::verify) of a signature decoded by a signer of the same scheme.
    pub(crate) fn check_decoded(&self, tag: &Tag, parts: &[&[u8]]) -> Result<(), VerifyError> {
        if self.is_unsigned() {
            return Ok(());
        }
        match tag.bytes.get(..tag.len) {
            Some(bytes) if tag.len == self.scheme.digest_len() => self.check_tag(bytes, parts),
            _ => Err(VerifyError::Mismatch),
        }
    }

    /// Compares the MAC of `parts` with `tag` in constant time.
    fn check_tag(&self, tag: &[u8], parts: &[&[u8]]) -> Result<(), VerifyError> {
        fn check<M: Mac + Clone>(mac: &M, parts: &[&[u8]], tag: &[u8]) -> bool {
            let mut mac = mac.clone();
            for part in parts {
                mac.update(part);
            }
            mac.verify_slice(tag).is_ok()
        }
        let matches = match &self.mac {
            Mac_::Unsigned => true,
            Mac_::Sha256(m) => check(m, parts, tag),
            Mac_::Sha384(m) => check(m, parts, tag),
            Mac_::Sha512(m) => check(m, parts, tag),
        };
        if matches {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    /// Decodes a received hex signature into `buf`, checking everything that is public first.
    fn decode_tag<'b>(
        &self,
        signature: &[u8],
        buf: &'b mut [u8; MAX_DIGEST],
    ) -> Result<&'b [u8], VerifyError> {
        let expected = 2 * self.scheme.digest_len();
        if signature.is_empty() {
            return Err(VerifyError::Unsigned);
        }
        if signature.len() != expected {
            return Err(VerifyError::Length {
                expected,
                got: signature.len(),
            });
        }
        // One pass through a table: each digit's value, or `INVALID` (uppercase included), OR-ed
        // together so a single branch at the end catches any bad digit. The signature is public
        // data (it travelled in the clear), so branching on it leaks nothing.
        let tag = &mut buf[..expected / 2];
        let mut bad = 0u8;
        for (out, pair) in tag.iter_mut().zip(signature.chunks_exact(2)) {
            let (high, low) = (
                HEX_VALUE[usize::from(pair[0])],
                HEX_VALUE[usize::from(pair[1])],
            );
            bad |= high | low;
            *out = (high << 4) | (low & 0x0f);
        }
        if bad & INVALID != 0 {
            return Err(VerifyError::NotLowercaseHex);
        }
        Ok(tag)
    }
}

/// A received signature, decoded from hex (public data: it travelled in the clear).
pub(crate) struct Tag {
    bytes: [u8; MAX_DIGEST],
    len: usize,
}

/// Marks a byte that is not a lowercase hex digit in [`HEX_VALUE`].
const INVALID: u8 = 0x80;

/// The value of each lowercase hex digit; [`INVALID`] for every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("scheme", &self.scheme)
            .field("unsigned", &self.is_unsigned())
            .finish()
    }
}

/// A hex signature on the stack (empty for an unsigned signer).
#[derive(Clone, Copy)]
pub struct Signature {
    hex: [u8; 2 * MAX_DIGEST],
    len: usize,
}

impl Signature {
    /// The lowercase hex digits, ready to be sent as the signature frame.
    pub fn as_bytes(&self) -> &[u8] {
        self.hex.get(..self.len).unwrap_or(&[])
    }

    /// The signature as text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTS: [&[u8]; 4] = [br#"{"a":1}"#, b"{}", b"{}", br#"{"b":2}"#];

    #[test]
    fn empty_key_is_unsigned_and_accepts_anything() {
        let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new(""));
        assert!(signer.is_unsigned());
        assert_eq!(signer.sign(&PARTS).as_bytes(), b"");
        assert_eq!(signer.verify(b"garbage", &PARTS), Ok(()));
        assert_eq!(signer.verify(b"", &PARTS), Ok(()));
    }

    #[test]
    fn each_way_a_signature_can_be_wrong() {
        let signer = Signer::new(SignatureScheme::HmacSha256, &Key::new("k"));
        let good = signer.sign(&PARTS);
        assert_eq!(signer.verify(good.as_bytes(), &PARTS), Ok(()));
        assert_eq!(signer.verify(b"", &PARTS), Err(VerifyError::Unsigned));
        assert_eq!(
            signer.verify(&good.as_bytes()[..63], &PARTS),
            Err(VerifyError::Length {
                expected: 64,
                got: 63
            })
        );
        let upper = good.as_str().to_ascii_uppercase();
        if upper != good.as_str() {
            assert_eq!(
                signer.verify(upper.as_bytes(), &PARTS),
                Err(VerifyError::NotLowercaseHex)
            );
        }
        // Every byte that is not a lowercase hex digit is refused, in either nibble position.
        for position in [0, 1, 62, 63] {
            for byte in 0..=255u8 {
                let mut sig = *good.as_bytes().first_chunk::<64>().unwrap();
                sig[position] = byte;
                let result = signer.verify(&sig, &PARTS);
                if byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte) {
                    assert_ne!(result, Err(VerifyError::NotLowercaseHex), "{byte}");
                } else {
                    assert_eq!(result, Err(VerifyError::NotLowercaseHex), "{byte}");
                }
            }
        }
        let mut flipped = *good.as_bytes().first_chunk::<64>().unwrap();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        assert_eq!(signer.verify(&flipped, &PARTS), Err(VerifyError::Mismatch));
        let other = Signer::new(SignatureScheme::HmacSha256, &Key::new("K"));
        assert_eq!(
            other.verify(good.as_bytes(), &PARTS),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn parts_are_concatenated_without_separator() {
        let signer = Signer::new(SignatureScheme::HmacSha512, &Key::new("k"));
        let split = signer.sign(&[b"ab", b"c"]);
        let joined = signer.sign(&[b"abc"]);
        assert_eq!(split.as_str(), joined.as_str());
        assert_eq!(split.as_str().len(), 128);
    }

    #[test]
    fn scheme_names_round_trip_and_unknown_is_refused() {
        for scheme in [
            SignatureScheme::HmacSha256,
            SignatureScheme::HmacSha384,
            SignatureScheme::HmacSha512,
        ] {
            assert_eq!(scheme.as_str().parse::<SignatureScheme>(), Ok(scheme));
        }
        assert!("hmac-md5".parse::<SignatureScheme>().is_err());
        assert!("HMAC-SHA256".parse::<SignatureScheme>().is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = Key::new("very-secret-key");
        let signer = Signer::new(SignatureScheme::HmacSha256, &key);
        assert!(!alloc::format!("{key:?} {signer:?}").contains("very-secret"));
    }
}
