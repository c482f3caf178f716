//! Atomic replacement of a file: a temporary file in the same directory, fsync, rename.
//! The file's permission bits (and owner, when allowed) are kept.
//!
//! `ELFPATCH_FSYNC=0` in the environment skips the fsyncs (the rename stays atomic
//! for readers, but a power loss may leave the old or an empty file): builds that patch
//! thousands of outputs in a sandbox they throw away on failure do not need durability
//! per file, and the fsync is most of the cost of editing a small file.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::edit::Edit;
use super::error::{Error, Result};
use super::parse::Elf;
use super::verify::verify_edit;

/// Writes `bytes` to `path` atomically: readers see the old or the new contents, never a
/// mix. When `path` exists its mode is kept. Callers skip the call when an edit changed
/// nothing, so an unchanged file keeps its inode and mtime.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let permissions = fs::metadata(path).ok().map(|m| m.permissions());
    if durable() {
        resolver::atomic::replace_file(path, bytes, permissions)
    } else {
        resolver::atomic::replace_file_unsynced(path, bytes, permissions)
    }
}

/// Whether writes wait for the disk (unless `ELFPATCH_FSYNC=0`).
fn durable() -> bool {
    std::env::var_os("ELFPATCH_FSYNC").is_none_or(|v| v != "0")
}

/// The bytes of an input file: memory-mapped when large (only the pages the edit reads
/// are touched), read into memory when small.
pub enum Input {
    /// A read-only private mapping.
    Map(memmap2::Mmap),
    /// The whole file in memory.
    Bytes(Vec<u8>),
}

impl std::ops::Deref for Input {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Input::Map(m) => m,
            Input::Bytes(b) => b,
        }
    }
}

const MAP_THRESHOLD: u64 = 1 << 20;

/// Results up to this size are assembled in memory before they are written.
const IN_MEMORY_LIMIT: u64 = 16 << 20;

fn io_err<'p>(what: &str, path: &'p Path) -> impl Fn(io::Error) -> Error + 'p {
    let what = what.to_string();
    move |e| Error::Io(format!("cannot {what} {}: {e}", path.display()))
}

/// Reads `path` for editing.
pub fn read_file(path: &Path) -> Result<Input> {
    let f = fs::File::open(path).map_err(io_err("open", path))?;
    let len = f.metadata().map_err(io_err("stat", path))?.len();
    if len < MAP_THRESHOLD {
        let mut b = Vec::with_capacity(len as usize);
        io::Read::read_to_end(&mut &f, &mut b).map_err(io_err("read", path))?;
        return Ok(Input::Bytes(b));
    }
    // SAFETY: the mapping is read-only and private. Its contents could change only if
    // another process rewrote the file in place while we run; editors (this one, patchelf,
    // linkers, package managers) replace files by rename instead, which leaves our mapping
    // on the old inode.
    let m = unsafe { memmap2::Mmap::map(&f) }.map_err(io_err("map", path))?;
    Ok(Input::Map(m))
}

/// Applies `edit` to the parsed `elf` and writes the result atomically to `out`: the
/// kept prefix of the input is copied, the changed pieces written over it, the new file
/// verified against the input, synced and renamed over `out`. When the edit changes
/// nothing and `out` is the input, nothing is written; returns whether a file was written.
pub fn write_edit(
    elf: &Elf,
    edit: &Edit,
    out: &Path,
    out_is_input: bool,
    mode: Option<fs::Permissions>,
) -> Result<bool> {
    let img = edit.image(elf)?;
    if out_is_input && img.is_identity(elf.data) {
        return Ok(false);
    }
    // Edit through a symlink, as an in-place write would, instead of replacing the link.
    let resolved = if fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::canonicalize(out).map_err(io_err("resolve", out))?
    } else {
        out.to_path_buf()
    };
    let out = resolved.as_path();
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let keep = (img.base_len as usize).min(elf.data.len());
    // A small result is assembled and verified in memory and written with one call; a
    // large one is written piecewise (the kept prefix, then the changed pieces over it)
    // and verified through a mapping, so that it never needs a second copy in memory.
    let assembled = if img.len <= IN_MEMORY_LIMIT {
        let mut bytes = Vec::with_capacity(img.len as usize);
        bytes.extend_from_slice(&elf.data[..keep]);
        bytes.resize(img.len as usize, 0);
        for (o, b) in &img.writes {
            let o = *o as usize;
            let dest = bytes.get_mut(o..o + b.len()).ok_or_else(|| {
                Error::Io(format!("an edit of {} writes past its end", out.display()))
            })?;
            dest.copy_from_slice(b);
        }
        verify_edit(elf.data, &bytes)?;
        Some(bytes)
    } else {
        None
    };
    let mut tmp =
        resolver::atomic::temporary_in(dir).map_err(io_err("create a temporary file in", dir))?;
    let tpath = tmp.path().to_path_buf();
    if let Some(bytes) = &assembled {
        tmp.write_all(bytes).map_err(io_err("write", &tpath))?;
    } else {
        tmp.write_all(&elf.data[..keep])
            .map_err(io_err("write", &tpath))?;
        tmp.as_file()
            .set_len(img.len)
            .map_err(io_err("resize", &tpath))?;
        for (o, b) in &img.writes {
            tmp.as_file()
                .write_all_at(b, *o)
                .map_err(io_err("write", &tpath))?;
        }
        // SAFETY: the temporary file was created by us (O_EXCL, mode 0600) and nothing
        // else writes it before the rename below.
        let map = unsafe { memmap2::Mmap::map(tmp.as_file()) }.map_err(io_err("map", &tpath))?;
        verify_edit(elf.data, &map)?;
    }
    let perms = mode.or_else(|| fs::metadata(out).ok().map(|m| m.permissions()));
    if let Some(p) = perms {
        tmp.as_file()
            .set_permissions(p)
            .map_err(io_err("chmod", &tpath))?;
    }
    let durable = durable();
    if durable {
        tmp.as_file().sync_data().map_err(io_err("sync", &tpath))?;
    }
    // The data is on disk before the rename, so after a crash the name holds either the
    // old file or the complete new one. The directory is not synced: that would only make
    // the new name durable sooner, and costs as much as the whole edit of a small file.
    tmp.persist(out)
        .map_err(|e| Error::Io(format!("cannot rename over {}: {}", out.display(), e.error)))?;
    Ok(true)
}
