//! `elfpatch convert`: programs and trees into a relocatable, content-addressed store.
//!
//! Each PATH is a program or a directory tree. Dependencies are found as `ld.so` would find
//! them ([`search`]); the closure ([`closure`]) is rewritten bottom-up ([`rewrite`]) so
//! every `DT_NEEDED` names a library by URI; libraries and the original interpreters go
//! into the store's `objects/`; programs and trees land under `--out` (default
//! `STORE/bin`) with `PT_INTERP` = ld-cas and the loader and store recorded in two dynamic
//! tags.

pub mod closure;
pub mod in_place;
pub mod ldcache;
mod listing;
pub mod nix_paths;
pub(crate) mod output;
mod place;
mod prefixes;
pub mod rewrite;
pub mod search;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use resolver::hash::hash_bytes;
use resolver::store::{Batch, Content, NewObject, Store, BIN_DIR, LD_CAS_FILE};
use resolver::table::Kind;
use resolver::uri::Hash;

use crate::elf::{Elf, DT_LDCAS_LOADER};
use closure::{Closure, KeepRules};
use output::{plan_outputs, Output};
use rewrite::{is_program, ProgramRecord};
use search::Search;

/// What to convert and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The store (created by `elfpatch store init`).
    pub store: PathBuf,
    /// Where programs and trees land (default `STORE/bin`).
    pub out: Option<PathBuf>,
    /// The interpreter to record (default: the ld-cas installed in the store).
    pub interp: Option<PathBuf>,
    /// Root of the target system's files (for foreign-architecture closures).
    pub sysroot: Option<PathBuf>,
    /// Glob patterns of sonames left as plain names (found by the usual search at run time).
    pub keep_sonames: Vec<String>,
    /// Convert even when a dependency cannot be found.
    pub allow_missing: bool,
    /// Programs and trees.
    pub paths: Vec<PathBuf>,
}

/// What a conversion did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Programs written.
    pub programs: usize,
    /// Other ELF files written in trees (libraries, modules).
    pub tree_elf_files: usize,
    /// Non-ELF files and symlinks copied with trees.
    pub copied: usize,
    /// Libraries in the closure.
    pub libraries: usize,
    /// Objects that were new to the store.
    pub objects_added: usize,
    /// Bytes written (objects and outputs).
    pub bytes_written: u64,
    /// Wall time.
    pub seconds: f64,
    /// Every converted ELF output.
    pub outputs: Vec<Written>,
    /// Every library of the closure.
    pub objects: Vec<Object>,
    /// Dependencies not found (with `--allow-missing`).
    pub missing: Vec<Missing>,
    /// ELF files of trees that could not be converted and were copied as they are.
    pub unconverted: Vec<Unconverted>,
    /// Interpreters that converted programs name but that do not exist (yet): the programs
    /// cannot start until one is installed there.
    pub missing_interpreters: Vec<PathBuf>,
    /// Temporary files of killed earlier writers removed from the output directories.
    pub temporaries_removed: usize,
    /// Decisions worth knowing that need no action: names kept plain because only another
    /// file of the conversion provides them, symbolic links replaced by the programs they
    /// named.
    pub notes: Vec<String>,
    /// What may not work as the user expects (libraries converted with no program that
    /// can load them).
    pub warnings: Vec<String>,
    /// Outputs registered as garbage-collection roots (`STORE/roots`): every converted
    /// program or tree written outside `STORE/bin`.
    pub roots: Vec<PathBuf>,
}

/// A converted file and where it was written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Written {
    pub source: PathBuf,
    pub dest: PathBuf,
}

/// A library of the closure, as stored.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Object {
    pub uri: String,
    pub soname: String,
    /// Where it was found.
    pub source: PathBuf,
}

/// A dependency that was not found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Missing {
    pub name: String,
    pub needed_by: String,
}

/// A tree file copied unconverted, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Unconverted {
    pub path: PathBuf,
    pub reason: String,
}

pub use crate::inspect::is_interpreter_soname;

/// The platform name used in the default interpreter's file name for a foreign machine.
fn platform_name(machine: u16) -> String {
    match machine {
        search::EM_X86_64 => "x86_64".into(),
        search::EM_AARCH64 => "aarch64".into(),
        m => format!("machine{m}"),
    }
}

/// The ld-cas of the store that programs for `machine` name by default: `STORE/ld-cas`
/// for the host's architecture, `STORE/ld-cas-<arch>` for another.
pub fn store_interpreter(store_root: &Path, machine: u16) -> PathBuf {
    if machine == host_machine() {
        store_root.join(LD_CAS_FILE)
    } else {
        store_root.join(format!("{LD_CAS_FILE}-{}", platform_name(machine)))
    }
}

fn host_machine() -> u16 {
    if cfg!(target_arch = "aarch64") {
        search::EM_AARCH64
    } else {
        search::EM_X86_64
    }
}

/// Where a conversion reports how far it got (a progress bar on a terminal).
pub trait Progress: Sync {
    /// A phase starts, with `total` steps (0: unknown).
    fn phase(&self, name: &str, total: u64);
    /// `n` more steps of the current phase are done.
    fn advance(&self, n: u64);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// Converts `options.paths` into the store.
pub fn convert(options: &Options, progress: &dyn Progress) -> Result<Report> {
    let started = Instant::now();
    let store = Store::open(&options.store)?;
    let out_dir = match &options.out {
        Some(d) => d.clone(),
        None => store.root().join(BIN_DIR),
    };
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let out_dir = out_dir
        .canonicalize()
        .with_context(|| format!("cannot open {}", out_dir.display()))?;
    let keep = KeepRules::parse(&options.keep_sonames)?;

    progress.phase("reading inputs", 0);
    // A Nix closure: every store path it reaches lands as a package tree.
    let inputs = nix_paths::with_store_paths(&options.paths, options.sysroot.as_deref(), &keep)?;
    let plan = plan_outputs(&inputs, &out_dir)?;
    let outputs = plan.outputs;
    let mut closure = Closure::default();
    let mut searches = search::Searches::new();
    // (node, index of its output in `outputs`) for every ELF output.
    let mut elf_outputs: Vec<(usize, usize)> = Vec::new();
    for (i, output) in outputs.iter().enumerate() {
        let Output::Elf { source, ident, .. } = output else {
            continue;
        };
        if !searches.contains_key(ident) {
            let search = Search::new(options.sysroot.as_deref(), ident.0, ident.1)?;
            searches.insert(*ident, search);
        }
        elf_outputs.push((closure.node_for(source, &searches[ident])?, i));
    }

    progress.phase("resolving dependencies", 0);
    let roots: Vec<usize> = elf_outputs.iter().map(|&(n, _)| n).collect();
    closure.resolve(&roots, &searches, &keep, options.allow_missing)?;

    let loaders = read_loaders(&closure, &elf_outputs)?;
    let mut report = Report {
        temporaries_removed: output::remove_orphaned_temporaries(&outputs, &out_dir)?,
        ..Report::default()
    };
    // One batch, one table update for the whole conversion; the table lists the objects
    // before any program naming them is written.
    let mut batch = store.batch()?;
    store_loaders(&mut batch, &loaders, &mut report)?;

    // Outputs outside the store are registered as roots first: the table names the
    // libraries of such a tree through its link.
    let registered = register_roots(&batch, &store, &inputs, &out_dir, &mut report)?;
    let paths = place::StorePaths::new(store.root(), registered);

    // Each level of libraries goes to its home (its tree, or `objects/`) as soon as it is
    // converted.
    progress.phase("converting libraries", closure.nodes.len() as u64);
    let mut outputs_of = place::OutputsOf::new();
    for &(n, i) in &elf_outputs {
        outputs_of.entry(n).or_default().push(i);
    }
    let prefixes = prefixes::Prefixes::new(&inputs, &out_dir);
    let placement = rewrite::Placement {
        prefixes: &prefixes,
        dest_of: elf_outputs
            .iter()
            .rev()
            .filter_map(|&(n, i)| match &outputs[i] {
                Output::Elf { dest, .. } => Some((n, dest.clone())),
                _ => None,
            })
            .collect(),
    };
    let libraries = rewrite::convert_libraries(&closure, &placement, progress, &mut |level| {
        place::place_level(
            &mut batch,
            &closure,
            &level,
            &outputs,
            &outputs_of,
            &paths,
            &mut report,
        )
    })?;
    // Tree files the table lists must be durable before it does.
    resolver::atomic::sync_filesystem(&out_dir)
        .with_context(|| format!("cannot sync {}", out_dir.display()))?;
    // The lock stays held until the programs are written: a collection in between would
    // find the new libraries unreferenced.
    let committed = batch.commit()?;

    let programs = elf_outputs
        .iter()
        .filter(|(n, _)| is_program(&closure.nodes[*n]))
        .count();
    progress.phase("writing programs", programs as u64);
    // Outputs of one program node (hard links of one file) with the same bytes (the store
    // named from the same depth) are linked again.
    let mut written: HashMap<usize, Vec<(PathBuf, Hash)>> = HashMap::new();
    let mut interpreters = Interpreters::default();
    for &(n, i) in &elf_outputs {
        let node = &closure.nodes[n];
        let Output::Elf {
            source,
            dest,
            ident,
        } = &outputs[i]
        else {
            continue;
        };
        if !is_program(node) {
            continue;
        }
        let loader = match recorded_loader(node)? {
            Some(h) => h,
            None => node
                .interpreter
                .as_ref()
                .and_then(|interp| loaders.iter().find(|l| &l.path == interp))
                .map(|l| l.hash)
                .context("a program without interpreter")?,
        };
        let interpreter = match &options.interp {
            Some(p) => p.clone(),
            None => interpreters.for_loader(&store, &loader, ident.0)?,
        };
        if !interpreter.is_file() && !report.missing_interpreters.contains(&interpreter) {
            report.missing_interpreters.push(interpreter.clone());
        }
        let record = ProgramRecord {
            interpreter: interpreter.to_string_lossy().into_owned(),
            loader,
            store: output::store_reference(dest, store.root()),
            name_service: false,
            store_of_interp: options.interp.is_none()
                && interpreter.starts_with(store.root().join(crate::merged::INTERP_DIR)),
        };
        let bytes = rewrite::convert_program(&closure, n, dest, &prefixes, &libraries, &record)?;
        let hash = hash_bytes(&bytes);
        let same = written.entry(n).or_default();
        let like = same
            .iter()
            .find(|(_, h)| *h == hash)
            .map(|(p, _)| p.as_path());
        report.programs += 1;
        report.bytes_written += output::write_or_link(source, dest, &bytes, like)?;
        same.push((dest.clone(), hash));
        progress.advance(1);
        report.outputs.push(Written {
            source: source.clone(),
            dest: dest.clone(),
        });
    }
    report.copied = output::copy_others(&outputs)?;
    output::keep_times(&outputs)?;
    resolver::atomic::sync_filesystem(&out_dir)
        .with_context(|| format!("cannot sync {}", out_dir.display()))?;
    drop(committed);
    report.unconverted = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Copy {
                source,
                refused: Some(why),
                ..
            } => Some(Unconverted {
                path: source.clone(),
                reason: why.clone(),
            }),
            _ => None,
        })
        .collect();
    report.missing = closure
        .missing
        .iter()
        .map(|(name, by)| Missing {
            name: name.clone(),
            needed_by: by.clone(),
        })
        .collect();
    report.notes.extend(plan.notes);
    report.notes.extend(closure.notes.iter().cloned());
    if report.programs == 0 && report.tree_elf_files > 0 {
        report.warnings.push(format!(
            "no program was converted: the {} converted ELF file(s) name their libraries by URI, which only a program started through ld-cas can load (convert the program that loads them too, such as a venv's python)",
            report.tree_elf_files
        ));
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Registers every input landing outside `STORE/bin` as a garbage-collection root, and
/// returns (where it landed, its link) for each.
fn register_roots(
    batch: &Batch<'_>,
    store: &Store,
    inputs: &[PathBuf],
    out_dir: &Path,
    report: &mut Report,
) -> Result<Vec<(PathBuf, PathBuf)>> {
    let bin = store.root().join(BIN_DIR);
    if bin.canonicalize().is_ok_and(|bin| out_dir.starts_with(bin)) {
        return Ok(Vec::new());
    }
    let mut registered = Vec::new();
    for path in inputs {
        let dest = output::destination(path, out_dir)?;
        let link = batch.add_root(&dest)?;
        report.roots.push(dest.clone());
        registered.push((dest, link));
    }
    Ok(registered)
}

/// An original interpreter (`ld.so`) of the converted programs, read once.
/// The interpreter each loader's programs name: the merged interpreter of that loader
/// (glibc's ld.so) and the store's ld-cas, made once per conversion; else the store's
/// ld-cas itself.
#[derive(Default)]
struct Interpreters {
    made: HashMap<Hash, PathBuf>,
}

impl Interpreters {
    fn for_loader(&mut self, store: &Store, loader: &Hash, machine: u16) -> Result<PathBuf> {
        let standalone = store_interpreter(store.root(), machine);
        if let Some(p) = self.made.get(loader) {
            return Ok(p.clone());
        }
        let listed = store.resolve(loader)?;
        let path = match listed {
            Some(at) if standalone.is_file() => {
                let bytes = std::fs::read(&at)
                    .with_context(|| format!("cannot read the loader {}", at.display()))?;
                let glibc = Elf::parse(&bytes)
                    .ok()
                    .and_then(|e| e.soname().map(|s| s.starts_with(b"ld-linux")))
                    .unwrap_or(false);
                if glibc {
                    crate::merged::install(
                        store.root(),
                        &bytes,
                        loader,
                        &file_name(&at),
                        &standalone,
                    )
                    .with_context(|| {
                        format!("cannot make the merged interpreter of {}", at.display())
                    })?
                } else {
                    standalone
                }
            }
            _ => standalone,
        };
        self.made.insert(*loader, path.clone());
        Ok(path)
    }
}

struct Loader {
    path: PathBuf,
    bytes: Vec<u8>,
    hash: Hash,
    soname: Vec<u8>,
}

/// The interpreters of the programs being converted (but not of those already converted,
/// which record theirs).
fn read_loaders(closure: &Closure, elf_outputs: &[(usize, usize)]) -> Result<Vec<Loader>> {
    let mut loaders: Vec<Loader> = Vec::new();
    for &(n, _) in elf_outputs {
        let node = &closure.nodes[n];
        let Some(interp) = node.interpreter.as_ref().filter(|_| is_program(node)) else {
            continue;
        };
        if recorded_loader(node)?.is_some() || loaders.iter().any(|l| &l.path == interp) {
            continue;
        }
        let bytes = std::fs::read(interp).with_context(|| {
            format!(
                "cannot read the interpreter {} of {}",
                interp.display(),
                node.searcher.path.display()
            )
        })?;
        let soname = Elf::parse(&bytes)
            .ok()
            .and_then(|e| e.soname().map(<[u8]>::to_vec))
            .unwrap_or_default();
        loaders.push(Loader {
            path: interp.clone(),
            hash: hash_bytes(&bytes),
            bytes,
            soname,
        });
    }
    Ok(loaders)
}

/// Puts the interpreters into the store.
fn store_loaders(batch: &mut Batch<'_>, loaders: &[Loader], report: &mut Report) -> Result<()> {
    let objects: Vec<NewObject<'_>> = loaders
        .iter()
        .map(|l| NewObject {
            content: Content::Bytes {
                bytes: &l.bytes,
                hash: l.hash,
            },
            name: file_name(&l.path),
            soname: l.soname.clone(),
            kind: Kind::Interpreter,
        })
        .collect();
    add_objects(batch, &objects, report)
}

/// Adds objects to the batch and counts what was new.
fn add_objects(
    batch: &mut Batch<'_>,
    objects: &[NewObject<'_>],
    report: &mut Report,
) -> Result<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let added = batch.put(objects)?;
    for (a, o) in added.iter().zip(objects) {
        if !a.existed {
            report.objects_added += 1;
            if let Content::Bytes { bytes, .. } = &o.content {
                report.bytes_written += bytes.len() as u64;
            }
        }
    }
    Ok(())
}

/// The loader a converted program already records (converting it again keeps it).
pub(super) fn recorded_loader(node: &closure::Node) -> Result<Option<Hash>> {
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

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Converts the library at `path` (its needs resolved from its own point of view, as
/// `convert` does, and converted bottom-up) into the store as a loose object, with what it
/// needs; returns its URI. `substitute` brings a replacement library in this way.
pub fn convert_library_into(batch: &mut Batch<'_>, path: &Path) -> Result<Hash> {
    let paths = place::StorePaths::new(batch.store().root(), Vec::new());
    let mut report = Report::default();
    convert_library(path, &mut |closure, level| {
        place::place_level(
            batch,
            closure,
            &level,
            &[],
            &place::OutputsOf::new(),
            &paths,
            &mut report,
        )
    })
}

/// The URI the library at `path` gets when converted (nothing is written).
pub fn converted_uri(path: &Path) -> Result<Hash> {
    convert_library(path, &mut |_, _| Ok(()))
}

/// Converts the library at `path` and its closure, each level going to `sink`; returns its
/// URI.
fn convert_library(
    path: &Path,
    sink: &mut dyn FnMut(&Closure, rewrite::Level) -> Result<()>,
) -> Result<Hash> {
    let (class64, machine) = search::elf_ident(path)
        .with_context(|| format!("{} is not an ELF file", path.display()))?;
    let mut searches = search::Searches::new();
    searches.insert((machine, class64), Search::new(None, machine, class64)?);
    let mut closure = Closure::default();
    let root = closure.node_for(path, &searches[&(machine, class64)])?;
    closure.resolve(
        &[root],
        &searches,
        &KeepRules {
            patterns: Vec::new(),
        },
        false,
    )?;
    closure.nodes[root].is_library = true;
    let prefixes = prefixes::Prefixes::default();
    let placement = rewrite::Placement {
        prefixes: &prefixes,
        dest_of: HashMap::new(),
    };
    let libraries = rewrite::convert_libraries(&closure, &placement, &Silent, &mut |level| {
        sink(&closure, level)
    })?;
    libraries[root].with_context(|| format!("{} was not converted", path.display()))
}
