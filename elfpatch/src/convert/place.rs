//! Where converted libraries and tree files go: one file per content, at its home.
//!
//! - A library that belongs to a converted tree is listed by the table at its place in that
//!   tree, so `$ORIGIN`, `dladdr` and files found beside it work as in the original. The
//!   path goes through the store: `bin/<tree>/...`, or `roots/<link>/...` for a tree
//!   written outside it, so the table never points outside the store.
//! - A loose library (outside every converted tree) goes to `objects/<hex>/<file name>`.
//! - Every other place the same content appears (a hard link of the source, the same
//!   library in a second tree, a library the store already holds) is a hard link of that
//!   one file, or a symbolic link to it across filesystems, so `ld.so`'s (device, inode)
//!   check never loads one library twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use resolver::store::{Batch, Content, NewObject};
use resolver::table::Kind;

use super::closure::Closure;
use super::output::{self, Output};
use super::rewrite::{is_program, Converted};
use super::{Object, Report, Written};

/// How paths inside the outputs are named from the store.
pub struct StorePaths {
    store_root: PathBuf,
    /// (where an input landed, the link in `STORE/roots` that names it) for every input
    /// written outside the store.
    registered: Vec<(PathBuf, PathBuf)>,
}

impl StorePaths {
    /// The store at `store_root` and the roots registered for outputs outside it.
    pub fn new(store_root: &Path, registered: Vec<(PathBuf, PathBuf)>) -> StorePaths {
        StorePaths {
            store_root: store_root.to_path_buf(),
            registered,
        }
    }

    /// The absolute path inside the store that names `dest`, an output's place.
    pub fn inside(&self, dest: &Path) -> Option<PathBuf> {
        if dest.starts_with(&self.store_root) {
            return Some(dest.to_path_buf());
        }
        self.registered.iter().find_map(|(landed, link)| {
            let rest = dest.strip_prefix(landed).ok()?;
            Some(if rest.as_os_str().is_empty() {
                link.clone()
            } else {
                link.join(rest)
            })
        })
    }
}

/// The ELF outputs of each closure node: the places its converted bytes are written.
pub type OutputsOf = HashMap<usize, Vec<usize>>;

/// Writes one level of converted objects to their homes and lists the libraries among
/// them in the batch: tree files at their places, loose libraries in `objects/`, every
/// further place of the same content linked to the first.
pub fn place_level(
    batch: &mut Batch<'_>,
    closure: &Closure,
    level: &[(usize, Converted)],
    outputs: &[Output],
    outputs_of: &OutputsOf,
    paths: &StorePaths,
    report: &mut Report,
) -> Result<()> {
    for (n, converted) in level {
        let node = &closure.nodes[*n];
        if is_program(node) && !node.is_library {
            // Programs are written once the table lists everything they name.
            continue;
        }
        let dests: Vec<(&Path, &Path)> = outputs_of
            .get(n)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|&i| match &outputs[i] {
                Output::Elf { source, dest, .. } => Some((source.as_path(), dest.as_path())),
                _ => None,
            })
            .collect();
        let existing = batch.lookup(&converted.hash)?.filter(|p| p.is_file());
        let mut first: Option<PathBuf> = existing.clone();
        for &(source, dest) in &dests {
            report.tree_elf_files += 1;
            report.bytes_written +=
                output::write_or_link(source, dest, &converted.bytes, first.as_deref())?;
            first.get_or_insert_with(|| dest.to_path_buf());
            report.outputs.push(Written {
                source: source.to_path_buf(),
                dest: dest.to_path_buf(),
            });
        }
        if !node.is_library {
            continue;
        }
        let home = match (&existing, dests.first()) {
            (Some(_), _) => None,
            (None, Some((_, dest))) => paths.inside(dest),
            (None, None) => None,
        };
        let content = match &home {
            Some(path) => Content::Placed {
                path,
                hash: converted.hash,
            },
            None => Content::Bytes {
                bytes: &converted.bytes,
                hash: converted.hash,
            },
        };
        let object = NewObject {
            content,
            name: node.name.clone(),
            soname: node.soname.clone().unwrap_or_default(),
            kind: Kind::Library,
        };
        let added = batch
            .put(std::slice::from_ref(&object))
            .with_context(|| format!("cannot store {}", node.searcher.path.display()))?;
        if added.first().is_some_and(|a| !a.existed) {
            report.objects_added += 1;
            if home.is_none() {
                report.bytes_written += converted.bytes.len() as u64;
            }
        }
        report.libraries += 1;
        report.objects.push(Object {
            uri: converted.hash.to_string(),
            soname: String::from_utf8_lossy(node.soname.as_deref().unwrap_or_default())
                .into_owned(),
            source: node.searcher.path.clone(),
        });
    }
    Ok(())
}
