//! `--shrink-rpath`: keep only the search directories that hold a needed library of the
//! same machine (optionally only those under `--allowed-rpath-prefixes`).

use std::path::Path;

use anyhow::Result;

use crate::elf::Elf;

/// The shrunk search path, or `None` when it would not change.
pub fn shrink(elf: &Elf, _file: &Path, allowed: &[String]) -> Result<Option<String>> {
    let Some(cur) = elf.runpath().or_else(|| elf.rpath()) else {
        return Ok(None);
    };
    let cur = String::from_utf8_lossy(cur).into_owned();
    let needed: Vec<String> = elf
        .needed()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let mut found = vec![false; needed.len()];
    let mut kept = Vec::new();
    for dir in cur.split(':') {
        if dir.is_empty() {
            continue;
        }
        // Relative entries ($ORIGIN, ...) cannot be resolved here: they stay.
        if !dir.starts_with('/') {
            kept.push(dir);
            continue;
        }
        if !allowed.is_empty() && !allowed.iter().any(|p| dir.starts_with(p.as_str())) {
            continue;
        }
        let mut useful = false;
        for (i, n) in needed.iter().enumerate() {
            if found[i] || n.contains('/') {
                continue;
            }
            let path = Path::new(dir).join(n);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            if Elf::parse(&bytes)
                .is_ok_and(|l| l.machine() == elf.machine() && l.class() == elf.class())
            {
                found[i] = true;
                useful = true;
            }
        }
        if useful {
            kept.push(dir);
        }
    }
    let new = kept.join(":");
    Ok((new != cur).then_some(new))
}
