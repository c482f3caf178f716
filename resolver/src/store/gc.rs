//! Garbage collection: removing the objects nothing refers to any more.
//!
//! Roots are files (converted programs and trees: those given by the caller and those
//! registered in `STORE/roots`); an object is live when a root or a live object refers to
//! it. References are found the way `verify` and the cycle rule find them:
//! every `uri:blake3:` name in the bytes ([`crate::refs`]), which covers `DT_NEEDED`,
//! `vn_file` and the loader a program records. Everything happens under the writers' lock:
//! the new table (without the dead entries) is made durable first, then the dead objects
//! are deleted, so a collector killed midway leaves at most unlisted files, which the next
//! collection removes.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{io_error, RegisteredRoot, Store, StoreError, OBJECTS_DIR};
use crate::hash;
use crate::refs::references;
use crate::uri::Hash;

/// What a collection removed (or, dry, would remove).
#[derive(Clone, Debug, Default)]
pub struct Collected {
    /// Listed objects no root reaches.
    pub removed: Vec<Removed>,
    /// Files in `objects/` that the table does not list (left by a killed writer or
    /// collector), besides the temporary files of live writers.
    pub unlisted: Vec<PathBuf>,
    /// Registered roots whose program or tree is gone: their links are removed (with
    /// what only they needed), or, dry, would be.
    pub stale_roots: Vec<RegisteredRoot>,
    /// Objects kept.
    pub kept: usize,
    /// Bytes freed (or to be freed).
    pub bytes: u64,
}

/// A listed object a collection removed.
#[derive(Clone, Debug)]
pub struct Removed {
    /// Its address.
    pub hash: Hash,
    /// Its absolute path.
    pub path: PathBuf,
    /// Its original soname (empty when none).
    pub soname: Vec<u8>,
    /// Its size.
    pub size: u64,
}

/// The references in the file at `path`. A file that cannot be read is an error, never
/// "no references": what it needs would be deleted.
fn file_references(path: &Path) -> Result<Vec<Hash>, StoreError> {
    let bytes = File::open(path)
        .and_then(|f| hash::map_file(&f))
        .map_err(io_error(
            path,
            "cannot read it, so the collection cannot know what it needs (nothing was removed)",
        ))?;
    Ok(references(&bytes).map(|(_, h)| h).collect())
}

impl Store {
    /// Removes every object that no file in `roots` or in the registered roots (directories
    /// are walked; symbolic links inside them are not followed) reaches through references,
    /// every unlisted file of `objects/`, and the registered roots whose target is gone.
    /// With `dry_run`, only reports what it would remove.
    pub fn collect_garbage(
        &self,
        roots: &[PathBuf],
        dry_run: bool,
    ) -> Result<Collected, StoreError> {
        let batch = self.batch()?;
        let objects_dir = self.root.join(OBJECTS_DIR);
        let (_lock, entries, generation) = batch.into_parts()?;
        let index: HashMap<Hash, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.hash, i))
            .collect();

        let mut live = vec![false; entries.len()];
        let mut queue: Vec<usize> = Vec::new();
        let reach = |hashes: Vec<Hash>, live: &mut Vec<bool>, queue: &mut Vec<usize>| {
            for h in hashes {
                if let Some(&i) = index.get(&h) {
                    if !live[i] {
                        live[i] = true;
                        queue.push(i);
                    }
                }
            }
        };
        let mut files = Vec::new();
        for root in roots {
            root_files(root, &mut files).map_err(io_error(root, "cannot read the root"))?;
        }
        let (live_roots, stale_roots): (Vec<_>, Vec<_>) =
            self.registered_roots()?.into_iter().partition(|r| r.live);
        for root in &live_roots {
            root_files(&root.target, &mut files)
                .map_err(io_error(&root.target, "cannot read the registered root"))?;
        }
        for file in &files {
            reach(file_references(file)?, &mut live, &mut queue);
        }
        while let Some(i) = queue.pop() {
            let refs = file_references(&self.absolute(&entries[i].path))?;
            reach(refs, &mut live, &mut queue);
        }

        let mut collected = Collected {
            stale_roots,
            ..Collected::default()
        };
        let mut kept = Vec::with_capacity(entries.len());
        for (e, is_live) in entries.into_iter().zip(live) {
            if is_live {
                kept.push(e);
            } else {
                collected.bytes += e.size;
                collected.removed.push(Removed {
                    hash: e.hash,
                    path: self.absolute(&e.path),
                    soname: e.soname,
                    size: e.size,
                });
            }
        }
        collected.kept = kept.len();
        // Objects are `objects/<hex>/<name>` (older stores: `objects/<hex>-<name>`); every
        // other file there is unlisted. `batch()` already removed the temporary files of
        // killed writers; those of live ones (there are none under the lock) start `.tmp-`.
        let listed: HashSet<PathBuf> = kept
            .iter()
            .map(|e| self.absolute(&e.path))
            .chain(collected.removed.iter().map(|r| r.path.clone()))
            .collect();
        unlisted_objects(&objects_dir, &listed, &mut collected.unlisted)
            .map_err(io_error(&objects_dir, "cannot read"))?;
        collected.unlisted.sort();
        if dry_run {
            return Ok(collected);
        }
        for root in &collected.stale_roots {
            match fs::remove_file(&root.link) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error(&root.link, "cannot remove the stale root")(e))
                }
                _ => {}
            }
        }
        if collected.removed.is_empty() && collected.unlisted.is_empty() {
            return Ok(collected);
        }

        // The table stops listing the dead objects before any of them disappears.
        if !collected.removed.is_empty() {
            self.write_table(&objects_dir, kept, generation + 1)?;
        }
        // Only files in `objects/` are the store's to delete: a library listed at its
        // place in a converted tree belongs to that tree, and just stops being listed.
        for path in collected
            .removed
            .iter()
            .map(|r| &r.path)
            .filter(|p| p.starts_with(&objects_dir))
            .chain(&collected.unlisted)
        {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StoreError::Io {
                        path: path.clone(),
                        action: "cannot remove",
                        source: e,
                    })
                }
            }
            let dir = crate::atomic::parent_dir(path);
            if dir != objects_dir {
                // The object's own directory goes with its last file.
                let _ = fs::remove_dir(dir);
            }
        }
        crate::atomic::sync_dir(&objects_dir).map_err(io_error(&objects_dir, "cannot sync"))?;
        Ok(collected)
    }
}

/// Adds to `out` the files of `objects_dir` (and of its per-object directories) that are
/// not in `listed` and are no writer's temporary file.
pub(super) fn unlisted_objects(
    objects_dir: &Path,
    listed: &HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let is_temporary = |name: &OsString| name.as_bytes().starts_with(b".tmp-");
    for entry in fs::read_dir(objects_dir)? {
        let entry = entry?;
        if is_temporary(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            for inner in fs::read_dir(&path)? {
                let inner = inner?;
                let inner_path = inner.path();
                if !is_temporary(&inner.file_name()) && !listed.contains(&inner_path) {
                    out.push(inner_path);
                }
            }
        } else if !listed.contains(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// The regular files at or under `root` (following `root` itself if it is a link).
fn root_files(root: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let meta = fs::metadata(root)?;
    if meta.is_file() {
        out.push(root.to_path_buf());
        return Ok(());
    }
    if !meta.is_dir() {
        return Ok(());
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    Ok(())
}
