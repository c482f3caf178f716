//! Finding references: the URIs that occur in an object's bytes.
//!
//! A reference is any occurrence of `uri:blake3:` followed by 64 lowercase hex digits,
//! wherever it lies in the file (the way Nix finds store-path references). Converted
//! objects carry their dependencies' URIs in `.dynstr`, so this finds every `DT_NEEDED`
//! and `vn_file` reference without parsing ELF.

use crate::uri::{Hash, URI_LEN, URI_PREFIX};

/// Iterator over `(offset, hash)` of every reference in a byte string, in file order.
/// References never overlap (a URI contains no `u`).
pub struct References<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// The references in `bytes`.
pub fn references(bytes: &[u8]) -> References<'_> {
    References { bytes, at: 0 }
}

impl<'a> Iterator for References<'a> {
    type Item = (usize, Hash);

    fn next(&mut self) -> Option<(usize, Hash)> {
        while self.at + URI_LEN <= self.bytes.len() {
            let rest = &self.bytes[self.at..];
            let found = rest.iter().position(|&b| b == URI_PREFIX[0])?;
            let start = self.at + found;
            self.at = start + 1;
            let candidate = self.bytes.get(start..start + URI_LEN)?;
            if !candidate.starts_with(URI_PREFIX) {
                continue;
            }
            if let Ok(hash) = Hash::parse_uri(candidate) {
                self.at = start + URI_LEN;
                return Some((start, hash));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    #[test]
    fn finds_embedded_uris() {
        let a = Hash([0x11; 32]).to_uri_bytes();
        let b = Hash([0xab; 32]).to_uri_bytes();
        let mut bytes = b"\0\0uri:blake3:nothex\0uuu".to_vec();
        let a_at = bytes.len();
        bytes.extend_from_slice(&a);
        bytes.push(0);
        let b_at = bytes.len();
        bytes.extend_from_slice(&b);
        bytes.extend_from_slice(&crate::uri::PLACEHOLDER);
        bytes.extend_from_slice(&a[..70]);
        let found: Vec<_> = references(&bytes).collect();
        assert_eq!(
            found,
            vec![(a_at, Hash([0x11; 32])), (b_at, Hash([0xab; 32]))]
        );
    }
}
