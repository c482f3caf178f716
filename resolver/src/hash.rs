//! Computing content addresses (std only). The rule, specified in `docs/uri.md`: the
//! address of an object is the BLAKE3 hash of its bytes, except that every reference to a
//! member of the object's own dependency cycle (itself included) is replaced by
//! [`PLACEHOLDER`] first. For an object outside any cycle that is plain BLAKE3, the same
//! value `b3sum` prints.

use std::fs::File;
use std::io;
use std::path::Path;

use resolver_core::cycle_rule::{blank_in_place, feed_blanked};

use crate::uri::Hash;

/// Above this size, hashing uses all cores (BLAKE3's tree mode through rayon), as `b3sum`
/// does. Below it, threads cost more than they save.
const PARALLEL_THRESHOLD: usize = 128 * 1024;

fn feed(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    if bytes.len() >= PARALLEL_THRESHOLD {
        hasher.update_rayon(bytes);
    } else {
        hasher.update(bytes);
    }
}

/// Plain BLAKE3 of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    feed(&mut hasher, bytes);
    Hash(*hasher.finalize().as_bytes())
}

/// Plain BLAKE3 of a file's bytes, memory-mapped and multi-threaded for large files (the
/// same strategy as `b3sum`).
pub fn hash_file(path: &Path) -> io::Result<Hash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap_rayon(path)?;
    Ok(Hash(*hasher.finalize().as_bytes()))
}

/// The address of `bytes` when the objects `cycle` form its dependency cycle: BLAKE3 of
/// the bytes with every reference to a member of `cycle` replaced by the placeholder.
/// With an empty `cycle` this is [`hash_bytes`].
pub fn hash_modulo_cycle(bytes: &[u8], cycle: &[Hash]) -> Hash {
    if cycle.is_empty() {
        return hash_bytes(bytes);
    }
    let mut hasher = blake3::Hasher::new();
    feed_blanked(
        bytes,
        |h| cycle.contains(h),
        |piece| feed(&mut hasher, piece),
    );
    Hash(*hasher.finalize().as_bytes())
}

/// Replaces every reference to a member of `cycle` by the placeholder, in place. The
/// patcher writes cycle members this way, hashes them, then writes the real URIs back.
pub fn blank_cycle_references(bytes: &mut [u8], cycle: &[Hash]) {
    blank_in_place(bytes, |h| cycle.contains(h));
}

/// Memory-maps a whole file read-only. Empty files give an empty map.
#[allow(unsafe_code)]
pub fn map_file(file: &File) -> io::Result<Mapped> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(Mapped(None));
    }
    // SAFETY: the store's objects and tables are never modified in place (they are
    // replaced by rename), so the mapped bytes do not change under us; a file truncated
    // by someone else would raise SIGBUS, the same risk every mmap-based tool takes.
    let len = usize::try_from(len).map_err(|_| io::Error::other("file too large to map"))?;
    // Giving the length saves memmap2 a second fstat.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    Ok(Mapped(Some(map)))
}

/// A read-only file mapping (or nothing, for an empty file).
pub struct Mapped(Option<memmap2::Mmap>);

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refs::references;

    #[test]
    fn plain_hash_is_b3sum() {
        // b3sum of "abc".
        assert_eq!(
            hash_bytes(b"abc").to_string(),
            "uri:blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(hash_bytes(&big), Hash(*blake3::hash(&big).as_bytes()));
    }

    #[test]
    fn cycle_references_are_blanked() {
        let me = Hash([1; 32]);
        let peer = Hash([2; 32]);
        let outside = Hash([3; 32]);
        let mut file = b"head ".to_vec();
        file.extend_from_slice(&peer.to_uri_bytes());
        file.extend_from_slice(b" mid ");
        file.extend_from_slice(&outside.to_uri_bytes());
        file.extend_from_slice(&me.to_uri_bytes());
        file.extend_from_slice(b" tail");

        let mut blanked = file.clone();
        blank_cycle_references(&mut blanked, &[me, peer]);
        assert_eq!(blanked.len(), file.len());
        assert_eq!(
            references(&blanked).map(|(_, h)| h).collect::<Vec<_>>(),
            vec![outside]
        );
        assert_eq!(hash_modulo_cycle(&file, &[me, peer]), hash_bytes(&blanked));
        assert_eq!(hash_modulo_cycle(&file, &[]), hash_bytes(&file));
        // Writing real URIs into a blanked file does not change its address.
        assert_eq!(
            hash_modulo_cycle(&blanked, &[me, peer]),
            hash_bytes(&blanked)
        );
    }
}
