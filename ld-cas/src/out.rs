//! Output without an allocator: a fixed buffer that implements `core::fmt::Write` and is
//! flushed to a file descriptor, plus helpers for byte strings that may not be UTF-8.

use core::fmt;

use crate::sys;

/// Standard output.
pub const STDOUT: i32 = 1;
/// Standard error.
pub const STDERR: i32 = 2;

/// A line buffer written to `fd` when full and when dropped.
pub struct Out {
    fd: i32,
    len: usize,
    buf: [u8; 512],
}

impl Out {
    /// A buffer for `fd`.
    pub fn new(fd: i32) -> Out {
        Out {
            fd,
            len: 0,
            buf: [0; 512],
        }
    }

    /// Appends raw bytes (e.g. a path that need not be UTF-8).
    #[inline(never)]
    pub fn bytes(&mut self, mut b: &[u8]) -> &mut Out {
        while !b.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = b.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
            self.len += n;
            b = &b[n..];
        }
        self
    }

    /// Appends a string.
    pub fn str(&mut self, s: &str) -> &mut Out {
        self.bytes(s.as_bytes())
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        sys::write_all(self.fd, &self.buf[..self.len]);
        self.len = 0;
    }
}

impl fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.str(s);
        Ok(())
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The bytes of a NUL-terminated C string.
///
/// # Safety
/// `p` must point to a NUL-terminated string that lives for `'a`.
pub unsafe fn cstr<'a>(p: *const u8) -> &'a [u8] {
    let mut n = 0;
    // SAFETY: per the caller's contract the string is terminated.
    while *p.add(n) != 0 {
        n += 1;
    }
    // SAFETY: the `n` bytes before the terminator are part of the string.
    core::slice::from_raw_parts(p, n)
}

/// Prints `ld-cas: <message>` and a newline on standard error, then exits with `code`.
pub fn die(code: i32, f: impl FnOnce(&mut Out)) -> ! {
    let mut o = Out::new(STDERR);
    o.str("ld-cas: ");
    f(&mut o);
    finish(o, code)
}

#[inline(never)]
fn finish(mut o: Out, code: i32) -> ! {
    o.str("\n");
    o.flush();
    sys::exit(code)
}
