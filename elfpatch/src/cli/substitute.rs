//! `elfpatch substitute`: the command line of [`crate::substitute`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::substitute::{substitute, Options};

/// Replace a library by a compatible one in every converted object and program that
/// depends on it, without rebuilding.
///
/// Finds every converted object and program of the store (and of its registered roots)
/// that depends on OLD, directly or transitively; checks NEW against what they use of OLD
/// (every imported symbol OLD defines is defined by NEW with the same version and type;
/// every version node they need of OLD exists in NEW; data objects they copy keep their
/// size; the soname is equal; NEW's own needs are in the store); rewrites them bottom-up
/// into new objects (each gets a new URI) and the programs in place; records which objects
/// replaced which (STORE/substitutions). The old objects stay until `store gc`, so
/// substituting NEW OLD restores the old URIs byte for byte. An incompatibility is refused
/// with the symbol and the dependent named, and nothing is written.
#[derive(Debug, Args)]
pub struct SubstituteArgs {
    /// The store.
    #[arg(long, value_name = "STORE")]
    store: PathBuf,
    /// Only print the plan (and check it).
    #[arg(long)]
    dry_run: bool,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
    /// Accept a NEW whose soname differs from OLD's.
    #[arg(long)]
    allow_soname_change: bool,
    /// The library replaced: a URI, or a file the store holds.
    #[arg(value_name = "OLD")]
    old: String,
    /// Its replacement: a URI the store holds, or a library file (converted and added).
    #[arg(value_name = "NEW")]
    new: String,
}

/// Runs `elfpatch substitute`.
pub fn run(args: SubstituteArgs) -> Result<ExitCode> {
    let report = substitute(&Options {
        store: args.store,
        old: args.old,
        new: args.new,
        dry_run: args.dry_run,
        allow_soname_change: args.allow_soname_change,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} -> {}", report.old, report.new);
    for r in &report.rewritten {
        match (&r.old_uri, &r.new_uri) {
            (Some(old), Some(new)) => println!("{old} -> {new}\t{}", r.path.display()),
            _ => println!("program\t{}", r.path.display()),
        }
    }
    eprintln!(
        "{} {} dependent(s); wrote {} bytes in {:.2} s",
        if report.dry_run {
            "would rewrite"
        } else {
            "rewrote"
        },
        report.rewritten.len(),
        report.bytes_written,
        report.seconds
    );
    Ok(ExitCode::SUCCESS)
}
