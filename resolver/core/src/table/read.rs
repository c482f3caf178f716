//! The table reader: zero-copy, allocation-free, and total (every input gives a value or an
//! error; no index can go out of bounds, no arithmetic can overflow).

use core::fmt;

use super::format::{self, entry, header, ENTRY_LEN, HEADER_LEN, MAGIC, MAX_BUCKET_BITS, VERSION};
use super::{path_problem, Fnv64, Kind};
use crate::uri::Hash;

/// What is wrong with a table. Each variant names the field or entry at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// The file is shorter than the header (`len` bytes).
    TooShort { len: usize },
    /// The first eight bytes are not the table magic `LDCASTBL`.
    BadMagic,
    /// The format version is one this reader does not know.
    UnsupportedVersion { version: u32 },
    /// The header checksum does not match: the header was damaged.
    HeaderChecksum,
    /// A header field has an impossible value.
    BadHeader { field: &'static str, value: u64 },
    /// The file length differs from the one the header records (truncated or extended).
    LengthMismatch { header: u64, actual: u64 },
    /// A region (bucket array, entries, strings) lies outside the file or overlaps another.
    RegionOutOfBounds { region: &'static str },
    /// The body checksum does not match: some byte after the header was damaged.
    BodyChecksum,
    /// Bucket `bucket` points outside the entry array or before the previous bucket.
    BadBucket { bucket: u64 },
    /// Entry `index` is damaged: a string lies outside the pool, its kind is unknown, its
    /// check does not match, or entries are out of order.
    BadEntry { index: u32, problem: &'static str },
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TableError::TooShort { len } => write!(
                f,
                "is {len} bytes long, shorter than the {HEADER_LEN}-byte table header (truncated?)"
            ),
            TableError::BadMagic => f.write_str("is not an ld-cas lookup table (bad magic)"),
            TableError::UnsupportedVersion { version } => write!(
                f,
                "has table format version {version}; this build reads version {VERSION}"
            ),
            TableError::HeaderChecksum => f.write_str("has a damaged header (checksum mismatch)"),
            TableError::BadHeader { field, value } => {
                write!(f, "has an impossible header field {field} = {value}")
            }
            TableError::LengthMismatch { header, actual } => write!(
                f,
                "is {actual} bytes long but its header says {header} (truncated or extended)"
            ),
            TableError::RegionOutOfBounds { region } => {
                write!(f, "has its {region} outside the file")
            }
            TableError::BodyChecksum => {
                f.write_str("has damaged contents (body checksum mismatch)")
            }
            TableError::BadBucket { bucket } => {
                write!(f, "has a damaged bucket index (bucket {bucket})")
            }
            TableError::BadEntry { index, problem } => {
                write!(f, "has a damaged entry {index}: {problem}")
            }
        }
    }
}

// No `Error` impl: `core::error::Error` is newer than Rust 1.63 (see `crate::uri`).

// The fields are read as arrays (`try_from`), not with `copy_from_slice`, which the
// size-optimised build leaves out of line: a call and a `memcpy` for four bytes.

/// The `u32` at `at`, 0 when it lies outside `bytes`.
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let src = bytes.get(at..at.saturating_add(4)).unwrap_or_default();
    u32::from_le_bytes(<[u8; 4]>::try_from(src).unwrap_or_default())
}

/// The `u64` at `at`, 0 when it lies outside `bytes`.
fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let src = bytes.get(at..at.saturating_add(8)).unwrap_or_default();
    u64::from_le_bytes(<[u8; 8]>::try_from(src).unwrap_or_default())
}

/// A parsed table borrowing its bytes.
#[derive(Clone, Copy)]
pub struct Table<'a> {
    bytes: &'a [u8],
    buckets: &'a [u8],
    entries: &'a [u8],
    strings: &'a [u8],
    count: u32,
    bits: u32,
    generation: u64,
}

/// One entry of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The content address.
    pub hash: Hash,
    /// The object's path relative to the store root.
    pub path: &'a [u8],
    /// The object's `DT_SONAME` when it was added (empty when it has none).
    pub soname: &'a [u8],
    /// The object's size in bytes.
    pub size: u64,
    /// What the object is.
    pub kind: Kind,
}

/// Converts a `u64` header field into a `usize` offset, or reports the field.
fn offset(value: u64, field: &'static str) -> Result<usize, TableError> {
    usize::try_from(value).map_err(|_| TableError::BadHeader { field, value })
}

/// `bytes[off..off + len]`, or the region's name as an error.
fn region<'a>(
    bytes: &'a [u8],
    off: usize,
    len: usize,
    name: &'static str,
) -> Result<&'a [u8], TableError> {
    off.checked_add(len)
        .and_then(|end| bytes.get(off..end))
        .ok_or(TableError::RegionOutOfBounds { region: name })
}

impl<'a> Table<'a> {
    /// The table's bytes, the whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Checks the header (magic, version, checksum, that every region lies inside `bytes`
    /// in order) in constant time, whatever the table's size. Damage after the header is
    /// found by [`Table::verify`] (the whole file) or [`Table::lookup_checked`] (one entry).
    pub fn parse(bytes: &'a [u8]) -> Result<Table<'a>, TableError> {
        if bytes.len() < HEADER_LEN {
            return Err(TableError::TooShort { len: bytes.len() });
        }
        if bytes[..8] != MAGIC {
            return Err(TableError::BadMagic);
        }
        let version = read_u32(bytes, header::VERSION);
        if version != VERSION {
            return Err(TableError::UnsupportedVersion { version });
        }
        if Fnv64::of(&bytes[..header::HEADER_CHECKSUM]) != read_u64(bytes, header::HEADER_CHECKSUM)
        {
            return Err(TableError::HeaderChecksum);
        }
        let header_len = read_u32(bytes, header::HEADER_LEN);
        if header_len as usize != HEADER_LEN {
            return Err(TableError::BadHeader {
                field: "header_len",
                value: u64::from(header_len),
            });
        }
        let file_len = read_u64(bytes, header::FILE_LEN);
        if file_len != bytes.len() as u64 {
            return Err(TableError::LengthMismatch {
                header: file_len,
                actual: bytes.len() as u64,
            });
        }
        let count = read_u32(bytes, header::ENTRY_COUNT);
        let bits = read_u32(bytes, header::BUCKET_BITS);
        if bits > MAX_BUCKET_BITS {
            return Err(TableError::BadHeader {
                field: "bucket_bits",
                value: u64::from(bits),
            });
        }
        let buckets_off = offset(read_u64(bytes, header::BUCKETS_OFF), "buckets_off")?;
        let entries_off = offset(read_u64(bytes, header::ENTRIES_OFF), "entries_off")?;
        let strings_off = offset(read_u64(bytes, header::STRINGS_OFF), "strings_off")?;
        let strings_len = offset(read_u64(bytes, header::STRINGS_LEN), "strings_len")?;
        // The regions follow each other in this order; overlapping regions would let one
        // damaged field be read as another.
        if buckets_off < HEADER_LEN {
            return Err(TableError::RegionOutOfBounds {
                region: "bucket array",
            });
        }
        let buckets_len = ((1usize << bits) + 1) * 4;
        let buckets = region(bytes, buckets_off, buckets_len, "bucket array")?;
        if entries_off < buckets_off + buckets_len {
            return Err(TableError::RegionOutOfBounds {
                region: "entry array",
            });
        }
        let entries_len =
            (count as usize)
                .checked_mul(ENTRY_LEN)
                .ok_or(TableError::RegionOutOfBounds {
                    region: "entry array",
                })?;
        let entries = region(bytes, entries_off, entries_len, "entry array")?;
        if strings_off < entries_off + entries_len {
            return Err(TableError::RegionOutOfBounds {
                region: "string pool",
            });
        }
        let strings = region(bytes, strings_off, strings_len, "string pool")?;
        Ok(Table {
            bytes,
            buckets,
            entries,
            strings,
            count,
            bits,
            generation: read_u64(bytes, header::GENERATION),
        })
    }

    /// Checks the whole table: the body checksum, every bucket and every entry. Linear in
    /// the table's size; tools call it, the interpreter checks only what it uses.
    pub fn verify(&self) -> Result<(), TableError> {
        if Fnv64::of(&self.bytes[HEADER_LEN..]) != read_u64(self.bytes, header::BODY_CHECKSUM) {
            return Err(TableError::BodyChecksum);
        }
        let mut previous: Option<Hash> = None;
        for index in 0..self.count {
            let e = self.entry_checked(index)?;
            if matches!(previous, Some(p) if p >= e.hash) {
                return Err(TableError::BadEntry {
                    index,
                    problem: "entries are not sorted by hash, or one is repeated",
                });
            }
            previous = Some(e.hash);
        }
        // Every bucket must start exactly at its first entry (entries are sorted, so
        // bucket b starts after all the entries of the buckets below b).
        let mut first = 0u32;
        for bucket in 0..=(1u64 << self.bits) {
            while first < self.count
                && format::bucket_of(self.hash_at(first).prefix64(), self.bits) < bucket
            {
                first += 1;
            }
            if read_u32(self.buckets, bucket as usize * 4) != first {
                return Err(TableError::BadBucket { bucket });
            }
        }
        Ok(())
    }

    /// The entry array: `len()` records of 64 bytes, sorted by hash. The writer copies it
    /// when it adds entries to a table.
    pub fn raw_entries(&self) -> &'a [u8] {
        self.entries
    }

    /// The string pool, which the writer copies with the entries.
    pub fn strings(&self) -> &'a [u8] {
        self.strings
    }

    /// The number of entries.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many times the store's table has been replaced.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Entries `[start, end)` of bucket `bucket`.
    fn bucket_range(&self, bucket: u64) -> Result<(u32, u32), TableError> {
        let at = usize::try_from(bucket)
            .ok()
            .and_then(|b| b.checked_mul(4))
            .ok_or(TableError::BadBucket { bucket })?;
        if at + 8 > self.buckets.len() {
            return Err(TableError::BadBucket { bucket });
        }
        let start = read_u32(self.buckets, at);
        let end = read_u32(self.buckets, at + 4);
        if start > end || end > self.count {
            return Err(TableError::BadBucket { bucket });
        }
        Ok((start, end))
    }

    /// Finds `hash`. Checks that the bucket and the entry lie inside the table, but not the
    /// entry's check (see [`Table::lookup_checked`]).
    pub fn lookup(&self, hash: &Hash) -> Result<Option<Entry<'a>>, TableError> {
        let (start, end) = self.bucket_range(format::bucket_of(hash.prefix64(), self.bits))?;
        for index in start..end {
            let at = index as usize * ENTRY_LEN;
            let hash_bytes = &self.entries[at..at + 32];
            if hash_bytes == hash.0 {
                return self.entry(index).map(Some);
            }
        }
        Ok(None)
    }

    /// Like [`Table::lookup`], and also checks the found entry's check value, so a
    /// damaged entry (or damaged strings) is reported instead of returned, and its path,
    /// so an entry that would lead out of the store (absolute, with a `..` component, or
    /// not normalised) is reported as [`TableError::BadEntry`] naming the path field.
    pub fn lookup_checked(&self, hash: &Hash) -> Result<Option<Entry<'a>>, TableError> {
        let (start, end) = self.bucket_range(format::bucket_of(hash.prefix64(), self.bits))?;
        for index in start..end {
            let at = index as usize * ENTRY_LEN;
            if self.entries[at..at + 32] == hash.0 {
                return self.entry_checked(index).map(Some);
            }
        }
        Ok(None)
    }

    /// The hash of entry `index`, which the caller keeps below `count`.
    fn hash_at(&self, index: u32) -> Hash {
        let raw = &self.entry_bytes(index)[entry::HASH..entry::HASH + 32];
        Hash(<[u8; 32]>::try_from(raw).unwrap_or_default())
    }

    /// The raw bytes of entry `index`, which the caller keeps below `count`.
    fn entry_bytes(&self, index: u32) -> &'a [u8] {
        let at = index as usize * ENTRY_LEN;
        // In bounds: `parse` checked that `entries` holds `count` entries.
        &self.entries[at..at + ENTRY_LEN]
    }

    /// A string of the pool, or which entry field points outside it.
    fn string(
        &self,
        index: u32,
        raw: &[u8],
        off: usize,
        len: usize,
    ) -> Result<&'a [u8], TableError> {
        let start = read_u32(raw, off) as usize;
        let n = read_u32(raw, len) as usize;
        start
            .checked_add(n)
            .and_then(|end| self.strings.get(start..end))
            .ok_or(TableError::BadEntry {
                index,
                problem: "a string lies outside the string pool",
            })
    }

    /// Entry `index` (which must be below [`Table::len`]), its strings checked to lie in
    /// the pool.
    pub fn entry(&self, index: u32) -> Result<Entry<'a>, TableError> {
        if index >= self.count {
            return Err(TableError::BadEntry {
                index,
                problem: "index past the last entry",
            });
        }
        let raw = self.entry_bytes(index);
        let path = self.string(index, raw, entry::PATH_OFF, entry::PATH_LEN)?;
        let soname = self.string(index, raw, entry::SONAME_OFF, entry::SONAME_LEN)?;
        let kind = Kind::from_code(raw[entry::KIND]).ok_or(TableError::BadEntry {
            index,
            problem: "unknown kind",
        })?;
        if path.is_empty() {
            return Err(TableError::BadEntry {
                index,
                problem: "empty path",
            });
        }
        Ok(Entry {
            hash: self.hash_at(index),
            path,
            soname,
            size: read_u64(raw, entry::SIZE),
            kind,
        })
    }

    /// Entry `index` with its check value verified and its path checked to stay inside
    /// the store (see [`path_problem`]).
    pub fn entry_checked(&self, index: u32) -> Result<Entry<'a>, TableError> {
        let e = self.entry(index)?;
        let raw = self.entry_bytes(index);
        if entry_check(&raw[..entry::CHECK], e.path, e.soname) != read_u32(raw, entry::CHECK) {
            return Err(TableError::BadEntry {
                index,
                problem: "check value mismatch (damaged entry or strings)",
            });
        }
        if let Some(problem) = path_problem(e.path) {
            return Err(TableError::BadEntry { index, problem });
        }
        Ok(e)
    }

    /// All entries in hash order.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            table: *self,
            next: 0,
        }
    }
}

/// The check value of an entry: FNV-1a-64 over its first 60 bytes, its path and its soname,
/// truncated to 32 bits. The writer computes it with this function too.
pub fn entry_check(head: &[u8], path: &[u8], soname: &[u8]) -> u32 {
    let mut c = Fnv64::new();
    c.update(head);
    c.update(path);
    c.update(soname);
    c.finish() as u32
}

/// Iterator over a table's entries, in hash order; yields an error for a damaged entry.
pub struct Entries<'a> {
    table: Table<'a>,
    next: u32,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, TableError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.table.count {
            return None;
        }
        let index = self.next;
        self.next += 1;
        Some(self.table.entry_checked(index))
    }
}
