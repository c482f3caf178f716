//! Fuzz target: the table reader (`resolver/core/src/table/read.rs`) on arbitrary bytes. It
//! must never panic or read out of bounds, and what a checked read returns must hold:
//! every entry a checked read yields has a path that stays inside the store.
#![no_main]

#[path = "driver.rs"]
#[macro_use]
mod driver;

use resolver_core::table::format::{header, HEADER_LEN, MAGIC, VERSION};
use resolver_core::table::{path_problem, Fnv64, Table};
use resolver_core::uri::Hash;

fuzz_target!(|bytes| {
    check(bytes);
    // The same bytes with a header that checks out (magic, version, length, both
    // checksums recomputed), so that mutations reach the fields behind the checksums.
    if bytes.len() >= HEADER_LEN {
        let mut fixed = bytes.to_vec();
        fixed[..8].copy_from_slice(&MAGIC);
        fixed[header::VERSION..header::VERSION + 4].copy_from_slice(&VERSION.to_le_bytes());
        let len = fixed.len() as u64;
        fixed[header::FILE_LEN..header::FILE_LEN + 8].copy_from_slice(&len.to_le_bytes());
        let body = Fnv64::of(&fixed[HEADER_LEN..]);
        fixed[header::BODY_CHECKSUM..header::BODY_CHECKSUM + 8]
            .copy_from_slice(&body.to_le_bytes());
        let head = Fnv64::of(&fixed[..header::HEADER_CHECKSUM]);
        fixed[header::HEADER_CHECKSUM..header::HEADER_CHECKSUM + 8]
            .copy_from_slice(&head.to_le_bytes());
        check(&fixed);
    }
});

fn check(bytes: &[u8]) {
    let table = match Table::parse(bytes) {
        Ok(t) => t,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let verified = table.verify().is_ok();
    let mut ok_entries = 0u32;
    for e in table.entries() {
        match e {
            Ok(e) => {
                ok_entries += 1;
                assert!(path_problem(e.path).is_none(), "checked entry {:?}", e.path);
                let found = table.lookup_checked(&e.hash);
                if let Ok(Some(f)) = found {
                    assert!(path_problem(f.path).is_none());
                }
                let _ = table.lookup(&e.hash);
            }
            Err(e) => {
                assert!(!verified, "verify() passed but an entry is damaged: {e}");
                let _ = e.to_string();
            }
        }
    }
    if verified {
        assert_eq!(ok_entries, table.len());
    }
    // Look-ups of hashes the table does not necessarily hold.
    for window in bytes.chunks(32).take(8) {
        let mut h = [0u8; 32];
        h[..window.len()].copy_from_slice(window);
        if let Ok(Some(e)) = table.lookup_checked(&Hash(h)) {
            assert!(path_problem(e.path).is_none());
        }
        let _ = table.lookup(&Hash(h));
    }
    for i in 0..table.len().min(64) {
        let _ = table.entry(i);
        let _ = table.entry_checked(i);
    }
    let _ = table.entry(table.len());
}
