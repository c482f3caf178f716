//! `--build-resolution-cache`: what patchelf 0.19 records in `.note.nixos.ldcache` for a
//! patched glibc to read. For each `DT_NEEDED` name without a `/`, the run path
//! (`DT_RUNPATH`, else `DT_RPATH`) is walked in order: a directory that holds the library
//! adds `=DIR/NAME`; one that can only be searched at run time (empty or relative, with a
//! `$` token, or with a `glibc-hwcaps` subdirectory) adds `?DIR`. The descriptor is the
//! sorted pairs `NAME\0HINTS\0` (hints `:`-joined), then a final `\0`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::elf::Elf;

/// Why no cache can be built (patchelf's warnings; nothing is written then).
pub const NO_DYNAMIC: &str =
    "--build-resolution-cache: no dynamic section (statically linked?); no cache written";
/// See [`NO_DYNAMIC`].
pub const NOTHING_TO_RESOLVE: &str = "--build-resolution-cache: no DT_NEEDED entries or run \
     path to resolve; no cache written";
/// See [`NO_DYNAMIC`].
pub const NONE_RESOLVED: &str = "--build-resolution-cache: no libraries resolved against the \
     run path; no cache written";

/// The descriptor for `elf`, or the reason there is none.
pub fn descriptor(elf: &Elf) -> Result<Vec<u8>, &'static str> {
    if !elf.is_dynamic() {
        return Err(NO_DYNAMIC);
    }
    let needed: Vec<String> = elf
        .needed()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| !n.contains('/'))
        .collect();
    let path = elf.runpath().or_else(|| elf.rpath()).unwrap_or_default();
    let path = String::from_utf8_lossy(path);
    let dirs = split(&path);
    if elf.needed().is_empty() || dirs.is_empty() {
        return Err(NOTHING_TO_RESOLVE);
    }
    let mut hints: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for dir in dirs {
        if runtime_only(dir) {
            for n in &needed {
                hints.entry(n).or_default().push(format!("?{dir}"));
            }
            continue;
        }
        for n in &needed {
            let lib = format!("{dir}/{n}");
            if std::fs::File::open(&lib).is_ok() {
                hints.entry(n).or_default().push(format!("={lib}"));
            }
        }
    }
    if hints.is_empty() {
        return Err(NONE_RESOLVED);
    }
    let mut desc = Vec::new();
    for (name, h) in hints {
        desc.extend_from_slice(name.as_bytes());
        desc.push(0);
        desc.extend_from_slice(h.join(":").as_bytes());
        desc.push(0);
    }
    desc.push(0);
    Ok(desc)
}

/// The run path's components; a trailing `:` adds no empty one (as patchelf splits).
fn split(path: &str) -> Vec<&str> {
    let mut v: Vec<&str> = path.split(':').collect();
    if v.last() == Some(&"") {
        v.pop();
    }
    v
}

/// A directory only the loader can search: relative (to the process's directory), with a
/// dynamic string token, or holding `glibc-hwcaps` subdirectories.
fn runtime_only(dir: &str) -> bool {
    !dir.starts_with('/') || dir.contains('$') || Path::new(dir).join("glibc-hwcaps").exists()
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn run_path_components() {
        assert_eq!(split("/a:/b"), vec!["/a", "/b"]);
        assert_eq!(split(":/a"), vec!["", "/a"]);
        assert_eq!(split("/a:"), vec!["/a"]);
        assert!(split("").is_empty());
    }
}
