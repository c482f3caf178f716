//! Names in a store's layout that the writer (`resolver`) and the interpreter (`ld-cas`)
//! must agree on (`docs/ld-cas.md`).

/// The directory of the store's own objects, in the store's root.
pub const OBJECTS_DIR: &str = "objects";

/// The lookup table's file, in the store's root (or in a tree's table directory).
pub const TABLE_FILE: &str = "table";

/// The index directory, beside the table (`resolver/src/store/index.rs`).
pub const INDEX_DIR: &str = "index";

/// Whether the table path `path` (relative to the store's root) names one of the store's
/// own objects, which the store alone writes and never changes: the index of a table at
/// the store's root holds a hard link of such an object, and a symbolic link to any other
/// file (a file in a tree keeps its home, which its package may replace).
pub fn is_own_object(path: &[u8]) -> bool {
    path.len() > OBJECTS_DIR.len()
        && path.starts_with(OBJECTS_DIR.as_bytes())
        && path[OBJECTS_DIR.len()] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_objects_are_those_under_objects() {
        assert!(is_own_object(b"objects/ab/libc.so.6"));
        for other in [&b"objects"[..], b"objectsx/a", b"roots/app/lib/libapp.so"] {
            assert!(!is_own_object(other), "{other:?}");
        }
    }
}
