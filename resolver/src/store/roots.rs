//! Registered garbage-collection roots: programs and trees converted to places outside
//! `STORE/bin`, each named by a symbolic link `STORE/roots/<id>-<name>` to its absolute
//! path. A collection keeps what they refer to for as long as they exist; a link whose
//! target is gone (the program was deleted or moved) is stale, and the collection removes
//! it together with what only that program needed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::batch::{Batch, Committed};
use super::{io_error, StoreError};
use crate::atomic;
use crate::hash::hash_bytes;

/// Directory of the registered roots inside a store.
pub const ROOTS_DIR: &str = "roots";

/// One registered root.
#[derive(Clone, Debug)]
pub struct RegisteredRoot {
    /// The link in `STORE/roots`.
    pub link: PathBuf,
    /// The program or tree it names.
    pub target: PathBuf,
    /// Whether the target still exists.
    pub live: bool,
}

impl Committed<'_> {
    /// Registers `target`, an absolute path, as a root: the same path always gets the same
    /// link, so registering it again changes nothing.
    pub fn add_root(&self, target: &Path) -> Result<PathBuf, StoreError> {
        register(self.store, target)
    }
}

impl Batch<'_> {
    /// Registers `target` as [`Committed::add_root`] does, before the batch is committed:
    /// the table may then list libraries of a tree outside the store through the link.
    pub fn add_root(&self, target: &Path) -> Result<PathBuf, StoreError> {
        register(self.store(), target)
    }
}

/// Registers `target` as a root of `store`; the caller holds the writers' lock.
fn register(store: &super::Store, target: &Path) -> Result<PathBuf, StoreError> {
    let dir = store.root.join(ROOTS_DIR);
    fs::create_dir_all(&dir).map_err(io_error(&dir, "cannot create"))?;
    let id = hash_bytes(target.as_os_str().as_encoded_bytes()).to_hex_bytes();
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let link = dir.join(super::hinted_name(
        &String::from_utf8_lossy(&id[..16]),
        &name,
    ));
    if fs::read_link(&link).is_ok_and(|t| t == target) {
        return Ok(link);
    }
    atomic::replace_with_symlink(target, &link)
        .and_then(|()| atomic::sync_dir(&dir))
        .map_err(io_error(&link, "cannot register the root"))?;
    Ok(link)
}

impl super::Store {
    /// The registered roots, sorted by link name.
    pub fn registered_roots(&self) -> Result<Vec<RegisteredRoot>, StoreError> {
        let dir = self.root.join(ROOTS_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, "cannot read")(e)),
        };
        let mut roots = Vec::new();
        for entry in entries {
            let link = entry.map_err(io_error(&dir, "cannot read"))?.path();
            // Temporary links of a writer, and anything that is not a link, are not roots.
            let Ok(target) = fs::read_link(&link) else {
                continue;
            };
            if link
                .file_name()
                .is_some_and(|n| n.as_encoded_bytes().starts_with(b".tmp-"))
            {
                continue;
            }
            // Only a target that is gone makes a root stale; one that cannot be looked at
            // (a permission, an I/O error) must not let a collection delete what it needs.
            let live = match fs::metadata(&link) {
                Ok(_) => true,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    false
                }
                Err(e) => return Err(io_error(&link, "cannot check the registered root")(e)),
            };
            roots.push(RegisteredRoot { link, target, live });
        }
        roots.sort_by(|a, b| a.link.cmp(&b.link));
        Ok(roots)
    }
}
