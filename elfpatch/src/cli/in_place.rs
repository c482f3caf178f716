//! `elfpatch convert --in-place`: the command line of [`crate::convert::in_place`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::convert::in_place::{convert_in_place, Options};

/// The arguments `elfpatch convert --in-place` takes.
pub struct InPlaceArgs {
    pub outputs: Vec<PathBuf>,
    pub nix_store: Option<PathBuf>,
    pub interp: Option<PathBuf>,
    pub keep_sonames: Vec<String>,
    pub allow_missing: bool,
    pub json: bool,
}

/// Runs `elfpatch convert --in-place`.
pub fn run(args: InPlaceArgs) -> Result<ExitCode> {
    let options = Options {
        outputs: args.outputs,
        nix_store: args.nix_store,
        interp: args
            .interp
            .context("--in-place needs --interp PATH (ld-cas at a stable path)")?,
        keep_sonames: args.keep_sonames,
        allow_missing: args.allow_missing,
    };
    if !options.interp.is_absolute() {
        anyhow::bail!(
            "--interp {} is not an absolute path: PT_INTERP is opened by the kernel from any working directory",
            options.interp.display()
        );
    }
    let report = convert_in_place(&options)?;
    for m in &report.missing {
        eprintln!(
            "elfpatch: warning: {} needs {}, which was not found; it stays a plain name",
            m.needed_by, m.name
        );
    }
    for note in &report.notes {
        eprintln!("elfpatch: note: {note}");
    }
    for u in &report.unconverted {
        eprintln!(
            "elfpatch: warning: {} was left unconverted: {}",
            u.path.display(),
            u.reason
        );
    }
    if !options.interp.is_file() {
        eprintln!(
            "elfpatch: warning: the converted programs name {} as their interpreter, which does not exist",
            options.interp.display()
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.rewritten {
            println!("{}", p.display());
        }
        let entries: usize = report.outputs.iter().map(|o| o.entries.len()).sum();
        eprintln!(
            "converted {} ELF file(s) in place ({} already converted); {} table(s) with {} entries; {} converted cop{} of other store paths' libraries; wrote {:.1} MB in {:.2} s",
            report.rewritten.len(),
            report.unchanged,
            report.outputs.len(),
            entries,
            report.copies.len(),
            if report.copies.len() == 1 { "y" } else { "ies" },
            report.bytes_written as f64 / 1e6,
            report.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}
