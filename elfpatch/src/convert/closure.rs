//! The closure: every ELF file a conversion touches (the programs and tree files asked for,
//! the libraries they need, transitively), and how each `DT_NEEDED` name resolves.
//!
//! Files are identified as `ld.so` identifies them after opening: by device and inode, so
//! a library reached through two paths (a symlink and its target) is one node.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use resolver::hash::{map_file, Mapped};

use super::search::{Found, Search, Searcher, Searches, Via};
use crate::elf::Elf;

/// `DT_FLAGS_1` and its `DF_1_NODEFLIB` bit.
const DT_FLAGS_1: u64 = 0x6fff_fffb;
const DF_1_NODEFLIB: u64 = 0x800;

/// Which search-path entry found a name: entry `index` of the `DT_RUNPATH` (or, when
/// `rpath`, the `DT_RPATH`) of node `owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Served {
    pub owner: usize,
    pub rpath: bool,
    pub index: usize,
}

/// The files an inherited `DT_RPATH` finds for one name, by (device, inode), each with
/// the entry that found it.
type InheritedFinds = std::collections::BTreeMap<(u64, u64), (PathBuf, Served)>;

/// How one `DT_NEEDED` name is handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Left as it is: the name of the interpreter (ld.so satisfies it by its own soname), a
    /// name matching `--keep-soname` (`served_by`: the search-path entry that finds it
    /// now, which must therefore stay), or a name that already is a URI.
    Keep { served_by: Option<Served> },
    /// Resolved to a node.
    Node {
        node: usize,
        served_by: Option<Served>,
    },
    /// Not found; allowed by `--allow-missing`.
    Missing,
}

/// One ELF file of the closure.
pub struct Node {
    /// Its bytes, mapped (a closure can be larger than memory would like).
    pub bytes: Mapped,
    /// What decides where its dependencies are found.
    pub searcher: Searcher,
    /// Its `DT_NEEDED` names, in order, with how each is handled.
    pub needed: Vec<(Vec<u8>, Need)>,
    /// Its `DT_SONAME`.
    pub soname: Option<Vec<u8>>,
    /// Host path of its original interpreter, when it is a program.
    pub interpreter: Option<PathBuf>,
    /// Whether another object needs it: then it goes into `objects/`.
    pub is_library: bool,
    /// Where converted copies are written (programs and tree files).
    pub outputs: Vec<PathBuf>,
    /// A readable name for messages and object file names.
    pub name: String,
    /// `e_machine` and 64-bit class, which pick the search rules.
    pub machine: (u16, bool),
    /// Whether its needs have been resolved.
    resolved: bool,
}

/// Decides which names are kept as plain sonames.
pub struct KeepRules {
    /// `--keep-soname` glob patterns.
    pub patterns: Vec<glob::Pattern>,
}

impl KeepRules {
    /// The rules of `--keep-soname` arguments `patterns`.
    pub fn parse(patterns: &[String]) -> Result<KeepRules> {
        let patterns = patterns
            .iter()
            .map(|p| {
                glob::Pattern::new(p)
                    .with_context(|| format!("--keep-soname {p:?} is not a valid pattern"))
            })
            .collect::<Result<_>>()?;
        Ok(KeepRules { patterns })
    }

    fn keeps(&self, name: &[u8]) -> bool {
        let name = String::from_utf8_lossy(name);
        self.patterns.iter().any(|p| p.matches(&name))
    }
}

/// The whole closure.
#[derive(Default)]
pub struct Closure {
    /// The nodes; indices are stable.
    pub nodes: Vec<Node>,
    by_inode: HashMap<(u64, u64), usize>,
    /// Missing dependencies: (name, who needs it).
    pub missing: Vec<(String, String)>,
    /// Names kept plain because only another file of the conversion provides them.
    pub notes: Vec<String>,
}

/// Reads the facts of an ELF file needed for the closure.
fn read_node(path: &Path, search_root: &dyn Fn(&Path) -> PathBuf) -> Result<Node> {
    let bytes = std::fs::File::open(path)
        .and_then(|f| map_file(&f))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let elf = Elf::parse(&bytes).with_context(|| format!("{}", path.display()))?;
    let nodeflib = elf.dynamic.as_ref().is_some_and(|d| {
        d.entries
            .iter()
            .any(|&(tag, value)| tag == DT_FLAGS_1 && value & DF_1_NODEFLIB != 0)
    });
    let searcher = Searcher {
        path: path.to_path_buf(),
        rpath: elf.rpath().map(<[u8]>::to_vec),
        runpath: elf.runpath().map(<[u8]>::to_vec),
        nodeflib,
    };
    let interpreter = elf
        .interpreter()
        .map(|i| search_root(Path::new(std::ffi::OsStr::from_bytes(i))));
    let needed = elf
        .needed()
        .into_iter()
        .map(|n| (n.to_vec(), Need::Keep { served_by: None }))
        .collect();
    let soname = elf.soname().map(<[u8]>::to_vec);
    let machine = (elf.machine(), elf.class() == crate::elf::Class::Elf64);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Node {
        bytes,
        searcher,
        needed,
        soname,
        interpreter,
        is_library: false,
        outputs: Vec::new(),
        name,
        machine,
        resolved: false,
    })
}

fn inode(path: &Path) -> Result<(u64, u64)> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    Ok((meta.dev(), meta.ino()))
}

impl Closure {
    /// The node of the file at `path`, read on first sight.
    pub fn node_for(&mut self, path: &Path, search: &Search) -> Result<usize> {
        let key = inode(path)?;
        if let Some(&n) = self.by_inode.get(&key) {
            return Ok(n);
        }
        let node = read_node(path, &|p| search.host_path(p))?;
        self.nodes.push(node);
        let n = self.nodes.len() - 1;
        self.by_inode.insert(key, n);
        Ok(n)
    }

    /// Searches `name` for node `n` from its own point of view (its `DT_RPATH` or
    /// `DT_RUNPATH`, the cache, the default directories): the host path found and the
    /// search-path entry that found it.
    fn search(&self, search: &Search, n: usize, name: &[u8]) -> Option<(PathBuf, Option<Served>)> {
        let Found { path, via } = search.find(name, &[&self.nodes[n].searcher])?;
        let served_by = match via {
            Via::Rpath { index, .. } => Some(Served {
                owner: n,
                rpath: true,
                index,
            }),
            Via::Runpath { index } => Some(Served {
                owner: n,
                rpath: false,
                index,
            }),
            Via::Path | Via::Cache | Via::Default => None,
        };
        Some((path, served_by))
    }

    /// Resolves the needs of `roots` and of everything they reach. Each object is resolved
    /// once, from its own point of view: its `DT_RPATH` or `DT_RUNPATH`, `$ORIGIN`, the
    /// cache and the default directories, never from the program or library that reached
    /// it, so its converted bytes (and URI) depend on nothing but its own content and that
    /// of its dependencies. Names an interpreter satisfies by its own soname, and URIs,
    /// are kept.
    ///
    /// Only a name the object cannot find itself depends on who loads it, as in `ld.so`:
    /// - found through the `DT_RPATH` its loaders pass down (an object without
    ///   `DT_RUNPATH` inherits them), the same file for every program of the conversion
    ///   that loads it: that file;
    /// - found as different files for different programs: kept plain, noted;
    /// - not found, but provided by an ELF file of the conversion (by soname or file name:
    ///   the JDK's `libjvm.so`, loaded by path before anything needs it): kept plain,
    ///   which `ld.so` matches against the loaded object at run time, noted;
    /// - anything else is missing.
    pub fn resolve(
        &mut self,
        roots: &[usize],
        searches: &Searches,
        keep: &KeepRules,
        allow_missing: bool,
    ) -> Result<()> {
        let mut unfound: Vec<(usize, usize)> = Vec::new();
        let mut pending: Vec<usize> = roots.to_vec();
        while !pending.is_empty() {
            self.resolve_own(&pending, searches, keep, &mut unfound)?;
            pending = self.resolve_inherited(roots, searches, &mut unfound)?;
        }
        self.classify_unfound(&unfound, allow_missing, searches)
    }

    /// Resolves `start` and everything it reaches from each object's own point of view;
    /// the names an object cannot find itself are added to `unfound`.
    fn resolve_own(
        &mut self,
        start: &[usize],
        searches: &Searches,
        keep: &KeepRules,
        unfound: &mut Vec<(usize, usize)>,
    ) -> Result<()> {
        let mut queue: std::collections::VecDeque<usize> = start.iter().copied().collect();
        while let Some(n) = queue.pop_front() {
            let Some(search) = searches.get(&self.nodes[n].machine) else {
                continue;
            };
            if self.nodes[n].resolved {
                continue;
            }
            self.nodes[n].resolved = true;
            for i in 0..self.nodes[n].needed.len() {
                let name = self.nodes[n].needed[i].0.clone();
                let need =
                    if super::is_interpreter_soname(&name) || resolver::uri::Hash::is_uri(&name) {
                        Need::Keep { served_by: None }
                    } else if keep.keeps(&name) {
                        let served_by = self.search(search, n, &name).and_then(|(_, s)| s);
                        Need::Keep { served_by }
                    } else {
                        match self.search(search, n, &name) {
                            Some((path, served_by)) => {
                                let dep = self.node_for(&path, search)?;
                                Need::Node {
                                    node: dep,
                                    served_by,
                                }
                            }
                            None => {
                                unfound.push((n, i));
                                Need::Missing
                            }
                        }
                    };
                if let Need::Node { node: dep, .. } = need {
                    self.nodes[dep].is_library = true;
                    queue.push_back(dep);
                }
                self.nodes[n].needed[i].1 = need;
            }
        }
        Ok(())
    }

    /// Searches the names in `unfound` through the `DT_RPATH`s their objects inherit from
    /// their loaders, for every root (walked breadth first in `DT_NEEDED` order, as
    /// `ld.so` loads, the roots in path order). A name found as one file for every root
    /// that reaches its object becomes that file; found as several, it is kept plain and
    /// noted. Both leave `unfound`. Returns the nodes this made that still need resolving.
    fn resolve_inherited(
        &mut self,
        roots: &[usize],
        searches: &Searches,
        unfound: &mut Vec<(usize, usize)>,
    ) -> Result<Vec<usize>> {
        let inheriting: std::collections::HashSet<usize> = unfound
            .iter()
            .map(|&(n, _)| n)
            .filter(|&n| self.nodes[n].searcher.runpath.is_none())
            .collect();
        if inheriting.is_empty() {
            return Ok(Vec::new());
        }
        let mut roots = roots.to_vec();
        roots.sort_by(|a, b| {
            self.nodes[*a]
                .searcher
                .path
                .cmp(&self.nodes[*b].searcher.path)
        });
        roots.dedup();
        // (object, needed index) -> the files found for it, by identity.
        let mut found: HashMap<(usize, usize), InheritedFinds> = HashMap::new();
        for &root in &roots {
            let parent = self.load_order(root);
            for &(n, i) in unfound.iter() {
                if !inheriting.contains(&n) || !parent.contains_key(&n) {
                    continue;
                }
                let Some(search) = searches.get(&self.nodes[n].machine) else {
                    continue;
                };
                let mut chain = vec![n];
                while let Some(&Some(p)) = chain.last().and_then(|c| parent.get(c)) {
                    if chain.contains(&p) {
                        break;
                    }
                    chain.push(p);
                }
                let searchers: Vec<&Searcher> =
                    chain.iter().map(|&c| &self.nodes[c].searcher).collect();
                let name = &self.nodes[n].needed[i].0;
                if let Some(Found {
                    path,
                    via: Via::Rpath { owner, index },
                }) = search.find(name, &searchers)
                {
                    let served = Served {
                        owner: chain[owner],
                        rpath: true,
                        index,
                    };
                    found
                        .entry((n, i))
                        .or_default()
                        .insert(inode(&path)?, (path, served));
                }
            }
        }
        let mut pending = Vec::new();
        let mut keys: Vec<(usize, usize)> = found.keys().copied().collect();
        keys.sort_unstable();
        for (n, i) in keys {
            let files = &found[&(n, i)];
            let need = if files.len() == 1 {
                let (path, served) = files.values().next().cloned().expect("one file");
                let search = &searches[&self.nodes[n].machine];
                let dep = self.node_for(&path, search)?;
                self.nodes[dep].is_library = true;
                if !self.nodes[dep].resolved {
                    pending.push(dep);
                }
                Need::Node {
                    node: dep,
                    served_by: Some(served),
                }
            } else {
                let paths: Vec<String> = files
                    .values()
                    .map(|(p, _)| p.display().to_string())
                    .collect();
                self.notes.push(format!(
                    "{} needs {}, which it cannot find itself and which the programs that load it find as different files ({}): kept as a plain name",
                    self.nodes[n].searcher.path.display(),
                    String::from_utf8_lossy(&self.nodes[n].needed[i].0),
                    paths.join(", ")
                ));
                Need::Keep { served_by: None }
            };
            self.nodes[n].needed[i].1 = need;
        }
        unfound.retain(|key| !found.contains_key(key));
        Ok(pending)
    }

    /// The load order from `root`, as `ld.so` loads (breadth first, each object's needs in
    /// `DT_NEEDED` order): each reached object's loader (`None` for the root).
    fn load_order(&self, root: usize) -> HashMap<usize, Option<usize>> {
        let mut parent = HashMap::from([(root, None)]);
        let mut queue = std::collections::VecDeque::from([root]);
        while let Some(n) = queue.pop_front() {
            for (_, need) in &self.nodes[n].needed {
                if let Need::Node { node, .. } = need {
                    if !parent.contains_key(node) {
                        parent.insert(*node, Some(n));
                        queue.push_back(*node);
                    }
                }
            }
        }
        parent
    }

    /// Decides what becomes of the names their objects could not find themselves: kept
    /// plain when an ELF file of the conversion provides them, else missing (an error
    /// unless `allow_missing`).
    fn classify_unfound(
        &mut self,
        unfound: &[(usize, usize)],
        allow_missing: bool,
        searches: &Searches,
    ) -> Result<()> {
        // Every input ELF file is a node already, so the nodes are all the providers.
        let mut provided: HashMap<(Vec<u8>, (u16, bool)), usize> = HashMap::new();
        for p in 0..self.nodes.len() {
            let node = &self.nodes[p];
            let file_name = node
                .searcher
                .path
                .file_name()
                .map(|f| f.as_bytes().to_vec())
                .unwrap_or_default();
            for name in node.soname.iter().cloned().chain([file_name]) {
                provided.entry((name, node.machine)).or_insert(p);
            }
        }
        for &(n, i) in unfound {
            let name = self.nodes[n].needed[i].0.clone();
            let shown = String::from_utf8_lossy(&name).into_owned();
            let by = self.nodes[n].searcher.path.display().to_string();
            if let Some(&p) = provided.get(&(name, self.nodes[n].machine)) {
                self.nodes[n].needed[i].1 = Need::Keep { served_by: None };
                self.notes.push(format!(
                    "{by} needs {shown}, which it cannot find itself: kept as a plain name, which ld.so matches at run time against {} once that is loaded",
                    self.nodes[p].searcher.path.display()
                ));
            } else if allow_missing {
                self.missing.push((shown, by));
            } else {
                let sysroot = searches
                    .get(&self.nodes[n].machine)
                    .is_some_and(Search::has_sysroot);
                bail!(
                    "{by} needs {shown}, which ld.so would not find from {by} (searched its RPATH/RUNPATH, ld.so.cache and the default directories{}), and no file of the conversion provides it; pass --allow-missing to convert it anyway",
                    if sysroot { " under the sysroot" } else { "" }
                );
            }
        }
        Ok(())
    }
}
