//! The table writer: builds the bytes of a table from entries (sorted, deduplicated,
//! bucket-indexed, checksummed).

use super::entry_check;
use super::format::{self, entry, header, ENTRY_LEN, HEADER_LEN, MAGIC, VERSION};
use super::{Fnv64, Kind, Table};
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

/// Every entry of `table`, the whole table checked first (`Table::verify`): what a writer
/// that rebuilds or mirrors a table starts from.
pub fn checked_entries(table: &Table<'_>) -> Result<Vec<NewEntry>, super::TableError> {
    table.verify()?;
    table.entries().map(|e| e.map(NewEntry::from)).collect()
}

/// Builds a table. Entries are sorted by hash; when a hash appears more than once the
/// first occurrence wins (so callers list existing entries before new ones).
/// `generation` is recorded in the header.
pub fn build(entries: Vec<NewEntry>, generation: u64) -> Result<Vec<u8>, BuildError> {
    assemble(&[], &[], entries, generation)
}

/// Builds a table that lists everything `old` lists (checked by [`Table::verify`] first:
/// its records are copied as they are) and `added`, with `generation`. Where a hash is in
/// both, `old`'s entry stays. The old strings keep their place at the start of the pool
/// and the new ones follow, so no old entry is decoded or re-encoded: adding a few objects
/// to a store of a million costs a copy, not a rebuild.
pub fn extend(
    old: &Table<'_>,
    added: Vec<NewEntry>,
    generation: u64,
) -> Result<Vec<u8>, BuildError> {
    assemble(old.raw_entries(), old.strings(), added, generation)
}

/// A table of the 64-byte records `old_entries` (sorted, with offsets into `old_strings`)
/// merged with `added`.
fn assemble(
    old_entries: &[u8],
    old_strings: &[u8],
    mut added: Vec<NewEntry>,
    generation: u64,
) -> Result<Vec<u8>, BuildError> {
    added.sort_by_key(|e| e.hash);
    added.dedup_by(|later, earlier| later.hash == earlier.hash);
    if let Some(e) = added.iter().find(|e| e.path.is_empty()) {
        return Err(BuildError::EmptyPath(e.hash));
    }
    let old: Vec<&[u8]> = old_entries.chunks_exact(ENTRY_LEN).collect();
    let old_hash = |r: &[u8]| -> [u8; 32] {
        r[entry::HASH..entry::HASH + 32]
            .try_into()
            .unwrap_or([0; 32])
    };
    added.retain(|e| {
        old.binary_search_by(|r| old_hash(r).cmp(&e.hash.0))
            .is_err()
    });
    let total = old.len() + added.len();
    let count = u32::try_from(total).map_err(|_| BuildError::TooManyEntries(total))?;

    let bits = format::bucket_bits_for(total);
    let buckets_off = HEADER_LEN;
    let buckets_len = ((1usize << bits) + 1) * 4;
    let entries_off = align8(buckets_off + buckets_len);
    let entries_len = total * ENTRY_LEN;
    let strings_off = entries_off + entries_len;
    let strings_len: usize = old_strings.len()
        + added
            .iter()
            .map(|e| e.path.len() + e.soname.len())
            .sum::<usize>();
    if u32::try_from(strings_len).is_err() {
        return Err(BuildError::StringsTooLarge(strings_len));
    }
    let file_len = strings_off + strings_len;
    let mut out = vec![0u8; file_len];
    out[strings_off..strings_off + old_strings.len()].copy_from_slice(old_strings);

    // Merge the old records and the new entries by hash into the entry array.
    let mut string_at = old_strings.len();
    let (mut i, mut j) = (0, 0);
    for slot in 0..total {
        let at = entries_off + slot * ENTRY_LEN;
        let take_old = j == added.len() || (i < old.len() && old_hash(old[i]) < added[j].hash.0);
        if take_old {
            out[at..at + ENTRY_LEN].copy_from_slice(old[i]);
            i += 1;
            continue;
        }
        let e = &added[j];
        j += 1;
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

    // Bucket index: bucket b starts at the first entry whose bucket is >= b.
    let prefix_at = |slot: usize| {
        let at = entries_off + slot * ENTRY_LEN;
        Hash(old_hash(&out[at..at + ENTRY_LEN])).prefix64()
    };
    let mut next_entry = 0usize;
    let mut words = Vec::with_capacity((1usize << bits) + 1);
    for bucket in 0..=(1u64 << bits) {
        while next_entry < total && format::bucket_of(prefix_at(next_entry), bits) < bucket {
            next_entry += 1;
        }
        // `next_entry` fits in u32: it is at most `count`.
        words.push(next_entry as u32);
    }
    for (b, word) in words.into_iter().enumerate() {
        put_u32(&mut out, buckets_off + b * 4, word);
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
    fn extending_lists_the_old_and_the_new_entries() {
        let all = sample(3000);
        // From nothing, extending is building.
        let empty = build(Vec::new(), 0).unwrap();
        let empty = Table::parse(&empty).unwrap();
        assert_eq!(
            extend(&empty, all.clone(), 4).unwrap(),
            build(all.clone(), 4).unwrap()
        );
        // In steps of growing size (bucket bits change on the way), with an entry the
        // table already holds offered again under another path: the old one stays.
        let mut bytes = build(all[..1].to_vec(), 0).unwrap();
        for (generation, range) in [(1, 1..2), (2, 2..40), (3, 40..1000), (4, 1000..3000)] {
            let mut added = all[range].to_vec();
            let mut again = all[0].clone();
            again.path = b"objects/elsewhere".to_vec();
            added.push(again);
            let old = Table::parse(&bytes).unwrap();
            bytes = extend(&old, added, generation).unwrap();
        }
        let table = Table::parse(&bytes).unwrap();
        table.verify().unwrap();
        assert_eq!(table.len(), 3000);
        assert_eq!(table.generation(), 4);
        for e in &all {
            assert_eq!(
                NewEntry::from(table.lookup_checked(&e.hash).unwrap().unwrap()),
                *e
            );
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
