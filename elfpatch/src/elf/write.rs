//! Reading a file for editing (mapped), and replacing it atomically: a temporary file in
//! the same directory, fsync, rename. The file's permission bits, and its owner and group
//! where the process may set them, are kept.
//!
//! `ELFPATCH_FSYNC=0` in the environment skips the fsyncs (the rename stays atomic
//! for readers, but a power loss may leave the old or an empty file): builds that patch
//! thousands of outputs in a sandbox they throw away on failure do not need durability
//! per file, and the fsync is most of the cost of editing a small file.

use std::fs;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::Path;

use super::edit::Edit;
use super::error::{Error, Result};
use super::image::{Image, Run};
use super::parse::Elf;
use super::verify::verify_edit;

/// Writes `bytes` to `path` atomically: readers see the old or the new contents, never a
/// mix. When `path` exists its owner and mode are kept (see [`write_edit`]). Callers skip
/// the call when an edit changed nothing, so an unchanged file keeps its inode and mtime.
/// A device or FIFO at `path` is written into instead of replaced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if is_special(path) {
        return fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(bytes);
    }
    let like = fs::metadata(path).ok();
    let mut tmp = resolver::atomic::temporary_in(resolver::atomic::parent_dir(path))?;
    tmp.write_all(bytes)?;
    install(
        tmp,
        like.as_ref(),
        like.as_ref().map(|m| m.permissions()),
        path,
    )
}

/// Gives the complete temporary file `tmp` the owner and group of `owner_of` and the
/// permission bits `mode`, syncs it (unless `ELFPATCH_FSYNC=0`) and renames it over
/// `out`. The data is on disk before the rename, so after a crash the name holds either
/// the old file or the complete new one. The directory is not synced: that would only
/// make the new name durable sooner, and costs as much as the whole edit of a small file.
fn install(
    tmp: tempfile::NamedTempFile,
    owner_of: Option<&fs::Metadata>,
    mode: Option<fs::Permissions>,
    out: &Path,
) -> io::Result<()> {
    if let Some(m) = owner_of {
        take_owner(tmp.as_file(), m)?;
    }
    // After the owner: a change of owner clears the set-user-ID and set-group-ID bits.
    if let Some(p) = mode {
        tmp.as_file().set_permissions(p)?;
    }
    if durable() {
        tmp.as_file().sync_data()?;
    }
    tmp.persist(out).map_err(|e| e.error)?;
    Ok(())
}

/// Whether writes wait for the disk (unless `ELFPATCH_FSYNC=0`).
fn durable() -> bool {
    std::env::var_os("ELFPATCH_FSYNC").is_none_or(|v| v != "0")
}

fn io_err<'p>(what: &str, path: &'p Path) -> impl Fn(io::Error) -> Error + 'p {
    let what = what.to_string();
    move |e| Error::Io(format!("cannot {what} {}: {e}", path.display()))
}

/// A file opened for editing: its descriptor, its metadata and a read-only mapping of its
/// bytes (what it dereferences to).
pub struct Input {
    file: fs::File,
    metadata: fs::Metadata,
    map: memmap2::Mmap,
}

impl std::ops::Deref for Input {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl Input {
    /// Parses the file. An edit that must copy it in memory (to give the program header
    /// table room) then shares the unchanged pages with the file.
    pub fn parse(&self) -> Result<Elf<'_>> {
        let mut elf = Elf::parse(&self.map)?;
        elf.file = Some(&self.file);
        Ok(elf)
    }
}

/// Opens and maps `path` for editing. A mapping costs a few page faults where reading
/// costs one per page, and only the pages an edit reads or copies are touched.
pub fn read_file(path: &Path) -> Result<Input> {
    let file = fs::File::open(path).map_err(io_err("open", path))?;
    let metadata = file.metadata().map_err(io_err("stat", path))?;
    let len = usize::try_from(metadata.len())
        .map_err(|_| Error::Io(format!("{} is too large to map", path.display())))?;
    // SAFETY: the mapping is read-only and private. Its contents could change only if
    // another process rewrote the file in place while we run; editors (this one, patchelf,
    // linkers, package managers) replace files by rename instead, which leaves our mapping
    // on the old inode.
    let map =
        unsafe { memmap2::MmapOptions::new().len(len).map(&file) }.map_err(io_err("map", path))?;
    Ok(Input {
        file,
        metadata,
        map,
    })
}

/// Applies `edit` to `elf` (parsed from `input`) and writes the result atomically to
/// `out`: the output is written straight from the input and the edit's pieces (never
/// assembled in memory), verified against the input through a mapping of the new file,
/// given the input's mode (and the owner of the file it replaces), synced and renamed
/// over `out`. When the edit changes
/// nothing and `out` is the input, nothing is written; returns whether a file was written.
pub fn write_edit(
    input: &Input,
    elf: &Elf,
    edit: &Edit,
    out: &Path,
    out_is_input: bool,
) -> Result<bool> {
    write_image(input, elf, &edit.image(elf)?, out, out_is_input)
}

/// Like [`write_edit`], for an image already made (see [`Image::from_bytes`]).
pub fn write_image(
    input: &Input,
    elf: &Elf,
    img: &Image,
    out: &Path,
    out_is_input: bool,
) -> Result<bool> {
    if out_is_input && img.is_identity(elf.data) {
        return Ok(false);
    }
    if is_special(out) {
        return write_special(elf, img, out).map(|()| true);
    }
    // Edit through a symlink, as an in-place write would, instead of replacing the link.
    let resolved = if fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::canonicalize(out).map_err(io_err("resolve", out))?
    } else {
        out.to_path_buf()
    };
    let out = resolved.as_path();
    let dir = resolver::atomic::parent_dir(out);
    let mut tmp =
        resolver::atomic::temporary_in(dir).map_err(io_err("create a temporary file in", dir))?;
    let tpath = tmp.path().to_path_buf();
    write_runs(tmp.as_file_mut(), input, img).map_err(io_err("write", &tpath))?;
    if durable() {
        start_writeback(tmp.as_file());
    }
    // SAFETY: the temporary file was created by us (O_EXCL, mode 0600) and nothing
    // else writes it before the rename below.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .len(img.len() as usize)
            .map(tmp.as_file())
    }
    .map_err(io_err("map", &tpath))?;
    verify_edit(elf.data, &map)?;
    // An edit in place keeps the file's owner, as would an existing --output file; a new
    // --output file is the caller's. Either way it takes the input's mode, as patchelf's.
    let existing;
    let owner_of = if out_is_input {
        Some(&input.metadata)
    } else {
        existing = fs::metadata(out).ok();
        existing.as_ref()
    };
    install(tmp, owner_of, Some(input.metadata.permissions()), out).map_err(|e| {
        Error::Io(format!(
            "cannot install {} as {}: {e}",
            tpath.display(),
            out.display()
        ))
    })?;
    Ok(true)
}

/// True when `path` names something other than a regular file or a directory (a
/// character device such as `/dev/null`, a FIFO, a socket): such an output is written
/// into, never replaced by a renamed file.
fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// Writes the verified output of `img` into the special file `out` (`--output /dev/null`,
/// a pipe), as patchelf does: opened for writing, neither truncated nor renamed over, its
/// owner and mode left alone.
fn write_special(elf: &Elf, img: &Image, out: &Path) -> Result<()> {
    let bytes = img.materialize(elf.data);
    verify_edit(elf.data, &bytes)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(out)
        .map_err(io_err("open", out))?;
    f.write_all(&bytes).map_err(io_err("write", out))
}

/// Gives `f` the owner and group of `like`, as an edit in place keeps them, where the
/// process may give files away (as root); elsewhere the new file stays the editor's, as a
/// copy would.
fn take_owner(f: &fs::File, like: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let own = f.metadata()?;
    let uid = (own.uid() != like.uid()).then_some(like.uid());
    let gid = (own.gid() != like.gid()).then_some(like.gid());
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    match std::os::unix::fs::fchown(f, uid, gid) {
        // Not allowed to give the file away: try the group alone (a member may).
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && gid.is_some() => {
            let _ = std::os::unix::fs::fchown(f, None, gid);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}

/// Starts writing `f`'s dirty pages to disk without waiting, so that the disk works
/// while the output is verified; the `fdatasync` after it then waits for less. Only a
/// hint: an error is left to that `fdatasync` to report.
fn start_writeback(f: &fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range reads only its integer arguments, and the descriptor stays
    // open for the call.
    unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Zero runs shorter than this are written as bytes; a page or more is left as a hole.
const HOLE_MIN: usize = 4096;
static ZEROS: [u8; HOLE_MIN] = [0; HOLE_MIN];

/// Input runs at least this long are copied by the kernel, file to file.
const COPY_MIN: usize = 1 << 20;

/// Writes the output of `img` over `input` to the empty file `f`: consecutive pieces in
/// one vectored write, long runs of the input copied file to file (shared, not copied, on
/// filesystems with reflinks), long zero runs left as holes.
fn write_runs(f: &mut fs::File, input: &Input, img: &Image) -> io::Result<()> {
    let mut batch: Vec<IoSlice> = Vec::new();
    let mut hole_at_end = false;
    for run in img.runs(input) {
        hole_at_end = false;
        match run {
            Run::Input(r) if r.len() >= COPY_MIN => {
                write_all_vectored(f, &mut batch)?;
                let copied = copy_range(&input.file, r.start as u64, r.len(), f)?;
                // What the kernel did not copy (an empty slice would make the next
                // vectored write return 0, which reads as a full disk).
                if r.start + copied < r.end {
                    batch.push(IoSlice::new(&input[r.start + copied..r.end]));
                }
            }
            Run::Input(r) => batch.push(IoSlice::new(&input[r])),
            Run::Bytes(b) => batch.push(IoSlice::new(b)),
            Run::Zeros(n) if n < HOLE_MIN as u64 => batch.push(IoSlice::new(&ZEROS[..n as usize])),
            Run::Zeros(n) => {
                write_all_vectored(f, &mut batch)?;
                f.seek(SeekFrom::Current(n as i64))?;
                hole_at_end = true;
            }
        }
    }
    write_all_vectored(f, &mut batch)?;
    if hole_at_end {
        f.set_len(img.len())?;
    }
    Ok(())
}

/// Copies up to `len` bytes of `from` at offset `at` to `to`'s position with
/// `copy_file_range`, and returns how many were copied: fewer (none, say, across
/// filesystems or where the call is missing) leaves the rest to the caller.
fn copy_range(from: &fs::File, at: u64, len: usize, to: &mut fs::File) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut off = i64::try_from(at).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut done = 0;
    while done < len {
        // SAFETY: both descriptors are open; `off` outlives the call, which updates it;
        // the output offset is the file position (a null pointer).
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off,
                to.as_raw_fd(),
                std::ptr::null_mut(),
                len - done,
                0,
            )
        };
        match n {
            0 => break,
            n if n > 0 => done += n as usize,
            _ => match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::Interrupted => {}
                e if done == 0
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
                    ) =>
                {
                    break
                }
                e => return Err(e),
            },
        }
    }
    Ok(done)
}

/// Writes all of `slices` (emptied on return), as few system calls as the kernel allows.
fn write_all_vectored(f: &mut fs::File, slices: &mut Vec<IoSlice>) -> io::Result<()> {
    /// `IOV_MAX` on Linux.
    const MAX_SLICES: usize = 1024;
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = rest.len().min(MAX_SLICES);
        match f.write_vectored(&rest[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut rest, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    slices.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long input run the kernel copies whole, then a hole, then bytes: no empty slice
    /// reaches a vectored write (which returned 0, read as "write zero").
    #[test]
    fn copied_run_then_hole_then_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("in");
        let data: Vec<u8> = (0..COPY_MIN + 100).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).expect("write");
        let input = read_file(&src).expect("read");
        let len = data.len() as u64 + 2 * HOLE_MIN as u64 + 4;
        let img = Image {
            base_len: data.len() as u64,
            len,
            writes: vec![(len - 4, b"tail".to_vec())],
        };
        let mut out = tempfile::tempfile().expect("tempfile");
        write_runs(&mut out, &input, &img).expect("write_runs");
        let mut got = Vec::new();
        out.seek(SeekFrom::Start(0)).expect("seek");
        io::Read::read_to_end(&mut out, &mut got).expect("read back");
        assert_eq!(got, img.materialize(&input));
    }
}
