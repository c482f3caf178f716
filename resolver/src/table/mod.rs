//! The lookup table: one immutable file per store mapping a hash to the object's
//! store-relative path, original soname, size and kind (`docs/table-format.md`).
//!
//! The format, the checksum and the zero-copy reader are `resolver_core::table`,
//! re-exported here; the writer ([`write`]), which builds a table and replaces a store's
//! table atomically, needs std and lives here.

pub use resolver_core::table::*;

pub mod write;

#[cfg(test)]
mod tests {
    use super::write::{build, NewEntry};
    use super::*;
    use crate::uri::Hash;

    fn table_with(path: &[u8]) -> (Vec<u8>, Hash) {
        let hash = Hash([7; 32]);
        let bytes = build(
            vec![NewEntry {
                hash,
                path: path.to_vec(),
                soname: b"libx.so.1".to_vec(),
                size: 1,
                kind: Kind::Library,
            }],
            1,
        )
        .unwrap();
        (bytes, hash)
    }

    #[test]
    fn paths_that_leave_the_store_are_refused_by_checked_reads() {
        for bad in [
            &b"/etc/passwd"[..],
            b"../../../home/u/evil.so",
            b"objects/../../evil.so",
            b"objects/..",
            b"objects//x.so",
            b"./objects/x.so",
            b"objects/./x.so",
            b"objects/x.so/",
            b"objects/x\0.so",
        ] {
            let (bytes, hash) = table_with(bad);
            let table = Table::parse(&bytes).unwrap();
            let err = table.lookup_checked(&hash).unwrap_err();
            match err {
                TableError::BadEntry { index: 0, problem } => {
                    assert!(problem.contains("path field"), "{problem}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
            assert!(table.verify().is_err(), "{bad:?}");
            assert!(table.entries().next().unwrap().is_err(), "{bad:?}");
            // The unchecked read still returns it (tools that must show a damaged entry).
            assert_eq!(table.lookup(&hash).unwrap().unwrap().path, bad);
        }
        for good in [
            &b"objects/0123-libx.so.1"[..],
            b"objects/0123/libx.so.1",
            b"bin/tree/lib/libx.so.1",
            b"roots/link/lib/libx.so.1",
            b"objects/..x/...so",
        ] {
            let (bytes, hash) = table_with(good);
            let table = Table::parse(&bytes).unwrap();
            assert_eq!(table.lookup_checked(&hash).unwrap().unwrap().path, good);
            table.verify().unwrap();
        }
    }
}
