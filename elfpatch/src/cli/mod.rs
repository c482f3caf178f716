//! The `elfpatch` subcommands (`store ...`) and their manual (`--help`).

mod convert;
mod in_place;
mod store;
mod substitute;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use clap::{Parser, Subcommand};

/// Rewrites ELF programs and libraries to name their dependencies by content, and manages
/// the stores that hold them.
#[derive(Debug, Parser)]
#[command(
    name = "elfpatch",
    version,
    about = "Content-addressed ELF: convert binaries, edit them like patchelf, manage stores",
    long_about = "elfpatch rewrites ELF binaries so that each DT_NEEDED entry names a library by \
the BLAKE3 hash of its bytes (uri:blake3:<64 hex digits>) instead of by file name and search path. \
The ld-cas interpreter resolves those names through a store's lookup table, so programs start \
without searching RUNPATH directories, and a store can be moved anywhere without rebuilding.\n\n\
Invoked with patchelf options (elfpatch --set-interpreter PATH FILE, or through a symlink named \
patchelf), it takes patchelf's command line: run `elfpatch --help-patchelf` for that manual.",
    after_help = "EXAMPLES:\n  \
elfpatch store init --store ~/store\n  \
elfpatch store add --store ~/store /usr/lib/x86_64-linux-gnu/libz.so.1\n  \
elfpatch store list --store ~/store --json\n  \
elfpatch store resolve --store ~/store uri:blake3:<hash>\n  \
elfpatch store verify --store ~/store\n  \
elfpatch store gc --store ~/store --dry-run\n\n\
EXIT STATUS:\n  0 success; 1 failure (a message says what and where); 2 bad command line."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, fill, query and check stores.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Convert programs and trees, with their closures, into a store.
    ///
    /// Each PATH (a program or a directory tree) lands at DIR/<name of PATH>. Its
    /// dependencies are found exactly as ld.so would find them (RPATH/RUNPATH with $ORIGIN,
    /// $LIB and $PLATFORM, /etc/ld.so.cache, the default directories, glibc-hwcaps
    /// subdirectories; all under --sysroot when given). The closure is rewritten
    /// bottom-up so that every DT_NEEDED (and .gnu.version_r file name) is the URI of the
    /// library's converted bytes; libraries and the original ld.so go into the store's
    /// objects; programs get ld-cas as interpreter and record the ld.so by hash and the
    /// store (by a path relative to themselves inside the store, else by its absolute
    /// path). Outputs outside STORE/bin are registered as roots of `store gc`.
    /// Converting again changes nothing.
    Convert(convert::ConvertArgs),
    /// After moving a store together with its ld-cas, point the converted programs at it.
    ///
    /// Rewrites only PT_INTERP of the programs under STORE/bin (those a conversion wrote)
    /// to STORE/ld-cas at the store's new place (STORE/ld-cas-<arch> for programs of
    /// another architecture, e.g. ld-cas-aarch64): in the file itself when the new path fits
    /// the old one's room, otherwise by rewriting the file atomically. Programs under
    /// STORE/bin converted with --interp at a stable path never need this. Programs
    /// converted elsewhere (--out; registered in STORE/roots) name the store by its
    /// absolute path: their store path is rewritten, and their interpreter where it no
    /// longer exists.
    /// Replace a library by a compatible one in everything that depends on it, ABI-checked,
    /// without rebuilding (docs/substitute.md).
    Substitute(substitute::SubstituteArgs),
    Relocate {
        /// The store, at its new place.
        #[arg(long, value_name = "STORE")]
        store: PathBuf,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
}

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Store(cmd) => store::run(cmd),
        Command::Convert(args) => convert::run(args),
        Command::Relocate { store, json } => relocate(&store, json),
        Command::Substitute(args) => substitute::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("elfpatch: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn relocate(store: &Path, json: bool) -> Result<ExitCode> {
    let store = resolver::store::Store::open(store)?;
    let report = crate::relocate::relocate(&store, |m| {
        crate::convert::store_interpreter(store.root(), m)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "relocated {} program(s) in place and {} by rewriting; {} already right; wrote {} bytes",
            report.in_place.len(),
            report.rewritten.len(),
            report.unchanged,
            report.bytes_written
        );
    }
    if report.in_place.is_empty()
        && report.rewritten.is_empty()
        && report.unchanged == 0
        && report.refused.is_empty()
    {
        eprintln!(
            "elfpatch: relocate: nothing to relocate: no converted program in {}/bin or in the registered roots",
            store.root().display()
        );
        return Ok(ExitCode::FAILURE);
    }
    for refused in &report.refused {
        eprintln!(
            "elfpatch: relocate: left {} alone: {}",
            refused.path.display(),
            refused.reason
        );
    }
    Ok(if report.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
