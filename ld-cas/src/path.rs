//! A fixed-capacity, always NUL-terminated path buffer (no allocator).

use crate::sys::CPath;

/// Longest path ld-cas builds, terminator included. Smaller than Linux's 4096 so that the
/// few buffers fit in fewer pages (each touched page is a page fault at every start);
/// longer store paths are reported as errors, never truncated.
pub const PATH_MAX: usize = 1024;

/// A path under construction. Appending past the capacity marks it overflowed: it then
/// reads as empty, which no system call accepts, and [`PathBuf::overflowed`] says why.
///
/// `buf[len]` is always a NUL and `buf[..len]` never holds one ([`PathBuf::c`] relies on it).
pub struct PathBuf {
    buf: [u8; PATH_MAX],
    len: usize,
    overflow: bool,
    nul: bool,
}

impl PathBuf {
    /// The empty path.
    pub const fn new() -> PathBuf {
        PathBuf {
            buf: [0; PATH_MAX],
            len: 0,
            overflow: false,
            nul: false,
        }
    }

    /// Appends bytes; returns `false` (and marks the path overflowed) if they do not fit.
    pub fn push(&mut self, s: &[u8]) -> bool {
        if self.overflow || self.len + s.len() + 1 > PATH_MAX || s.contains(&0) {
            self.nul |= s.contains(&0);
            self.overflow = true;
            self.len = 0;
            self.buf[0] = 0;
            return false;
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
        self.buf[self.len] = 0;
        true
    }

    /// Empties the path.
    pub fn clear(&mut self) {
        self.len = 0;
        self.overflow = false;
        self.nul = false;
        self.buf[0] = 0;
    }

    /// Replaces the path with what `f` writes into the buffer (returning its length).
    /// Returns `false`, leaving the path empty, when `f` fails or fills the whole buffer.
    pub fn fill(&mut self, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        self.clear();
        match f(&mut self.buf[..PATH_MAX - 1]) {
            Some(n) if n < PATH_MAX - 1 && !self.buf[..n].contains(&0) => {
                self.len = n;
                self.buf[n] = 0;
                true
            }
            _ => {
                // `f` may have written over the terminator of the empty path.
                self.buf[0] = 0;
                false
            }
        }
    }

    /// The path without its terminator.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The path with its terminator, for system calls.
    pub fn c(&self) -> CPath<'_> {
        // SAFETY: `buf[len]` is a NUL and `buf[..len]` holds none (see the type): `push`
        // and `fill` refuse NUL bytes and terminate what they keep, and `new`, `clear` and
        // every failure leave the empty path.
        unsafe { CPath::new_unchecked(&self.buf[..self.len + 1]) }
    }

    /// Whether something appended did not fit (or held a NUL byte).
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// Why the path is unusable, once [`PathBuf::overflowed`]: for messages.
    pub fn why(&self) -> &'static str {
        if self.nul {
            "contains a NUL byte"
        } else {
            "is longer than 1023 bytes"
        }
    }
}

/// The directory part of `path` (`.` when it has none, `/` for top-level entries).
pub fn dirname(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&c| c == b'/') {
        Some(0) => b"/",
        Some(i) => &path[..i],
        None => b".",
    }
}
