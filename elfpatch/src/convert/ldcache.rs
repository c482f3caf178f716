//! Reading glibc's `/etc/ld.so.cache` (format `glibc-ld.so.cache1.1`, optionally preceded
//! by the old `ld.so-1.7.0` table), to find libraries exactly as `ld.so` does.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const NEW_HEADER_LEN: usize = 48;
const NEW_ENTRY_LEN: usize = 24;
const OLD_ENTRY_LEN: usize = 12;

/// `FLAG_ELF_LIBC6`: an ELF library for glibc.
const FLAG_ELF_LIBC6: u32 = 0x0003;
const FLAG_TYPE_MASK: u32 = 0x00ff;
const FLAG_REQUIRED_MASK: u32 = 0xff00;
/// glibc's `DL_CACHE_HWCAP_EXTENSION`: the entry belongs to a `glibc-hwcaps` subdirectory.
const HWCAP_EXTENSION: u64 = 1 << 62;

/// The cache flag for 64-bit libraries of machine `e_machine` (0: the cache has no such flag,
/// so only `FLAG_ELF_LIBC6` entries without a required bit qualify).
fn required_flag(e_machine: u16) -> u32 {
    match e_machine {
        62 => 0x0300,  // FLAG_X8664_LIB64
        183 => 0x0a00, // FLAG_AARCH64_LIB64
        243 => 0x0f00, // FLAG_RISCV_FLOAT_ABI_DOUBLE (lp64d)
        21 => 0x0500,  // FLAG_POWERPC_LIB64
        _ => 0,
    }
}

/// One usable entry: a soname and the path the cache maps it to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    pub soname: Vec<u8>,
    pub path: PathBuf,
}

/// A parsed cache, filtered to one machine.
#[derive(Clone, Debug, Default)]
pub struct LdCache {
    entries: Vec<CacheEntry>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn c_string(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let rest = bytes.get(at..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..end])
}

impl LdCache {
    /// Reads the cache at `path` (a missing file is an empty cache, as for `ld.so`).
    pub fn load(path: &Path, e_machine: u16) -> Result<LdCache> {
        match std::fs::read(path) {
            Ok(bytes) => LdCache::parse(&bytes, e_machine)
                .with_context(|| format!("{} is not a valid ld.so cache", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LdCache::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Parses cache bytes, keeping the entries usable by machine `e_machine`.
    pub fn parse(bytes: &[u8], e_machine: u16) -> Result<LdCache> {
        let mut start = 0usize;
        if bytes.starts_with(OLD_MAGIC) {
            let n = u32_at(bytes, 12).context("truncated old-format header")? as usize;
            let old_end = n
                .checked_mul(OLD_ENTRY_LEN)
                .and_then(|l| l.checked_add(16))
                .context("old-format entry count overflows")?;
            start = (old_end + 7) & !7;
        }
        let cache = bytes.get(start..).unwrap_or_default();
        if !cache.starts_with(NEW_MAGIC) {
            bail!("no glibc-ld.so.cache1.1 table (only the old format, or not a cache)");
        }
        let nlibs = u32_at(cache, 20).context("truncated header")? as usize;
        let required = required_flag(e_machine);
        let mut entries = Vec::new();
        for i in 0..nlibs {
            let at = NEW_HEADER_LEN + i * NEW_ENTRY_LEN;
            let (Some(flags), Some(key), Some(value), Some(hwcap)) = (
                u32_at(cache, at),
                u32_at(cache, at + 4),
                u32_at(cache, at + 8),
                u64_at(cache, at + 16),
            ) else {
                bail!("entry {i} lies past the end of the file");
            };
            if flags & FLAG_TYPE_MASK != FLAG_ELF_LIBC6 || flags & FLAG_REQUIRED_MASK != required {
                continue;
            }
            // Entries for glibc-hwcaps subdirectories are selected by CPU features; the
            // directory search probes those subdirectories itself.
            if hwcap & HWCAP_EXTENSION != 0 {
                continue;
            }
            let (Some(soname), Some(path)) = (
                c_string(cache, key as usize),
                c_string(cache, value as usize),
            ) else {
                bail!("entry {i} has a string offset past the end of the file");
            };
            entries.push(CacheEntry {
                soname: soname.to_vec(),
                path: PathBuf::from(OsStr::from_bytes(path)),
            });
        }
        Ok(LdCache { entries })
    }

    /// The path the cache gives for `soname` (the first matching entry, as `ld.so` takes).
    pub fn lookup(&self, soname: &[u8]) -> Option<&Path> {
        self.entries
            .iter()
            .find(|e| e.soname == soname)
            .map(|e| e.path.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_system_cache() {
        let cache = LdCache::load(Path::new("/etc/ld.so.cache"), 62).unwrap();
        let libc = cache
            .lookup(b"libc.so.6")
            .expect("libc.so.6 is in the cache");
        assert!(libc.ends_with("libc.so.6"), "{libc:?}");
        assert!(libc.exists());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(LdCache::parse(b"", 62).is_err());
        assert!(LdCache::parse(b"glibc-ld.so.cache1.1\xff\xff\xff\xff", 62).is_err());
        let mut real = std::fs::read("/etc/ld.so.cache").unwrap();
        for len in (0..real.len()).step_by(97) {
            let _ = LdCache::parse(&real[..len], 62);
        }
        for i in (0..real.len()).step_by(13) {
            real[i] ^= 0xff;
            let _ = LdCache::parse(&real, 62);
        }
    }
}
