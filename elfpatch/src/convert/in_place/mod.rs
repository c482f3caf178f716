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
//!   Nix store, by a path through a link to its store path: no copies, the store path hashes
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

mod farm;
mod listed;
mod report;
mod tables;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use resolver::store::index;
use resolver::table::write::NewEntry;
use resolver::table::Kind;
use resolver::uri::Hash;

use super::closure::{Closure, KeepRules, Need};
use super::nix_paths::{closure_store_paths, elf_files};
use super::prefixes::Prefixes;
use super::recorded_loader;
use super::rewrite::{self, is_program, Converted, Placement, ProgramRecord};
use super::search::{self, Search, Searches};
use crate::elf::Elf;
use farm::{base_reference, store_path_in, write_farm, Farm};
use listed::Listed;
pub use report::{CopyReport, EntryReport, OutputReport, Report};
use tables::Tables;

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

/// A conversion once its libraries are converted: what the later steps read.
pub struct Run<'a> {
    options: &'a Options,
    /// The outputs, canonical.
    outputs: Vec<PathBuf>,
    /// The Nix store directory.
    store_dir: PathBuf,
    closure: Closure,
    /// Every node's real place.
    places: Vec<PathBuf>,
    /// The outputs' ELF files by node (hard links of one file together).
    paths_of: BTreeMap<usize, Vec<PathBuf>>,
    /// The converted libraries and tree files.
    converted: HashMap<usize, Converted>,
    /// Every node's URI, once converted.
    libraries: Vec<Option<Hash>>,
    prefixes: Prefixes,
}

impl Run<'_> {
    /// The output node `n` lies in.
    fn in_output(&self, n: usize) -> Option<usize> {
        self.outputs
            .iter()
            .position(|o| self.places[n].starts_with(o))
    }
}

/// Converts `options.outputs` where they lie.
pub fn convert_in_place(options: &Options) -> Result<Report> {
    let started = Instant::now();
    let Inputs {
        outputs,
        store_dir,
        keep,
    } = inputs(options)?;
    let mut report = Report {
        nix_store: store_dir.clone(),
        ..Report::default()
    };
    let Found {
        mut closure,
        searches,
        paths_of,
    } = elf_files_of(&outputs, &mut report)?;
    let roots: Vec<usize> = paths_of.keys().copied().collect();
    closure.resolve(&roots, &searches, &keep, options.allow_missing)?;
    let places = real_places(&closure)?;
    keep_outside_names(&mut closure, &places, &store_dir, &mut report);

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
    let run = Run {
        options,
        outputs,
        store_dir,
        closure,
        places,
        paths_of,
        converted,
        libraries,
        prefixes,
    };

    // The libraries and other files of the outputs, where they lie.
    for (&n, paths) in &run.paths_of {
        if let Some(c) = run.converted.get(&n) {
            write_in_place(&run.closure.nodes[n].bytes, &c.bytes, paths, &mut report)?;
        }
    }
    // The tables, then the programs that name them.
    let mut tables = Tables::default();
    let mut listed: Vec<Option<Listed>> = Vec::new();
    for o in 0..run.outputs.len() {
        let l = listed::listed(&run, o, &mut tables, &mut report)?;
        let has_elf = run.paths_of.keys().any(|&n| run.in_output(n) == Some(o));
        if has_elf {
            run.write_table(o, &l, &mut report)?;
        }
        listed.push(has_elf.then_some(l));
    }
    run.convert_programs(&listed, &mut report)?;
    resolver::atomic::sync_filesystem(&run.store_dir)
        .with_context(|| format!("cannot sync {}", run.store_dir.display()))?;

    report.missing = run
        .closure
        .missing
        .iter()
        .map(|(name, by)| super::Missing {
            name: name.clone(),
            needed_by: by.clone(),
        })
        .collect();
    report.notes.extend(run.closure.notes.iter().cloned());
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// What the options name, checked.
struct Inputs {
    /// The outputs, canonical, each directly in the store directory.
    outputs: Vec<PathBuf>,
    /// The Nix store directory.
    store_dir: PathBuf,
    /// The `--keep-soname` rules.
    keep: KeepRules,
}

/// The outputs, the store directory and the `--keep-soname` rules of `options`.
fn inputs(options: &Options) -> Result<Inputs> {
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
    let keep = KeepRules::parse(&options.keep_sonames)?;
    Ok(Inputs {
        outputs,
        store_dir,
        keep,
    })
}

/// The ELF files of the outputs, before their needs are resolved.
struct Found {
    /// One node per file (hard links of one file are one node).
    closure: Closure,
    /// The search rules of their machines.
    searches: Searches,
    /// Each node's paths.
    paths_of: BTreeMap<usize, Vec<PathBuf>>,
}

/// The ELF files of the outputs (not the tables' own copies), each a node of a new closure.
/// Files the editor refuses are reported.
fn elf_files_of(outputs: &[PathBuf], report: &mut Report) -> Result<Found> {
    // The ELF files of the outputs (not the tables' own copies), each a root.
    let mut closure = Closure::default();
    let mut searches = Searches::new();
    let mut paths_of: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
    for out in outputs {
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
                }
                Err(e) => report.unconverted.push(super::Unconverted {
                    path: file,
                    reason: format!("{e:#}"),
                }),
            }
        }
    }
    Ok(Found {
        closure,
        searches,
        paths_of,
    })
}

/// Every node's real place (symbolic links resolved).
fn real_places(closure: &Closure) -> Result<Vec<PathBuf>> {
    closure
        .nodes
        .iter()
        .map(|n| {
            n.searcher
                .path
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", n.searcher.path.display()))
        })
        .collect()
}

/// A dependency outside the Nix store cannot be listed relative to it: it stays a plain
/// name, found by ld.so's search as before (noted).
fn keep_outside_names(
    closure: &mut Closure,
    places: &[PathBuf],
    store_dir: &Path,
    report: &mut Report,
) {
    for n in 0..closure.nodes.len() {
        for i in 0..closure.nodes[n].needed.len() {
            let (name, need) = &closure.nodes[n].needed[i];
            if let Need::Node { node, served_by } = need {
                if !places[*node].starts_with(store_dir) {
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
}

impl Run<'_> {
    /// Writes output `o`'s ld-cas directory: its links, table and index.
    fn write_table(&self, o: usize, listed: &Listed, report: &mut Report) -> Result<()> {
        let out = &self.outputs[o];
        let store_dir = &self.store_dir;
        let farm = Farm {
            outputs: &self.outputs,
        };
        let dir = out.join(TABLE_DIR);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut links: BTreeSet<PathBuf> = listed.named.clone();
        let mut entries: Vec<NewEntry> = Vec::new();
        for (entry, real) in listed.entries.values() {
            let sp = store_path_in(store_dir, real)?;
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
        // Files in trees keep their homes, which their packages may replace: symbolic links.
        let want = index::wanted(Path::new(""), &entries, index::Links::Symbolic);
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
        Ok(())
    }

    /// Converts the programs of the outputs that have a table (`listed`, by output).
    fn convert_programs(&self, listed: &[Option<Listed>], report: &mut Report) -> Result<()> {
        for (&n, paths) in &self.paths_of {
            let node = &self.closure.nodes[n];
            if !is_program(node) || node.is_library {
                continue;
            }
            let Some(o) = self.in_output(n) else { continue };
            let Some(listed) = &listed[o] else {
                continue;
            };
            let loader = match recorded_loader(node)? {
                Some(h) => Some(h),
                None => listed
                    .entries
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
                report.unconverted.push(crate::convert::Unconverted {
                    path: self.places[n].clone(),
                    reason: "its interpreter lies outside the Nix store".into(),
                });
                continue;
            };
            let record = ProgramRecord {
                interpreter: self.options.interp.to_string_lossy().into_owned(),
                loader,
                store: base_reference(&self.places[n], &self.outputs[o]),
                // Libraries converted in other builds are known here by URI only, not as
                // nodes the program's listing could take apart: a DT_RUNPATH among them
                // needs the service.
                name_service: listed.service,
                // `--interp` names ld-cas itself, outside the output's store.
                store_of_interp: false,
            };
            let bytes = rewrite::convert_program(
                &self.closure,
                n,
                &self.places[n],
                &self.prefixes,
                &self.libraries,
                &record,
            )?;
            write_in_place(&node.bytes, &bytes, paths, report)?;
        }
        Ok(())
    }
}

/// Whether the library `bytes` keeps a `DT_RUNPATH` and needs `uri:` names.
fn keeps_runpath_and_uris(bytes: &[u8]) -> bool {
    Elf::parse(bytes)
        .is_ok_and(|elf| elf.runpath().is_some() && elf.needed().iter().any(|n| Hash::is_uri(n)))
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
