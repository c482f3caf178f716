//! An output's ld-cas directory names the store paths of its closure by links: the table's
//! paths go through them.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::TABLE_DIR;
use crate::convert::nix_paths::{is_store_path_name, store_path_of};

/// How an output's ld-cas directory names the store paths of its closure: a symbolic link
/// per store path, `<hash>-<name> -> ../../../<hash>-<name>`, except for the outputs
/// converted together, which are named without their hash (`<name>`): Nix may build an
/// output at a temporary path and rewrite its hash afterwards (`nix-build --check` without
/// a sandbox), which a symbolic link survives and a table's check values do not.
pub struct Farm<'a> {
    pub outputs: &'a [PathBuf],
}

impl Farm<'_> {
    /// The link name of store path `sp`.
    pub fn name(&self, sp: &Path) -> Vec<u8> {
        let name = sp.file_name().map(OsStr::as_bytes).unwrap_or_default();
        if self.outputs.iter().any(|o| o == sp) && is_store_path_name(name) {
            name[33..].to_vec()
        } else {
            name.to_vec()
        }
    }

    /// The path of the file at `real` (inside the store path `sp`) relative to the ld-cas
    /// directory.
    pub fn path(&self, sp: &Path, real: &Path) -> Vec<u8> {
        let mut out = self.name(sp);
        if let Ok(rest) = real.strip_prefix(sp) {
            if !rest.as_os_str().is_empty() {
                out.push(b'/');
                out.extend_from_slice(rest.as_os_str().as_bytes());
            }
        }
        out
    }
}

/// The store path holding `real`, which must lie in the store directory.
pub fn store_path_in(store_dir: &Path, real: &Path) -> Result<PathBuf> {
    match store_path_of(real) {
        Some(sp) if sp.parent() == Some(store_dir) => Ok(sp),
        _ => bail!(
            "{} does not lie in a store path of the Nix store {}",
            real.display(),
            store_dir.display()
        ),
    }
}

/// How a program at `place` in the output `out` names the output's ld-cas directory:
/// relative to its own directory (`../nix-support/ld-cas` for `OUT/bin/prog`).
pub fn base_reference(place: &Path, out: &Path) -> String {
    let depth = place
        .parent()
        .and_then(|d| d.strip_prefix(out).ok())
        .map_or(0, |d| d.components().count());
    let mut s = "../".repeat(depth);
    s.push_str(TABLE_DIR);
    s
}

/// Makes the ld-cas directory `dir` hold one link per store path of `links` (and no other
/// link to a store path).
pub fn write_farm(dir: &Path, farm: &Farm<'_>, links: &BTreeSet<PathBuf>) -> Result<()> {
    let up = "../".repeat(Path::new(TABLE_DIR).components().count() + 1);
    let mut want: BTreeMap<Vec<u8>, PathBuf> = BTreeMap::new();
    for sp in links {
        let name = sp.file_name().map(OsStr::as_bytes).unwrap_or_default();
        let mut target = up.clone().into_bytes();
        target.extend_from_slice(name);
        want.insert(farm.name(sp), PathBuf::from(OsStr::from_bytes(&target)));
    }
    for entry in crate::convert::output::sorted_entries(dir)? {
        let name = entry.file_name();
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if is_link && !want.contains_key(name.as_bytes()) {
            fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    for (name, target) in &want {
        let at = dir.join(OsStr::from_bytes(name));
        if fs::read_link(&at).ok().as_ref() == Some(target) {
            continue;
        }
        resolver::atomic::replace_with_symlink(target, &at)
            .with_context(|| format!("cannot link {} to {}", at.display(), target.display()))?;
    }
    Ok(())
}
