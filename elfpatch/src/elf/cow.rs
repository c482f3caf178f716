//! Copy-on-write outputs: an edited copy of a mapped file in memory whose unchanged pages
//! are the file's own pages (shared with the page cache), so that changing a few bytes of
//! a large file neither copies it nor touches its other pages.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::fd::AsRawFd;

use super::image::Image;

/// The output of an [`Image`] in memory.
pub(crate) enum Output {
    /// A private mapping: the input file copy-on-write, then anonymous zeros.
    Mapped(memmap2::MmapMut),
    /// An ordinary copy (when the input is not a known file).
    Copied(Vec<u8>),
}

impl Deref for Output {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Output::Mapped(m) => m,
            Output::Copied(v) => v,
        }
    }
}

/// The output of `img` applied to `input`: mapped from `file` (which holds `input`)
/// when given, else copied.
pub(crate) fn output(img: &Image, input: &[u8], file: Option<&File>) -> io::Result<Output> {
    let Some(file) = file else {
        return Ok(Output::Copied(img.materialize(input)));
    };
    let len = img.len() as usize;
    let mut buf = memmap2::MmapMut::map_anon(len)?;
    let shared = input.len().min(len);
    if shared > 0 {
        // SAFETY: MAP_FIXED replaces the first pages of `buf`, a mapping this function
        // made and that nothing refers to yet, by a private (copy-on-write) mapping of the
        // file: writes through it never reach the file. Both mappings are rounded up to
        // whole pages and `shared <= len`, so the new pages lie inside `buf`, whose drop
        // unmaps them with the rest.
        let p = unsafe {
            libc::mmap(
                buf.as_mut_ptr().cast(),
                shared,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
    }
    // The bytes past `shared` are zeros: anonymous pages, or the kernel's zero fill of the
    // file's last page past its end.
    img.overwrite(input, &mut buf);
    Ok(Output::Mapped(buf))
}
