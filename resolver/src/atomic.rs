//! Durable, atomic file replacement: write a temporary file in the destination's
//! directory, fsync it, rename it over the destination, fsync the directory. A reader sees
//! the old file or the new one, never a mixture, and after a crash the rename either
//! happened completely or not at all.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `dest` with `bytes`, giving it `permissions` (or leaving the temporary file's
/// default mode when `None`), durably: when this returns, the new contents survive a crash.
pub fn replace_file(dest: &Path, bytes: &[u8], permissions: Option<Permissions>) -> io::Result<()> {
    rename_into_place(dest, bytes, permissions, true)
}

/// Replaces `dest` atomically but without waiting for the disk: for writers of many files
/// (a converted tree) that make them durable together with one [`sync_filesystem`].
pub fn replace_file_unsynced(
    dest: &Path,
    bytes: &[u8],
    permissions: Option<Permissions>,
) -> io::Result<()> {
    rename_into_place(dest, bytes, permissions, false)
}

fn rename_into_place(
    dest: &Path,
    bytes: &[u8],
    permissions: Option<Permissions>,
    sync: bool,
) -> io::Result<()> {
    let dir = parent_dir(dest);
    let mut tmp = temporary_in(dir)?;
    tmp.write_all(bytes)?;
    if let Some(p) = permissions {
        tmp.as_file().set_permissions(p)?;
    }
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(dest).map_err(|e| e.error)?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Flushes the whole filesystem that holds `path` to disk (`syncfs`).
pub fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    rustix::fs::syncfs(&dir).map_err(io::Error::from)
}

/// Fsyncs a directory, making renames and creations inside it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory that holds `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates a temporary file in `dir`, named `.tmp-<pid>-<random>` so that the files of a
/// writer killed before its rename can be told from those of a live one
/// ([`remove_orphaned_temporaries`]). Removed when dropped unless persisted.
pub fn temporary_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    let prefix = temporary_prefix();
    tempfile::Builder::new().prefix(&prefix).tempfile_in(dir)
}

/// The prefix of this process's temporary names (see [`temporary_in`]).
fn temporary_prefix() -> String {
    format!(".tmp-{}-", std::process::id())
}

/// Makes `dest` a hard link of `existing`, atomically: the link is made under a temporary
/// name in `dest`'s directory and renamed over `dest`. Fails (leaving `dest` as it was)
/// when the two are on different filesystems, or the filesystem has no hard links.
pub fn replace_with_link(existing: &Path, dest: &Path) -> io::Result<()> {
    install(dest, |name| fs::hard_link(existing, name))
}

/// Makes `dest` a symbolic link to `target`, atomically (made under a temporary name in
/// `dest`'s directory, renamed over `dest`).
pub fn replace_with_symlink(target: &Path, dest: &Path) -> io::Result<()> {
    install(dest, |name| std::os::unix::fs::symlink(target, name))
}

/// Makes a directory entry with `make` under a temporary name beside `dest` and renames
/// it over `dest`.
fn install(dest: &Path, make: impl Fn(&Path) -> io::Result<()>) -> io::Result<()> {
    let prefix = temporary_prefix();
    let made = tempfile::Builder::new()
        .prefix(&prefix)
        .make_in(parent_dir(dest), make)?;
    made.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Removes the temporary files in `dir` whose writer process no longer exists (see
/// [`temporary_in`]): safe without a lock, as the files of live writers stay. Returns how
/// many were removed.
pub fn remove_orphaned_temporaries(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(".tmp-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        if rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH) {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                // Another cleaner was first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Removes the temporary files (`.tmp-*`) a killed writer left in `dir`. Only call it
/// while holding the lock that every writer of `dir` takes.
pub fn remove_stale_temporaries(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().as_encoded_bytes().starts_with(b".tmp-") {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
