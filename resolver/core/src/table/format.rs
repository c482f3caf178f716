//! Constants of the table format (`docs/table-format.md`). All integers are little-endian.

/// The first eight bytes of every table.
pub const MAGIC: [u8; 8] = *b"LDCASTBL";
/// The format version this crate reads and writes.
pub const VERSION: u32 = 1;
/// Size of the header in bytes.
pub const HEADER_LEN: usize = 96;
/// Size of one entry in bytes.
pub const ENTRY_LEN: usize = 64;
/// The largest number of bucket bits a table may declare (16 Mi buckets).
pub const MAX_BUCKET_BITS: u32 = 24;

/// Byte offsets of the header fields.
pub mod header {
    /// `[u8; 8]`: [`super::MAGIC`].
    pub const MAGIC: usize = 0;
    /// `u32`: format version.
    pub const VERSION: usize = 8;
    /// `u32`: header length, [`super::HEADER_LEN`].
    pub const HEADER_LEN: usize = 12;
    /// `u64`: length of the whole file.
    pub const FILE_LEN: usize = 16;
    /// `u32`: number of entries.
    pub const ENTRY_COUNT: usize = 24;
    /// `u32`: number of leading hash bits that select a bucket.
    pub const BUCKET_BITS: usize = 28;
    /// `u64`: offset of the bucket array.
    pub const BUCKETS_OFF: usize = 32;
    /// `u64`: offset of the entry array.
    pub const ENTRIES_OFF: usize = 40;
    /// `u64`: offset of the string pool.
    pub const STRINGS_OFF: usize = 48;
    /// `u64`: length of the string pool.
    pub const STRINGS_LEN: usize = 56;
    /// `u64`: FNV-1a-64 of bytes `HEADER_LEN..FILE_LEN`.
    pub const BODY_CHECKSUM: usize = 64;
    /// `u64`: incremented each time the store's table is replaced.
    pub const GENERATION: usize = 72;
    /// `[u8; 8]`: zero.
    pub const RESERVED: usize = 80;
    /// `u64`: FNV-1a-64 of header bytes `0..88`.
    pub const HEADER_CHECKSUM: usize = 88;
}

/// Byte offsets of the fields of an entry.
pub mod entry {
    /// `[u8; 32]`: the BLAKE3 hash.
    pub const HASH: usize = 0;
    /// `u32`: offset of the store-relative path in the string pool.
    pub const PATH_OFF: usize = 32;
    /// `u32`: length of the path.
    pub const PATH_LEN: usize = 36;
    /// `u32`: offset of the original soname in the string pool.
    pub const SONAME_OFF: usize = 40;
    /// `u32`: length of the soname (0: none).
    pub const SONAME_LEN: usize = 44;
    /// `u64`: size of the object in bytes.
    pub const SIZE: usize = 48;
    /// `u8`: kind code (1 library, 2 interpreter, 3 program).
    pub const KIND: usize = 56;
    /// `[u8; 3]`: zero.
    pub const RESERVED: usize = 57;
    /// `u32`: low 32 bits of FNV-1a-64 over entry bytes `0..60`, then the path, then the soname.
    pub const CHECK: usize = 60;
}

/// The bucket an entry with this hash prefix belongs to, for a table of `bits` bucket bits.
pub fn bucket_of(prefix64: u64, bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        prefix64 >> (64 - bits)
    }
}

/// The number of bucket bits the writer chooses for `count` entries: the smallest number
/// of buckets at least `count`, so the average bucket holds at most one entry.
pub fn bucket_bits_for(count: usize) -> u32 {
    let mut bits = 0;
    while bits < MAX_BUCKET_BITS && (1usize << bits) < count {
        bits += 1;
    }
    bits
}
