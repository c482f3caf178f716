//! The parts of the `resolver` crate ld-cas uses: the URI grammar and the table reader.
//!
//! Stand-in with the resolver's signatures until its reader is available on this branch.

/// The prefix of every content address.
pub const URI_PREFIX: &[u8] = b"uri:blake3:";
/// Length of a content address.
pub const URI_LEN: usize = 75;

/// A BLAKE3 hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Hash(pub [u8; 32]);

/// Why a URI did not parse.
#[derive(Clone, Copy, Debug)]
pub struct UriError;

impl Hash {
    /// Parses `uri:blake3:<64 lowercase hex>`.
    pub fn parse_uri(s: &[u8]) -> Result<Hash, UriError> {
        if s.len() != URI_LEN || !s.starts_with(URI_PREFIX) {
            return Err(UriError);
        }
        let mut h = [0u8; 32];
        for (i, b) in h.iter_mut().enumerate() {
            let hex = |c: u8| match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                _ => Err(UriError),
            };
            *b = hex(s[11 + 2 * i])? << 4 | hex(s[12 + 2 * i])?;
        }
        Ok(Hash(h))
    }

    /// Formats the URI.
    pub fn write_uri(&self, out: &mut [u8; URI_LEN]) {
        out[..11].copy_from_slice(URI_PREFIX);
        for (i, b) in self.0.iter().enumerate() {
            out[11 + 2 * i] = b"0123456789abcdef"[(b >> 4) as usize];
            out[12 + 2 * i] = b"0123456789abcdef"[(b & 15) as usize];
        }
    }
}

/// What kind of object an entry is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A shared library.
    Library,
    /// A real loader (ld.so).
    Interpreter,
    /// A program.
    Program,
}

/// A table entry.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Its hash.
    pub hash: Hash,
    /// Store-relative path.
    pub path: &'a [u8],
    /// Original soname.
    pub soname: &'a [u8],
    /// Size in bytes.
    pub size: u64,
    /// Kind.
    pub kind: Kind,
}

/// A corrupt or unreadable table.
#[derive(Clone, Copy, Debug)]
pub struct TableError;

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unsupported table format")
    }
}

/// A lookup table.
pub struct Table<'a> {
    _bytes: &'a [u8],
}

impl<'a> Table<'a> {
    /// Checks the header.
    pub fn parse(_bytes: &'a [u8]) -> Result<Table<'a>, TableError> {
        Err(TableError)
    }

    /// Looks a hash up.
    pub fn lookup(&self, _h: &Hash) -> Result<Option<Entry<'a>>, TableError> {
        Err(TableError)
    }
}
