//! Atomic replacement of a file: a temporary file in the same directory, fsync, rename,
//! fsync of the directory. The file's permission bits are kept.
//!
//! `ELFPATCH_FSYNC=0` in the environment skips the two fsyncs (the rename stays atomic
//! for readers, but a power loss may leave the old or an empty file): builds that patch
//! thousands of outputs in a sandbox they throw away on failure do not need durability
//! per file, and the fsync is most of the cost of editing a small file.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically: readers see the old or the new contents, never a
/// mix. When `path` exists its mode is kept. Callers skip the call when an edit changed
/// nothing, so an unchanged file keeps its inode and mtime.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let meta = fs::metadata(path).ok();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".elfpatch-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if let Some(m) = &meta {
        tmp.as_file().set_permissions(m.permissions())?;
    }
    let durable = std::env::var_os("ELFPATCH_FSYNC").is_none_or(|v| v != "0");
    if durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if durable {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
