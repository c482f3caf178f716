//! Finding a `DT_NEEDED` library exactly as glibc's `ld.so` would for the object that needs
//! it: `DT_RPATH` of the object and its loaders (when the object has no `DT_RUNPATH`), the
//! object's `DT_RUNPATH`, `/etc/ld.so.cache`, the default directories; `$ORIGIN`, `$LIB`
//! and `$PLATFORM` expanded; `glibc-hwcaps` subdirectories probed first in each directory;
//! candidates of another class or machine skipped; everything under `--sysroot` when given.
//! `LD_LIBRARY_PATH` is deliberately ignored: a conversion must not depend on the caller's
//! environment.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::ldcache::LdCache;

/// ELF machine numbers this search knows the directory conventions of.
pub const EM_X86_64: u16 = 62;
/// ELF machine number of aarch64.
pub const EM_AARCH64: u16 = 183;

/// The facts about an object that decide where its dependencies are searched.
#[derive(Clone, Debug, Default)]
pub struct Searcher {
    /// Host path of the object (sysroot included).
    pub path: PathBuf,
    /// `DT_RPATH`, raw.
    pub rpath: Option<Vec<u8>>,
    /// `DT_RUNPATH`, raw.
    pub runpath: Option<Vec<u8>>,
    /// `DF_1_NODEFLIB`: skip the cache and the default directories.
    pub nodeflib: bool,
}

/// Where a library was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A path name in `DT_NEEDED` (it contains a `/`).
    Path,
    /// Entry `index` of the `DT_RPATH` of loader-chain member `owner` (0: the object itself).
    Rpath { owner: usize, index: usize },
    /// Entry `index` of the object's `DT_RUNPATH`.
    Runpath { index: usize },
    /// `/etc/ld.so.cache`.
    Cache,
    /// A default directory.
    Default,
}

/// A found library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Host path of the file, as `ld.so` would open it (not resolved through symlinks).
    pub path: PathBuf,
    /// Which rule found it.
    pub via: Via,
}

/// The searches of a conversion, by `e_machine` and 64-bit class.
pub type Searches = std::collections::HashMap<(u16, bool), Search>;

/// The search configuration for one machine (and sysroot).
pub struct Search {
    sysroot: Option<PathBuf>,
    machine: u16,
    class64: bool,
    cache: LdCache,
    defaults: Vec<PathBuf>,
    hwcaps: Vec<&'static str>,
    lib: &'static str,
    platform: &'static str,
}

/// The `glibc-hwcaps` subdirectories this CPU can use, best first (glibc 2.33+ on x86_64).
fn host_hwcaps() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let v2 = has!("cmpxchg16b")
            && has!("popcnt")
            && has!("sse3")
            && has!("sse4.1")
            && has!("sse4.2")
            && has!("ssse3");
        let v3 = v2
            && has!("avx")
            && has!("avx2")
            && has!("bmi1")
            && has!("bmi2")
            && has!("f16c")
            && has!("fma")
            && has!("lzcnt")
            && has!("movbe");
        let v4 = v3
            && has!("avx512f")
            && has!("avx512bw")
            && has!("avx512cd")
            && has!("avx512dq")
            && has!("avx512vl");
        [(v4, "x86-64-v4"), (v3, "x86-64-v3"), (v2, "x86-64-v2")]
            .into_iter()
            .filter(|(ok, _)| *ok)
            .map(|(_, name)| name)
            .collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

/// Reads the ELF identification of `path`: (is 64-bit, e_machine), if it is ELF.
pub fn elf_ident(path: &Path) -> Option<(bool, u16)> {
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    if &head[..4] != b"\x7fELF" {
        return None;
    }
    let class64 = head[4] == 2;
    let machine = match head[5] {
        1 => u16::from_le_bytes([head[18], head[19]]),
        _ => u16::from_be_bytes([head[18], head[19]]),
    };
    Some((class64, machine))
}

impl Search {
    /// A search for objects of `machine` (64-bit when `class64`), under `sysroot` if given.
    pub fn new(sysroot: Option<&Path>, machine: u16, class64: bool) -> Result<Search> {
        let (lib, platform, triplet) = match machine {
            EM_X86_64 => ("lib/x86_64-linux-gnu", "x86_64", "x86_64-linux-gnu"),
            EM_AARCH64 => ("lib/aarch64-linux-gnu", "aarch64", "aarch64-linux-gnu"),
            _ => ("lib", "", ""),
        };
        let root = sysroot.unwrap_or(Path::new("/"));
        let mut defaults = Vec::new();
        if !triplet.is_empty() {
            defaults.push(root.join("lib").join(triplet));
            defaults.push(root.join("usr/lib").join(triplet));
        }
        for d in ["lib64", "usr/lib64", "lib", "usr/lib"] {
            if class64 || !d.ends_with("64") {
                defaults.push(root.join(d));
            }
        }
        let cache = LdCache::load(&root.join("etc/ld.so.cache"), machine)?;
        // CPU-dependent subdirectories only make sense for the machine we run on.
        let hwcaps = if sysroot.is_none() && machine == EM_X86_64 && cfg!(target_arch = "x86_64") {
            host_hwcaps()
        } else {
            Vec::new()
        };
        Ok(Search {
            sysroot: sysroot.map(Path::to_path_buf),
            machine,
            class64,
            cache,
            defaults,
            hwcaps,
            lib,
            platform,
        })
    }

    /// Whether paths are looked up under a sysroot.
    pub fn has_sysroot(&self) -> bool {
        self.sysroot.is_some()
    }

    /// The host path of an absolute path of the target system.
    pub fn host_path(&self, target: &Path) -> PathBuf {
        match &self.sysroot {
            Some(root) => root.join(target.strip_prefix("/").unwrap_or(target)),
            None => target.to_path_buf(),
        }
    }

    /// Whether `path` is an ELF file this search accepts (same class and machine).
    fn usable(&self, path: &Path) -> bool {
        elf_ident(path) == Some((self.class64, self.machine))
    }

    /// Expands `$ORIGIN`, `$LIB`, `$PLATFORM` (and their `${...}` forms) in one search path
    /// entry of the object at `owner`.
    fn expand(&self, entry: &[u8], owner: &Path) -> Option<PathBuf> {
        let origin = owner.parent().unwrap_or(Path::new("/"));
        let mut out: Vec<u8> = Vec::with_capacity(entry.len());
        let mut rest = entry;
        let mut origin_relative = false;
        while let Some(pos) = rest.iter().position(|&b| b == b'$') {
            out.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            let (name, after): (&[u8], &[u8]) = if let Some(inner) = rest.strip_prefix(b"{") {
                let end = inner.iter().position(|&b| b == b'}')?;
                (&inner[..end], &inner[end + 1..])
            } else {
                let end = rest
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            match name {
                b"ORIGIN" => {
                    if out.is_empty() {
                        origin_relative = true;
                    }
                    out.extend_from_slice(origin.as_os_str().as_bytes());
                }
                b"LIB" => out.extend_from_slice(self.lib.as_bytes()),
                b"PLATFORM" => out.extend_from_slice(self.platform.as_bytes()),
                // ld.so drops an entry with an unknown token.
                _ => return None,
            }
            rest = after;
        }
        out.extend_from_slice(rest);
        let path = PathBuf::from(OsStr::from_bytes(&out));
        if path.as_os_str().is_empty() {
            return None;
        }
        // `$ORIGIN` already is a host path; other absolute entries are target paths.
        Some(if origin_relative || !path.is_absolute() {
            path
        } else {
            self.host_path(&path)
        })
    }

    /// Looks for `name` in directory `dir`, its hwcaps subdirectories first.
    fn in_dir(&self, dir: &Path, name: &Path) -> Option<PathBuf> {
        for sub in &self.hwcaps {
            let candidate = dir.join("glibc-hwcaps").join(sub).join(name);
            if self.usable(&candidate) {
                return Some(candidate);
            }
        }
        let candidate = dir.join(name);
        self.usable(&candidate).then_some(candidate)
    }

    /// Searches one `DT_RPATH`/`DT_RUNPATH` list of the object at `owner`.
    fn in_list(&self, list: &[u8], owner: &Path, name: &Path) -> Option<(usize, PathBuf)> {
        list.split(|&b| b == b':')
            .enumerate()
            .find_map(|(index, entry)| {
                let dir = self.expand(entry, owner)?;
                self.in_dir(&dir, name).map(|p| (index, p))
            })
    }

    /// Finds `name`, needed by `chain[0]`, whose loaders are `chain[1..]` (up to the
    /// program). `None`: ld.so would not find it either.
    pub fn find(&self, name: &[u8], chain: &[&Searcher]) -> Option<Found> {
        let object = chain.first()?;
        let name_path = Path::new(OsStr::from_bytes(name));
        if name.contains(&b'/') {
            let path = if name_path.is_absolute() {
                self.host_path(name_path)
            } else {
                name_path.to_path_buf()
            };
            return self.usable(&path).then_some(Found {
                path,
                via: Via::Path,
            });
        }
        if object.runpath.is_none() {
            for (owner, loader) in chain.iter().enumerate() {
                if loader.runpath.is_some() {
                    continue;
                }
                if let Some(rpath) = &loader.rpath {
                    if let Some((index, path)) = self.in_list(rpath, &loader.path, name_path) {
                        return Some(Found {
                            path,
                            via: Via::Rpath { owner, index },
                        });
                    }
                }
            }
        }
        if let Some(runpath) = &object.runpath {
            if let Some((index, path)) = self.in_list(runpath, &object.path, name_path) {
                return Some(Found {
                    path,
                    via: Via::Runpath { index },
                });
            }
        }
        if object.nodeflib {
            return None;
        }
        if let Some(path) = self.cache.lookup(name) {
            let path = self.host_path(path);
            if self.usable(&path) {
                return Some(Found {
                    path,
                    via: Via::Cache,
                });
            }
        }
        self.defaults
            .iter()
            .find_map(|dir| self.in_dir(dir, name_path))
            .map(|path| Found {
                path,
                via: Via::Default,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_system_libraries_like_ldd() {
        let search = Search::new(None, EM_X86_64, true).unwrap();
        let program = Searcher {
            path: PathBuf::from("/usr/bin/true"),
            ..Searcher::default()
        };
        let found = search.find(b"libc.so.6", &[&program]).unwrap();
        assert_eq!(found.via, Via::Cache);
        assert_eq!(
            found.path.canonicalize().unwrap(),
            Path::new("/lib/x86_64-linux-gnu/libc.so.6")
                .canonicalize()
                .unwrap()
        );
        assert!(search.find(b"libdoesnotexist.so.9", &[&program]).is_none());
    }

    #[test]
    fn expands_tokens_and_honours_order() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::copy("/lib/x86_64-linux-gnu/libz.so.1", lib.join("libz.so.1")).unwrap();
        let search = Search::new(None, EM_X86_64, true).unwrap();
        let program = Searcher {
            path: dir.path().join("bin/prog"),
            runpath: Some(b"/nonexistent:$ORIGIN/../lib".to_vec()),
            ..Searcher::default()
        };
        let found = search.find(b"libz.so.1", &[&program]).unwrap();
        assert_eq!(found.via, Via::Runpath { index: 1 });
        assert_eq!(found.path, dir.path().join("bin/../lib/libz.so.1"));
        // DT_RPATH of the program serves a library that has neither.
        let program = Searcher {
            path: dir.path().join("bin/prog"),
            rpath: Some(b"${ORIGIN}/../lib".to_vec()),
            ..Searcher::default()
        };
        let library = Searcher {
            path: PathBuf::from("/lib/x86_64-linux-gnu/libfoo.so"),
            ..Searcher::default()
        };
        let found = search.find(b"libz.so.1", &[&library, &program]).unwrap();
        assert_eq!(found.via, Via::Rpath { owner: 1, index: 0 });
        // A 32-bit or foreign file of the right name is skipped.
        std::fs::write(lib.join("libc.so.6"), b"\x7fELF\x01\x01\x01").unwrap();
        let program = Searcher {
            path: dir.path().join("bin/prog"),
            runpath: Some(b"$ORIGIN/../lib".to_vec()),
            ..Searcher::default()
        };
        assert_eq!(
            search.find(b"libc.so.6", &[&program]).unwrap().via,
            Via::Cache
        );
        // Unknown tokens drop the entry, as in ld.so.
        assert!(search.expand(b"$FOO/lib", &program.path).is_none());
        assert_eq!(
            search.expand(b"/x/$LIB/$PLATFORM", &program.path).unwrap(),
            PathBuf::from("/x/lib/x86_64-linux-gnu/x86_64")
        );
    }
}
