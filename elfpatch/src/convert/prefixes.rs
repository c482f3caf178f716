//! Prefixes converted together: a search-path entry of one converted tree that names a
//! directory of another tree converted with it (a Nix package's RUNPATH naming another
//! package's `lib/`) becomes an `$ORIGIN`-relative entry between the converted trees. So a
//! `dlopen` of a plain soname (Python's `ctypes.CDLL("libresolv.so.2")` against a Nix
//! glibc) finds the converted library the original found, and still does after the store
//! moves; the old absolute directory would be searched in vain, or find an unconverted
//! library.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The trees of one conversion: where each was read from, and where it is written.
#[derive(Clone, Debug, Default)]
pub struct Prefixes {
    /// (source directory, its output directory), for every tree given; the source both
    /// as given (made absolute) and with symbolic links resolved.
    trees: Vec<(PathBuf, PathBuf)>,
}

impl Prefixes {
    /// The trees among the inputs `paths`, which land in `out_dir`.
    pub fn new(paths: &[PathBuf], out_dir: &Path) -> Prefixes {
        let mut trees = Vec::new();
        for path in paths {
            let (Ok(absolute), Some(name)) = (std::path::absolute(path), path.file_name()) else {
                continue;
            };
            if !absolute.is_dir() {
                continue;
            }
            let dest = out_dir.join(name);
            if let Ok(canonical) = absolute.canonicalize() {
                if canonical != absolute {
                    trees.push((canonical, dest.clone()));
                }
            }
            trees.push((absolute, dest));
        }
        Prefixes { trees }
    }

    /// Where the directory `entry` (a literal absolute search-path entry) lies in the
    /// converted trees, if it lies in one of the trees converted.
    fn converted_dir(&self, entry: &[u8]) -> Option<PathBuf> {
        if !entry.starts_with(b"/") || entry.contains(&b'$') {
            return None;
        }
        let dir = normalize(Path::new(std::ffi::OsStr::from_bytes(entry)));
        self.trees.iter().find_map(|(source, dest)| {
            let rest = dir.strip_prefix(source).ok()?;
            Some(dest.join(rest))
        })
    }

    /// Whether `entry` names a directory of a converted tree (then it is rewritten, never
    /// dropped).
    pub fn relocates(&self, entry: &[u8]) -> bool {
        self.converted_dir(entry).is_some()
    }

    /// `entry` as seen from an object written at `dest`: `$ORIGIN/<relative path>` when it
    /// names a directory of a converted tree, else unchanged.
    pub fn rewrite(&self, entry: &[u8], dest: Option<&Path>) -> Vec<u8> {
        let (Some(target), Some(from)) = (self.converted_dir(entry), dest.and_then(Path::parent))
        else {
            return entry.to_vec();
        };
        let relative = relative_path(&normalize(from), &normalize(&target));
        let mut out = b"$ORIGIN".to_vec();
        if !relative.as_os_str().is_empty() {
            out.push(b'/');
            out.extend_from_slice(relative.as_os_str().as_bytes());
        }
        out
    }
}

/// `path` with `.` and `..` components resolved lexically (the way `ld.so` uses a
/// search-path entry: as a string, not through symbolic links).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The relative path from directory `from` to `to` (both absolute and normalised).
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_into_converted_trees_become_origin_relative() {
        let prefixes = Prefixes {
            trees: vec![
                (
                    PathBuf::from("/nix/store/aaa-app"),
                    PathBuf::from("/s/bin/aaa-app"),
                ),
                (
                    PathBuf::from("/nix/store/bbb-lib"),
                    PathBuf::from("/s/bin/bbb-lib"),
                ),
            ],
        };
        let dest = Path::new("/s/bin/aaa-app/bin/app");
        assert_eq!(
            prefixes.rewrite(b"/nix/store/bbb-lib/lib", Some(dest)),
            b"$ORIGIN/../../bbb-lib/lib"
        );
        assert_eq!(
            prefixes.rewrite(b"/nix/store/aaa-app/bin", Some(dest)),
            b"$ORIGIN"
        );
        assert_eq!(
            prefixes.rewrite(b"/nix/store/bbb-lib/lib/../lib64", Some(dest)),
            b"$ORIGIN/../../bbb-lib/lib64"
        );
        // Other directories, and entries with tokens, stay.
        assert_eq!(prefixes.rewrite(b"/usr/lib", Some(dest)), b"/usr/lib");
        assert_eq!(
            prefixes.rewrite(b"$ORIGIN/../lib", Some(dest)),
            b"$ORIGIN/../lib"
        );
        assert!(!prefixes.relocates(b"/nix/store/ccc-other/lib"));
        assert_eq!(
            prefixes.rewrite(b"/nix/store/bbb-lib/lib", None),
            b"/nix/store/bbb-lib/lib"
        );
    }
}
