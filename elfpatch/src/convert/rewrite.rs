//! Rewriting the closure bottom-up, as a Merkle DAG: a library's new bytes name its
//! dependencies by URI, so its own URI can only be computed once theirs are known.
//! Dependency cycles are hashed by the placeholder rule of `docs/uri.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;
use resolver::cycle_rule::cycle_addresses;
use resolver::cycles;
use resolver::hash::hash_bytes;
use resolver::uri::{Hash, PLACEHOLDER, URI_LEN, URI_PREFIX};

use super::closure::{Closure, Need, Node, Served};
use super::listing;
use super::prefixes::Prefixes;
use resolver::tags::LDCAS_FLAG_STORE_OF_INTERP;

use crate::elf::{
    Edit, DT_LDCAS_FLAGS, DT_LDCAS_LOADER, DT_LDCAS_STORE, LDCAS_FLAG_INDEX_FIRST,
    LDCAS_FLAG_NAME_SERVICE,
};

/// What a converted program records besides its URIs.
#[derive(Clone, Debug)]
pub struct ProgramRecord {
    /// The new `PT_INTERP`: ld-cas.
    pub interpreter: String,
    /// The URI of the real ld.so the program hands over to.
    pub loader: Hash,
    /// The store, relative to the program's directory when the program lives in it.
    pub store: String,
    /// Whether the program needs ld-cas's name service whatever its listing says (what it
    /// loads includes libraries known only by URI, whose search paths the listing cannot
    /// see: converted in other builds).
    pub name_service: bool,
    /// Whether the interpreter is the store's own merged interpreter
    /// (`STORE/interp/<hex>/<file>`), which then tells ld-cas where the store is
    /// (`LDCAS_FLAG_STORE_OF_INTERP`).
    pub store_of_interp: bool,
}

/// What a program lists besides its own needs ([`listing`]), by URI.
struct ListedUris {
    /// Its closure it does not need directly, breadth first.
    indirect: Vec<Hash>,
    /// Listed a second time, as names.
    aliases: Vec<Hash>,
    /// Whether it needs ld-cas's name service.
    name_service: bool,
}

/// Where the converted objects are written, as far as their search paths care: the trees
/// of the conversion, and each tree file's place.
pub struct Placement<'a> {
    /// The trees converted together.
    pub prefixes: &'a Prefixes,
    /// The first output of each node written into a tree.
    pub dest_of: HashMap<usize, PathBuf>,
}

/// One level of converted objects: each node with its converted form.
pub type Level = Vec<(usize, Converted)>;

/// A library's converted form.
#[derive(Clone, Debug)]
pub struct Converted {
    pub bytes: Vec<u8>,
    pub hash: Hash,
}

/// A stand-in for the URI of cycle member `node` while the cycle is hashed: as long as a
/// URI, unique, and not a URI (it has a `t`), so it can be found and replaced afterwards.
fn token(node: usize) -> String {
    let digits = node.to_string();
    format!(
        "{}t{}{}",
        String::from_utf8_lossy(URI_PREFIX),
        "0".repeat(URI_LEN - URI_PREFIX.len() - 1 - digits.len()),
        digits
    )
}

/// Replaces every occurrence of `from` (same length as `to`) in `bytes`.
fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    debug_assert_eq!(from.len(), to.len());
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(from.len()).position(|w| w == from) {
        let start = at + pos;
        bytes[start..start + to.len()].copy_from_slice(to);
        at = start + to.len();
    }
}

/// The search-path entries each object drops: an absolute entry that served only converted
/// names (it would point into the old location forever). An entry that served a kept name
/// or nothing at all stays (it may serve `dlopen` by name), and so does an `$ORIGIN` entry:
/// it moves with a converted tree, where plugins are `dlopen`ed by name through it.
fn dropped_entries(
    closure: &Closure,
    prefixes: &Prefixes,
) -> BTreeMap<(usize, bool), BTreeSet<usize>> {
    let mut converted: BTreeSet<Served> = BTreeSet::new();
    let mut kept: BTreeSet<Served> = BTreeSet::new();
    for node in &closure.nodes {
        for (_, need) in &node.needed {
            match need {
                Need::Node {
                    served_by: Some(s), ..
                } => {
                    converted.insert(*s);
                }
                Need::Keep { served_by: Some(s) } => {
                    kept.insert(*s);
                }
                _ => {}
            }
        }
    }
    let mut dropped: BTreeMap<(usize, bool), BTreeSet<usize>> = BTreeMap::new();
    for s in converted.difference(&kept) {
        let searcher = &closure.nodes[s.owner].searcher;
        let list = if s.rpath {
            &searcher.rpath
        } else {
            &searcher.runpath
        };
        let entry = list
            .as_ref()
            .and_then(|l| l.split(|&b| b == b':').nth(s.index));
        // An entry into a tree of this conversion is rewritten instead (see [`Prefixes`]).
        if !entry.is_some_and(|e| is_origin_relative(e) || prefixes.relocates(e)) {
            dropped
                .entry((s.owner, s.rpath))
                .or_default()
                .insert(s.index);
        }
    }
    dropped
}

/// Whether a search-path entry is relative to the object's own directory.
fn is_origin_relative(entry: &[u8]) -> bool {
    entry.starts_with(b"$ORIGIN") || entry.starts_with(b"${ORIGIN}")
}

/// The edit that converts `node` (its `DT_NEEDED` names, its search path, and for a
/// program its interpreter and records). `uri_of` names a dependency.
fn edit_for(
    closure: &Closure,
    n: usize,
    dest: Option<&Path>,
    prefixes: &Prefixes,
    dropped: &BTreeMap<(usize, bool), BTreeSet<usize>>,
    uri_of: &dyn Fn(usize) -> String,
    program: Option<(&ProgramRecord, &ListedUris)>,
) -> Result<Edit> {
    let node = &closure.nodes[n];
    let mut edit = Edit::new();
    for (name, need) in &node.needed {
        if let Need::Node { node: dep, .. } = need {
            let name = std::str::from_utf8(name).with_context(|| {
                format!(
                    "{}: a DT_NEEDED name is not UTF-8",
                    node.searcher.path.display()
                )
            })?;
            edit.replace_needed(name, uri_of(*dep));
        }
    }
    let kept = kept_search_path(closure, n, dest, prefixes, dropped);
    match program {
        Some((p, listed)) => program_edit(&mut edit, p, listed, kept),
        None => {
            if let Some(k) = kept {
                if k.entries.is_empty() {
                    edit.remove_runpath();
                } else if k.changed {
                    let joined = String::from_utf8_lossy(&k.entries.join(&b':')).into_owned();
                    edit.force_rpath(k.rpath).set_runpath(joined);
                }
            }
        }
    }
    Ok(edit)
}

/// The search-path list in force once an object is converted.
pub struct KeptPath {
    /// Its entries.
    pub entries: Vec<Vec<u8>>,
    /// Whether it is a `DT_RPATH` (else a `DT_RUNPATH`).
    pub rpath: bool,
    /// Whether it differs from the original.
    pub changed: bool,
}

/// The list in force of node `n` after conversion (`None`: it has none). glibc ignores
/// `DT_RPATH` when `DT_RUNPATH` is present, so only the list in force changes.
pub fn kept_search_path(
    closure: &Closure,
    n: usize,
    dest: Option<&Path>,
    prefixes: &Prefixes,
    dropped: &BTreeMap<(usize, bool), BTreeSet<usize>>,
) -> Option<KeptPath> {
    let node = &closure.nodes[n];
    let (list, rpath) = match (&node.searcher.runpath, &node.searcher.rpath) {
        (Some(r), _) => (r, false),
        (None, Some(r)) => (r, true),
        (None, None) => return None,
    };
    let no_drop = BTreeSet::new();
    let drop = dropped.get(&(n, rpath)).unwrap_or(&no_drop);
    let entries: Vec<Vec<u8>> = list
        .split(|&b| b == b':')
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, e)| prefixes.rewrite(e, dest))
        .collect();
    let changed = entries.join(&b':') != *list;
    Some(KeptPath {
        entries,
        rpath,
        changed,
    })
}

/// A program's own records: interpreter, loader, store, the index first in its search path
/// (a `DT_RUNPATH` it keeps, else a `DT_RPATH`), its listing and flags.
fn program_edit(edit: &mut Edit, p: &ProgramRecord, listed: &ListedUris, kept: Option<KeptPath>) {
    let (mut entries, rpath) = match kept {
        Some(k) if !k.entries.is_empty() => (k.entries, k.rpath),
        _ => (Vec::new(), true),
    };
    let index = listing::index_entry(&p.store, None).into_bytes();
    // A program converted again already has it.
    if entries.first() != Some(&index) {
        entries.insert(0, index);
    }
    let joined = String::from_utf8_lossy(&entries.join(&b':')).into_owned();
    edit.force_rpath(rpath).set_runpath(joined);
    for uri in listed.indirect.iter().chain(&listed.aliases) {
        edit.append_needed(uri.to_string());
    }
    let mut flags = LDCAS_FLAG_INDEX_FIRST;
    if listed.name_service {
        flags |= LDCAS_FLAG_NAME_SERVICE;
    }
    if p.store_of_interp {
        flags |= LDCAS_FLAG_STORE_OF_INTERP;
    }
    edit.set_interpreter(p.interpreter.clone())
        .set_dynamic_tag(DT_LDCAS_LOADER, p.loader.to_string())
        .set_dynamic_tag(DT_LDCAS_STORE, p.store.clone())
        .set_dynamic_value(DT_LDCAS_FLAGS, flags);
}

fn apply(node: &Node, edit: &Edit) -> Result<Vec<u8>> {
    edit.apply(&node.bytes)
        .with_context(|| format!("cannot convert {}", node.searcher.path.display()))
}

/// Converts every library of the closure (and every non-program tree file), bottom-up, the
/// components of one level in parallel. Each level's results go to `sink` as soon as the
/// level is done (so their bytes need not stay in memory); returns every such node's URI.
pub fn convert_libraries(
    closure: &Closure,
    placement: &Placement<'_>,
    progress: &dyn super::Progress,
    sink: &mut dyn FnMut(Vec<(usize, Converted)>) -> Result<()>,
) -> Result<Vec<Option<Hash>>> {
    let n = closure.nodes.len();
    let edges: Vec<Vec<usize>> = closure
        .nodes
        .iter()
        .map(|node| {
            node.needed
                .iter()
                .filter_map(|(_, need)| match need {
                    Need::Node { node, .. } => Some(*node),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let component = cycles::components(&edges);
    let count = component.iter().copied().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (node, &c) in component.iter().enumerate() {
        members[c].push(node);
    }
    // Tarjan numbers components sinks first, so a component's dependencies have smaller
    // numbers; its level is one more than the highest level among them.
    let mut level = vec![0usize; count];
    for c in 0..count {
        for &m in &members[c] {
            for &d in &edges[m] {
                if component[d] != c {
                    level[c] = level[c].max(level[component[d]] + 1);
                }
            }
        }
    }
    let dropped = dropped_entries(closure, placement.prefixes);
    let wanted = |m: &usize| closure.nodes[*m].is_library || !is_program(&closure.nodes[*m]);
    let mut done: Vec<Option<Hash>> = vec![None; n];
    let top = level.iter().copied().max().unwrap_or(0);
    for current in 0..=top {
        let comps: Vec<usize> = (0..count).filter(|&c| level[c] == current).collect();
        let results: Vec<Result<Vec<(usize, Converted)>>> = comps
            .par_iter()
            .map(|&c| {
                let group: Vec<usize> = members[c].iter().copied().filter(wanted).collect();
                let cyclic =
                    members[c].len() > 1 || members[c].iter().any(|m| edges[*m].contains(m));
                let converted =
                    convert_component(closure, placement, &group, cyclic, &dropped, &done);
                progress.advance(members[c].len() as u64);
                converted
            })
            .collect();
        let mut batch = Vec::new();
        for r in results {
            for (m, converted) in r? {
                done[m] = Some(converted.hash);
                batch.push((m, converted));
            }
        }
        sink(batch)?;
    }
    Ok(done)
}

/// Whether a node is a program: it has an interpreter and no soname (libc.so.6 has an
/// interpreter too, to print its version, but it is a library).
pub fn is_program(node: &Node) -> bool {
    node.interpreter.is_some() && node.soname.is_none()
}

fn convert_component(
    closure: &Closure,
    placement: &Placement<'_>,
    group: &[usize],
    cyclic: bool,
    dropped: &BTreeMap<(usize, bool), BTreeSet<usize>>,
    done: &[Option<Hash>],
) -> Result<Vec<(usize, Converted)>> {
    let uri_of = |d: usize| -> String {
        match &done[d] {
            Some(hash) => hash.to_string(),
            // A member of this component: its token until the cycle is hashed.
            None => token(d),
        }
    };
    let mut out = Vec::with_capacity(group.len());
    for &m in group {
        let dest = placement.dest_of.get(&m).map(PathBuf::as_path);
        let edit = edit_for(closure, m, dest, placement.prefixes, dropped, &uri_of, None)?;
        let bytes = apply(&closure.nodes[m], &edit)?;
        out.push((m, bytes));
    }
    if !cyclic {
        return Ok(out
            .into_iter()
            .map(|(m, bytes)| {
                let hash = hash_bytes(&bytes);
                (m, Converted { bytes, hash })
            })
            .collect());
    }
    // Every member's address follows the cycle rule of docs/uri.md: its bytes with the
    // cycle's references blanked, which member each of them names, and the cycle's
    // membership; then the real URIs go where the tokens were.
    let tokens: Vec<(usize, String)> = group.iter().map(|&m| (m, token(m))).collect();
    let blanked: Vec<Hash> = out
        .iter()
        .map(|(_, bytes)| {
            let mut blanked = bytes.clone();
            for (_, t) in &tokens {
                replace_all(&mut blanked, t.as_bytes(), &PLACEHOLDER);
            }
            hash_bytes(&blanked)
        })
        .collect();
    let targets: Vec<Vec<usize>> = out
        .iter()
        .map(|(_, bytes)| token_targets(bytes, &tokens))
        .collect();
    let hashes = cycle_addresses(&blanked, &targets);
    let uris: Vec<(String, String)> = tokens
        .iter()
        .zip(&hashes)
        .map(|((_, t), hash)| (t.clone(), hash.to_string()))
        .collect();
    Ok(out
        .into_iter()
        .zip(hashes)
        .map(|((m, mut bytes), hash)| {
            for (t, uri) in &uris {
                replace_all(&mut bytes, t.as_bytes(), uri.as_bytes());
            }
            (m, Converted { bytes, hash })
        })
        .collect())
}

/// The cycle members (positions in `tokens`) that the tokens in `bytes` name, in file
/// order.
fn token_targets(bytes: &[u8], tokens: &[(usize, String)]) -> Vec<usize> {
    let mut found: Vec<(usize, usize)> = Vec::new();
    for (i, (_, t)) in tokens.iter().enumerate() {
        let t = t.as_bytes();
        let mut at = 0;
        while let Some(pos) = bytes[at..].windows(t.len()).position(|w| w == t) {
            found.push((at + pos, i));
            at += pos + t.len();
        }
    }
    found.sort_unstable();
    found.into_iter().map(|(_, i)| i).collect()
}

/// Converts a program for one output place.
pub fn convert_program(
    closure: &Closure,
    n: usize,
    dest: &Path,
    prefixes: &Prefixes,
    libraries: &[Option<Hash>],
    record: &ProgramRecord,
) -> Result<Vec<u8>> {
    let dropped = dropped_entries(closure, prefixes);
    let uri_of = |d: usize| -> String { libraries[d].map(|h| h.to_string()).unwrap_or_default() };
    let keeps_runpath = |m: usize| {
        matches!(kept_search_path(closure, m, None, prefixes, &dropped),
            Some(k) if !k.rpath && !k.entries.is_empty())
    };
    let loose: Vec<usize> = (0..closure.nodes.len())
        .filter(|&m| !closure.nodes[m].is_library && !is_program(&closure.nodes[m]))
        .collect();
    let listed = listing::listing(closure, n, &keeps_runpath, &loose);
    let hashes =
        |nodes: &[usize]| -> Vec<Hash> { nodes.iter().filter_map(|&m| libraries[m]).collect() };
    let listed = ListedUris {
        indirect: hashes(&listed.indirect),
        aliases: hashes(&listed.aliases),
        name_service: listed.name_service || record.name_service,
    };
    let edit = edit_for(
        closure,
        n,
        Some(dest),
        prefixes,
        &dropped,
        &uri_of,
        Some((record, &listed)),
    )?;
    apply(&closure.nodes[n], &edit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_uri_sized_and_not_uris() {
        for n in [0usize, 7, 123_456] {
            let t = token(n);
            assert_eq!(t.len(), URI_LEN);
            assert!(!Hash::is_uri(t.as_bytes()));
            assert_ne!(t.as_bytes(), &PLACEHOLDER[..]);
        }
        assert_ne!(token(1), token(10));
        let mut bytes = format!("a{}b{}c", token(3), token(3)).into_bytes();
        replace_all(&mut bytes, token(3).as_bytes(), &PLACEHOLDER);
        assert_eq!(bytes.len(), 2 * URI_LEN + 3);
        assert_eq!(&bytes[1..1 + URI_LEN], &PLACEHOLDER[..]);
    }
}
