//! Writes a store whose table lists N synthetic entries (objects are not created), and
//! prints the URI of its last entry. Used to show that opening and querying a table costs
//! the same system calls whatever its size:
//!
//! ```sh
//! cargo run --release -p benches --example synthetic_store -- /tmp/big 1000000
//! strace -P /tmp/big/table target/release/elfpatch store resolve --store /tmp/big URI
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(Ok(n))) = (args.get(1), args.get(2).map(|n| n.parse::<usize>())) else {
        eprintln!("usage: synthetic_store DIR ENTRIES");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    let entries = benches::synthetic_entries(n);
    let last = entries.last().map(|e| e.hash);
    let result = std::fs::create_dir_all(dir.join("objects")).and_then(|()| {
        let bytes = resolver::table::write::build(entries, 1).map_err(std::io::Error::other)?;
        resolver::atomic::replace_file(&dir.join("table"), &bytes, None)
    });
    if let Err(e) = result {
        eprintln!("synthetic_store: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    if let Some(h) = last {
        println!("{h}");
    }
    ExitCode::SUCCESS
}
