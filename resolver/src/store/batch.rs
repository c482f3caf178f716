//! Adding objects to a store. A [`Batch`] holds the writers' lock, copies objects in
//! (temporary file, fsync, rename) and lists everything it added in one table update when
//! committed; [`Store::add`] is a batch of one call.
//!
//! An object is durable in `objects/` before any table lists it, so a writer killed at any
//! point leaves at most unlisted objects (harmless: the next writer that adds the same
//! bytes renames a fresh copy over them) and temporary files (removed by the next writer).

use std::collections::HashMap;
use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{
    io_error, object_file_name, Added, Content, NewObject, Store, StoreError, StoreLock, TableMap,
    OBJECTS_DIR,
};
use crate::atomic;
use crate::hash;
use crate::table::write::{self as table_write, NewEntry};
use crate::uri::Hash;

/// Additions to a store under one hold of the writers' lock, listed together by
/// [`Batch::commit`]. Dropping a batch without committing lists nothing.
pub struct Batch<'s> {
    store: &'s Store,
    lock: StoreLock,
    objects_dir: PathBuf,
    /// The table as the batch found it (verified).
    table: TableMap,
    generation: u64,
    /// The entries this batch added.
    added: Vec<NewEntry>,
    /// Index into `added` by address.
    known: HashMap<Hash, usize>,
    /// Listed objects this batch moved: their new store-relative paths.
    moved: HashMap<Hash, Vec<u8>>,
}

/// A committed [`Batch`] that still holds the writers' lock, released when dropped.
pub struct Committed<'s> {
    pub(super) store: &'s Store,
    _lock: StoreLock,
}

impl Store {
    /// Copies `objects` into the store and lists them in a new table, under the writers'
    /// lock. When this returns, the objects and the table that lists them are durable.
    pub fn add(&self, objects: &[NewObject<'_>]) -> Result<Vec<Added>, StoreError> {
        let mut batch = self.batch()?;
        let added = batch.put(objects)?;
        batch.commit()?;
        Ok(added)
    }

    /// Takes the writers' lock (waiting for other writers), removes what killed writers
    /// left behind, and reads the current table, to add objects in several steps with a
    /// single table update at the end: a whole conversion costs one table write, not one
    /// per level of its dependency graph (a 1M-entry table takes most of a second to
    /// write, even though the old entries are copied, not rebuilt).
    pub fn batch(&self) -> Result<Batch<'_>, StoreError> {
        let lock = self.lock()?;
        let objects_dir = self.root.join(OBJECTS_DIR);
        fs::create_dir_all(&objects_dir).map_err(io_error(&objects_dir, "cannot create"))?;
        atomic::remove_stale_temporaries(&objects_dir)
            .and_then(|()| atomic::remove_stale_temporaries(&self.root))
            .map_err(io_error(&objects_dir, "cannot clean up"))?;
        let table = self.map_table()?;
        let parsed = table.table()?;
        parsed.verify().map_err(|problem| table.damaged(problem))?;
        let generation = parsed.generation();
        Ok(Batch {
            store: self,
            lock,
            objects_dir,
            table,
            generation,
            added: Vec::new(),
            known: HashMap::new(),
            moved: HashMap::new(),
        })
    }
}

impl<'s> Batch<'s> {
    /// Copies `objects` into the store; each is durable in `objects/` when this returns,
    /// and listed in the table once the batch is committed. An object the store (or this
    /// batch) already holds is reported as existing and not copied again.
    pub fn put(&mut self, objects: &[NewObject<'_>]) -> Result<Vec<Added>, StoreError> {
        let mut added = Vec::with_capacity(objects.len());
        for object in objects {
            let (hash, path, existed, size) = self.put_object(object)?;
            if !existed {
                let relative = self.store_relative(&path)?;
                self.known.insert(hash, self.added.len());
                self.added.push(NewEntry {
                    hash,
                    path: relative,
                    soname: object.soname.clone(),
                    size,
                    kind: object.kind,
                });
            }
            added.push(Added {
                hash,
                path,
                existed,
            });
        }
        Ok(added)
    }

    /// Lists every object the batch added in a new table, durably (the objects' directory
    /// is synced first). When nothing was added it writes no table, but still brings the
    /// index in line with the current one: a writer killed between replacing the table and
    /// finishing the index left it behind (links missing, temporaries left). The lock
    /// stays held until
    /// the returned [`Committed`] is dropped: what the writer does meanwhile (writing the
    /// programs that name the new objects, registering them as roots) cannot race a
    /// garbage collection, which would see the objects unreferenced.
    pub fn commit(self) -> Result<Committed<'s>, StoreError> {
        if !self.moved.is_empty() {
            let generation = self.generation;
            let store = self.store;
            let objects_dir = self.objects_dir.clone();
            let moved = self.moved.clone();
            let (lock, mut entries, _) = self.into_parts()?;
            for e in &mut entries {
                if let Some(path) = moved.get(&e.hash) {
                    e.path = path.clone();
                }
            }
            store.write_table(&objects_dir, entries, generation + 1)?;
            return Ok(Committed { store, _lock: lock });
        }
        if self.added.is_empty() {
            self.store.sync_index(&self.table.bytes)?;
        } else {
            let old = self.table.table()?;
            self.store.install_table(&self.objects_dir, || {
                table_write::extend(&old, self.added, self.generation + 1)
            })?;
        }
        Ok(Committed {
            store: self.store,
            _lock: self.lock,
        })
    }

    /// The lock, the entries and the table's generation, for a writer that replaces the
    /// table itself (garbage collection).
    pub(super) fn into_parts(self) -> Result<(StoreLock, Vec<NewEntry>, u64), StoreError> {
        let table = self.table.table()?;
        let mut entries = table
            .entries()
            .map(|e| e.map(NewEntry::from).map_err(|p| self.table.damaged(p)))
            .collect::<Result<Vec<_>, _>>()?;
        entries.extend(self.added);
        Ok((self.lock, entries, self.generation))
    }

    /// The path and size under which the store (or this batch) lists `hash`.
    fn listed(&self, hash: &Hash) -> Result<Option<(PathBuf, u64)>, StoreError> {
        if let Some(&i) = self.known.get(hash) {
            let e = &self.added[i];
            return Ok(Some((self.store.absolute(&e.path), e.size)));
        }
        let table = self.table.table()?;
        let found = table
            .lookup_checked(hash)
            .map_err(|p| self.table.damaged(p))?;
        Ok(found.map(|e| (self.store.absolute(e.path), e.size)))
    }

    /// Copies `bytes`, the content of the listed object `hash`, to `objects/` under
    /// `name` and lists the object there from the commit on (its old place can then be
    /// given other content). The copy is durable when this returns.
    pub fn move_to_objects(
        &mut self,
        hash: Hash,
        bytes: &[u8],
        name: &str,
    ) -> Result<PathBuf, StoreError> {
        let objects_dir = self.objects_dir.clone();
        let mut tmp = atomic::temporary_in(&objects_dir)
            .map_err(io_error(&objects_dir, "cannot create a temporary file"))?;
        io::Write::write_all(tmp.as_file_mut(), bytes)
            .map_err(io_error(tmp.path(), "cannot write"))?;
        let path = install_object(tmp, &objects_dir.join(object_file_name(&hash, name)))?;
        let relative = self.store_relative(&path)?;
        self.moved.insert(hash, relative);
        Ok(path)
    }

    /// `path`, inside the store, as the table records it: relative to the store root,
    /// normalised, never leaving the store (the rule every checked reader enforces).
    fn store_relative(&self, path: &Path) -> Result<Vec<u8>, StoreError> {
        let refused = |problem: &str| StoreError::Io {
            path: path.to_path_buf(),
            action: "cannot be listed in the table",
            source: io::Error::new(io::ErrorKind::InvalidInput, problem.to_owned()),
        };
        let relative = path
            .strip_prefix(&self.store.root)
            .map_err(|_| refused("it lies outside the store"))?
            .as_os_str()
            .as_encoded_bytes()
            .to_vec();
        match crate::table::path_problem(&relative) {
            Some(problem) => Err(refused(problem)),
            None => Ok(relative),
        }
    }

    /// The store this batch adds to.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// Where the store (or this batch) lists `hash`: the object's absolute path, if any.
    pub fn lookup(&self, hash: &Hash) -> Result<Option<PathBuf>, StoreError> {
        Ok(self.listed(hash)?.map(|(path, _)| path))
    }

    /// Writes one object under its address. Returns (hash, absolute path, existed, size).
    fn put_object(&self, object: &NewObject<'_>) -> Result<(Hash, PathBuf, bool, u64), StoreError> {
        if let Content::Placed { path, hash } = &object.content {
            return self.place_object(path, *hash);
        }
        // Bytes whose address the caller knows need no copy when the store has them:
        // converting again writes nothing.
        if let Content::Bytes { hash, .. } = &object.content {
            if let Some((path, size)) = self.listed(hash)? {
                if path.is_file() {
                    return Ok((*hash, path, true, size));
                }
            }
        }
        let objects_dir = &self.objects_dir;
        let mut tmp = atomic::temporary_in(objects_dir)
            .map_err(io_error(objects_dir, "cannot create a temporary file"))?;
        let hash = match &object.content {
            Content::File(source) => {
                let mut from = File::open(source).map_err(io_error(source, "cannot open"))?;
                io::copy(&mut from, tmp.as_file_mut()).map_err(io_error(source, "cannot copy"))?;
                // Hash the copy, not the source: the source may change while we read it.
                hash::hash_file(tmp.path()).map_err(io_error(source, "cannot hash"))?
            }
            Content::Bytes { bytes, hash } => {
                io::Write::write_all(tmp.as_file_mut(), bytes)
                    .map_err(io_error(tmp.path(), "cannot write"))?;
                *hash
            }
            Content::Placed { .. } => unreachable!("placed objects return above"),
        };
        if let Some((path, size)) = self.listed(&hash)? {
            if path.is_file() {
                return Ok((hash, path, true, size));
            }
        }
        let size = tmp
            .as_file()
            .metadata()
            .map_err(io_error(tmp.path(), "cannot stat"))?
            .len();
        let path = install_object(
            tmp,
            &objects_dir.join(object_file_name(&hash, &object.name)),
        )?;
        Ok((hash, path, false, size))
    }

    /// Lists a file that already lies in the store (see [`Content::Placed`]).
    fn place_object(
        &self,
        path: &Path,
        hash: Hash,
    ) -> Result<(Hash, PathBuf, bool, u64), StoreError> {
        if let Some((listed, size)) = self.listed(&hash)? {
            if listed.is_file() {
                return Ok((hash, listed, true, size));
            }
        }
        if !path.starts_with(&self.store.root)
            || path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                action: "cannot list an object outside the store",
                source: io::Error::from(io::ErrorKind::InvalidInput),
            });
        }
        let size = fs::metadata(path)
            .map_err(io_error(path, "cannot stat"))?
            .len();
        Ok((hash, path.to_path_buf(), false, size))
    }
}

/// Makes the written temporary file `tmp` the read-only object at `path`, durably: the
/// file, its name, and the object's own directory (the table will list a file in it).
fn install_object(tmp: tempfile::NamedTempFile, path: &Path) -> Result<PathBuf, StoreError> {
    tmp.as_file()
        .set_permissions(Permissions::from_mode(0o444))
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_error(tmp.path(), "cannot write"))?;
    let dir = atomic::parent_dir(path).to_path_buf();
    fs::create_dir_all(&dir).map_err(io_error(&dir, "cannot create"))?;
    tmp.persist(path).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        action: "cannot install the object",
        source: e.error,
    })?;
    atomic::sync_dir(&dir).map_err(io_error(&dir, "cannot sync"))?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::super::{index, Content, NewObject, Store};
    use crate::table::Kind;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    /// A writer killed while it brought the index in line with its new table left a link
    /// missing and a temporary behind; the next writer, even one that adds nothing, puts
    /// the index right.
    #[test]
    fn a_commit_that_adds_nothing_repairs_the_index_a_killed_writer_left() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::init(&tmp.path().join("store")).unwrap();
        let file = tmp.path().join("libx.so");
        fs::write(&file, b"not really a library").unwrap();
        let added = store
            .add(&[NewObject {
                content: Content::File(&file),
                name: "libx.so".into(),
                soname: b"libx.so".to_vec(),
                kind: Kind::Library,
            }])
            .unwrap();
        let dir = store.index_path();
        let link = dir.join(added[0].hash.to_string());
        // The object's entry is a hard link of it.
        let object = fs::metadata(&added[0].path).unwrap().ino();
        assert_eq!(fs::symlink_metadata(&link).unwrap().ino(), object);
        // As a kill between making the temporary link and renaming it leaves the index.
        fs::remove_file(&link).unwrap();
        let temporary = dir.join(format!(".tmp-{}", added[0].hash));
        fs::hard_link(&added[0].path, &temporary).unwrap();

        store.batch().unwrap().commit().unwrap();
        assert_eq!(fs::symlink_metadata(&link).unwrap().ino(), object);
        assert!(!temporary.exists(), "the temporary link stayed");
        let want = index::wanted(
            std::path::Path::new(""),
            &store.entries().unwrap(),
            index::Links::HardForObjects,
        );
        assert!(index::diff(&dir, &want).unwrap().is_empty());
    }
}
