//! Each output's closure, as its table lists it: every library it may load (its own files,
//! libraries of other store paths where they lie or as converted copies, libraries known
//! only by URI from the tables of their own builds) and its programs' loaders.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use resolver::hash::hash_bytes;
use resolver::store::object_file_name;
use resolver::table::write::NewEntry;
use resolver::table::Kind;
use resolver::uri::Hash;

use super::report::{CopyReport, Report};
use super::tables::Tables;
use super::{keeps_runpath_and_uris, Run, COPIES_DIR, TABLE_DIR};
use crate::convert::closure::Need;
use crate::convert::nix_paths::store_path_of;
use crate::convert::recorded_loader;
use crate::convert::rewrite::is_program;
use crate::elf::Elf;

/// One output's closure.
#[derive(Default)]
pub struct Listed {
    /// Its entries, with the real path of each file.
    pub entries: BTreeMap<Hash, (NewEntry, PathBuf)>,
    /// The store paths its search-path entries name (its ld-cas directory links them).
    pub named: BTreeSet<PathBuf>,
    /// Whether a library of it known only by URI (converted in another build) keeps a
    /// `DT_RUNPATH` and needs `uri:` names: ld.so's search of that library's names does
    /// not reach the program's index, and the program's listing cannot see it (it sees
    /// the nodes of this conversion, and gives their names to the loaded libraries).
    pub service: bool,
}

/// The closure of output `o` of `run`; converted copies of other store paths' libraries
/// are written as they are found.
pub fn listed(run: &Run<'_>, o: usize, tables: &mut Tables, report: &mut Report) -> Result<Listed> {
    let out = &run.outputs[o];
    let mut listed = Listed::default();
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    // (node, whether another object needs it): the output's own files start it.
    let mut queue: VecDeque<(usize, bool)> = run
        .paths_of
        .keys()
        .copied()
        .filter(|n| run.in_output(*n) == Some(o))
        .map(|n| (n, false))
        .collect();
    // Nodes already listed as libraries.
    let mut entered: BTreeSet<usize> = BTreeSet::new();
    let mut uris: VecDeque<(Hash, PathBuf)> = VecDeque::new();
    while let Some((n, needed)) = queue.pop_front() {
        if needed && entered.insert(n) {
            let node = &run.closure.nodes[n];
            if let (Some(hash), Some(c)) = (run.libraries[n], run.converted.get(&n)) {
                let real = if run.in_output(n).is_some() || c.hash == hash_bytes(&node.bytes) {
                    run.places[n].clone()
                } else {
                    let dest = out
                        .join(TABLE_DIR)
                        .join(COPIES_DIR)
                        .join(object_file_name(&hash, &node.name));
                    report.bytes_written += crate::convert::output::write_file_keeping(
                        &run.places[n],
                        &dest,
                        &c.bytes,
                        0o555,
                    )?;
                    report.copies.push(CopyReport {
                        uri: hash.to_string(),
                        source: run.places[n].clone(),
                        dest: dest.clone(),
                    });
                    dest
                };
                let entry = NewEntry {
                    hash,
                    path: Vec::new(),
                    soname: node.soname.clone().unwrap_or_default(),
                    size: c.bytes.len() as u64,
                    kind: Kind::Library,
                };
                listed.entries.insert(hash, (entry, real));
            }
        }
        if !seen.insert(n) {
            continue;
        }
        let node = &run.closure.nodes[n];
        for list in [&node.searcher.runpath, &node.searcher.rpath]
            .into_iter()
            .flatten()
        {
            for e in list.split(|&b| b == b':') {
                if let Some(sp) = store_path_of(Path::new(OsStr::from_bytes(e))) {
                    if sp.parent() == Some(run.store_dir.as_path()) && sp.is_dir() {
                        listed.named.insert(sp);
                    }
                }
            }
        }
        for (name, need) in &node.needed {
            match need {
                Need::Node { node: dep, .. } => queue.push_back((*dep, true)),
                Need::Keep { .. } => {
                    if let Ok(h) = Hash::parse_uri(name) {
                        uris.push_back((h, run.places[n].clone()));
                    }
                }
                Need::Missing => {}
            }
        }
    }
    // The programs' loaders.
    for &n in seen.iter().filter(|&&n| run.in_output(n) == Some(o)) {
        let node = &run.closure.nodes[n];
        if !is_program(node) {
            continue;
        }
        if let Some(recorded) = recorded_loader(node)? {
            uris.push_back((recorded, run.places[n].clone()));
        } else if let Some(interp) = &node.interpreter {
            let real = interp.canonicalize().with_context(|| {
                format!(
                    "cannot open the interpreter {} of {}",
                    interp.display(),
                    run.places[n].display()
                )
            })?;
            if real.starts_with(&run.store_dir) {
                let bytes =
                    fs::read(&real).with_context(|| format!("cannot read {}", real.display()))?;
                let hash = hash_bytes(&bytes);
                let soname = Elf::parse(&bytes)
                    .ok()
                    .and_then(|e| e.soname().map(<[u8]>::to_vec))
                    .unwrap_or_default();
                let entry = NewEntry {
                    hash,
                    path: Vec::new(),
                    soname,
                    size: bytes.len() as u64,
                    kind: Kind::Interpreter,
                };
                listed.entries.insert(hash, (entry, real));
            }
        }
    }
    // Libraries already converted in their own builds: their tables know them.
    while let Some((hash, near)) = uris.pop_front() {
        if listed.entries.contains_key(&hash) {
            continue;
        }
        let Some((entry, real)) = tables.find(&hash, &near)? else {
            bail!(
                "{} needs {hash}, which no lookup table of its store paths lists (<store path>/{TABLE_DIR}/table): convert that dependency in its own build first",
                near.display(),
            );
        };
        if let Ok(bytes) = fs::read(&real) {
            listed.service |= entry.kind == Kind::Library && keeps_runpath_and_uris(&bytes);
            if let Ok(elf) = Elf::parse(&bytes) {
                for name in elf.needed() {
                    if let Ok(h) = Hash::parse_uri(name) {
                        uris.push_back((h, real.clone()));
                    }
                }
                for list in [elf.runpath(), elf.rpath()].into_iter().flatten() {
                    for e in list.split(|&b| b == b':') {
                        let Some(rest) = e
                            .strip_prefix(b"$ORIGIN/")
                            .or_else(|| e.strip_prefix(b"${ORIGIN}/"))
                        else {
                            continue;
                        };
                        let dir = real.parent().unwrap_or(&real).join(OsStr::from_bytes(rest));
                        if let Some(sp) = dir.canonicalize().ok().as_deref().and_then(store_path_of)
                        {
                            if sp.parent() == Some(run.store_dir.as_path()) {
                                listed.named.insert(sp);
                            }
                        }
                    }
                }
            }
        }
        listed.entries.insert(hash, (entry, real));
    }
    Ok(listed)
}
