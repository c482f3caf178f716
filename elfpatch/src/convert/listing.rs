//! What a converted program lists for ld.so (see "How `uri:` names reach ld.so" in
//! `docs/ld-cas.md`): its whole closure, breadth first, so that ld-cas can point every
//! library loaded at start-up at its real path; a second entry of each library that an
//! object with a `DT_RUNPATH` needs by URI (that object cannot search the program's
//! `DT_RPATH`, where the index is; the second entry gives the loaded library its `uri:`
//! name); and whether the program needs ld-cas's name service after all.

use std::collections::{BTreeSet, VecDeque};

use super::closure::{Closure, Need};

/// A program's listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Nodes of its closure it does not need directly, breadth first in `DT_NEEDED` order
    /// (as ld.so loads them).
    pub indirect: Vec<usize>,
    /// Nodes listed a second time, by URI, in closure order.
    pub aliases: Vec<usize>,
    /// An object that may be `dlopen`ed (a file of a converted tree no other object
    /// needs, and what it needs) keeps a `DT_RUNPATH` (or the program does) and needs a
    /// `uri:` name the start-up closure does not load: only the name service finds it.
    pub name_service: bool,
}

/// The nodes `n` needs (resolved names only), in `DT_NEEDED` order.
fn deps(closure: &Closure, n: usize) -> impl Iterator<Item = usize> + '_ {
    closure.nodes[n]
        .needed
        .iter()
        .filter_map(|(_, need)| match need {
            Need::Node { node, .. } => Some(*node),
            _ => None,
        })
}

/// Breadth first from `starts`, in `DT_NEEDED` order, skipping `skip`.
fn breadth_first(
    closure: &Closure,
    starts: impl Iterator<Item = usize>,
    skip: &BTreeSet<usize>,
) -> Vec<usize> {
    let mut seen: BTreeSet<usize> = skip.clone();
    let mut order = Vec::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    for s in starts {
        if seen.insert(s) {
            queue.push_back(s);
        }
    }
    while let Some(n) = queue.pop_front() {
        order.push(n);
        for d in deps(closure, n) {
            if seen.insert(d) {
                queue.push_back(d);
            }
        }
    }
    order
}

/// The listing of program `program`. `keeps_runpath(n)`: whether node `n` keeps a
/// `DT_RUNPATH` once converted. `loose`: files of the conversion that nothing needs and
/// that are not programs (plugins, extension modules, a JDK's `libjvm.so`).
pub fn listing(
    closure: &Closure,
    program: usize,
    keeps_runpath: &dyn Fn(usize) -> bool,
    loose: &[usize],
) -> Listing {
    let direct: Vec<usize> = deps(closure, program).collect();
    let none = BTreeSet::from([program]);
    let startup = breadth_first(closure, direct.iter().copied(), &none);
    let in_startup: BTreeSet<usize> = startup.iter().copied().collect();
    let program_runpath = keeps_runpath(program);
    let blind = |n: usize| program_runpath || keeps_runpath(n);
    let mut aliased: BTreeSet<usize> = BTreeSet::new();
    for &n in &startup {
        if blind(n) {
            aliased.extend(deps(closure, n));
        }
    }
    let mut skip = in_startup.clone();
    skip.insert(program);
    let later = breadth_first(closure, loose.iter().copied(), &skip);
    let mut name_service = false;
    for &n in &later {
        if blind(n) {
            for d in deps(closure, n) {
                if in_startup.contains(&d) {
                    aliased.insert(d);
                } else {
                    name_service = true;
                }
            }
        }
    }
    let direct_set: BTreeSet<usize> = direct.iter().copied().collect();
    Listing {
        indirect: startup
            .iter()
            .copied()
            .filter(|n| !direct_set.contains(n))
            .collect(),
        aliases: startup
            .iter()
            .copied()
            .filter(|n| aliased.contains(n))
            .collect(),
        name_service,
    }
}

/// The index entry of a program's search path, for a program whose store reference
/// (`DT_LDCAS_STORE`) is `store`: `$ORIGIN`-relative when the reference is relative, so
/// tools that run ld.so on the file (`ldd`) find the libraries too.
pub fn index_entry(store: &str, table_dir: Option<&str>) -> String {
    let base = if store.starts_with('/') {
        store.to_string()
    } else {
        format!("$ORIGIN/{store}")
    };
    match table_dir {
        Some(t) if !t.is_empty() => format!("{base}/{t}/index"),
        _ => format!("{base}/index"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_follow_the_store_reference() {
        assert_eq!(index_entry("..", None), "$ORIGIN/../index");
        assert_eq!(index_entry("/s", None), "/s/index");
        assert_eq!(
            index_entry("../..", Some("x-out/lib/ld-cas")),
            "$ORIGIN/../../x-out/lib/ld-cas/index"
        );
    }
}
