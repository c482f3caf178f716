//! Atomic replacement of a file: a temporary file in the same directory, fsync, rename,
//! fsync of the directory. The file's permission bits are kept.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically: readers see the old or the new contents, never a
/// mix. When `path` exists its mode is kept; when its contents already equal `bytes` it is
/// left alone (same inode, same mtime).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let meta = fs::metadata(path).ok();
    if meta.as_ref().is_some_and(|m| m.len() == bytes.len() as u64)
        && fs::read(path).ok().as_deref() == Some(bytes)
    {
        return Ok(());
    }
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
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
