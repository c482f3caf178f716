//! The index beside a lookup table: `index/uri:blake3:<hex>`, one entry per table entry
//! for the object's file, and links back to the index itself ([`probes`]:
//! `index/glibc-hwcaps/x86-64-v{2,3,4}`, and for aarch64 stores `index/{tls,aarch64,atomics}`).
//!
//! ld.so finds `uri:` names there by its own search (ld-cas puts the index first in a
//! converted program's `DT_RPATH`; see `docs/ld-cas.md`): glibc probes subdirectories the
//! CPU chooses first, each of which leads back to the index, so that first probe is the
//! entry, and no look-up fails. The index is derived from the table: it is rewritten under
//! the writers' lock each time the table is replaced (new entries first, stale ones after),
//! and [`Store::verify`](super::Store::verify) checks it against the table.
//!
//! A store's own objects (`objects/...`) are entered as hard links ([`Links::HardForObjects`]):
//! the entry is the object's inode, so ld.so's open of it walks no symbolic link (about
//! 2 µs less per library whose `uri:` name ld.so searches, BENCHMARKS.md), and nothing is
//! stored twice. Where the file system refuses one (another file system, a file of another
//! owner under `fs.protected_hardlinks`), and for every other entry (a file in a tree keeps
//! its home, which may be replaced), the entry is a relative symbolic link, so the store can
//! move. A copy of the store that does not keep its hard links (`cp -r`, `rsync -a` without
//! `-H`) turns each hard-linked entry into a second file of the same bytes: ld.so would
//! load it as a second library beside the object. The next write repairs it, `verify`
//! reports it, and ld-cas refuses to start a program one of whose objects has no second link
//! while its entry is a regular file (docs/ld-cas.md).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::atomic;
use crate::table::write::NewEntry;
use crate::uri::URI_PREFIX;

/// Directory of the index, beside the table.
pub use crate::layout::INDEX_DIR;

pub mod probes;
use probes::{ProbeDiff, ProbeLink, HWCAPS_DIR};

/// What the index of a table holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// One entry per table entry.
    pub entries: Vec<IndexEntry>,
    /// The links back to the index.
    pub probes: Vec<ProbeLink>,
}

/// One entry the index should hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The entry's name: the URI.
    pub name: OsString,
    /// The object's file, relative to the index directory (a symbolic link's target).
    pub target: PathBuf,
    /// Whether the entry is a hard link of the object when the file system allows it (else
    /// a symbolic link to it).
    pub hard_link: bool,
}

/// Which entries of an index are hard links of their objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// None: every entry is a symbolic link (the index of a table in a tree converted in
    /// place, whose files keep their homes).
    Symbolic,
    /// Those of the store's own objects (`objects/...`), which the store alone writes and
    /// never changes.
    HardForObjects,
}

/// How the index differs from what the table says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexDiff {
    /// Entries missing, pointing elsewhere, or a file that is not the object's (a copy).
    pub wrong: Vec<IndexEntry>,
    /// Entries that are symbolic links to the right file but could be hard links (made by
    /// an earlier version, or where a hard link was refused): fine as they are; [`sync`]
    /// tries to make them hard links.
    pub linkable: Vec<IndexEntry>,
    /// Names the table does not list.
    pub stale: Vec<OsString>,
    /// The links back to the index that are missing, wrong or not wanted.
    pub probes: ProbeDiff,
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
            && self.probes.is_empty()
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
pub fn wanted(table_dir: &Path, entries: &[NewEntry], links: Links) -> Wanted {
    Wanted {
        entries: entries
            .iter()
            .map(|e| IndexEntry {
                name: OsString::from(e.hash.to_string()),
                target: link_target(table_dir, &e.path),
                hard_link: links == Links::HardForObjects && crate::layout::is_own_object(&e.path),
            })
            .collect(),
        probes: probes::wanted(entries),
    }
}

/// What an index entry is.
enum Have {
    /// A symbolic link to this target.
    Symlink(PathBuf),
    /// A file.
    File { dev: u64, ino: u64 },
    /// Anything else, or unreadable.
    Other,
}

impl Have {
    fn of(path: &Path) -> Have {
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                fs::read_link(path).map_or(Have::Other, Have::Symlink)
            }
            Ok(m) if m.file_type().is_file() => Have::File {
                dev: m.dev(),
                ino: m.ino(),
            },
            _ => Have::Other,
        }
    }
}

/// Compares the index directory `dir` with `want`.
pub fn diff(dir: &Path, want: &Wanted) -> io::Result<IndexDiff> {
    let mut have: HashMap<OsString, Have> = HashMap::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e?;
                let name = e.file_name();
                if name.as_bytes().starts_with(URI_PREFIX) {
                    have.insert(name, Have::of(&e.path()));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut out = IndexDiff::default();
    for w in &want.entries {
        match have.remove(&w.name) {
            Some(Have::Symlink(t)) if t == w.target => {
                if w.hard_link {
                    out.linkable.push(w.clone());
                }
            }
            Some(Have::File { dev, ino })
                if w.hard_link && is_file(&dir.join(&w.target), dev, ino) => {}
            _ => out.wrong.push(w.clone()),
        }
    }
    let mut stale: Vec<OsString> = have.into_keys().collect();
    stale.sort();
    out.stale = stale;
    out.probes = probes::diff(dir, &want.probes);
    out.temporaries = temporaries_in(dir, Path::new(""))?;
    out.temporaries.extend(temporaries_in(
        &dir.join(HWCAPS_DIR),
        Path::new(HWCAPS_DIR),
    )?);
    Ok(out)
}

/// Whether `path` is the file with this device and inode.
fn is_file(path: &Path, dev: u64, ino: u64) -> bool {
    fs::metadata(path).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Brings the index directory `dir` in line with `want`: missing and wrong entries and
/// links back to the index are (re)made by a rename over them, symbolic links that can be
/// hard links made hard links (until the file system refuses one), stale entries and
/// unwanted links removed, then the directory is synced.
pub fn sync(dir: &Path, want: &Wanted) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir.join(HWCAPS_DIR))?;
    let d = diff(dir, want)?;
    if d.is_empty() && d.linkable.is_empty() {
        return Ok(());
    }
    for l in &d.probes.wrong {
        replace_link(&dir.join(l.dir), OsStr::new(l.name), Path::new(l.target))?;
    }
    for l in &d.probes.unwanted {
        probes::remove(dir, l)?;
    }
    let touched = || d.probes.wrong.iter().chain(&d.probes.unwanted);
    if touched().any(|l| l.dir == HWCAPS_DIR) {
        atomic::sync_dir(&dir.join(HWCAPS_DIR))?;
    }
    for w in &d.wrong {
        replace_entry(dir, w)?;
    }
    for w in &d.linkable {
        if !replace_by_hard_link(dir, w)? {
            break;
        }
    }
    for name in &d.stale {
        remove_if_there(&dir.join(name))?;
    }
    for tmp in &d.temporaries {
        remove_if_there(&dir.join(tmp))?;
    }
    if d.temporaries.iter().any(|t| t.starts_with(HWCAPS_DIR)) {
        atomic::sync_dir(&dir.join(HWCAPS_DIR))?;
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

/// Makes the entry `w` in `dir`: a hard link of its object when it should be one and the
/// file system allows it, else a symbolic link.
fn replace_entry(dir: &Path, w: &IndexEntry) -> io::Result<()> {
    if w.hard_link && replace_by_hard_link(dir, w)? {
        return Ok(());
    }
    replace_link(dir, &w.name, &w.target)
}

/// Makes the entry `w` in `dir` a hard link of its object, atomically (a temporary link
/// renamed over whatever is there). `false`, and nothing changed, when the file system
/// refuses the link (another file system, a file of another owner, no hard links).
fn replace_by_hard_link(dir: &Path, w: &IndexEntry) -> io::Result<bool> {
    let tmp = dir.join(temporary_name(&w.name));
    remove_if_there(&tmp)?;
    if fs::hard_link(dir.join(&w.target), &tmp).is_err() {
        return Ok(false);
    }
    fs::rename(&tmp, dir.join(&w.name))?;
    // A rename onto a link of the same file does nothing and leaves the temporary.
    remove_if_there(&tmp)?;
    Ok(true)
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
        let want = Wanted {
            entries: vec![IndexEntry {
                name: name.clone(),
                target: PathBuf::from("../objects/ab/libc.so.6"),
                hard_link: false,
            }],
            probes: probes::X86_64.to_vec(),
        };
        sync(&dir, &want).unwrap();
        let killed = OsString::from(format!("uri:blake3:{}", "cd".repeat(32)));
        symlink("../objects/cd/libm.so.6", dir.join(temporary_name(&killed))).unwrap();
        let hwcaps = dir.join("glibc-hwcaps");
        let level = OsStr::new(probes::X86_64[1].name);
        symlink("..", hwcaps.join(temporary_name(level))).unwrap();
        let d = diff(&dir, &want).unwrap();
        assert_eq!(d.temporaries.len(), 2, "{d:?}");
        assert!(
            d.wrong.is_empty() && d.stale.is_empty() && d.probes.is_empty(),
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
        assert_eq!(left(&hwcaps).len(), probes::X86_64.len());
        assert!(diff(&dir, &want).unwrap().is_empty());
    }

    /// The index of a table that lists the aarch64 ld.so leads glibc's legacy probes back to
    /// itself (`tls/aarch64/atomics/NAME` is the entry `NAME`); once the table no longer
    /// lists it, the links go.
    #[test]
    fn an_aarch64_table_leads_every_legacy_probe_back_to_the_index() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("objects/ab")).unwrap();
        fs::write(root.join("objects/ab/ld-linux-aarch64.so.1"), "ld.so").unwrap();
        let loader = NewEntry {
            hash: crate::uri::Hash([0xab; 32]),
            path: b"objects/ab/ld-linux-aarch64.so.1".to_vec(),
            soname: probes::AARCH64_LOADER.to_vec(),
            size: 5,
            kind: crate::table::Kind::Interpreter,
        };
        let dir = root.join(INDEX_DIR);
        let want = wanted(
            Path::new(""),
            std::slice::from_ref(&loader),
            Links::HardForObjects,
        );
        assert_eq!(
            want.probes.len(),
            probes::X86_64.len() + probes::AARCH64.len()
        );
        sync(&dir, &want).unwrap();
        let name = loader.hash.to_string();
        for probe in [
            "tls/aarch64/atomics",
            "tls/aarch64",
            "tls/atomics",
            "tls",
            "aarch64/atomics",
            "aarch64",
            "atomics",
            "glibc-hwcaps/x86-64-v3",
        ] {
            assert_eq!(
                fs::read(dir.join(probe).join(&name)).unwrap(),
                b"ld.so",
                "{probe}"
            );
        }
        assert!(diff(&dir, &want).unwrap().is_empty());
        // Without the aarch64 ld.so the links are unwanted, and the next sync removes them.
        let x86 = wanted(Path::new(""), &[], Links::HardForObjects);
        let d = diff(&dir, &x86).unwrap();
        assert_eq!(d.probes.unwanted, probes::AARCH64.to_vec(), "{d:?}");
        sync(&dir, &x86).unwrap();
        assert!(!dir.join("tls").exists() && !dir.join("atomics").exists());
        assert!(diff(&dir, &x86).unwrap().is_empty());
    }

    /// A store with one object (`objects/ab/libc.so.6`) and one file in a tree, the index
    /// directory, and what it should hold (`Links::HardForObjects`).
    fn store_with_an_object_and_a_tree() -> (tempfile::TempDir, PathBuf, Wanted) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for (dir, file) in [("objects/ab", "libc.so.6"), ("roots/app/lib", "libapp.so")] {
            fs::create_dir_all(root.join(dir)).unwrap();
            fs::write(root.join(dir).join(file), file).unwrap();
        }
        let entry = |hex: &str, path: &str| NewEntry {
            hash: crate::uri::Hash::parse_hex(hex.repeat(32).as_bytes()).unwrap(),
            path: path.as_bytes().to_vec(),
            soname: Vec::new(),
            size: 0,
            kind: crate::table::Kind::Library,
        };
        let entries = [
            entry("ab", "objects/ab/libc.so.6"),
            entry("cd", "roots/app/lib/libapp.so"),
        ];
        let want = wanted(Path::new(""), &entries, Links::HardForObjects);
        let dir = root.join(INDEX_DIR);
        (tmp, dir, want)
    }

    #[test]
    fn objects_are_entered_as_hard_links_and_files_in_trees_as_symbolic_links() {
        let (tmp, dir, want) = store_with_an_object_and_a_tree();
        assert_eq!(
            want.entries.iter().map(|w| w.hard_link).collect::<Vec<_>>(),
            [true, false]
        );
        let symbolic = wanted(
            Path::new(""),
            &[NewEntry {
                hash: crate::uri::Hash([0xab; 32]),
                path: b"objects/ab/libc.so.6".to_vec(),
                soname: Vec::new(),
                size: 0,
                kind: crate::table::Kind::Library,
            }],
            Links::Symbolic,
        );
        assert!(!symbolic.entries[0].hard_link);
        sync(&dir, &want).unwrap();
        let object = fs::metadata(tmp.path().join("objects/ab/libc.so.6")).unwrap();
        let entry = fs::symlink_metadata(dir.join(&want.entries[0].name)).unwrap();
        assert!(entry.file_type().is_file());
        assert_eq!((entry.dev(), entry.ino()), (object.dev(), object.ino()));
        assert_eq!(
            fs::read_link(dir.join(&want.entries[1].name)).unwrap(),
            PathBuf::from("../roots/app/lib/libapp.so")
        );
        let d = diff(&dir, &want).unwrap();
        assert!(d.is_empty() && d.linkable.is_empty(), "{d:?}");
    }

    /// A copy of the store that lost its hard links holds a second file for the object:
    /// wrong (so `verify` reports it), and the next sync links the object again.
    #[test]
    fn a_copy_in_place_of_a_hard_link_is_wrong_and_linked_again() {
        let (tmp, dir, want) = store_with_an_object_and_a_tree();
        sync(&dir, &want).unwrap();
        let at = dir.join(&want.entries[0].name);
        fs::remove_file(&at).unwrap();
        fs::copy(tmp.path().join("objects/ab/libc.so.6"), &at).unwrap();
        assert_eq!(
            diff(&dir, &want).unwrap().wrong,
            vec![want.entries[0].clone()]
        );
        sync(&dir, &want).unwrap();
        let object = fs::metadata(tmp.path().join("objects/ab/libc.so.6")).unwrap();
        assert_eq!(fs::metadata(&at).unwrap().ino(), object.ino());
        assert!(diff(&dir, &want).unwrap().is_empty());
    }

    /// An index made by an earlier version (symbolic links) is right as it is, and the next
    /// sync makes its objects' entries hard links; an entry whose link is refused stays a
    /// symbolic link.
    #[test]
    fn symbolic_links_of_objects_are_made_hard_links_where_the_file_system_allows() {
        let (tmp, dir, mut want) = store_with_an_object_and_a_tree();
        fs::create_dir_all(&dir).unwrap();
        for w in &want.entries {
            symlink(&w.target, dir.join(&w.name)).unwrap();
        }
        let d = diff(&dir, &want).unwrap();
        assert!(d.wrong.is_empty() && d.stale.is_empty(), "{d:?}");
        assert_eq!(d.linkable, vec![want.entries[0].clone()]);
        sync(&dir, &want).unwrap();
        assert!(fs::symlink_metadata(dir.join(&want.entries[0].name))
            .unwrap()
            .file_type()
            .is_file());
        // No file to link (as when the file system refuses): a symbolic link, as before.
        want.entries[0].target = PathBuf::from("../objects/ab/missing.so");
        sync(&dir, &want).unwrap();
        assert_eq!(
            fs::read_link(dir.join(&want.entries[0].name)).unwrap(),
            want.entries[0].target
        );
        let d = diff(&dir, &want).unwrap();
        assert!(d.is_empty() && d.temporaries.is_empty(), "{d:?}");
        drop(tmp);
    }
}
