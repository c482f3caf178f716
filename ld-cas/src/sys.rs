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
    /// File name too long.
    pub const ENAMETOOLONG: Errno = Errno(36);

    /// A short English description of the common error numbers.
    pub fn describe(self) -> &'static str {
        match self.0 {
            1 => "operation not permitted",
            2 => "no such file or directory",
            6 => "no such device or address",
            8 => "exec format error",
            11 => "resource temporarily unavailable",
            9 => "bad file descriptor",
            12 => "out of memory",
            13 => "permission denied",
            19 => "no such device (not a file that can be mapped)",
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
const AT_FDCWD: isize = -100;
/// `AT_SYMLINK_NOFOLLOW`.
pub const AT_SYMLINK_NOFOLLOW: usize = 0x100;
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

/// `O_PATH`: a descriptor that only names the file (for the `*at` calls); nothing is read.
pub const O_PATH: usize = 0o10000000;
/// `O_NONBLOCK`: opening a FIFO (or a device) never waits.
pub const O_NONBLOCK: usize = 0o4000;
/// `O_DIRECTORY`.
pub const O_DIRECTORY: usize = crate::arch::O_DIRECTORY;
/// `O_NOFOLLOW`.
pub const O_NOFOLLOW: usize = crate::arch::O_NOFOLLOW;

/// The parts of `struct stat` ld-cas reads (x86_64 and aarch64 share `st_size` at 48).
const STAT_SIZE: usize = 144;

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
/// A regular file.
pub const S_IFREG: u32 = 0o100000;
/// A directory.
pub const S_IFDIR: u32 = 0o040000;
/// A symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// A FIFO.
pub const S_IFIFO: u32 = 0o010000;

/// What ld-cas reads of a `struct stat`.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// `st_uid`: the owner.
    pub uid: u32,
    /// `st_nlink`: the number of names (hard links) the file has.
    pub links: u32,
    /// `st_size`.
    pub size: u64,
}

impl Stat {
    fn from_raw(st: &[u64; STAT_SIZE / 8]) -> Stat {
        let word = |off: usize| (st[off / 8] >> (8 * (off % 8))) as u32;
        Stat {
            mode: word(crate::arch::STAT_MODE_OFFSET),
            uid: word(crate::arch::STAT_UID_OFFSET),
            links: word(crate::arch::STAT_NLINK_OFFSET),
            size: st[6],
        }
    }

    /// The file type bits.
    pub fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }

    /// What the file is, when it is not a regular file (for messages).
    pub fn describe_kind(&self) -> &'static str {
        match self.kind() {
            S_IFREG => "a regular file",
            S_IFDIR => "a directory",
            S_IFLNK => "a symbolic link",
            S_IFIFO => "a FIFO",
            0o140000 => "a socket",
            0o020000 => "a character device",
            0o060000 => "a block device",
            _ => "not a regular file",
        }
    }
}

/// A path as the kernel reads it: bytes ending with a NUL, the only one. Made by checking
/// ([`CPath::new`], [`cpath!`] for literals, checked when compiling) or from a path buffer
/// that keeps the same rule (`PathBuf::c`).
#[derive(Clone, Copy)]
pub struct CPath<'a>(&'a [u8]);

impl<'a> CPath<'a> {
    /// `bytes` as a path, if its last byte is its only NUL.
    pub const fn new(bytes: &'a [u8]) -> Option<CPath<'a>> {
        let n = bytes.len();
        if n == 0 || bytes[n - 1] != 0 {
            return None;
        }
        let mut i = 0;
        while i < n - 1 {
            if bytes[i] == 0 {
                return None;
            }
            i += 1;
        }
        Some(CPath(bytes))
    }

    /// A path literal (its NUL included); use [`cpath!`], which checks it when compiling.
    pub const fn literal(bytes: &'static [u8]) -> CPath<'static> {
        match CPath::new(bytes) {
            Some(p) => p,
            None => panic!("a path literal must end with its only NUL"),
        }
    }

    /// `bytes` as a path, unchecked.
    ///
    /// # Safety
    /// The last byte of `bytes` must be a NUL and no other byte may be one: the kernel reads
    /// the path up to its first NUL.
    pub const unsafe fn new_unchecked(bytes: &'a [u8]) -> CPath<'a> {
        CPath(bytes)
    }

    /// The path without its NUL.
    pub fn bytes(self) -> &'a [u8] {
        // SAFETY: a path is never empty: it ends with its NUL.
        unsafe { self.0.get_unchecked(..self.0.len() - 1) }
    }

    fn addr(self) -> usize {
        self.0.as_ptr() as usize
    }
}

/// A [`CPath`] from a string literal, with a NUL appended; a NUL inside the literal is an
/// error when compiling.
macro_rules! cpath {
    ($s:literal) => {{
        const PATH: $crate::sys::CPath<'static> =
            $crate::sys::CPath::literal(concat!($s, "\0").as_bytes());
        PATH
    }};
}
pub(crate) use cpath;

/// An open file descriptor, closed when dropped. Only the wrappers that open files make
/// one.
pub struct Fd(i32);

impl Fd {
    /// The descriptor's number, for the system calls that take one.
    pub fn raw(&self) -> i32 {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor we own has no memory-safety requirements.
        unsafe { syscall6(nr::CLOSE, self.0 as usize, 0, 0, 0, 0, 0) };
    }
}

/// The directory a relative path of an `*at` call is resolved against.
#[derive(Clone, Copy)]
pub enum Dir<'a> {
    /// The working directory (`AT_FDCWD`).
    Cwd,
    /// An open directory.
    Fd(&'a Fd),
}

impl Dir<'_> {
    fn raw(self) -> usize {
        match self {
            Dir::Cwd => AT_FDCWD as usize,
            Dir::Fd(fd) => fd.0 as isize as usize,
        }
    }
}

/// Opens `path` read-only (close-on-exec, and without waiting: a FIFO opens at once, and
/// [`fstat`] then tells what it is).
pub fn open(path: CPath<'_>) -> SysResult<Fd> {
    openat(Dir::Cwd, path, O_NONBLOCK)
}

/// Opens `path` relative to `dir` read-only and close-on-exec, with the extra open `flags`.
pub fn openat(dir: Dir<'_>, path: CPath<'_>, flags: usize) -> SysResult<Fd> {
    // SAFETY: `path` is a live NUL-terminated buffer.
    let r = unsafe {
        syscall6(
            nr::OPENAT,
            dir.raw(),
            path.addr(),
            O_RDONLY_CLOEXEC | flags,
            0,
            0,
            0,
        )
    };
    check(r).map(|fd| Fd(fd as i32))
}

/// `fstat` of an open file.
pub fn fstat(fd: &Fd) -> SysResult<Stat> {
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
    check(r).map(|_| Stat::from_raw(&st))
}

/// `fstatat` of `path` relative to `dir`; `flags` may hold [`AT_SYMLINK_NOFOLLOW`].
pub fn stat_at(dir: Dir<'_>, path: CPath<'_>, flags: usize) -> SysResult<Stat> {
    let mut st = [0u64; STAT_SIZE / 8];
    // SAFETY: `path` is NUL-terminated and `st` as large as the kernel's `struct stat`.
    let r = unsafe {
        syscall6(
            nr::NEWFSTATAT,
            dir.raw(),
            path.addr(),
            st.as_mut_ptr() as usize,
            flags,
            0,
            0,
        )
    };
    check(r).map(|_| Stat::from_raw(&st))
}

/// Checks that `path` can be read (`faccessat(R_OK)`).
pub fn access_read(path: CPath<'_>) -> SysResult<()> {
    // SAFETY: `path` is a live NUL-terminated buffer.
    let r = unsafe { syscall6(nr::FACCESSAT, Dir::Cwd.raw(), path.addr(), 4, 0, 0, 0) };
    check(r).map(|_| ())
}

/// Whether `path` is a symbolic link (`lstat`).
pub fn is_symlink(path: CPath<'_>) -> SysResult<bool> {
    stat_at(Dir::Cwd, path, AT_SYMLINK_NOFOLLOW).map(|st| st.kind() == S_IFLNK)
}

/// The working directory (without a terminator counted in the length).
pub fn getcwd(buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `buf` is writable for its length.
    let r = unsafe { syscall6(nr::GETCWD, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0, 0) };
    // The kernel counts the terminating NUL.
    check(r).map(|n| n.saturating_sub(1))
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

/// Reads `fd` from its start into `buf` until `buf` is full or the file ends; returns the
/// bytes read.
pub fn pread_full(fd: &Fd, buf: &mut [u8]) -> SysResult<usize> {
    let mut done = 0;
    while done < buf.len() {
        match pread(fd, &mut buf[done..], done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
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

/// Reads the target of the symbolic link `path` into `buf`; returns its length.
pub fn readlink(path: CPath<'_>, buf: &mut [u8]) -> SysResult<usize> {
    readlinkat(Dir::Cwd, path, buf)
}

/// Reads the target of the symbolic link `path` relative to `dir`.
pub fn readlinkat(dir: Dir<'_>, path: CPath<'_>, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: `path` is NUL-terminated and `buf` writable for its length.
    let r = unsafe {
        syscall6(
            nr::READLINKAT,
            dir.raw(),
            path.addr(),
            buf.as_mut_ptr() as usize,
            buf.len(),
            0,
            0,
        )
    };
    check(r)
}

/// Changes the protection of whole pages.
///
/// # Safety
/// The caller must own the range and keep every use of it valid under the new protection.
pub unsafe fn mprotect(addr: usize, len: usize, prot: usize) -> SysResult<()> {
    // SAFETY: per the caller's contract.
    check(syscall6(nr::MPROTECT, addr, len, prot, 0, 0, 0)).map(|_| ())
}
