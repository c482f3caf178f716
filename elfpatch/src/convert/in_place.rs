//! `elfpatch convert --in-place`: a Nix build output converted where it lies, in the
//! fixup phase of its own build (`nix/setup-hook.sh`; see `docs/nix.md`).
//!
//! - Every dynamically linked ELF file of the outputs is converted by the rules of
//!   `elfpatch convert` (its needs found from its own point of view, rewritten bottom-up),
//!   with every store path it reaches treated as a tree converted at its place (see
//!   [`super::nix_paths`]): a library gets the URI it gets in its own build, in a later
//!   build that needs it, and from `elfpatch convert` of the finished closure.
//! - Each output gets a lookup table and its index in `OUT/nix-support/ld-cas/`, listing
//!   every library of its closure (and the `ld.so` of its programs) where it lies in the
//!   Nix store, by a path relative to the store directory: no copies, the store path hashes
//!   stay in the output for Nix's reference scanner, and the closure can be copied to
//!   another store directory. Its programs get ld-cas as interpreter and record the store
//!   directory relative to themselves (`../..` for `OUT/bin/prog`) and the table's directory
//!   (`DT_LDCAS_TABLE = <hash>-<name>/nix-support/ld-cas`).
//! - A dependency in another store path cannot be changed. One already converted in its own
//!   build names its needs by URI: they are found in its output's table. One whose
//!   conversion changes nothing (glibc's `libc.so.6`) is listed where it lies. One whose
//!   bytes must change gets its converted copy in `OUT/nix-support/ld-cas/objects/<hex>/`,
//!   with the bytes (and URI) it gets in its own home.
//! - Each output's table lists only its own closure, so outputs of one derivation refer to
//!   each other only where their files do: no reference cycle.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use resolver::hash::hash_bytes;
use resolver::store::index;
use resolver::store::object_file_name;
use resolver::table::write::NewEntry;
use resolver::table::{Kind, Table};
use resolver::uri::Hash;

use super::closure::{Closure, KeepRules, Need};
use super::nix_paths::{closure_store_paths, elf_files, store_path_of};
use super::prefixes::Prefixes;
use super::rewrite::{self, is_program, Converted, Placement, ProgramRecord};
use super::search::{self, Search, Searches};
use crate::elf::{
    Edit, Elf, DT_LDCAS_FLAGS, DT_LDCAS_LOADER, LDCAS_FLAG_INDEX_FIRST, LDCAS_FLAG_NAME_SERVICE,
};

/// Where an output keeps its table, index and converted copies, relative to the output.
pub const TABLE_DIR: &str = "nix-support/ld-cas";
/// Converted copies of libraries of other store paths, inside [`TABLE_DIR`].
pub const COPIES_DIR: &str = "objects";

/// What to convert in place.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The outputs (store paths of one build), converted together.
    pub outputs: Vec<PathBuf>,
    /// The Nix store directory (default: the directory holding the first output).
    pub nix_store: Option<PathBuf>,
    /// The interpreter written into the programs: ld-cas at a stable path.
    pub interp: PathBuf,
    /// `--keep-soname` patterns.
    pub keep_sonames: Vec<String>,
    /// Convert even when a dependency is not found.
    pub allow_missing: bool,
}

/// What an in-place conversion did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// The Nix store directory.
    pub nix_store: PathBuf,
    /// Each output's table.
    pub outputs: Vec<OutputReport>,
    /// ELF files rewritten where they lie.
    pub rewritten: Vec<PathBuf>,
    /// ELF files of the outputs that were already as converted.
    pub unchanged: usize,
    /// Converted copies of libraries of other store paths.
    pub copies: Vec<CopyReport>,
    /// ELF files of the outputs left as they are, and why.
    pub unconverted: Vec<super::Unconverted>,
    /// Dependencies not found (with `--allow-missing`).
    pub missing: Vec<super::Missing>,
    /// Decisions worth knowing.
    pub notes: Vec<String>,
    /// Bytes written.
    pub bytes_written: u64,
    /// Wall time.
    pub seconds: f64,
}

/// One output's table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OutputReport {
    pub output: PathBuf,
    /// The table's directory.
    pub table_dir: PathBuf,
    /// Its entries: URI and path relative to the store directory.
    pub entries: Vec<EntryReport>,
    /// The store paths its ld-cas directory links to.
    pub store_paths: Vec<PathBuf>,
}

/// A table entry.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EntryReport {
    pub uri: String,
    pub path: String,
    pub kind: &'static str,
}

/// A converted copy of another store path's library.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CopyReport {
    pub uri: String,
    pub source: PathBuf,
    pub dest: PathBuf,
}

/// The tables of other store paths, read on first need: each entry with the real path of
/// its file.
struct Tables {
    read: BTreeMap<PathBuf, Vec<(NewEntry, PathBuf)>>,
}

impl Tables {
    fn of(&mut self, store_path: &Path) -> Result<&[(NewEntry, PathBuf)]> {
        if !self.read.contains_key(store_path) {
            let base = store_path.join(TABLE_DIR);
            let file = base.join(resolver::store::TABLE_FILE);
            let entries = match fs::read(&file) {
                Ok(bytes) => read_table(&bytes)
                    .with_context(|| format!("the lookup table {} is damaged", file.display()))?
                    .into_iter()
                    .map(|e| {
                        let at = base.join(OsStr::from_bytes(&e.path));
                        let real = at.canonicalize().with_context(|| {
                            format!(
                                "{} lists {} at {}, which does not exist",
                                file.display(),
                                e.hash,
                                at.display()
                            )
                        })?;
                        Ok((e, real))
                    })
                    .collect::<Result<Vec<_>>>()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
            };
            self.read.insert(store_path.to_path_buf(), entries);
        }
        Ok(&self.read[store_path])
    }

    /// The entry for `hash`, needed by the file at `near`: from the table of its store
    /// path, else from any table read so far.
    fn find(&mut self, hash: &Hash, near: &Path) -> Result<Option<(NewEntry, PathBuf)>> {
        if let Some(sp) = store_path_of(near) {
            if let Some(e) = self.of(&sp)?.iter().find(|(e, _)| &e.hash == hash) {
                return Ok(Some(e.clone()));
            }
        }
        Ok(self
            .read
            .values()
            .flatten()
            .find(|(e, _)| &e.hash == hash)
            .cloned())
    }
}

fn read_table(bytes: &[u8]) -> Result<Vec<NewEntry>> {
    // The table reader is `no_std`: its errors are displayed, not chained.
    let damaged = |e: resolver::table::TableError| anyhow::anyhow!("a damaged lookup table: {e}");
    let table = Table::parse(bytes).map_err(damaged)?;
    table.verify().map_err(damaged)?;
    let mut out = Vec::new();
    for i in 0..table.len() {
        out.push(NewEntry::from(table.entry_checked(i).map_err(damaged)?));
    }
    Ok(out)
}

/// How an output's ld-cas directory names the store paths of its closure: a symbolic link
/// per store path, `<hash>-<name> -> ../../../<hash>-<name>`, except for the outputs
/// converted together, which are named without their hash (`<name>`): Nix may build an
/// output at a temporary path and rewrite its hash afterwards (`nix-build --check` without
/// a sandbox), which a symbolic link survives and a table's check values do not.
struct Farm<'a> {
    outputs: &'a [PathBuf],
}

impl Farm<'_> {
    /// The link name of store path `sp`.
    fn name(&self, sp: &Path) -> Vec<u8> {
        let name = sp.file_name().map(OsStr::as_bytes).unwrap_or_default();
        if self.outputs.iter().any(|o| o == sp) && super::nix_paths::is_store_path_name(name) {
            name[33..].to_vec()
        } else {
            name.to_vec()
        }
    }

    /// The path of the file at `real` (inside the store path `sp`) relative to the ld-cas
    /// directory.
    fn path(&self, sp: &Path, real: &Path) -> Vec<u8> {
        let mut out = self.name(sp);
        if let Ok(rest) = real.strip_prefix(sp) {
            if !rest.as_os_str().is_empty() {
                out.push(b'/');
                out.extend_from_slice(rest.as_os_str().as_bytes());
            }
        }
        out
    }
}

/// The store path holding `real`, which must lie in the store directory.
fn store_path_in(store_dir: &Path, real: &Path) -> Result<PathBuf> {
    match store_path_of(real) {
        Some(sp) if sp.parent() == Some(store_dir) => Ok(sp),
        _ => bail!(
            "{} does not lie in a store path of the Nix store {}",
            real.display(),
            store_dir.display()
        ),
    }
}

/// Converts `options.outputs` where they lie.
pub fn convert_in_place(options: &Options) -> Result<Report> {
    let started = Instant::now();
    if options.outputs.is_empty() {
        bail!("no output to convert");
    }
    let outputs: Vec<PathBuf> = options
        .outputs
        .iter()
        .map(|o| {
            o.canonicalize()
                .with_context(|| format!("cannot open the output {}", o.display()))
        })
        .collect::<Result<_>>()?;
    let store_dir = match &options.nix_store {
        Some(d) => d
            .canonicalize()
            .with_context(|| format!("cannot open the Nix store {}", d.display()))?,
        None => outputs[0]
            .parent()
            .map(Path::to_path_buf)
            .context("an output is the root directory")?,
    };
    for o in &outputs {
        if o.parent() != Some(store_dir.as_path()) || !o.is_dir() {
            bail!(
                "{} is not a directory directly inside the Nix store {} (pass --nix-store DIR)",
                o.display(),
                store_dir.display()
            );
        }
    }
    let keep = KeepRules {
        patterns: options
            .keep_sonames
            .iter()
            .map(|p| {
                glob::Pattern::new(p)
                    .with_context(|| format!("--keep-soname {p:?} is not a valid pattern"))
            })
            .collect::<Result<_>>()?,
    };
    let mut report = Report {
        nix_store: store_dir.clone(),
        ..Report::default()
    };

    // The ELF files of the outputs (not the tables' own copies), each a root.
    let mut closure = Closure::default();
    let mut searches = Searches::new();
    let mut paths_of: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
    let mut output_of: HashMap<usize, usize> = HashMap::new();
    for (i, out) in outputs.iter().enumerate() {
        let mut files = Vec::new();
        elf_files(out, &mut files)?;
        let skip = out.join(TABLE_DIR);
        for file in files.into_iter().filter(|f| !f.starts_with(&skip)) {
            let Some((class64, machine)) = search::elf_ident(&file) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(e) = searches.entry((machine, class64))
            {
                e.insert(Search::new(None, machine, class64)?);
            }
            let problem = match Elf::parse(&fs::read(&file)?) {
                Ok(elf) if !elf.is_dynamic() => continue,
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
            let node = match problem {
                None => closure.node_for(&file, &searches[&(machine, class64)]),
                Some(p) => Err(anyhow::anyhow!(p)),
            };
            match node {
                Ok(n) => {
                    paths_of.entry(n).or_default().push(file);
                    output_of.entry(n).or_insert(i);
                }
                Err(e) => report.unconverted.push(super::Unconverted {
                    path: file,
                    reason: format!("{e:#}"),
                }),
            }
        }
    }
    let roots: Vec<usize> = paths_of.keys().copied().collect();
    closure.resolve(&roots, &searches, &keep, options.allow_missing)?;

    // Every node's real place.
    let places: Vec<PathBuf> = closure
        .nodes
        .iter()
        .map(|n| {
            n.searcher
                .path
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", n.searcher.path.display()))
        })
        .collect::<Result<_>>()?;
    // A dependency outside the Nix store cannot be listed relative to it: it stays a plain
    // name, found by ld.so's search as before.
    for n in 0..closure.nodes.len() {
        for i in 0..closure.nodes[n].needed.len() {
            let (name, need) = &closure.nodes[n].needed[i];
            if let Need::Node { node, served_by } = need {
                if !places[*node].starts_with(&store_dir) {
                    report.notes.push(format!(
                        "{} needs {}, found outside the Nix store at {}: kept as a plain name",
                        places[n].display(),
                        String::from_utf8_lossy(name),
                        places[*node].display()
                    ));
                    closure.nodes[n].needed[i].1 = Need::Keep {
                        served_by: *served_by,
                    };
                }
            }
        }
    }

    let mut trees: BTreeSet<PathBuf> = closure_store_paths(&closure);
    trees.extend(outputs.iter().cloned());
    let trees: Vec<PathBuf> = trees.into_iter().collect();
    let prefixes = Prefixes::new(&trees, &store_dir);
    let placement = Placement {
        prefixes: &prefixes,
        dest_of: places
            .iter()
            .enumerate()
            .filter(|(_, p)| p.starts_with(&store_dir))
            .map(|(n, p)| (n, p.clone()))
            .collect(),
    };
    let mut converted: HashMap<usize, Converted> = HashMap::new();
    let libraries =
        rewrite::convert_libraries(&closure, &placement, &super::Silent, &mut |level| {
            converted.extend(level);
            Ok(())
        })?;

    let in_output = |n: usize| outputs.iter().position(|o| places[n].starts_with(o));

    // The libraries and other files of the outputs, where they lie.
    for (&n, paths) in &paths_of {
        let Some(c) = converted.get(&n) else {
            continue;
        };
        write_in_place(&closure.nodes[n].bytes, &c.bytes, paths, &mut report)?;
    }

    let mut tables = Tables {
        read: BTreeMap::new(),
    };
    // Each output's closure: its entries, with the real path of each file.
    let mut entries_of: Vec<BTreeMap<Hash, (NewEntry, PathBuf)>> =
        vec![BTreeMap::new(); outputs.len()];
    // The store paths each output's closure names by search-path entries.
    let mut named_of: Vec<BTreeSet<PathBuf>> = vec![BTreeSet::new(); outputs.len()];
    // Whether a library of each output's closure keeps a DT_RUNPATH and needs uri: names:
    // ld.so's search of such a library's names does not reach the program's index.
    let mut service_of: Vec<bool> = vec![false; outputs.len()];
    for (o, out) in outputs.iter().enumerate() {
        let mut want: BTreeMap<Hash, (NewEntry, PathBuf)> = BTreeMap::new();
        let mut seen: BTreeSet<usize> = BTreeSet::new();
        // (node, whether another object needs it): the output's own files start it.
        let mut queue: VecDeque<(usize, bool)> = paths_of
            .keys()
            .copied()
            .filter(|n| in_output(*n) == Some(o))
            .map(|n| (n, false))
            .collect();
        let mut listed: BTreeSet<usize> = BTreeSet::new();
        let mut uris: VecDeque<(Hash, PathBuf)> = VecDeque::new();
        while let Some((n, needed)) = queue.pop_front() {
            if needed && listed.insert(n) {
                let node = &closure.nodes[n];
                if let (Some(hash), Some(c)) = (libraries[n], converted.get(&n)) {
                    service_of[o] |= keeps_runpath_and_uris(&c.bytes);
                    let real = if in_output(n).is_some() || c.hash == hash_bytes(&node.bytes) {
                        places[n].clone()
                    } else {
                        let dest = out
                            .join(TABLE_DIR)
                            .join(COPIES_DIR)
                            .join(object_file_name(&hash, &node.name));
                        report.bytes_written +=
                            super::output::write_file_keeping(&places[n], &dest, &c.bytes, 0o555)?;
                        report.copies.push(CopyReport {
                            uri: hash.to_string(),
                            source: places[n].clone(),
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
                    want.insert(hash, (entry, real));
                }
            }
            if !seen.insert(n) {
                continue;
            }
            let node = &closure.nodes[n];
            for list in [&node.searcher.runpath, &node.searcher.rpath]
                .into_iter()
                .flatten()
            {
                for e in list.split(|&b| b == b':') {
                    if let Some(sp) = store_path_of(Path::new(OsStr::from_bytes(e))) {
                        if sp.parent() == Some(store_dir.as_path()) && sp.is_dir() {
                            named_of[o].insert(sp);
                        }
                    }
                }
            }
            for (name, need) in &node.needed {
                match need {
                    Need::Node { node: dep, .. } => queue.push_back((*dep, true)),
                    Need::Keep { .. } => {
                        if let Ok(h) = Hash::parse_uri(name) {
                            uris.push_back((h, places[n].clone()));
                        }
                    }
                    Need::Missing => {}
                }
            }
        }
        // The programs' loaders.
        for &n in seen.iter().filter(|&&n| in_output(n) == Some(o)) {
            let node = &closure.nodes[n];
            if !is_program(node) {
                continue;
            }
            if let Some(recorded) = recorded_loader(node)? {
                uris.push_back((recorded, places[n].clone()));
            } else if let Some(interp) = &node.interpreter {
                let real = interp.canonicalize().with_context(|| {
                    format!(
                        "cannot open the interpreter {} of {}",
                        interp.display(),
                        places[n].display()
                    )
                })?;
                if real.starts_with(&store_dir) {
                    let bytes = fs::read(&real)
                        .with_context(|| format!("cannot read {}", real.display()))?;
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
                    want.insert(hash, (entry, real));
                }
            }
        }
        // Libraries already converted in their own builds: their tables know them.
        while let Some((hash, near)) = uris.pop_front() {
            if want.contains_key(&hash) {
                continue;
            }
            let Some((entry, real)) = tables.find(&hash, &near)? else {
                bail!(
                    "{} needs {hash}, which no lookup table of its store paths lists (<store path>/{TABLE_DIR}/table): convert that dependency in its own build first",
                    near.display(),
                );
            };
            if let Ok(bytes) = fs::read(&real) {
                service_of[o] |= entry.kind == Kind::Library && keeps_runpath_and_uris(&bytes);
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
                            if let Some(sp) =
                                dir.canonicalize().ok().as_deref().and_then(store_path_of)
                            {
                                if sp.parent() == Some(store_dir.as_path()) {
                                    named_of[o].insert(sp);
                                }
                            }
                        }
                    }
                }
            }
            want.insert(hash, (entry, real));
        }
        entries_of[o] = want;
    }

    // The tables, then the programs that name them.
    let farm = Farm { outputs: &outputs };
    let mut has_table = Vec::new();
    for (o, out) in outputs.iter().enumerate() {
        let has_elf = paths_of.keys().any(|&n| in_output(n) == Some(o));
        has_table.push(has_elf);
        if !has_elf {
            continue;
        }
        let dir = out.join(TABLE_DIR);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut links: BTreeSet<PathBuf> = named_of[o].clone();
        let mut entries: Vec<NewEntry> = Vec::new();
        for (entry, real) in entries_of[o].values() {
            let sp = store_path_in(&store_dir, real)?;
            let mut entry = entry.clone();
            entry.path = farm.path(&sp, real);
            entries.push(entry);
            links.insert(sp);
        }
        write_farm(&dir, &farm, &links)?;
        let bytes = resolver::table::write::build(entries.clone(), 0)
            .with_context(|| format!("cannot build the lookup table of {}", out.display()))?;
        let file = dir.join(resolver::store::TABLE_FILE);
        if fs::read(&file).ok().as_deref() != Some(&bytes[..]) {
            resolver::atomic::replace_file_unsynced(
                &file,
                &bytes,
                Some(fs::Permissions::from_mode(0o644)),
            )
            .with_context(|| format!("cannot write {}", file.display()))?;
            report.bytes_written += bytes.len() as u64;
        }
        let want = index::wanted(Path::new(""), &entries);
        index::sync(&dir.join(index::INDEX_DIR), &want)
            .with_context(|| format!("cannot write the index of {}", dir.display()))?;
        report.outputs.push(OutputReport {
            output: out.clone(),
            table_dir: dir.clone(),
            entries: entries
                .iter()
                .map(|e| EntryReport {
                    uri: e.hash.to_string(),
                    path: String::from_utf8_lossy(&e.path).into_owned(),
                    kind: e.kind.name(),
                })
                .collect(),
            store_paths: links.into_iter().collect(),
        });
    }

    for (&n, paths) in &paths_of {
        let node = &closure.nodes[n];
        if !is_program(node) || node.is_library {
            continue;
        }
        let Some(o) = in_output(n) else { continue };
        if !has_table[o] {
            continue;
        }
        let loader = match recorded_loader(node)? {
            Some(h) => Some(h),
            None => entries_of[o]
                .values()
                .find(|(e, real)| {
                    e.kind == Kind::Interpreter
                        && node
                            .interpreter
                            .as_ref()
                            .and_then(|i| i.canonicalize().ok())
                            == Some(real.clone())
                })
                .map(|(e, _)| e.hash),
        };
        let Some(loader) = loader else {
            report.unconverted.push(super::Unconverted {
                path: places[n].clone(),
                reason: "its interpreter lies outside the Nix store".into(),
            });
            continue;
        };
        let record = ProgramRecord {
            interpreter: options.interp.to_string_lossy().into_owned(),
            loader,
            store: base_reference(&places[n], &outputs[o]),
        };
        let bytes =
            rewrite::convert_program(&closure, n, &places[n], &prefixes, &libraries, &record)?;
        // Libraries converted in other builds are known here by URI only, not as nodes the
        // program's listing could take apart: a DT_RUNPATH among them needs the service.
        let bytes = if service_of[o] {
            Edit::new()
                .set_dynamic_value(
                    DT_LDCAS_FLAGS,
                    LDCAS_FLAG_NAME_SERVICE | LDCAS_FLAG_INDEX_FIRST,
                )
                .apply(&bytes)
                .with_context(|| format!("cannot convert {}", places[n].display()))?
        } else {
            bytes
        };
        write_in_place(&node.bytes, &bytes, paths, &mut report)?;
    }
    resolver::atomic::sync_filesystem(&store_dir)
        .with_context(|| format!("cannot sync {}", store_dir.display()))?;

    report.missing = closure
        .missing
        .iter()
        .map(|(name, by)| super::Missing {
            name: name.clone(),
            needed_by: by.clone(),
        })
        .collect();
    report.notes.extend(closure.notes.iter().cloned());
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Whether the library `bytes` keeps a `DT_RUNPATH` and needs `uri:` names.
fn keeps_runpath_and_uris(bytes: &[u8]) -> bool {
    Elf::parse(bytes)
        .is_ok_and(|elf| elf.runpath().is_some() && elf.needed().iter().any(|n| Hash::is_uri(n)))
}

/// The loader a converted program already records.
fn recorded_loader(node: &super::closure::Node) -> Result<Option<Hash>> {
    let elf = Elf::parse(&node.bytes)?;
    match elf.dynamic_string(DT_LDCAS_LOADER) {
        Some(uri) => Ok(Some(Hash::parse_uri(uri).map_err(|e| {
            anyhow::anyhow!(
                "{}: the recorded loader is not a URI: it {e}",
                node.searcher.path.display()
            )
        })?)),
        None => Ok(None),
    }
}

/// Rewrites the file at `paths[0]` (and its hard links `paths[1..]`) with `bytes`, when
/// they differ from `original`, keeping its mode.
fn write_in_place(
    original: &[u8],
    bytes: &[u8],
    paths: &[PathBuf],
    report: &mut Report,
) -> Result<()> {
    let Some(first) = paths.first() else {
        return Ok(());
    };
    if original == bytes {
        report.unchanged += paths.len();
        return Ok(());
    }
    let mode = fs::metadata(first)
        .with_context(|| format!("cannot stat {}", first.display()))?
        .permissions()
        .mode();
    resolver::atomic::replace_file_unsynced(
        first,
        bytes,
        Some(fs::Permissions::from_mode(mode | 0o200)),
    )
    .with_context(|| format!("cannot write {}", first.display()))?;
    report.bytes_written += bytes.len() as u64;
    for other in &paths[1..] {
        resolver::atomic::replace_with_link(first, other)
            .with_context(|| format!("cannot link {} to {}", other.display(), first.display()))?;
    }
    report.rewritten.extend(paths.iter().cloned());
    Ok(())
}

/// How a program at `place` in the output `out` names the output's ld-cas directory:
/// relative to its own directory (`../nix-support/ld-cas` for `OUT/bin/prog`).
fn base_reference(place: &Path, out: &Path) -> String {
    let depth = place
        .parent()
        .and_then(|d| d.strip_prefix(out).ok())
        .map_or(0, |d| d.components().count());
    let mut s = "../".repeat(depth);
    s.push_str(TABLE_DIR);
    s
}

/// Makes the ld-cas directory `dir` hold one link per store path of `links` (and no other
/// link to a store path).
fn write_farm(dir: &Path, farm: &Farm<'_>, links: &BTreeSet<PathBuf>) -> Result<()> {
    let up = "../".repeat(Path::new(TABLE_DIR).components().count() + 1);
    let mut want: BTreeMap<Vec<u8>, PathBuf> = BTreeMap::new();
    for sp in links {
        let name = sp.file_name().map(OsStr::as_bytes).unwrap_or_default();
        let mut target = up.clone().into_bytes();
        target.extend_from_slice(name);
        want.insert(farm.name(sp), PathBuf::from(OsStr::from_bytes(&target)));
    }
    for entry in super::output::sorted_entries(dir)? {
        let name = entry.file_name();
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if is_link && !want.contains_key(name.as_bytes()) {
            fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    for (name, target) in &want {
        let at = dir.join(OsStr::from_bytes(name));
        if fs::read_link(&at).ok().as_ref() == Some(target) {
            continue;
        }
        resolver::atomic::replace_with_symlink(target, &at)
            .with_context(|| format!("cannot link {} to {}", at.display(), target.display()))?;
    }
    Ok(())
}
