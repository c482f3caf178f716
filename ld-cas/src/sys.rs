//! Thin, typed wrappers over the raw Linux system calls ld-cas makes.
//!
//! Each wrapper turns the kernel's `-errno` convention into `Result<_, Errno>`; the raw call
//! and the system call numbers come from the platform layer.

use crate::arch::{nr, syscall6};

/// A Linux error number, as returned (negated) by a failing system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// No such file or directory.
    pub const ENOENT: Errno = Errno(2);

    /// A short English description of the common error numbers.
    pub fn describe(self) -> &'static str {
        match self.0 {
            1 => "operation not permitted",
            2 => "no such file or directory",
            8 => "exec format error",
            9 => "bad file descriptor",
            12 => "out of memory",
            13 => "permission denied",
            20 => "not a directory",
            21 => "is a directory",
            22 => "invalid argument",
            24 => "too many open files",
            36 => "file name too long",
            38 => "function not implemented",
            40 => "too many levels of symbolic links",
            _ => "system error",
        }
    }
}

/// Result of a system call.
pub type SysResult<T> = Result<T, Errno>;

fn check(ret: isize) -> SysResult<usize> {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// `AT_FDCWD`: resolve relative paths against the working directory.
pub const AT_FDCWD: isize = -100;
/// `O_RDONLY | O_CLOEXEC`.
pub const O_RDONLY_CLOEXEC: usize = 0o2000000;
/// Page protection bits.
pub const PROT_READ: usize = 1;
/// Page protection bits.
pub const PROT_WRITE: usize = 2;
/// Page protection bits.
pub const PROT_EXEC: usize = 4;
/// `MAP_PRIVATE`.
pub const MAP_PRIVATE: usize = 0x02;
/// `MAP_FIXED`.
pub const MAP_FIXED: usize = 0x10;
/// `MAP_ANONYMOUS`.
pub const MAP_ANONYMOUS: usize = 0x20;
/// `MFD_CLOEXEC`.
pub const MFD_CLOEXEC: usize = 1;

/// The parts of `struct stat` ld-cas reads (x86_64 and aarch64 share `st_size` at 48).
const STAT_SIZE: usize = 144;

/// An open file descriptor, closed when dropped.
pub struct Fd(pub i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor we own has no memory-safety requirements.
        unsafe { syscall6(nr::CLOSE, self.0 as usize, 0, 0, 0, 0, 0) };
    }
}

impl Fd {
    /// Gives the descriptor up without closing it.
    pub fn into_raw(self) -> i32 {
        let fd = self.0;
        core::mem::forget(self);
        fd
    }
}

/// Opens the NUL-terminated `path` read-only (close-on-exec).
pub fn open(path: &[u8]) -> SysResult<Fd> {
    debug_assert!(path.last() == Some(&0));
    // SAFETY: `path` is a live NUL-terminated buffer.
    let r = unsafe {
        syscall6(
            nr::OPENAT,
            AT_FDCWD as usize,
            path.as_ptr() as usize,
            O_RDONLY_CLOEXEC,
            0,
            0,
            0,
        )
    };
    check(r).map(|fd| Fd(fd as i32))
}

/// Checks that the NUL-terminated `path` can be read (`faccessat(R_OK)`).
pub fn access_read(path: &[u8]) -> SysResult<()> {
    debug_assert!(path.last() == Some(&0));
    // SAFETY: `path` is a live NUL-terminated buffer.
    let r = unsafe {
        syscall6(
            nr::FACCESSAT,
            AT_FDCWD as usize,
            path.as_ptr() as usize,
            4,
            0,
            0,
            0,
        )
    };
    check(r).map(|_| ())
}

/// The size of the open file `fd`.
pub fn file_size(fd: &Fd) -> SysResult<u64> {
    let mut st = [0u64; STAT_SIZE / 8];
    // SAFETY: `st` is a writable buffer as large as the kernel's `struct stat`.
    let r = unsafe {
        syscall6(
            nr::FSTAT,
            fd.0 as usize,
            st.as_mut_ptr() as usize,
            0,
            0,
            0,
            0,
        )
    };
    check(r).map(|_| st[6])
}

/// Reads up to `buf.len()` bytes at `offset` of `fd`.
pub fn pread(fd: &Fd, buf: &mut [u8], offset: u64) -> SysResult<usize> {
    // SAFETY: `buf` is writable for its length.
    let r = unsafe {
        syscall6(
            nr::PREAD64,
            fd.0 as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            offset as usize,
            0,
            0,
        )
    };
    check(r)
}

/// Writes all of `buf` to `fd`, retrying short writes; errors are ignored (there is nowhere
/// to report them).
pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: `buf` is readable for its length.
        let r = unsafe {
            syscall6(
                nr::WRITE,
                fd as usize,
                buf.as_ptr() as usize,
                buf.len(),
                0,
                0,
                0,
            )
        };
        match check(r) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf = &buf[n.min(buf.len())..],
        }
    }
}

/// Ends the process with `code`.
pub fn exit(code: i32) -> ! {
    loop {
        // SAFETY: `exit_group` takes no pointers.
        unsafe { syscall6(nr::EXIT_GROUP, code as usize, 0, 0, 0, 0, 0) };
    }
}

/// Maps memory; a thin wrapper over `mmap(2)` returning the mapping's address.
///
/// # Safety
/// With `MAP_FIXED` the caller must own the address range being replaced.
pub unsafe fn mmap(
    addr: usize,
    len: usize,
    prot: usize,
    flags: usize,
    fd: i32,
    off: u64,
) -> SysResult<usize> {
    // SAFETY: per the caller's contract.
    check(syscall6(
        nr::MMAP,
        addr,
        len,
        prot,
        flags,
        fd as isize as usize,
        off as usize,
    ))
}

/// Unmaps memory.
///
/// # Safety
/// Nothing may use the range afterwards.
pub unsafe fn munmap(addr: usize, len: usize) -> SysResult<()> {
    // SAFETY: per the caller's contract.
    check(syscall6(nr::MUNMAP, addr, len, 0, 0, 0, 0)).map(|_| ())
}

/// Maps the whole file `fd` (of `len` bytes) read-only and returns it as a slice that lives
/// for the rest of the process.
pub fn map_file(fd: &Fd, len: usize) -> SysResult<&'static [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: a fresh private read-only mapping chosen by the kernel; it is never unmapped,
    // so the slice stays valid for the process's life.
    unsafe {
        let addr = mmap(0, len, PROT_READ, MAP_PRIVATE, fd.0, 0)?;
        Ok(core::slice::from_raw_parts(addr as *const u8, len))
    }
}

/// Reads the target of the NUL-terminated symbolic link `path` into `buf`; returns its length.
pub fn readlink(path: &[u8], buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `path` is NUL-terminated and `buf` writable for its length.
    let r = unsafe {
        syscall6(
            nr::READLINKAT,
            AT_FDCWD as usize,
            path.as_ptr() as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            0,
            0,
        )
    };
    check(r)
}

/// Creates an anonymous memory file named by the NUL-terminated `name`.
pub fn memfd_create(name: &[u8], flags: usize) -> SysResult<Fd> {
    // SAFETY: `name` is NUL-terminated.
    let r = unsafe { syscall6(nr::MEMFD_CREATE, name.as_ptr() as usize, flags, 0, 0, 0, 0) };
    check(r).map(|fd| Fd(fd as i32))
}

/// Closes a raw descriptor.
pub fn close_raw(fd: i32) {
    drop(Fd(fd));
}

/// Changes the protection of whole pages.
///
/// # Safety
/// The caller must own the range and keep every use of it valid under the new protection.
pub unsafe fn mprotect(addr: usize, len: usize, prot: usize) -> SysResult<()> {
    // SAFETY: per the caller's contract.
    check(syscall6(nr::MPROTECT, addr, len, prot, 0, 0, 0)).map(|_| ())
}
