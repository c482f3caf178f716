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

use super::search::{Found, Search, Searcher, Via};
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
}

/// Decides which names are kept as plain sonames.
pub struct KeepRules {
    /// `--keep-soname` glob patterns.
    pub patterns: Vec<glob::Pattern>,
}

impl KeepRules {
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

    /// Searches `name` for `chain[0]` (loaded by `chain[1]`, ...): the host path found and
    /// the search-path entry that found it.
    fn search(
        &self,
        search: &Search,
        chain: &[usize],
        name: &[u8],
    ) -> Option<(PathBuf, Option<Served>)> {
        let searchers: Vec<&Searcher> = chain.iter().map(|&c| &self.nodes[c].searcher).collect();
        let Found { path, via } = search.find(name, &searchers)?;
        let served_by = match via {
            Via::Rpath { owner, index } => chain.get(owner).map(|&owner| Served {
                owner,
                rpath: true,
                index,
            }),
            Via::Runpath { index } => Some(Served {
                owner: chain[0],
                rpath: false,
                index,
            }),
            Via::Path | Via::Cache | Via::Default => None,
        };
        Some((path, served_by))
    }

    /// Resolves the needs of `root` and of everything it reaches, breadth first as
    /// `ld.so` loads them: a name already resolved in this walk (by name or soname) is not
    /// searched again. Names an interpreter satisfies by its own soname are kept.
    pub fn resolve_from(
        &mut self,
        root: usize,
        search: &Search,
        keep: &KeepRules,
        allow_missing: bool,
    ) -> Result<()> {
        let mut loaded: HashMap<Vec<u8>, usize> = HashMap::new();
        // Parent in the load order, for `DT_RPATH` inheritance.
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([root]);
        let mut seen = std::collections::HashSet::from([root]);
        while let Some(n) = queue.pop_front() {
            if let Some(s) = &self.nodes[n].soname {
                loaded.entry(s.clone()).or_insert(n);
            }
            let already_resolved = self.nodes[n]
                .needed
                .iter()
                .any(|(_, need)| !matches!(need, Need::Keep { .. }));
            let mut chain_nodes = vec![n];
            while let Some(&p) = chain_nodes.last().and_then(|c| parent.get(c)) {
                if chain_nodes.contains(&p) {
                    break;
                }
                chain_nodes.push(p);
            }
            for i in 0..self.nodes[n].needed.len() {
                let name = self.nodes[n].needed[i].0.clone();
                let need = if already_resolved {
                    self.nodes[n].needed[i].1.clone()
                } else if super::is_interpreter_soname(&name) || resolver::uri::Hash::is_uri(&name)
                {
                    Need::Keep { served_by: None }
                } else if keep.keeps(&name) {
                    let served_by = self
                        .search(search, &chain_nodes, &name)
                        .and_then(|(_, s)| s);
                    Need::Keep { served_by }
                } else if let Some(&dep) = loaded.get(&name) {
                    // ld.so matches an already loaded object by name or soname.
                    Need::Node {
                        node: dep,
                        served_by: None,
                    }
                } else {
                    match self.search(search, &chain_nodes, &name) {
                        Some((path, served_by)) => {
                            let dep = self.node_for(&path, search)?;
                            Need::Node { node: dep, served_by }
                        }
                        None if allow_missing => {
                            self.missing.push((
                                String::from_utf8_lossy(&name).into_owned(),
                                self.nodes[n].searcher.path.display().to_string(),
                            ));
                            Need::Missing
                        }
                        None => bail!(
                            "{} needs {}, which ld.so would not find (searched its RPATH/RUNPATH, ld.so.cache and the default directories{}); pass --allow-missing to convert it anyway",
                            self.nodes[n].searcher.path.display(),
                            String::from_utf8_lossy(&name),
                            if search.has_sysroot() { " under the sysroot" } else { "" }
                        ),
                    }
                };
                if let Need::Node { node: dep, .. } = need {
                    loaded.entry(name.clone()).or_insert(dep);
                    self.nodes[dep].is_library = true;
                    if seen.insert(dep) {
                        parent.entry(dep).or_insert(n);
                        queue.push_back(dep);
                    }
                }
                self.nodes[n].needed[i].1 = need;
            }
        }
        Ok(())
    }
}
