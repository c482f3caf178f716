//! What an in-place conversion reports (`--json`).

use std::path::PathBuf;

use crate::convert::{Missing, Unconverted};

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
    pub unconverted: Vec<Unconverted>,
    /// Dependencies not found (with `--allow-missing`).
    pub missing: Vec<Missing>,
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
