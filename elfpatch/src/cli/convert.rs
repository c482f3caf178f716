//! `elfpatch convert`: the command line of [`crate::convert`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::convert::{convert, Missing, Options, Progress, Silent, Unconverted, Written};

/// A progress bar on the terminal.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn phase(&self, name: &str, total: u64) {
        let style = if total == 0 {
            indicatif::ProgressStyle::with_template("{spinner} {msg}")
        } else {
            indicatif::ProgressStyle::with_template("{msg:28} [{bar:40}] {pos}/{len}")
        };
        if let Ok(style) = style {
            self.0.set_style(style.progress_chars("=> "));
        }
        self.0.set_message(name.to_owned());
        self.0.set_length(total);
        self.0.set_position(0);
        self.0
            .enable_steady_tick(std::time::Duration::from_millis(100));
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

/// Convert programs and directory trees, with their library closures, into a store.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The store (create it with `elfpatch store init`).
    #[arg(long, value_name = "STORE", required_unless_present = "in_place")]
    store: Option<PathBuf>,
    /// Convert Nix build outputs where they lie (the PATHs: the outputs of one build, in the
    /// Nix store), for a derivation's fixup phase (nix/setup-hook.sh, docs/nix.md): each
    /// output gets a lookup table and index in OUT/nix-support/ld-cas listing its closure
    /// where it lies in the Nix store, by paths relative to the store directory; its programs
    /// get --interp (required) as interpreter.
    #[arg(long, conflicts_with_all = ["store", "out", "sysroot"], requires = "interp")]
    in_place: bool,
    /// With --in-place: the Nix store directory [default: the directory holding the
    /// outputs].
    #[arg(long, value_name = "DIR", requires = "in_place")]
    nix_store: Option<PathBuf>,
    /// Where programs and trees land: DIR/<name of PATH> [default: STORE/bin].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The interpreter written into PT_INTERP [default: STORE/ld-cas, installed by `store
    /// init`; for another architecture STORE/ld-cas-<arch>]. Give a stable path (say
    /// /usr/local/lib/ld-cas) and the store can be moved without rewriting a file (but the
    /// programs converted to an --out outside it, which name the store by its absolute
    /// path: run `elfpatch relocate` after the move).
    #[arg(long, value_name = "PATH")]
    interp: Option<PathBuf>,
    /// Look dependencies up under this root, as the target system's ld.so would (for
    /// example /usr/aarch64-linux-gnu for an aarch64 closure): absolute RPATH and RUNPATH
    /// entries, ld.so.cache and the default directories are read under DIR, `$ORIGIN` is
    /// where each file really lies.
    #[arg(long, value_name = "DIR")]
    sysroot: Option<PathBuf>,
    /// Leave needed names matching this glob as plain sonames, found by the usual search at
    /// run time (GPU drivers: 'libGL.so*', 'libcuda.so*'). Repeatable.
    #[arg(long = "keep-soname", value_name = "PATTERN")]
    keep_sonames: Vec<String>,
    /// Convert even when a dependency cannot be found (it stays a plain name; warned).
    #[arg(long)]
    allow_missing: bool,
    /// Print a JSON report instead of the summary.
    #[arg(long)]
    json: bool,
    /// Programs and directory trees to convert.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Runs `elfpatch convert`.
pub fn run(args: ConvertArgs) -> Result<ExitCode> {
    let Some(store) = args.store else {
        return super::in_place::run(super::in_place::InPlaceArgs {
            outputs: args.paths,
            nix_store: args.nix_store,
            interp: args.interp,
            keep_sonames: args.keep_sonames,
            allow_missing: args.allow_missing,
            json: args.json,
        });
    };
    let options = Options {
        store,
        out: args.out,
        interp: args.interp,
        sysroot: args.sysroot,
        keep_sonames: args.keep_sonames,
        allow_missing: args.allow_missing,
        paths: args.paths,
    };
    let report = if std::io::stderr().is_terminal() {
        let bar = Bar(indicatif::ProgressBar::new(0));
        let report = convert(&options, &bar);
        bar.0.finish_and_clear();
        report?
    } else {
        convert(&options, &Silent)?
    };
    for Missing {
        name,
        needed_by: by,
    } in &report.missing
    {
        eprintln!(
            "elfpatch: warning: {by} needs {name}, which was not found; it stays a plain name"
        );
    }
    for interp in &report.missing_interpreters {
        eprintln!(
            "elfpatch: warning: the converted programs name {} as their interpreter, which does not exist: install an ld-cas for their architecture there (elfpatch store init --store STORE --ld-cas PATH)",
            interp.display()
        );
    }
    for note in &report.notes {
        eprintln!("elfpatch: note: {note}");
    }
    for warning in &report.warnings {
        eprintln!("elfpatch: warning: {warning}");
    }
    for Unconverted { path, reason: why } in &report.unconverted {
        eprintln!(
            "elfpatch: warning: {} was copied unconverted: {why}",
            path.display()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for Written { source, dest } in &report.outputs {
            println!("{}\t{}", source.display(), dest.display());
        }
        eprintln!(
            "converted {} program(s), {} other ELF file(s) in trees, {} libraries ({} new objects); copied {} file(s); wrote {:.1} MB in {:.2} s",
            report.programs,
            report.tree_elf_files,
            report.libraries,
            report.objects_added,
            report.copied,
            report.bytes_written as f64 / 1e6,
            report.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}
