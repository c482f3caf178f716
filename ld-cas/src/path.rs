//! A fixed-capacity, always NUL-terminated path buffer (no allocator).

/// Longest path ld-cas builds, terminator included (Linux's `PATH_MAX`).
pub const PATH_MAX: usize = 4096;

/// A path under construction.
pub struct PathBuf {
    buf: [u8; PATH_MAX],
    len: usize,
}

impl PathBuf {
    /// The empty path.
    pub const fn new() -> PathBuf {
        PathBuf {
            buf: [0; PATH_MAX],
            len: 0,
        }
    }

    /// Appends bytes; returns `false` (leaving the path unchanged) if they do not fit.
    pub fn push(&mut self, s: &[u8]) -> bool {
        if self.len + s.len() + 1 > PATH_MAX || s.contains(&0) {
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
        self.buf[0] = 0;
    }

    /// The path without its terminator.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The path with its terminator, for system calls.
    pub fn c(&self) -> &[u8] {
        &self.buf[..self.len + 1]
    }

    /// Length without the terminator.
    pub fn len(&self) -> usize {
        self.len
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
