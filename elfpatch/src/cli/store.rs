//! `elfpatch store`: init, add, resolve, list, verify.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use resolver::store::{Content, NewObject, Store, BIN_DIR, LD_CAS_FILE};
use resolver::table::Kind;
use resolver::uri::Hash;

use crate::convert::search::elf_ident;
use crate::inspect::elf_facts;

/// The store directory, shared by every store subcommand.
#[derive(Debug, Args)]
pub struct StoreArg {
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    store: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create an empty store (or check that DIR already is one) and install ld-cas in it.
    ///
    /// A store is a directory holding `objects/` (read-only files named
    /// `<hash>/<file name>`), `table` (the lookup table ld-cas maps), `lock`, and `ld-cas`
    /// (the interpreter converted programs name by default). Every path in the table is
    /// relative to the store, so the directory can be moved freely.
    Init {
        #[command(flatten)]
        store: StoreArg,
        /// An ld-cas binary to install: as STORE/ld-cas when it is for this machine, as
        /// STORE/ld-cas-<arch> for another (e.g. an aarch64 build, STORE/ld-cas-aarch64,
        /// which aarch64 programs converted into the store name). Repeatable [default: the
        /// `ld-cas` installed with this elfpatch: beside it, in ../libexec or in ../lib;
        /// none there and none in the store yet is an error].
        #[arg(long, value_name = "PATH")]
        ld_cas: Vec<PathBuf>,
    },
    /// Copy files into the store; print `URI<TAB>FILE` for each.
    ///
    /// Each file is copied, hashed (BLAKE3 of its bytes, the value `b3sum` prints) and
    /// listed in the table with its soname and kind. Adding a file that is already there
    /// changes nothing. Several `add` commands may run at once: they take turns.
    Add {
        #[command(flatten)]
        store: StoreArg,
        /// Record this kind instead of the one inferred from the file
        /// (program: has an interpreter and no soname; interpreter: an ld.so soname).
        #[arg(long, value_parser = parse_kind)]
        kind: Option<Kind>,
        /// ELF files to add.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print the absolute path of each URI's object, one per line.
    ///
    /// An unknown URI is reported by name and makes the command exit with status 1.
    Resolve {
        #[command(flatten)]
        store: StoreArg,
        /// URIs (`uri:blake3:<64 hex digits>`).
        #[arg(required = true, value_name = "URI")]
        uris: Vec<String>,
    },
    /// List the objects: URI, kind, size, soname, path.
    List {
        #[command(flatten)]
        store: StoreArg,
        /// Print a JSON array of objects with `uri`, `soname`, `size`, `kind`, `path`
        /// (absolute).
        #[arg(long)]
        json: bool,
    },
    /// Remove the objects that no converted program or tree refers to any more.
    ///
    /// The roots are every file under STORE/bin (where `convert` writes by default), the
    /// programs and trees `convert --out` wrote elsewhere (registered as links in
    /// STORE/roots), and each --root (a file, or a directory walked for files). An object is
    /// kept when a root or a kept object names it (any `uri:blake3:` in its bytes:
    /// DT_NEEDED, version needs, the loader a program records). A registered root whose
    /// program or tree is gone (deleted or moved) is stale: its link is removed, and with
    /// it what only that program needed. The new table is durable before any object is
    /// deleted; files in STORE/objects that the table does not list are removed too.
    Gc {
        #[command(flatten)]
        store: StoreArg,
        /// More roots: programs or trees that name objects of the store but were not
        /// converted into it by `convert` (copies, say). Repeatable.
        #[arg(long, value_name = "PATH")]
        root: Vec<PathBuf>,
        /// Only print what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON report: `removed` (uri, soname, size, path), `unlisted`,
        /// `stale_roots` (the programs or trees whose registration was dropped), `kept`,
        /// `bytes`, `dry_run`.
        #[arg(long)]
        json: bool,
    },
    /// Rehash every object and check the table.
    ///
    /// Each object must hash to its URI (by the cycle rule of docs/uri.md) and have the
    /// recorded size; the table must be intact. Every problem is printed with the object's
    /// URI and path, and the command exits with status 1 if there is any.
    Verify(StoreArg),
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    Kind::from_name(text)
        .ok_or_else(|| format!("unknown kind {text:?}: expected library, interpreter or program"))
}

fn open(arg: &StoreArg) -> Result<Store> {
    Ok(Store::open(&arg.store)?)
}

/// Runs a store subcommand.
pub fn run(cmd: StoreCommand) -> Result<ExitCode> {
    match cmd {
        StoreCommand::Init { store, ld_cas } => {
            let default = if ld_cas.is_empty() {
                default_ld_cas(&store.store)?
            } else {
                None
            };
            let store = Store::init(&store.store)?;
            if let Some(path) = default {
                install_ld_cas(&store, &path)?;
            }
            for path in &ld_cas {
                install_ld_cas(&store, path)?;
            }
            println!("{}", store.root().display());
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Add { store, kind, files } => add(&open(&store)?, kind, &files),
        StoreCommand::Resolve { store, uris } => resolve(&open(&store)?, &uris),
        StoreCommand::List { store, json } => list(&open(&store)?, json),
        StoreCommand::Verify(arg) => verify(&open(&arg)?),
        StoreCommand::Gc {
            store,
            root,
            dry_run,
            json,
        } => gc(&open(&store)?, root, dry_run, json),
    }
}

/// Where an ld-cas is installed with this elfpatch, in the layouts people install them in:
/// beside it (`cargo build`, `/usr/local/bin`), in `../libexec` or in `../lib` (a Nix
/// package's `$out/bin/elfpatch` and `$out/libexec/ld-cas`).
fn installed_ld_cas() -> Vec<PathBuf> {
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    else {
        return Vec::new();
    };
    ["", "../libexec", "../lib"]
        .iter()
        .map(|sub| dir.join(sub).join(LD_CAS_FILE))
        .collect()
}

/// The ld-cas `store init` installs by default: the first installed one; none is needed
/// when the store at `root` already has one; otherwise an error naming where it looked.
fn default_ld_cas(root: &Path) -> Result<Option<PathBuf>> {
    let candidates = installed_ld_cas();
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(Some(found.clone()));
    }
    if root.join(LD_CAS_FILE).is_file() {
        return Ok(None);
    }
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    anyhow::bail!(
        "no ld-cas to install in {} (looked at {}): pass --ld-cas PATH; converted programs name STORE/ld-cas as their interpreter and cannot start without it",
        root.display(),
        looked.join(", ")
    )
}

/// Copies the ld-cas at `source` into the store under the name programs of its
/// architecture use (when it is not there already, byte for byte).
fn install_ld_cas(store: &Store, source: &Path) -> Result<()> {
    let bytes =
        std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    let (_, machine) = elf_ident(source)
        .with_context(|| format!("{} is not an ELF file (an ld-cas binary)", source.display()))?;
    let dest = crate::convert::store_interpreter(store.root(), machine);
    if std::fs::read(&dest).ok().as_deref() == Some(&bytes[..]) {
        return Ok(());
    }
    use std::os::unix::fs::PermissionsExt;
    resolver::atomic::replace_file(&dest, &bytes, Some(std::fs::Permissions::from_mode(0o555)))
        .with_context(|| format!("cannot install ld-cas as {}", dest.display()))?;
    // The merged interpreters hold a copy of ld-cas: they get the new one too.
    let _lock = store.lock()?;
    crate::merged::refresh(store, machine, &dest).with_context(|| {
        format!(
            "cannot rebuild the merged interpreters of {}",
            store.root().display()
        )
    })?;
    Ok(())
}

fn add(store: &Store, kind: Option<Kind>, files: &[PathBuf]) -> Result<ExitCode> {
    let mut objects = Vec::with_capacity(files.len());
    for file in files {
        let meta =
            std::fs::metadata(file).with_context(|| format!("cannot open {}", file.display()))?;
        if !meta.is_file() {
            anyhow::bail!("{} is not a regular file", file.display());
        }
        let bytes = std::fs::File::open(file)
            .and_then(|f| resolver::hash::map_file(&f))
            .with_context(|| format!("cannot read {}", file.display()))?;
        let facts = elf_facts(&bytes, &file.display().to_string())?;
        objects.push(NewObject {
            content: Content::File(file),
            name: file_name(file),
            soname: facts.soname.unwrap_or_default().into_bytes(),
            kind: kind.unwrap_or(facts.kind),
        });
    }
    let added = store.add(&objects)?;
    let mut out = io::stdout().lock();
    for (a, file) in added.iter().zip(files) {
        writeln!(out, "{}\t{}", a.hash, file.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn resolve(store: &Store, uris: &[String]) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    let mut status = ExitCode::SUCCESS;
    for uri in uris {
        let hash = Hash::parse_uri(uri.as_bytes())
            .map_err(|e| anyhow::anyhow!("{uri:?} is not a URI: it {e}"))?;
        match store.resolve(&hash)? {
            Some(path) => writeln!(out, "{}", path.display())?,
            None => {
                eprintln!(
                    "elfpatch: {uri} is not in the store {}",
                    store.root().display()
                );
                status = ExitCode::FAILURE;
            }
        }
    }
    Ok(status)
}

fn list(store: &Store, json: bool) -> Result<ExitCode> {
    let entries = store.entries()?;
    let replaced = crate::substitute::replaced_by(store)?;
    let replaces = |h: &resolver::uri::Hash| -> Vec<String> {
        replaced
            .get(h)
            .map(|olds| olds.iter().map(|o| o.to_string()).collect())
            .unwrap_or_default()
    };
    let mut out = io::stdout().lock();
    if json {
        let items: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "uri": e.hash.to_string(),
                    "soname": String::from_utf8_lossy(&e.soname),
                    "size": e.size,
                    "kind": e.kind.name(),
                    "path": store.absolute(&e.path).to_string_lossy(),
                    "replaces": replaces(&e.hash),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &items)?;
        writeln!(out)?;
    } else {
        for e in &entries {
            let soname = if e.soname.is_empty() {
                "-".into()
            } else {
                String::from_utf8_lossy(&e.soname)
            };
            let replacing: String = replaces(&e.hash)
                .iter()
                .map(|o| format!("\treplaces {o}"))
                .collect();
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}{replacing}",
                e.hash,
                e.kind,
                e.size,
                soname,
                store.absolute(&e.path).display()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn gc(store: &Store, mut roots: Vec<PathBuf>, dry_run: bool, json: bool) -> Result<ExitCode> {
    let bin = store.root().join(BIN_DIR);
    if bin.is_dir() {
        roots.push(bin);
    }
    let collected = store.collect_garbage(&roots, dry_run)?;
    let mut out = io::stdout().lock();
    if json {
        let removed: Vec<_> = collected
            .removed
            .iter()
            .map(|r| {
                serde_json::json!({
                    "uri": r.hash.to_string(),
                    "soname": String::from_utf8_lossy(&r.soname),
                    "size": r.size,
                    "path": r.path.to_string_lossy(),
                })
            })
            .collect();
        let unlisted: Vec<_> = collected
            .unlisted
            .iter()
            .map(|p| p.to_string_lossy())
            .collect();
        let stale: Vec<_> = collected
            .stale_roots
            .iter()
            .map(|r| r.target.to_string_lossy())
            .collect();
        let report = serde_json::json!({
            "removed": removed,
            "unlisted": unlisted,
            "stale_roots": stale,
            "kept": collected.kept,
            "bytes": collected.bytes,
            "dry_run": dry_run,
        });
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for r in &collected.removed {
            writeln!(out, "{}	{}", r.hash, r.path.display())?;
        }
        for p in &collected.unlisted {
            writeln!(out, "-	{}", p.display())?;
        }
        for r in &collected.stale_roots {
            eprintln!(
                "elfpatch: {} no longer exists: {} its root {}",
                r.target.display(),
                if dry_run { "would drop" } else { "dropped" },
                r.link.display()
            );
        }
        eprintln!(
            "{} {} unreferenced object(s) ({:.1} MB) and {} unlisted file(s); {} kept",
            if dry_run { "would remove" } else { "removed" },
            collected.removed.len(),
            collected.bytes as f64 / 1e6,
            collected.unlisted.len(),
            collected.kept
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(store: &Store) -> Result<ExitCode> {
    let (problems, checked) = store.verify()?;
    for p in &problems {
        eprintln!("elfpatch: {}: {p}", store.root().display());
    }
    if problems.is_empty() {
        println!("{checked} objects verified in {}", store.root().display());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "elfpatch: {} problem(s) among {checked} objects",
            problems.len()
        );
        Ok(ExitCode::FAILURE)
    }
}
