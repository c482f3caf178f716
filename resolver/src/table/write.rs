//! The table writer: builds the bytes of a table from entries (sorted, deduplicated,
//! bucket-indexed, checksummed).

use super::format::{self, entry, header, ENTRY_LEN, HEADER_LEN, MAGIC, VERSION};
use super::read::entry_check;
use super::{Fnv64, Kind};
use crate::uri::Hash;

/// An entry to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    /// The content address.
    pub hash: Hash,
    /// Path relative to the store root (UTF-8 is not required).
    pub path: Vec<u8>,
    /// Original `DT_SONAME`, empty when none.
    pub soname: Vec<u8>,
    /// Size of the object in bytes.
    pub size: u64,
    /// What the object is.
    pub kind: Kind,
}

impl<'a> From<super::Entry<'a>> for NewEntry {
    fn from(e: super::Entry<'a>) -> NewEntry {
        NewEntry {
            hash: e.hash,
            path: e.path.to_vec(),
            soname: e.soname.to_vec(),
            size: e.size,
            kind: e.kind,
        }
    }
}

/// Why a table could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// More entries than the format's 32-bit count holds.
    #[error("too many entries ({0}); a table holds at most 4294967295")]
    TooManyEntries(usize),
    /// The string pool would pass 4 GiB, the limit of its 32-bit offsets.
    #[error("the string pool would be {0} bytes; a table's pool holds at most 4 GiB")]
    StringsTooLarge(usize),
    /// An entry has an empty path.
    #[error("the entry for {0} has an empty path")]
    EmptyPath(Hash),
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Builds a table. Entries are sorted by hash; when a hash appears more than once the
/// first occurrence wins (so callers list existing entries before new ones).
/// `generation` is recorded in the header.
pub fn build(mut entries: Vec<NewEntry>, generation: u64) -> Result<Vec<u8>, BuildError> {
    entries.sort_by_key(|e| e.hash);
    entries.dedup_by(|later, earlier| later.hash == earlier.hash);
    let count =
        u32::try_from(entries.len()).map_err(|_| BuildError::TooManyEntries(entries.len()))?;
    if let Some(e) = entries.iter().find(|e| e.path.is_empty()) {
        return Err(BuildError::EmptyPath(e.hash));
    }

    let bits = format::bucket_bits_for(entries.len());
    let buckets_off = HEADER_LEN;
    let buckets_len = ((1usize << bits) + 1) * 4;
    let entries_off = align8(buckets_off + buckets_len);
    let entries_len = entries.len() * ENTRY_LEN;
    let strings_off = entries_off + entries_len;
    let strings_len: usize = entries.iter().map(|e| e.path.len() + e.soname.len()).sum();
    if u32::try_from(strings_len).is_err() {
        return Err(BuildError::StringsTooLarge(strings_len));
    }
    let file_len = strings_off + strings_len;
    let mut out = vec![0u8; file_len];

    // Bucket index: bucket b starts at the first entry whose bucket is >= b.
    let mut next_entry = 0usize;
    for bucket in 0..=(1u64 << bits) {
        while next_entry < entries.len()
            && format::bucket_of(entries[next_entry].hash.prefix64(), bits) < bucket
        {
            next_entry += 1;
        }
        // `next_entry` fits in u32: it is at most `count`.
        put_u32(
            &mut out,
            buckets_off + bucket as usize * 4,
            next_entry as u32,
        );
    }

    let mut string_at = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let at = entries_off + i * ENTRY_LEN;
        let path_off = string_at;
        out[strings_off + path_off..][..e.path.len()].copy_from_slice(&e.path);
        let soname_off = path_off + e.path.len();
        out[strings_off + soname_off..][..e.soname.len()].copy_from_slice(&e.soname);
        string_at = soname_off + e.soname.len();

        let raw = &mut out[at..at + ENTRY_LEN];
        raw[entry::HASH..entry::HASH + 32].copy_from_slice(&e.hash.0);
        // Offsets and lengths fit in u32: the whole pool does.
        put_u32(raw, entry::PATH_OFF, path_off as u32);
        put_u32(raw, entry::PATH_LEN, e.path.len() as u32);
        put_u32(raw, entry::SONAME_OFF, soname_off as u32);
        put_u32(raw, entry::SONAME_LEN, e.soname.len() as u32);
        put_u64(raw, entry::SIZE, e.size);
        raw[entry::KIND] = e.kind.code();
        let check = entry_check(&raw[..entry::CHECK], &e.path, &e.soname);
        put_u32(raw, entry::CHECK, check);
    }

    out[header::MAGIC..header::MAGIC + 8].copy_from_slice(&MAGIC);
    put_u32(&mut out, header::VERSION, VERSION);
    put_u32(&mut out, header::HEADER_LEN, HEADER_LEN as u32);
    put_u64(&mut out, header::FILE_LEN, file_len as u64);
    put_u32(&mut out, header::ENTRY_COUNT, count);
    put_u32(&mut out, header::BUCKET_BITS, bits);
    put_u64(&mut out, header::BUCKETS_OFF, buckets_off as u64);
    put_u64(&mut out, header::ENTRIES_OFF, entries_off as u64);
    put_u64(&mut out, header::STRINGS_OFF, strings_off as u64);
    put_u64(&mut out, header::STRINGS_LEN, strings_len as u64);
    let body = Fnv64::of(&out[HEADER_LEN..]);
    put_u64(&mut out, header::BODY_CHECKSUM, body);
    put_u64(&mut out, header::GENERATION, generation);
    let head = Fnv64::of(&out[..header::HEADER_CHECKSUM]);
    put_u64(&mut out, header::HEADER_CHECKSUM, head);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Table;

    fn sample(n: usize) -> Vec<NewEntry> {
        (0..n)
            .map(|i| {
                let hash = Hash(*blake3::hash(&i.to_le_bytes()).as_bytes());
                NewEntry {
                    hash,
                    path: format!("objects/{}-libt{i}.so", hash.to_string().split_at(11).1)
                        .into_bytes(),
                    soname: if i % 3 == 0 {
                        Vec::new()
                    } else {
                        format!("libt{i}.so.1").into_bytes()
                    },
                    size: i as u64 * 1000,
                    kind: [Kind::Library, Kind::Interpreter, Kind::Program][i % 3],
                }
            })
            .collect()
    }

    #[test]
    fn round_trip_various_sizes() {
        for n in [0usize, 1, 2, 3, 7, 100, 1000, 4097] {
            let entries = sample(n);
            let bytes = build(entries.clone(), 7).unwrap();
            let table = Table::parse(&bytes).unwrap();
            table.verify().unwrap();
            assert_eq!(table.len() as usize, n);
            assert_eq!(table.generation(), 7);
            for e in &entries {
                let found = table.lookup_checked(&e.hash).unwrap().unwrap();
                assert_eq!(NewEntry::from(found), *e);
                assert_eq!(table.lookup(&e.hash).unwrap(), Some(found));
            }
            let missing = Hash(*blake3::hash(b"absent").as_bytes());
            assert_eq!(table.lookup(&missing).unwrap(), None);
            let listed: Vec<_> = table.entries().map(|e| e.unwrap().hash).collect();
            let mut sorted: Vec<_> = entries.iter().map(|e| e.hash).collect();
            sorted.sort();
            assert_eq!(listed, sorted);
        }
    }

    #[test]
    fn first_occurrence_wins() {
        let mut entries = sample(3);
        let mut dup = entries[1].clone();
        dup.path = b"objects/other".to_vec();
        entries.push(dup);
        let bytes = build(entries.clone(), 0).unwrap();
        let table = Table::parse(&bytes).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(
            table.lookup(&entries[1].hash).unwrap().unwrap().path,
            &entries[1].path[..]
        );
    }

    #[test]
    fn empty_path_refused() {
        let mut entries = sample(2);
        entries[1].path.clear();
        assert_eq!(
            build(entries.clone(), 0),
            Err(BuildError::EmptyPath(entries[1].hash))
        );
    }
}
