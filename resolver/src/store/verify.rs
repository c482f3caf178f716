//! Checking a store: every listed object rehashed against its address.

use std::collections::HashMap;
use std::fs::File;

use super::{Problem, Store, StoreError};
use crate::cycle_rule::{member_addresses, MemberAddress};
use crate::cycles;
use crate::hash::{self, Mapped};
use crate::refs::references;
use crate::table::write::NewEntry;
use crate::uri::Hash;

impl Store {
    /// Rehashes every object against its address (by the cycle rule of `docs/uri.md`) and
    /// checks the table. Returns the problems found and the number of objects checked.
    pub fn verify(&self) -> Result<(Vec<Problem>, usize), StoreError> {
        let entries = match self.entries() {
            Ok(e) => e,
            Err(StoreError::Table { problem, .. }) => {
                return Ok((vec![Problem::DamagedTable(problem.to_string())], 0))
            }
            Err(e) => return Err(e),
        };
        let mut problems = Vec::new();
        let index: HashMap<Hash, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.hash, i))
            .collect();
        let mut maps: Vec<Option<Mapped>> = Vec::with_capacity(entries.len());
        for e in &entries {
            let path = self.absolute(&e.path);
            match File::open(&path).and_then(|f| hash::map_file(&f)) {
                Ok(m) => maps.push(Some(m)),
                Err(err) => {
                    problems.push(Problem::Missing {
                        hash: e.hash,
                        path,
                        error: err.to_string(),
                    });
                    maps.push(None);
                }
            }
        }
        let edges: Vec<Vec<usize>> = maps
            .iter()
            .map(|m| match m {
                Some(bytes) => references(bytes)
                    .filter_map(|(_, h)| index.get(&h).copied())
                    .collect(),
                None => Vec::new(),
            })
            .collect();
        let cycles = cycles::cycle_members(&edges);
        let in_cycle = cycle_addresses(&cycles, &maps, &entries);
        let check = |i: usize| -> Vec<Problem> {
            let e = &entries[i];
            let Some(bytes) = &maps[i] else {
                return Vec::new();
            };
            let mut found = Vec::new();
            let path = self.absolute(&e.path);
            if bytes.len() as u64 != e.size {
                found.push(Problem::SizeMismatch {
                    hash: e.hash,
                    path: path.clone(),
                    recorded: e.size,
                    actual: bytes.len() as u64,
                });
            }
            match in_cycle.get(&i) {
                Some(member) if member.address != e.hash && member.blanked == e.hash => {
                    found.push(Problem::OldCycleRule { hash: e.hash, path });
                }
                Some(member) if member.address != e.hash => found.push(Problem::Mismatch {
                    hash: e.hash,
                    path,
                    actual: member.address,
                }),
                Some(_) => {}
                None => {
                    let actual = hash::hash_bytes(bytes);
                    if actual != e.hash {
                        found.push(Problem::Mismatch {
                            hash: e.hash,
                            path,
                            actual,
                        });
                    }
                }
            }
            found
        };
        // Many small objects hash faster side by side than one after the other (a large one
        // already uses every core by itself).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = entries.len().div_ceil(threads).max(1);
        let indices: Vec<usize> = (0..entries.len()).collect();
        let per_chunk: Vec<Vec<Problem>> = std::thread::scope(|scope| {
            let workers: Vec<_> = indices
                .chunks(chunk)
                .map(|part| scope.spawn(|| part.iter().flat_map(|&i| check(i)).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        problems.extend(per_chunk.into_iter().flatten());
        problems.extend(self.outside_store(&entries)?);
        let listed: std::collections::HashSet<std::path::PathBuf> =
            entries.iter().map(|e| self.absolute(&e.path)).collect();
        let objects_dir = self.root.join(super::OBJECTS_DIR);
        let mut unlisted = Vec::new();
        super::gc::unlisted_objects(&objects_dir, &listed, &mut unlisted)
            .map_err(super::io_error(&objects_dir, "cannot read"))?;
        unlisted.sort();
        problems.extend(unlisted.into_iter().map(|path| Problem::Unlisted { path }));
        problems.extend(self.index_problems(&entries)?);
        Ok((problems, entries.len()))
    }
}

impl Store {
    /// How the index differs from the table (the next write repairs it).
    fn index_problems(&self, entries: &[NewEntry]) -> Result<Vec<Problem>, StoreError> {
        let dir = self.index_path();
        let want = super::index::wanted(
            std::path::Path::new(""),
            entries,
            super::index::Links::HardForObjects,
        );
        let diff = super::index::diff(&dir, &want)
            .map_err(super::io_error(&dir, "cannot read the index"))?;
        let mut found: Vec<Problem> = diff
            .wrong
            .into_iter()
            .map(|w| {
                let path = dir.join(&w.name);
                let problem = wrong_entry(&path, &w);
                Problem::Index { path, problem }
            })
            .collect();
        found.extend(diff.stale.into_iter().map(|name| Problem::Index {
            path: dir.join(name),
            problem: "names nothing the table lists".into(),
        }));
        let probes = &diff.probes;
        found.extend(probes.wrong.iter().map(|l| Problem::Index {
            path: dir.join(l.path()),
            problem: format!(
                "should be a link to {} (the index holds {})",
                l.target,
                super::index::probes::describe(&want.probes)
            ),
        }));
        found.extend(probes.unwanted.iter().map(|l| Problem::Index {
            path: dir.join(l.path()),
            problem: "is a link the table does not call for (no aarch64 ld.so is listed)".into(),
        }));
        Ok(found)
    }
}

/// What is wrong with the index entry at `path` that should be `w`, for `verify`'s report.
fn wrong_entry(path: &std::path::Path, w: &super::index::IndexEntry) -> String {
    let should = if w.hard_link {
        format!("should be a hard link of {}", w.target.display())
    } else {
        format!("should link to {}", w.target.display())
    };
    match std::fs::symlink_metadata(path) {
        Err(_) => format!("is missing: it {should}"),
        Ok(m) if m.file_type().is_file() => {
            format!("is another file (a copy of the store that lost its hard links?): it {should}")
        }
        Ok(_) => format!("is wrong: it {should}"),
    }
}

impl Store {
    /// The listed objects that resolve (through symbolic links) to a place outside the
    /// store and outside every registered root's target.
    fn outside_store(&self, entries: &[NewEntry]) -> Result<Vec<Problem>, StoreError> {
        let mut allowed = vec![self.root.clone()];
        for root in self.registered_roots()? {
            if let Ok(target) = root.link.canonicalize() {
                allowed.push(target);
            }
        }
        Ok(entries
            .iter()
            .filter_map(|e| {
                let path = self.absolute(&e.path);
                let real = path.canonicalize().ok()?;
                (!allowed.iter().any(|a| real.starts_with(a))).then_some(Problem::OutsideStore {
                    hash: e.hash,
                    path,
                    real,
                })
            })
            .collect())
    }
}

/// The address of every readable object that belongs to a dependency cycle, by the cycle
/// rule (a cycle with an unreadable member is left to the missing-object problem).
fn cycle_addresses(
    cycles: &[Vec<usize>],
    maps: &[Option<Mapped>],
    entries: &[NewEntry],
) -> HashMap<usize, MemberAddress> {
    let listed: Vec<Hash> = entries.iter().map(|e| e.hash).collect();
    let mut out = HashMap::new();
    for members in cycles {
        if members.is_empty() || out.contains_key(&members[0]) {
            continue;
        }
        let Some(objects) = members
            .iter()
            .map(|&m| maps[m].as_deref())
            .collect::<Option<Vec<&[u8]>>>()
        else {
            continue;
        };
        let uris: Vec<Hash> = members.iter().map(|&m| listed[m]).collect();
        for (&m, address) in members.iter().zip(member_addresses(&objects, &uris)) {
            out.insert(m, address);
        }
    }
    out
}
