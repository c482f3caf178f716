//! `elfpatch substitute`: replacing a library by a compatible one without rebuilding
//! (`docs/substitute.md`).
//!
//! Every converted object and program of the store (those its roots reach) that depends on
//! OLD, directly or transitively, is rewritten bottom-up: URIs have one length, so a
//! dependent's new bytes are its old bytes with each changed dependency's URI written over
//! the old one, and its new URI follows (dependency cycles by the cycle rule). Before
//! anything is written, NEW is checked against what OLD's direct dependents actually use
//! ([`abi`]). The old objects stay, for `store gc`; substituting back restores the old
//! URIs byte for byte.

pub mod abi;
mod graph;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use resolver::hash::hash_bytes;
use resolver::store::{Content, NewObject, Store, OBJECTS_DIR};
use resolver::table::Kind;
use resolver::uri::Hash;

use graph::{Graph, NodeKind};

/// What to substitute.
#[derive(Clone, Debug)]
pub struct Options {
    pub store: PathBuf,
    /// The library replaced: a URI, or a file whose bytes the store lists.
    pub old: String,
    /// Its replacement: a URI the store lists, or a file (converted and added first).
    pub new: String,
    /// Plan and check only.
    pub dry_run: bool,
    /// Accept a replacement with another soname.
    pub allow_soname_change: bool,
}

/// One rewritten object or program.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Rewritten {
    /// Where it lies.
    pub path: PathBuf,
    /// Its URI before and after (programs, which are not addressed, have none).
    pub old_uri: Option<String>,
    pub new_uri: Option<String>,
}

/// What a substitution did (or, dry, would do).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    pub old: String,
    pub new: String,
    pub dry_run: bool,
    /// Every dependent, bottom-up.
    pub rewritten: Vec<Rewritten>,
    pub bytes_written: u64,
    pub seconds: f64,
}

/// The file in the store that records which objects replaced which: lines
/// `<new URI> <old URI>`.
pub const RECORD_FILE: &str = "substitutions";

/// Runs a substitution.
pub fn substitute(options: &Options) -> Result<Report> {
    let started = Instant::now();
    let store = Store::open(&options.store)?;
    let mut batch = store.batch()?;
    let graph = Graph::read(&store)?;
    let old = object_of(&options.old, &graph, "OLD")?;
    let old_bytes = graph.bytes_of_listed(&old)?;
    // NEW is checked before anything is written: a NEW file has the symbols its converted
    // form will have (conversion changes only the names of its dependencies).
    let (new_listed, new_bytes) = match object_of(&options.new, &graph, "NEW") {
        Ok(h) => (Some(h), graph.bytes_of_listed(&h)?),
        Err(_) if Path::new(&options.new).is_file() => (None, read_file(&options.new)?),
        Err(e) => return Err(e),
    };
    check_abi(
        &graph,
        &old,
        &old_bytes,
        &new_bytes,
        new_listed.is_some(),
        options.allow_soname_change,
    )?;
    let new = match new_listed {
        Some(h) => h,
        None if options.dry_run => crate::convert::converted_uri(Path::new(&options.new))?,
        None => crate::convert::convert_library_into(&mut batch, Path::new(&options.new))?,
    };
    if old == new {
        bail!("OLD and NEW are the same object ({old})");
    }
    let plan = graph.rewrite_plan(old, new)?;
    let mut report = Report {
        old: old.to_string(),
        new: new.to_string(),
        dry_run: options.dry_run,
        ..Report::default()
    };
    for step in &plan {
        report.rewritten.push(Rewritten {
            path: step.path.clone(),
            old_uri: step.old.map(|h| h.to_string()),
            new_uri: step.new.map(|h| h.to_string()),
        });
    }
    if options.dry_run {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let mut record: Vec<(Hash, Hash)> = vec![(new, old)];
    // Objects first, each durable before the table lists it; programs after the commit.
    for step in plan.iter().filter(|s| s.kind == NodeKind::Object) {
        let (Some(old_hash), Some(new_hash)) = (step.old, step.new) else {
            continue;
        };
        record.push((new_hash, old_hash));
        let name = step
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let in_objects = step.path.starts_with(store.root().join(OBJECTS_DIR));
        if !in_objects {
            // A library at its home in a tree: the old version moves to objects/ (old
            // programs still load it), the new one takes its place.
            batch.move_to_objects(old_hash, &step.old_bytes, &name)?;
            report.bytes_written += crate::elf::write_atomic(&step.path, &step.bytes)
                .map(|()| step.bytes.len() as u64)
                .with_context(|| format!("cannot write {}", step.path.display()))?;
            resolver::atomic::sync_filesystem(&step.path)
                .with_context(|| format!("cannot sync {}", step.path.display()))?;
        } else {
            report.bytes_written += step.bytes.len() as u64;
        }
        let content = if in_objects {
            Content::Bytes {
                bytes: &step.bytes,
                hash: new_hash,
            }
        } else {
            Content::Placed {
                path: &step.path,
                hash: new_hash,
            }
        };
        batch.put(&[NewObject {
            content,
            name,
            soname: step.soname.clone(),
            kind: Kind::Library,
        }])?;
    }
    write_record(&store, &record)?;
    let committed = batch.commit()?;
    for step in plan.iter().filter(|s| s.kind == NodeKind::File) {
        crate::elf::write_atomic(&step.path, &step.bytes)
            .with_context(|| format!("cannot write {}", step.path.display()))?;
        report.bytes_written += step.bytes.len() as u64;
    }
    drop(committed);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The object `spec` names: a URI the store lists, or a file whose bytes it lists.
fn object_of(spec: &str, graph: &Graph, role: &str) -> Result<Hash> {
    if let Ok(h) = Hash::parse_uri(spec.as_bytes()) {
        if graph.is_listed(&h) {
            return Ok(h);
        }
        bail!("{role} {spec} is not in the store");
    }
    let bytes = std::fs::read(spec)
        .with_context(|| format!("{role} {spec} is neither a URI nor a readable file"))?;
    let h = hash_bytes(&bytes);
    if graph.is_listed(&h) {
        return Ok(h);
    }
    // An original library: the store holds its converted form.
    let converted = crate::convert::converted_uri(Path::new(spec))?;
    if graph.is_listed(&converted) {
        return Ok(converted);
    }
    bail!("{role} {spec} is not in the store (converted, its URI would be {converted})")
}

fn read_file(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {path}"))
}

/// Refuses NEW when a direct dependent of OLD uses something NEW lacks, or when NEW needs
/// something the store does not hold; every problem is named with the dependent.
fn check_abi(
    graph: &Graph,
    old: &Hash,
    old_bytes: &[u8],
    new_bytes: &[u8],
    new_is_converted: bool,
    allow_soname_change: bool,
) -> Result<()> {
    let old_provides = abi::provided(old_bytes).context("cannot read OLD's symbols")?;
    let new_provides = abi::provided(new_bytes).context("cannot read NEW's symbols")?;
    let old_name = old.to_uri_bytes();
    let mut problems = Vec::new();
    // A converted NEW names its needs by URI: the store must hold them. (A NEW file's
    // needs are found when it is converted.)
    for missing in resolver::refs::references(new_bytes)
        .map(|(_, h)| h)
        .filter(|h| new_is_converted && !graph.is_listed(h) && h != old)
    {
        problems.push(format!(
            "NEW needs {missing}, which the store does not hold"
        ));
    }
    for (path, bytes) in graph.direct_dependents(old)? {
        let used = abi::used(&bytes)
            .with_context(|| format!("cannot read the symbols of {}", path.display()))?;
        for p in abi::incompatibilities(
            &used,
            &old_name,
            &old_provides,
            &new_provides,
            allow_soname_change,
        ) {
            problems.push(format!("{}: {p}", path.display()));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    problems.dedup();
    bail!(
        "NEW cannot replace OLD; nothing was written:\n  {}",
        problems.join("\n  ")
    )
}

/// Appends the pairs (new, old) to the store's substitution record, atomically.
fn write_record(store: &Store, pairs: &[(Hash, Hash)]) -> Result<()> {
    let path = store.root().join(RECORD_FILE);
    let mut text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    for (new, old) in pairs {
        text.push_str(&format!("{new} {old}\n"));
    }
    resolver::atomic::replace_file(&path, text.as_bytes(), None)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The substitution record: for each object, the objects it replaced.
pub fn replaced_by(store: &Store) -> Result<HashMap<Hash, Vec<Hash>>> {
    let path = store.root().join(RECORD_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut out: HashMap<Hash, Vec<Hash>> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let mut words = line.split(' ');
        let (Some(new), Some(old), None) = (words.next(), words.next(), words.next()) else {
            bail!(
                "{} line {}: not `<new URI> <old URI>`",
                path.display(),
                n + 1
            );
        };
        let parse = |w: &str| {
            Hash::parse_uri(w.as_bytes())
                .map_err(|e| anyhow::anyhow!("{} line {}: {w} {e}", path.display(), n + 1))
        };
        let replaced = out.entry(parse(new)?).or_default();
        let old = parse(old)?;
        if !replaced.contains(&old) {
            replaced.push(old);
        }
    }
    Ok(out)
}
