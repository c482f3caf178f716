//! Nix store paths: recognising them, and the package trees a Nix closure is made of.
//!
//! A Nix store holds one package output per directory, `STORE_DIR/<32 characters of Nix's
//! base-32>-<name>`. Libraries keep their homes there, and search-path entries name other
//! store paths' directories. Both conversions of such a closure treat every store path
//! named by an object of the closure (where it lies, or by a literal `DT_RUNPATH`/`DT_RPATH`
//! entry) as a tree converted with it, so an entry between store paths becomes the same
//! `$ORIGIN`-relative entry whether the library is converted in its own Nix build
//! ([`super::in_place`]) or by `elfpatch convert` of the finished closure, where each store
//! path lands as a tree side by side in `STORE/bin`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::closure::{Closure, KeepRules};
use super::search::{self, Search, Searches};

/// The characters of Nix's base-32 (no `e`, `o`, `t`, `u`).
const NIX_BASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Whether `name` is the name of a Nix store path: 32 base-32 characters, `-`, a name.
pub fn is_store_path_name(name: &[u8]) -> bool {
    name.len() > 33
        && name[32] == b'-'
        && name[..32].iter().all(|c| NIX_BASE32.contains(c))
        && !name[33..].contains(&b'/')
}

/// The store path (`DIR/<hash>-<name>`) that `path` (absolute, normalised) lies in, with
/// `DIR` its store directory: the nearest ancestor whose name is a store path name.
pub fn store_path_of(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .find(|a| {
            a.file_name()
                .is_some_and(|n| is_store_path_name(n.as_bytes()))
        })
        .map(Path::to_path_buf)
}

/// The store paths named by the literal absolute entries of a search path.
fn named_by(list: &[u8], out: &mut BTreeSet<PathBuf>) {
    for entry in list.split(|&b| b == b':') {
        if !entry.starts_with(b"/") || entry.contains(&b'$') {
            continue;
        }
        if let Some(p) = store_path_of(Path::new(OsStr::from_bytes(entry))) {
            if p.is_dir() {
                out.insert(p);
            }
        }
    }
}

/// Every store path an object of `closure` lies in or names by a search-path entry.
pub fn closure_store_paths(closure: &Closure) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for node in &closure.nodes {
        let path = std::path::absolute(&node.searcher.path).unwrap_or_default();
        if let Some(p) = store_path_of(&path) {
            out.insert(p);
        }
        if let Ok(real) = path.canonicalize() {
            if let Some(p) = store_path_of(&real) {
                out.insert(p);
            }
        }
        for list in [&node.searcher.runpath, &node.searcher.rpath]
            .into_iter()
            .flatten()
        {
            named_by(list, &mut out);
        }
    }
    out
}

/// For `elfpatch convert`: when an input lies in a Nix store, every store path its closure
/// reaches (where a library lies, or named by a search-path entry) becomes an input too, so
/// it lands as a package tree in the ld-cas store, beside the others. Inputs outside any
/// Nix store are returned as given. The result is sorted and without duplicates.
pub fn with_store_paths(
    paths: &[PathBuf],
    sysroot: Option<&Path>,
    keep: &KeepRules,
) -> Result<Vec<PathBuf>> {
    let absolute = |p: &Path| {
        std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))
    };
    let mut inputs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut any_nix = false;
    for p in paths {
        let a = absolute(p)?;
        any_nix |= store_path_of(&a).is_some();
        inputs.insert(a);
    }
    if !any_nix || sysroot.is_some() {
        return Ok(paths.to_vec());
    }
    let mut trees: BTreeSet<PathBuf> = inputs.iter().filter_map(|p| store_path_of(p)).collect();
    loop {
        let mut closure = Closure::default();
        let mut searches = Searches::new();
        let mut roots = Vec::new();
        let mut files: Vec<PathBuf> = inputs.iter().cloned().collect();
        for tree in &trees {
            elf_files(tree, &mut files)?;
        }
        for file in &files {
            let Some((class64, machine)) = search::elf_ident(file) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(e) = searches.entry((machine, class64))
            {
                e.insert(Search::new(None, machine, class64)?);
            }
            if let Ok(n) = closure.node_for(file, &searches[&(machine, class64)]) {
                roots.push(n);
            }
        }
        // Missing names are the conversion's business; here only what is found counts.
        closure.resolve(&roots, &searches, keep, true)?;
        let found = closure_store_paths(&closure);
        if found.is_subset(&trees) {
            break;
        }
        trees.extend(found);
    }
    // A store path given is converted as a tree; an input inside one becomes its tree.
    let mut out: BTreeSet<PathBuf> = inputs
        .into_iter()
        .filter(|p| store_path_of(p).is_none())
        .collect();
    out.extend(trees);
    Ok(out.into_iter().collect())
}

/// The dynamically linked ELF files under `dir` (regular files, not followed through
/// symbolic links), sorted.
pub fn elf_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        if search::elf_ident(dir).is_some() {
            out.push(dir.to_path_buf());
        }
        return Ok(());
    }
    for entry in super::output::sorted_entries(dir)? {
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if kind.is_dir() {
            elf_files(&path, out)?;
        } else if kind.is_file() && search::elf_ident(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_path_names() {
        assert!(is_store_path_name(
            b"yn9b781wrs18qkl4i228kyd5pa2nlvjs-hello"
        ));
        assert!(!is_store_path_name(
            b"yn9b781wrs18qkl4i228kyd5pa2nlvje-hello"
        ));
        assert!(!is_store_path_name(b"yn9b781wrs18qkl4i228kyd5pa2nlvjs-"));
        assert!(!is_store_path_name(b"lib"));
        assert_eq!(
            store_path_of(Path::new(
                "/nix/store/yn9b781wrs18qkl4i228kyd5pa2nlvjs-hello/lib/libx.so"
            )),
            Some(PathBuf::from(
                "/nix/store/yn9b781wrs18qkl4i228kyd5pa2nlvjs-hello"
            ))
        );
        assert_eq!(store_path_of(Path::new("/usr/lib/libx.so")), None);
    }
}
