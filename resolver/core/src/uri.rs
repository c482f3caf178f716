//! The URI grammar: `uri:blake3:<64 lowercase hex digits>` (specified in `docs/uri.md`).
//!
//! This is the only place that parses or prints a URI: the interpreter parses the names in
//! `DT_NEEDED` with it, the editor and the store everything else.

use core::fmt;

use crate::bytes::{bytes_in, ONES, TOPS};

/// The text every URI starts with.
pub const URI_PREFIX: &[u8] = b"uri:blake3:";

/// Number of hex digits after the prefix.
pub const HEX_LEN: usize = 64;

/// Length of every URI in bytes (75). A fixed length lets a patcher reserve space for a URI
/// and lets the cycle rule replace a URI by a placeholder without moving any byte.
pub const URI_LEN: usize = URI_PREFIX.len() + HEX_LEN;

/// The placeholder written in place of a URI that points inside a dependency cycle while
/// the cycle's members are hashed: the prefix followed by 64 `x`. It has the length of a
/// URI but is not one (`x` is not a hex digit), so a reference scan never mistakes it for
/// a reference.
pub const PLACEHOLDER: [u8; URI_LEN] = placeholder();

const fn placeholder() -> [u8; URI_LEN] {
    let mut out = [b'x'; URI_LEN];
    let mut i = 0;
    while i < URI_PREFIX.len() {
        out[i] = URI_PREFIX[i];
        i += 1;
    }
    out
}

/// A BLAKE3 hash: the content address of an object.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

/// What is wrong with a string that was meant to be a URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriError {
    /// The text does not start with `uri:blake3:`; `at` is the first byte that differs.
    BadPrefix { at: usize },
    /// The text has `len` bytes; a URI has exactly [`URI_LEN`].
    BadLength { len: usize },
    /// The byte at `at` (counted from the start of the URI) is `byte`, not a lowercase hex
    /// digit (`0-9`, `a-f`).
    BadDigit { at: usize, byte: u8 },
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            UriError::BadPrefix { at } => write!(
                f,
                "does not start with \"uri:blake3:\" (byte {at} differs)"
            ),
            UriError::BadLength { len } => write!(
                f,
                "is {len} bytes long; a URI is exactly {URI_LEN} (\"uri:blake3:\" and 64 hex digits)"
            ),
            UriError::BadDigit { at, byte } => {
                if byte.is_ascii_graphic() {
                    write!(
                        f,
                        "has '{}' at byte {at}, where a lowercase hex digit (0-9, a-f) was expected",
                        byte as char
                    )
                } else {
                    write!(
                        f,
                        "has byte 0x{byte:02x} at byte {at}, where a lowercase hex digit (0-9, a-f) was expected"
                    )
                }
            }
        }
    }
}

// No `Error` impl: `core::error::Error` is newer than Rust 1.63, and callers only display
// these errors.

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Whether `byte` is a lowercase hex digit.
fn is_hex_digit(byte: u8) -> bool {
    matches!(byte, b'0'..=b'9' | b'a'..=b'f')
}

/// The first byte of `digits` that is not a lowercase hex digit, with its index.
fn first_bad_digit(digits: &[u8]) -> Option<(usize, u8)> {
    digits
        .iter()
        .position(|&b| !is_hex_digit(b))
        .map(|i| (i, digits[i]))
}

/// The hash spelt by 64 hex digits, or `None` when one is not a lowercase hex digit. One
/// pass, eight digits at a time, with no branch per digit.
fn decode(digits: &[u8; HEX_LEN]) -> Option<Hash> {
    let mut out = [0u8; 32];
    let mut valid = TOPS;
    for i in 0..HEX_LEN / 8 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&digits[8 * i..8 * i + 8]);
        // The eight digits, the first in the least significant byte.
        let w = u64::from_le_bytes(w);
        let letters = bytes_in(w, b'a', b'f');
        valid &= bytes_in(w, b'0', b'9') | letters;
        // A digit's value is its low four bits, plus 9 for a letter (`a` to `f` end in 1
        // to 6).
        let values = (w & (0x0f * ONES)) + (letters >> 7) * 9;
        // Byte 2j: digit 2j's value, then digit 2j + 1's; then bytes 0, 2, 4, 6 together.
        let pairs = (values << 4 | values >> 8) & 0x00ff_00ff_00ff_00ff;
        let pairs = (pairs | pairs >> 8) & 0x0000_ffff_0000_ffff;
        let bytes = (pairs | pairs >> 16) as u32;
        out[4 * i..4 * i + 4].copy_from_slice(&bytes.to_le_bytes());
    }
    if valid == TOPS {
        Some(Hash(out))
    } else {
        None
    }
}

/// `text` as a prefix and 64 digits, when it has a URI's length.
fn split_uri(text: &[u8]) -> Option<(&[u8], &[u8; HEX_LEN])> {
    if text.len() != URI_LEN {
        return None;
    }
    let (prefix, digits) = text.split_at(URI_PREFIX.len());
    Some((prefix, <&[u8; HEX_LEN]>::try_from(digits).ok()?))
}

impl Hash {
    /// Parses a URI. Exactly `uri:blake3:` followed by 64 lowercase hex digits; nothing
    /// before or after (no trailing NUL, no whitespace).
    pub fn parse_uri(text: &[u8]) -> Result<Hash, UriError> {
        // The common case, a well-formed URI, in one pass; anything else is described by
        // the checks below, in their order.
        if let Some((prefix, digits)) = split_uri(text) {
            if prefix == URI_PREFIX {
                if let Some(hash) = decode(digits) {
                    return Ok(hash);
                }
            }
        }
        let prefix_len = URI_PREFIX.len().min(text.len());
        if let Some(at) = (0..prefix_len).find(|&i| text[i] != URI_PREFIX[i]) {
            return Err(UriError::BadPrefix { at });
        }
        if text.len() < URI_PREFIX.len() {
            return Err(UriError::BadLength { len: text.len() });
        }
        let digits = &text[URI_PREFIX.len()..];
        // Report a bad digit before a bad length: "uri:blake3:abc/..." is more usefully
        // described by the '/' than by its length.
        if let Some((i, byte)) = first_bad_digit(&digits[..digits.len().min(HEX_LEN)]) {
            return Err(UriError::BadDigit {
                at: URI_PREFIX.len() + i,
                byte,
            });
        }
        Err(UriError::BadLength { len: text.len() })
    }

    /// Parses 64 lowercase hex digits (a URI without its prefix, as in object file names).
    pub fn parse_hex(text: &[u8]) -> Result<Hash, UriError> {
        if let Some(hash) = <&[u8; HEX_LEN]>::try_from(text).ok().and_then(decode) {
            return Ok(hash);
        }
        if let Some((at, byte)) = first_bad_digit(&text[..text.len().min(HEX_LEN)]) {
            return Err(UriError::BadDigit { at, byte });
        }
        Err(UriError::BadLength {
            len: text.len() + URI_PREFIX.len(),
        })
    }

    /// Is `text` a URI? Cheap test used to tell `uri:` names from plain sonames.
    pub fn is_uri(text: &[u8]) -> bool {
        Hash::parse_uri(text).is_ok()
    }

    /// Writes the URI (75 bytes, no terminator) into `out`.
    pub fn write_uri(&self, out: &mut [u8; URI_LEN]) {
        out[..URI_PREFIX.len()].copy_from_slice(URI_PREFIX);
        self.write_hex(&mut out[URI_PREFIX.len()..]);
    }

    /// The URI as a fixed-size byte array.
    pub fn to_uri_bytes(&self) -> [u8; URI_LEN] {
        let mut out = [0u8; URI_LEN];
        self.write_uri(&mut out);
        out
    }

    /// Writes the 64 hex digits into `out`, which must be at least 64 bytes long.
    pub fn write_hex(&self, out: &mut [u8]) {
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0.iter()) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0xf)];
        }
    }

    /// The hash as 64 lowercase hex digits.
    pub fn to_hex_bytes(&self) -> [u8; HEX_LEN] {
        let mut out = [0u8; HEX_LEN];
        self.write_hex(&mut out);
        out
    }

    /// The hash's leading 64 bits, big-endian: the key of the table's bucket index.
    pub fn prefix64(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(first)
    }
}

/// Displays the full URI.
impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.to_uri_bytes();
        // The bytes are ASCII by construction.
        f.write_str(core::str::from_utf8(&uri).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl core::str::FromStr for Hash {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Hash, UriError> {
        Hash::parse_uri(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    const SAMPLE: &str =
        "uri:blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn round_trip() {
        let h = Hash::parse_uri(SAMPLE.as_bytes()).unwrap();
        assert_eq!(h.to_string(), SAMPLE);
        assert_eq!(h.0[0], 0xaf);
        assert_eq!(h.0[31], 0x62);
        assert_eq!(
            Hash::parse_hex(&SAMPLE.as_bytes()[URI_PREFIX.len()..]).unwrap(),
            h
        );
    }

    #[test]
    fn errors_name_the_byte() {
        assert_eq!(
            Hash::parse_uri(b"uri:sha256:00"),
            Err(UriError::BadPrefix { at: 4 })
        );
        let mut upper = SAMPLE.as_bytes().to_vec();
        upper[20] = b'A';
        assert_eq!(
            Hash::parse_uri(&upper),
            Err(UriError::BadDigit { at: 20, byte: b'A' })
        );
        let mut slash = SAMPLE.as_bytes().to_vec();
        slash[11] = b'/';
        assert_eq!(
            Hash::parse_uri(&slash),
            Err(UriError::BadDigit { at: 11, byte: b'/' })
        );
        assert_eq!(
            Hash::parse_uri(&SAMPLE.as_bytes()[..74]),
            Err(UriError::BadLength { len: 74 })
        );
        let long = [SAMPLE.as_bytes(), b"0"].concat();
        assert_eq!(Hash::parse_uri(&long), Err(UriError::BadLength { len: 76 }));
        assert_eq!(
            Hash::parse_uri(b"uri:"),
            Err(UriError::BadLength { len: 4 })
        );
        assert!(UriError::BadDigit { at: 20, byte: b'A' }
            .to_string()
            .contains("'A' at byte 20"));
    }

    #[test]
    fn placeholder_is_not_a_uri() {
        assert_eq!(PLACEHOLDER.len(), URI_LEN);
        assert!(PLACEHOLDER.starts_with(URI_PREFIX));
        assert!(!Hash::is_uri(&PLACEHOLDER));
    }

    /// The parser as first written (two passes, a `match` per digit): the reference the
    /// one-pass parser must agree with, error for error.
    mod reference {
        use super::super::*;

        fn hex_value(byte: u8) -> Option<u8> {
            match byte {
                b'0'..=b'9' => Some(byte - b'0'),
                b'a'..=b'f' => Some(byte - b'a' + 10),
                _ => None,
            }
        }

        fn from_hex_digits(digits: &[u8]) -> Hash {
            let mut out = [0u8; 32];
            for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
                let hi = hex_value(pair[0]).unwrap_or(0);
                let lo = hex_value(pair[1]).unwrap_or(0);
                *byte = hi << 4 | lo;
            }
            Hash(out)
        }

        pub fn parse_uri(text: &[u8]) -> Result<Hash, UriError> {
            let prefix_len = URI_PREFIX.len().min(text.len());
            if let Some(at) = (0..prefix_len).find(|&i| text[i] != URI_PREFIX[i]) {
                return Err(UriError::BadPrefix { at });
            }
            if text.len() < URI_PREFIX.len() {
                return Err(UriError::BadLength { len: text.len() });
            }
            let digits = &text[URI_PREFIX.len()..];
            for (i, &byte) in digits.iter().enumerate().take(HEX_LEN) {
                if hex_value(byte).is_none() {
                    return Err(UriError::BadDigit {
                        at: URI_PREFIX.len() + i,
                        byte,
                    });
                }
            }
            if text.len() != URI_LEN {
                return Err(UriError::BadLength { len: text.len() });
            }
            Ok(from_hex_digits(digits))
        }

        pub fn parse_hex(text: &[u8]) -> Result<Hash, UriError> {
            for (at, &byte) in text.iter().enumerate().take(HEX_LEN) {
                if hex_value(byte).is_none() {
                    return Err(UriError::BadDigit { at, byte });
                }
            }
            if text.len() != HEX_LEN {
                return Err(UriError::BadLength {
                    len: text.len() + URI_PREFIX.len(),
                });
            }
            Ok(from_hex_digits(text))
        }
    }

    #[test]
    fn every_byte_at_every_digit_agrees_with_the_reference() {
        let sample = SAMPLE.as_bytes();
        for at in URI_PREFIX.len()..URI_LEN {
            for byte in 0..=255u8 {
                let mut text = sample.to_vec();
                text[at] = byte;
                assert_eq!(
                    Hash::parse_uri(&text),
                    reference::parse_uri(&text),
                    "{byte:#04x} at {at}"
                );
            }
        }
    }

    /// A URI, often damaged: cut or extended to `len` bytes (half the time its own length), then up to four bytes replaced by
    /// bytes near the digits' ranges (`/`, `:`, `@`, `` ` ``, `g`, `A`, `F`, ...) or any.
    fn damaged_uri() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let byte = prop_oneof![
            proptest::sample::select(b"/09:@AFG`afgx\0\xff".to_vec()),
            any::<u8>(),
        ];
        (
            proptest::array::uniform32(any::<u8>()),
            prop_oneof![Just(URI_LEN), 0usize..90],
            proptest::collection::vec((0usize..90, byte), 0..4),
        )
            .prop_map(|(hash, len, edits)| {
                let mut text = Hash(hash).to_uri_bytes().to_vec();
                text.resize(len, b'0');
                for (at, b) in edits {
                    if at < text.len() {
                        text[at] = b;
                    }
                }
                text
            })
    }

    proptest::proptest! {
        #[test]
        fn any_hash_round_trips(bytes in proptest::array::uniform32(0u8..)) {
            let h = Hash(bytes);
            let uri = h.to_uri_bytes();
            proptest::prop_assert!(!uri.contains(&b'/'));
            proptest::prop_assert_eq!(Hash::parse_uri(&uri), Ok(h));
        }

        #[test]
        fn parse_never_panics(text in proptest::collection::vec(0u8.., 0..100)) {
            let _ = Hash::parse_uri(&text);
        }

        #[test]
        fn parsers_agree_with_the_reference(text in damaged_uri()) {
            proptest::prop_assert_eq!(Hash::parse_uri(&text), reference::parse_uri(&text));
            let hex = text.get(URI_PREFIX.len()..).unwrap_or(&text);
            proptest::prop_assert_eq!(Hash::parse_hex(hex), reference::parse_hex(hex));
        }
    }
}
