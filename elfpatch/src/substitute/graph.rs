//! The reference graph a substitution works on: the store's listed objects, and the
//! converted files its roots hold (programs and tree files in `STORE/bin` and in the
//! registered roots), each with the URIs it contains.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use resolver::cycle_rule::member_addresses;
use resolver::cycles;
use resolver::hash::{hash_bytes, map_file};
use resolver::refs::references;
use resolver::store::{Store, BIN_DIR};
use resolver::uri::Hash;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A listed object: addressed, rewritten into a new object.
    Object,
    /// A file of a root (a program, a plugin): not addressed, rewritten in place.
    File,
}

/// One object or file.
struct Node {
    kind: NodeKind,
    path: PathBuf,
    hash: Option<Hash>,
    soname: Vec<u8>,
    refs: Vec<Hash>,
}

/// The graph.
pub struct Graph {
    nodes: Vec<Node>,
    by_hash: HashMap<Hash, usize>,
}

/// One rewrite of the plan.
pub struct Step {
    pub kind: NodeKind,
    pub path: PathBuf,
    pub old: Option<Hash>,
    pub new: Option<Hash>,
    pub soname: Vec<u8>,
    pub old_bytes: Vec<u8>,
    pub bytes: Vec<u8>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The references in the file at `path` (an unreadable file is an error: what it needs
/// would be missed).
fn file_refs(path: &Path) -> Result<Vec<Hash>> {
    let bytes = fs::File::open(path)
        .and_then(|f| map_file(&f))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(references(&bytes).map(|(_, h)| h).collect())
}

/// The regular ELF files at or under `root` (symbolic links are not followed).
fn elf_files(root: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = fs::metadata(root).with_context(|| format!("cannot stat {}", root.display()))?;
    let mut stack = Vec::new();
    if meta.is_dir() {
        stack.push(root.to_path_buf());
    } else if meta.is_file() {
        out.push(root.to_path_buf());
    }
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.retain(|p| crate::convert::search::elf_ident(p).is_some());
    out.sort();
    Ok(())
}

/// Replaces every reference in `bytes` whose URI `map` maps.
fn retarget(bytes: &mut [u8], map: &HashMap<Hash, Hash>) {
    let spots: Vec<(usize, Hash)> = references(bytes)
        .filter_map(|(at, h)| map.get(&h).map(|n| (at, *n)))
        .collect();
    for (at, to) in spots {
        let uri = to.to_uri_bytes();
        bytes[at..at + uri.len()].copy_from_slice(&uri);
    }
}

impl Graph {
    /// The store's objects and the converted files of its roots.
    pub fn read(store: &Store) -> Result<Graph> {
        let mut nodes = Vec::new();
        let mut by_hash = HashMap::new();
        let mut listed_paths = HashSet::new();
        for e in store.entries()? {
            let path = store.absolute(&e.path);
            listed_paths.insert(path.canonicalize().unwrap_or_else(|_| path.clone()));
            by_hash.insert(e.hash, nodes.len());
            nodes.push(Node {
                kind: NodeKind::Object,
                refs: file_refs(&path)?,
                path,
                hash: Some(e.hash),
                soname: e.soname,
            });
        }
        let mut roots = vec![store.root().join(BIN_DIR)];
        for root in store.registered_roots()? {
            if root.live {
                roots.push(root.target);
            }
        }
        let mut files = Vec::new();
        for root in roots.iter().filter(|r| r.exists()) {
            elf_files(root, &mut files)?;
        }
        for path in files {
            let real = path.canonicalize().unwrap_or_else(|_| path.clone());
            if listed_paths.contains(&real) {
                continue;
            }
            let refs = file_refs(&path)?;
            if refs.is_empty() {
                continue;
            }
            nodes.push(Node {
                kind: NodeKind::File,
                path,
                hash: None,
                soname: Vec::new(),
                refs,
            });
        }
        Ok(Graph { nodes, by_hash })
    }

    /// Whether the store lists `hash`.
    pub fn is_listed(&self, hash: &Hash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// The bytes of the listed object `hash`.
    pub fn bytes_of_listed(&self, hash: &Hash) -> Result<Vec<u8>> {
        let n = self
            .by_hash
            .get(hash)
            .with_context(|| format!("{hash} is not in the store"))?;
        read(&self.nodes[*n].path)
    }

    /// The nodes the roots' files reach.
    fn live(&self) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        let mut queue: VecDeque<usize> = (0..self.nodes.len())
            .filter(|&n| self.nodes[n].kind == NodeKind::File)
            .collect();
        for &n in &queue {
            live[n] = true;
        }
        while let Some(n) = queue.pop_front() {
            for h in &self.nodes[n].refs {
                if let Some(&d) = self.by_hash.get(h) {
                    if !live[d] {
                        live[d] = true;
                        queue.push_back(d);
                    }
                }
            }
        }
        live
    }

    /// The live nodes that depend on `old`, directly or transitively.
    fn dependents(&self, old: &Hash) -> Vec<usize> {
        let live = self.live();
        let mut reverse: HashMap<Hash, Vec<usize>> = HashMap::new();
        for (n, node) in self.nodes.iter().enumerate() {
            if live[n] {
                for h in &node.refs {
                    reverse.entry(*h).or_default().push(n);
                }
            }
        }
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([*old]);
        while let Some(h) = queue.pop_front() {
            for &n in reverse.get(&h).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(n) {
                    if let Some(nh) = self.nodes[n].hash {
                        queue.push_back(nh);
                    }
                }
            }
        }
        let mut out: Vec<usize> = seen.into_iter().collect();
        out.sort_unstable();
        out
    }

    /// The live objects and files that name `old` themselves, with their bytes.
    pub fn direct_dependents(&self, old: &Hash) -> Result<Vec<(PathBuf, Vec<u8>)>> {
        let live = self.live();
        self.nodes
            .iter()
            .enumerate()
            .filter(|(n, node)| live[*n] && node.refs.contains(old))
            .map(|(_, node)| Ok((node.path.clone(), read(&node.path)?)))
            .collect()
    }

    /// Every dependent of `old`, rewritten to name `new`, bottom-up: each object's new
    /// bytes name its dependencies' new URIs; members of a dependency cycle get their
    /// addresses by the cycle rule.
    pub fn rewrite_plan(&self, old: Hash, new: Hash) -> Result<Vec<Step>> {
        let dependents = self.dependents(&old);
        let local: HashMap<usize, usize> = dependents
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, i))
            .collect();
        let edges: Vec<Vec<usize>> = dependents
            .iter()
            .map(|&n| {
                self.nodes[n]
                    .refs
                    .iter()
                    .filter_map(|h| self.by_hash.get(h).and_then(|d| local.get(d)).copied())
                    .collect()
            })
            .collect();
        let component = cycles::components(&edges);
        let count = component.iter().copied().max().map_or(0, |m| m + 1);
        let mut map: HashMap<Hash, Hash> = HashMap::from([(old, new)]);
        let mut steps = Vec::new();
        // Components are numbered sinks first: a component's dependencies come before it.
        for c in 0..count {
            let members: Vec<usize> = (0..dependents.len())
                .filter(|&i| component[i] == c)
                .collect();
            let cyclic = members.len() > 1 || members.iter().any(|&i| edges[i].contains(&i));
            let mut rewritten = Vec::new();
            for &i in &members {
                let node = &self.nodes[dependents[i]];
                let old_bytes = read(&node.path)?;
                let mut bytes = old_bytes.clone();
                retarget(&mut bytes, &map);
                rewritten.push((node, old_bytes, bytes));
            }
            let addresses: Vec<Option<Hash>> = if cyclic {
                let uris: Vec<Hash> = rewritten.iter().filter_map(|(n, ..)| n.hash).collect();
                let objects: Vec<&[u8]> = rewritten.iter().map(|(_, _, b)| b.as_slice()).collect();
                member_addresses(&objects, &uris)
                    .into_iter()
                    .map(|m| Some(m.address))
                    .collect()
            } else {
                rewritten
                    .iter()
                    .map(|(n, _, b)| n.hash.map(|_| hash_bytes(b)))
                    .collect()
            };
            for ((node, _, _), address) in rewritten.iter().zip(&addresses) {
                if let (Some(was), Some(now)) = (node.hash, address) {
                    map.insert(was, *now);
                }
            }
            for ((node, old_bytes, mut bytes), address) in rewritten.into_iter().zip(addresses) {
                if cyclic {
                    retarget(&mut bytes, &map);
                }
                steps.push(Step {
                    kind: node.kind,
                    path: node.path.clone(),
                    old: node.hash,
                    new: address,
                    soname: node.soname.clone(),
                    old_bytes,
                    bytes,
                });
            }
        }
        Ok(steps)
    }
}
