//! The index beside a lookup table: `index/uri:blake3:<hex>`, one relative symbolic link
//! per table entry to the object's file, and `index/glibc-hwcaps/x86-64-v{2,3,4}`, links
//! back to the index itself.
//!
//! ld.so finds `uri:` names there by its own search (ld-cas puts the index first in a
//! converted program's `DT_RPATH`; see `docs/ld-cas.md`): glibc probes the `glibc-hwcaps`
//! subdirectory of the highest level the CPU supports first, so that first probe is the
//! entry, and no look-up fails. The index is derived from the table: it is rewritten under
//! the writers' lock each time the table is replaced (new entries first, stale ones after),
//! its links are relative (the store can move), and [`Store::verify`](super::Store::verify)
//! checks it against the table.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, DirBuilderExt};
use std::path::{Component, Path, PathBuf};

use crate::atomic;
use crate::table::write::NewEntry;
use crate::uri::URI_PREFIX;

/// Directory of the index, beside the table.
pub const INDEX_DIR: &str = "index";
/// The glibc-hwcaps subdirectories glibc 2.33+ probes on x86_64, each a link to `..`.
pub const HWCAPS: [&str; 3] = ["x86-64-v2", "x86-64-v3", "x86-64-v4"];

/// One link the index should hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The link's name: the URI.
    pub name: OsString,
    /// Its target, relative to the index directory.
    pub target: PathBuf,
}

/// How the index differs from what the table says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexDiff {
    /// Entries missing or pointing elsewhere.
    pub wrong: Vec<IndexEntry>,
    /// Names the table does not list.
    pub stale: Vec<OsString>,
    /// Whether the `glibc-hwcaps` links are missing or wrong.
    pub hwcaps: bool,
    /// Temporary links (`.tmp-NAME`, relative to the index directory) that a writer killed
    /// between making and renaming one left behind. Only a writer holding the writers'
    /// lock makes them, so to the holder they are all leftovers; [`sync`] removes them.
    pub temporaries: Vec<PathBuf>,
}

impl IndexDiff {
    /// Whether the index matches the table and holds nothing else.
    pub fn is_empty(&self) -> bool {
        self.wrong.is_empty()
            && self.stale.is_empty()
            && !self.hwcaps
            && self.temporaries.is_empty()
    }
}

/// The name of the temporary link [`replace_link`] makes for `name`.
fn temporary_name(name: &OsStr) -> OsString {
    let mut tmp = TEMPORARY_PREFIX.to_vec();
    tmp.extend_from_slice(name.as_bytes());
    OsString::from_vec(tmp)
}

/// How [`temporary_name`]s start.
const TEMPORARY_PREFIX: &[u8] = b".tmp-";

/// The temporary links in `dir`, as paths relative to the index directory under `under`.
fn temporaries_in(dir: &Path, under: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let name = e?.file_name();
                if name.as_bytes().starts_with(TEMPORARY_PREFIX) {
                    out.push(under.join(name));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// The link target, relative to `TABLE_DIR/index`, of an object at `path` (relative to
/// the store root), for a table in `table_dir` (relative to the store root; empty: the
/// root).
pub fn link_target(table_dir: &Path, path: &[u8]) -> PathBuf {
    let depth = table_dir
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let mut target = PathBuf::new();
    for _ in 0..=depth {
        target.push("..");
    }
    target.push(Path::new(OsStr::from_bytes(path)));
    target
}

/// What the index of a table listing `entries` holds.
pub fn wanted(table_dir: &Path, entries: &[NewEntry]) -> Vec<IndexEntry> {
    entries
        .iter()
        .map(|e| IndexEntry {
            name: OsString::from(e.hash.to_string()),
            target: link_target(table_dir, &e.path),
        })
        .collect()
}

/// Compares the index directory `dir` with `want`.
pub fn diff(dir: &Path, want: &[IndexEntry]) -> io::Result<IndexDiff> {
    let mut have: HashMap<OsString, Option<PathBuf>> = HashMap::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e?;
                let name = e.file_name();
                if name.as_bytes().starts_with(URI_PREFIX) {
                    have.insert(name, fs::read_link(e.path()).ok());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut out = IndexDiff::default();
    for w in want {
        match have.remove(&w.name) {
            Some(Some(t)) if t == w.target => {}
            _ => out.wrong.push(w.clone()),
        }
    }
    let mut stale: Vec<OsString> = have.into_keys().collect();
    stale.sort();
    out.stale = stale;
    out.hwcaps = HWCAPS.iter().any(|level| {
        fs::read_link(dir.join("glibc-hwcaps").join(level)).ok() != Some(PathBuf::from(".."))
    });
    out.temporaries = temporaries_in(dir, Path::new(""))?;
    out.temporaries.extend(temporaries_in(
        &dir.join("glibc-hwcaps"),
        Path::new("glibc-hwcaps"),
    )?);
    Ok(out)
}

/// Brings the index directory `dir` in line with `want`: missing and wrong links are
/// (re)made by a rename over them, stale ones removed, then the directory is synced.
pub fn sync(dir: &Path, want: &[IndexEntry]) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir.join("glibc-hwcaps"))?;
    let d = diff(dir, want)?;
    if d.is_empty() {
        return Ok(());
    }
    if d.hwcaps {
        for level in HWCAPS {
            replace_link(
                &dir.join("glibc-hwcaps"),
                OsStr::new(level),
                Path::new(".."),
            )?;
        }
        atomic::sync_dir(&dir.join("glibc-hwcaps"))?;
    }
    for w in &d.wrong {
        replace_link(dir, &w.name, &w.target)?;
    }
    for name in &d.stale {
        remove_if_there(&dir.join(name))?;
    }
    for tmp in &d.temporaries {
        remove_if_there(&dir.join(tmp))?;
    }
    if d.temporaries.iter().any(|t| t.starts_with("glibc-hwcaps")) {
        atomic::sync_dir(&dir.join("glibc-hwcaps"))?;
    }
    atomic::sync_dir(dir)
}

/// Removes `path`; one already gone is fine.
fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes `dir/name` a symbolic link to `target`, atomically (a temporary link renamed over
/// whatever is there).
fn replace_link(dir: &Path, name: &OsStr, target: &Path) -> io::Result<()> {
    let tmp = dir.join(temporary_name(name));
    remove_if_there(&tmp)?;
    symlink(target, &tmp)?;
    fs::rename(&tmp, dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_climb_out_of_the_table_directory() {
        assert_eq!(
            link_target(Path::new(""), b"objects/ab/libc.so.6"),
            PathBuf::from("../objects/ab/libc.so.6")
        );
        assert_eq!(
            link_target(Path::new("x-out/lib/ld-cas"), b"y-glibc/lib/libc.so.6"),
            PathBuf::from("../../../../y-glibc/lib/libc.so.6")
        );
    }

    /// A writer killed between making a temporary link and renaming it leaves the link;
    /// the next writer's sync removes it, in the index and in `glibc-hwcaps`, and keeps
    /// what the table lists.
    #[test]
    fn sync_removes_the_temporaries_of_a_killed_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(INDEX_DIR);
        let name = OsString::from(format!("uri:blake3:{}", "ab".repeat(32)));
        let want = [IndexEntry {
            name: name.clone(),
            target: PathBuf::from("../objects/ab/libc.so.6"),
        }];
        sync(&dir, &want).unwrap();
        let killed = OsString::from(format!("uri:blake3:{}", "cd".repeat(32)));
        symlink("../objects/cd/libm.so.6", dir.join(temporary_name(&killed))).unwrap();
        let hwcaps = dir.join("glibc-hwcaps");
        symlink("..", hwcaps.join(temporary_name(OsStr::new(HWCAPS[1])))).unwrap();
        let d = diff(&dir, &want).unwrap();
        assert_eq!(d.temporaries.len(), 2, "{d:?}");
        assert!(
            d.wrong.is_empty() && d.stale.is_empty() && !d.hwcaps,
            "{d:?}"
        );
        sync(&dir, &want).unwrap();
        let left = |d: &Path| -> Vec<OsString> {
            let mut v: Vec<_> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        assert_eq!(left(&dir), vec![OsString::from("glibc-hwcaps"), name]);
        assert_eq!(left(&hwcaps).len(), HWCAPS.len());
        assert!(diff(&dir, &want).unwrap().is_empty());
    }
}
