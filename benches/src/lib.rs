//! Benchmarks of ld-cas: criterion benches under `benches/`, shared fixtures here, and the
//! start-up harness (`scripts/`).

use resolver::table::write::NewEntry;
use resolver::table::Kind;
use resolver::uri::Hash;

/// `n` entries shaped like a real store's: uniform BLAKE3 hashes, `objects/<hex>-<name>`
/// paths, sonames.
pub fn synthetic_entries(n: usize) -> Vec<NewEntry> {
    (0..n)
        .map(|i| {
            let hash = Hash(*blake3::hash(&(i as u64).to_le_bytes()).as_bytes());
            let hex = hash.to_hex_bytes();
            let hex = std::str::from_utf8(&hex).unwrap_or_default().to_owned();
            NewEntry {
                hash,
                path: format!("objects/{hex}-libpkg{i}.so.1").into_bytes(),
                soname: format!("libpkg{i}.so.1").into_bytes(),
                size: 100_000 + i as u64,
                kind: Kind::Library,
            }
        })
        .collect()
}
