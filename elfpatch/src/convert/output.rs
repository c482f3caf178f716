//! What a conversion writes where: the plan of outputs for the PATHs given (programs, and
//! trees copied whole with their ELF files converted), and the writing itself (atomic,
//! modes kept, unchanged files left alone so converting twice changes nothing).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::elf::{Class, Elf};

/// One thing to produce.
#[derive(Clone, Debug)]
pub enum Output {
    /// A dynamically linked ELF file, converted.
    Elf {
        source: PathBuf,
        dest: PathBuf,
        /// `e_machine` and whether it is 64-bit.
        ident: (u16, bool),
    },
    /// A file copied as it is (not ELF, or a static ELF file). `refused` says why an ELF
    /// file that looked convertible was not (it is reported).
    Copy {
        source: PathBuf,
        dest: PathBuf,
        refused: Option<String>,
    },
    /// A symbolic link recreated with the same target.
    Symlink {
        source: PathBuf,
        target: PathBuf,
        dest: PathBuf,
    },
    /// A directory of a tree.
    Dir { source: PathBuf, dest: PathBuf },
}

impl Output {
    /// The file, link or directory this output is made from, and where it goes.
    pub fn source_and_dest(&self) -> (&Path, &Path) {
        match self {
            Output::Elf { source, dest, .. }
            | Output::Copy { source, dest, .. }
            | Output::Symlink { source, dest, .. }
            | Output::Dir { source, dest } => (source, dest),
        }
    }
}

/// The plan of a conversion: what to write, and what was decided on the way.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The outputs, each tree's in walk order (a directory before its contents).
    pub outputs: Vec<Output>,
    /// Symbolic links of trees replaced by the programs they name outside the tree.
    pub notes: Vec<String>,
}

/// Classifies a regular file: an ELF file to convert, or one to copy.
fn classify(source: &Path, dest: PathBuf, strict: bool) -> Result<Output> {
    let mut magic = [0u8; 4];
    let is_elf = fs::File::open(source)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"\x7fELF";
    if !is_elf {
        if strict {
            bail!("{} is not an ELF file", source.display());
        }
        return Ok(Output::Copy {
            source: source.to_path_buf(),
            dest,
            refused: None,
        });
    }
    let bytes = fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    match Elf::parse(&bytes) {
        // A shared object with no needs of its own is still an ELF output: another one
        // may need it, and must then find it at its place in the tree.
        Ok(elf)
            if elf.is_dynamic()
                && (elf.interpreter().is_some()
                    || !elf.needed().is_empty()
                    || elf.soname().is_some()
                    || !strict) =>
        {
            Ok(Output::Elf {
                source: source.to_path_buf(),
                dest,
                ident: (elf.machine(), elf.class() == Class::Elf64),
            })
        }
        Ok(_) if strict => bail!(
            "{} is not dynamically linked: there is nothing to convert",
            source.display()
        ),
        Ok(_) => Ok(Output::Copy {
            source: source.to_path_buf(),
            dest,
            refused: None,
        }),
        Err(e) if strict => Err(e).with_context(|| format!("{}", source.display())),
        // Inside a tree such a file is copied as it is, and the reason is reported.
        Err(e) => Ok(Output::Copy {
            source: source.to_path_buf(),
            dest,
            refused: Some(e.to_string()),
        }),
    }
}

/// The entries of a directory sorted by name, so the same tree is always walked, and so
/// converted, the same way.
pub fn sorted_entries(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .and_then(|list| list.collect::<std::io::Result<Vec<_>>>())
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Walks the tree `root` from `source` (a directory in it) to `dest`.
fn walk(root: &Path, source: &Path, dest: &Path, plan: &mut Plan) -> Result<()> {
    plan.outputs.push(Output::Dir {
        source: source.to_path_buf(),
        dest: dest.to_path_buf(),
    });
    for entry in sorted_entries(source)? {
        let path = entry.path();
        let to = dest.join(entry.file_name());
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if kind.is_symlink() {
            if let Some(program) = program_outside(root, &path)? {
                plan.notes.push(format!(
                    "{} is a symbolic link to the program {}, outside the tree: replaced by that program, converted, so that what the tree holds can be loaded",
                    path.display(),
                    program.display()
                ));
                plan.outputs.push(classify(&program, to, false)?);
                continue;
            }
            let target = fs::read_link(&path)
                .with_context(|| format!("cannot read link {}", path.display()))?;
            plan.outputs.push(Output::Symlink {
                source: path,
                target,
                dest: to,
            });
        } else if kind.is_dir() {
            walk(root, &path, &to, plan)?;
        } else if kind.is_file() {
            plan.outputs.push(classify(&path, to, false)?);
        }
        // Sockets, fifos and devices have no place in a store.
    }
    Ok(())
}

/// The program a symbolic link of the tree `root` names, when it lies outside the tree
/// (a venv's `bin/python3` → `/usr/bin/python3.11`): a dynamically linked ELF program.
fn program_outside(root: &Path, link: &Path) -> Result<Option<PathBuf>> {
    let Ok(target) = link.canonicalize() else {
        return Ok(None); // A dangling link is recreated as it is.
    };
    if target.starts_with(root) || !target.is_file() {
        return Ok(None);
    }
    let Ok(bytes) = fs::File::open(&target).and_then(|f| resolver::hash::map_file(&f)) else {
        return Ok(None);
    };
    Ok(match Elf::parse(&bytes) {
        Ok(elf) if elf.is_dynamic() && elf.interpreter().is_some() && elf.soname().is_none() => {
            Some(target)
        }
        _ => None,
    })
}

/// Where the input `path` (a program or a tree) lands: `out_dir/<its file name>`.
pub fn destination(path: &Path, out_dir: &Path) -> Result<PathBuf> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let name = absolute
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    Ok(out_dir.join(name))
}

/// The outputs for `paths`: a file lands at `out_dir/<its name>`, a tree at
/// `out_dir/<its name>/...`. An output that would overwrite its input (or lie inside it)
/// is refused, but for a converted program converted again where it lies (nothing
/// changes).
pub fn plan_outputs(paths: &[PathBuf], out_dir: &Path) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut names = std::collections::BTreeSet::new();
    for path in paths {
        let dest = destination(path, out_dir)?;
        // `$ORIGIN` is a directory: a relative input (`prog`) must not give an empty one.
        let path = &std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        if !names.insert(dest.clone()) {
            bail!(
                "two inputs are named {}: they would land at the same place ({})",
                dest.file_name().unwrap_or_default().to_string_lossy(),
                dest.display()
            );
        }
        let meta = fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?;
        let source = path
            .canonicalize()
            .with_context(|| format!("cannot open {}", path.display()))?;
        let landing = dest.canonicalize().unwrap_or_else(|_| dest.clone());
        if meta.is_dir() {
            // Converting a tree into itself would walk its own output.
            if out_dir.starts_with(&source) || source.starts_with(&landing) {
                bail!(
                    "{} and its output {} overlap: the conversion would overwrite its input; convert it to a directory outside it (--out)",
                    path.display(),
                    dest.display()
                );
            }
            walk(&source, path, &dest, &mut plan)?;
        } else {
            if landing == source && !is_converted(&source) {
                bail!(
                    "{} would be overwritten by its own conversion: choose another --out",
                    path.display()
                );
            }
            plan.outputs.push(classify(path, dest, true)?);
        }
    }
    Ok(plan)
}

/// Whether the ELF file at `path` already is a converted program (it records its loader).
fn is_converted(path: &Path) -> bool {
    fs::read(path).is_ok_and(|bytes| {
        Elf::parse(&bytes)
            .is_ok_and(|elf| elf.dynamic_string(crate::elf::DT_LDCAS_LOADER).is_some())
    })
}

/// Gives every output the modification and access times of its source, a directory's
/// after its contents are written (so a converted Python prefix's `.pyc` files stay
/// valid). Symbolic links get their own times, not their targets'.
pub fn keep_times(outputs: &[Output]) -> Result<()> {
    for output in outputs.iter().rev() {
        let (source, dest) = output.source_and_dest();
        copy_times(source, dest)
            .with_context(|| format!("cannot set the times of {}", dest.display()))?;
    }
    Ok(())
}

/// Sets `dest`'s access and modification times to `source`'s, without following a
/// symbolic link at either.
fn copy_times(source: &Path, dest: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(source)?;
    let times = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    let path = std::ffi::CString::new(dest.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `path` is a NUL-terminated string and `times` an array of two timespecs,
    // both alive for the call; utimensat reads nothing else.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Removes, from the directories the outputs go to, the temporary files that killed
/// writers left there (those of live writers stay). Returns how many were removed.
pub fn remove_orphaned_temporaries(outputs: &[Output], out_dir: &Path) -> Result<usize> {
    let mut dirs = std::collections::BTreeSet::new();
    dirs.insert(out_dir.to_path_buf());
    for o in outputs {
        match o {
            Output::Dir { dest, .. } => dirs.insert(dest.clone()),
            Output::Elf { dest, .. } | Output::Copy { dest, .. } | Output::Symlink { dest, .. } => {
                dirs.insert(dest.parent().unwrap_or(out_dir).to_path_buf())
            }
        };
    }
    let mut removed = 0;
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        removed += resolver::atomic::remove_orphaned_temporaries(dir)
            .with_context(|| format!("cannot clean up {}", dir.display()))?;
    }
    Ok(removed)
}

/// How a program at `dest` names the store: relative to its own directory when it lies
/// inside the store (so moving the store keeps it true), else the store's absolute path.
pub fn store_reference(dest: &Path, store_root: &Path) -> String {
    let dir = dest.parent().unwrap_or(dest);
    match dir.strip_prefix(store_root) {
        Ok(inside) => {
            let depth = inside.components().count();
            if depth == 0 {
                ".".into()
            } else {
                vec![".."; depth].join("/")
            }
        }
        Err(_) => store_root.to_string_lossy().into_owned(),
    }
}

/// Writes `bytes` to `dest` with `source`'s mode, atomically; a `dest` that already has
/// these bytes is left alone. Returns the bytes written.
pub fn write_file(source: &Path, dest: &Path, bytes: &[u8]) -> Result<u64> {
    write_file_keeping(source, dest, bytes, 0o7777)
}

/// [`write_file`], keeping only the bits `keep` of `source`'s mode (a converted copy of a
/// library is read-only: `0o555`).
pub fn write_file_keeping(source: &Path, dest: &Path, bytes: &[u8], keep: u32) -> Result<u64> {
    if fs::read(dest).ok().as_deref() == Some(bytes) {
        return Ok(0);
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mode = fs::metadata(source)
        .with_context(|| format!("cannot stat {}", source.display()))?
        .permissions()
        .mode();
    // Keep the file writable by its owner while it is replaced later (relocate, a second
    // conversion); the other bits are the source's. The conversion syncs the filesystem
    // once at the end rather than each of a tree's files.
    let perms = fs::Permissions::from_mode((mode & keep) | 0o200);
    resolver::atomic::replace_file_unsynced(dest, bytes, Some(perms))
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(bytes.len() as u64)
}

/// Writes `bytes` to `dest` as [`write_file`] does, or, given `like` (a file that already
/// has these bytes: the output written from a hard link of the same source, or the one
/// file of this content in the store), makes `dest` a hard link of it, or a symbolic link
/// to it where hard links cannot cross filesystems: one content, one inode. Returns the
/// bytes written.
pub fn write_or_link(source: &Path, dest: &Path, bytes: &[u8], like: Option<&Path>) -> Result<u64> {
    let Some(first) = like else {
        return write_file(source, dest, bytes);
    };
    if link_like(first, dest)? {
        return Ok(0);
    }
    let target = std::path::absolute(first)
        .with_context(|| format!("cannot resolve {}", first.display()))?;
    match resolver::atomic::replace_with_symlink(&target, dest) {
        Ok(()) => Ok(0),
        Err(_) => write_file(source, dest, bytes),
    }
}

/// Makes `dest` a hard link of `first` (atomically); false when the filesystem refuses.
fn link_like(first: &Path, dest: &Path) -> Result<bool> {
    if same_file(first, dest) {
        return Ok(true);
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(resolver::atomic::replace_with_link(first, dest).is_ok())
}

/// Whether two paths name the same file.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The identity (device, inode) of a source file that has other hard links.
fn linked_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path)
        .ok()
        .filter(|m| m.nlink() > 1)
        .map(|m| (m.dev(), m.ino()))
}

/// Creates the directories, copies the plain files and recreates the symlinks of the plan;
/// plain files that are hard links of each other become hard links of each other again.
/// Returns how many files and links were copied.
pub fn copy_others(outputs: &[Output]) -> Result<usize> {
    use rayon::prelude::*;
    for output in outputs {
        if let Output::Dir { dest, .. } = output {
            fs::create_dir_all(dest)
                .with_context(|| format!("cannot create {}", dest.display()))?;
        }
    }
    // Hard links of one file go to one worker, in plan order.
    let mut groups: Vec<Vec<&Output>> = Vec::new();
    let mut group_of: std::collections::HashMap<(u64, u64), usize> = Default::default();
    for output in outputs {
        let identity = match output {
            Output::Copy { source, .. } => linked_identity(source),
            _ => None,
        };
        match identity.and_then(|id| group_of.get(&id).copied()) {
            Some(g) => groups[g].push(output),
            None => {
                if let Some(id) = identity {
                    group_of.insert(id, groups.len());
                }
                groups.push(vec![output]);
            }
        }
    }
    let copied = groups
        .par_iter()
        .map(|group| {
            let mut first: Option<&Path> = None;
            let mut copied = 0;
            for output in group {
                copied += usize::from(copy_one(output, first)?);
                if let Output::Copy { dest, .. } = output {
                    first.get_or_insert(dest.as_path());
                }
            }
            Ok(copied)
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok(copied.into_iter().sum())
}

/// Copies one plain file (or links it to `like`, see [`write_or_link`]) or recreates one
/// link of the plan; true when it was one.
fn copy_one(output: &Output, like: Option<&Path>) -> Result<bool> {
    match output {
        Output::Copy { source, dest, .. } => {
            if let Some(first) = like {
                if link_like(first, dest)? {
                    return Ok(true);
                }
            }
            let bytes =
                fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
            write_file(source, dest, &bytes)?;
            Ok(true)
        }
        Output::Symlink { target, dest, .. } => {
            if fs::read_link(dest).ok().as_ref() != Some(target) {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                let _ = fs::remove_file(dest);
                std::os::unix::fs::symlink(target, dest)
                    .with_context(|| format!("cannot create the link {}", dest.display()))?;
            }
            Ok(true)
        }
        Output::Dir { .. } | Output::Elf { .. } => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_reference_is_relative_inside_the_store() {
        let root = Path::new("/s/store");
        assert_eq!(store_reference(Path::new("/s/store/bin/curl"), root), "..");
        assert_eq!(
            store_reference(Path::new("/s/store/bin/py/bin/python3"), root),
            "../../.."
        );
        assert_eq!(store_reference(Path::new("/s/store/prog"), root), ".");
        assert_eq!(
            store_reference(Path::new("/elsewhere/bin/curl"), root),
            "/s/store"
        );
    }
}
