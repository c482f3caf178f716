//! Fuzz target: the URI grammar (`resolver/core/src/uri.rs`) on arbitrary bytes. It must never
//! panic, accept only `uri:blake3:` and 64 lowercase hex digits, and print back exactly
//! what it accepted.
#![no_main]

#[path = "driver.rs"]
#[macro_use]
mod driver;

use resolver_core::uri::{Hash, URI_LEN, URI_PREFIX};

fuzz_target!(|bytes| {
    if let Ok(h) = Hash::parse_uri(bytes) {
        assert_eq!(bytes.len(), URI_LEN, "{bytes:?}");
        assert!(bytes.starts_with(URI_PREFIX));
        assert!(bytes[URI_PREFIX.len()..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)));
        assert_eq!(h.to_uri_bytes()[..], bytes[..]);
        assert_eq!(Hash::parse_hex(&bytes[URI_PREFIX.len()..]), Ok(h));
    } else if let Err(e) = Hash::parse_uri(bytes) {
        let _ = e.to_string();
    }
    if let Ok(h) = Hash::parse_hex(bytes) {
        assert_eq!(bytes.len(), 64);
        assert_eq!(Hash::parse_uri(&h.to_uri_bytes()), Ok(h));
    }
});
