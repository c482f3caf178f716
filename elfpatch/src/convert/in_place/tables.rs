//! The lookup tables of other store paths, converted in their own builds: where a library
//! already converted is found by its URI.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use resolver::table::write::{checked_entries, NewEntry};
use resolver::table::{Table, TableError};
use resolver::uri::Hash;

use super::TABLE_DIR;
use crate::convert::nix_paths::store_path_of;

/// The tables of other store paths, read on first need: each entry with the real path of
/// its file.
#[derive(Default)]
pub struct Tables {
    read: BTreeMap<PathBuf, Vec<(NewEntry, PathBuf)>>,
}

impl Tables {
    fn of(&mut self, store_path: &Path) -> Result<&[(NewEntry, PathBuf)]> {
        if !self.read.contains_key(store_path) {
            let base = store_path.join(TABLE_DIR);
            let file = base.join(resolver::store::TABLE_FILE);
            let entries = match fs::read(&file) {
                Ok(bytes) => read_table(&bytes)
                    .with_context(|| format!("the lookup table {} is damaged", file.display()))?
                    .into_iter()
                    .map(|e| {
                        let at = base.join(OsStr::from_bytes(&e.path));
                        let real = at.canonicalize().with_context(|| {
                            format!(
                                "{} lists {} at {}, which does not exist",
                                file.display(),
                                e.hash,
                                at.display()
                            )
                        })?;
                        Ok((e, real))
                    })
                    .collect::<Result<Vec<_>>>()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
            };
            self.read.insert(store_path.to_path_buf(), entries);
        }
        Ok(&self.read[store_path])
    }

    /// The entry for `hash`, needed by the file at `near`: from the table of its store
    /// path, else from any table read so far.
    pub fn find(&mut self, hash: &Hash, near: &Path) -> Result<Option<(NewEntry, PathBuf)>> {
        if let Some(sp) = store_path_of(near) {
            if let Some(e) = self.of(&sp)?.iter().find(|(e, _)| &e.hash == hash) {
                return Ok(Some(e.clone()));
            }
        }
        Ok(self
            .read
            .values()
            .flatten()
            .find(|(e, _)| &e.hash == hash)
            .cloned())
    }
}

/// Every entry of the table `bytes`, the whole table checked.
fn read_table(bytes: &[u8]) -> Result<Vec<NewEntry>> {
    // The table reader is `no_std`: its errors are displayed, not chained.
    let damaged = |e: TableError| anyhow::anyhow!("a damaged lookup table: {e}");
    let table = Table::parse(bytes).map_err(damaged)?;
    checked_entries(&table).map_err(damaged)
}
