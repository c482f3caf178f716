//! The aarch64 Linux platform layer of ld-cas: the process entry point, raw system calls,
//! the copies and fills a `no_std` static binary must bring itself (`ld-cas/src/mem.rs` has
//! the comparisons, which are the same everywhere), and the jump into the real loader. The twin of `x86_64-linux/`, with the same items.
//!
//! Built with Debian's rustc 1.63 (`ld-cas/scripts/build-rustc-1.63.sh`), the only compiler
//! with an aarch64 `core` on the build machines; on any other architecture the crate is
//! empty, so that a workspace build on x86_64 passes over it.
#![no_std]
// The memory functions below are plain loops: without this, LLVM would recognize them as
// `memcpy`/`memset` idioms and compile them into calls to themselves.
#![no_builtins]
#![cfg(target_arch = "aarch64")]

use core::arch::{asm, global_asm};

/// The relocation type of `R_AARCH64_RELATIVE`: the only one a static PIE applies to itself.
pub const R_RELATIVE: u32 = 1027;

/// The ELF machine this platform runs (`EM_AARCH64`).
pub const EM_MACHINE: u16 = 183;

/// Offset of `st_mode` in the kernel's `struct stat` (the generic layout).
pub const STAT_MODE_OFFSET: usize = 16;

/// Offset of `st_uid` in the kernel's `struct stat` (`st_gid` follows it).
pub const STAT_UID_OFFSET: usize = 24;

/// Offset of `st_nlink` in the kernel's `struct stat` (32 bits).
pub const STAT_NLINK_OFFSET: usize = 20;

/// `O_DIRECTORY`: fail unless the path names a directory.
pub const O_DIRECTORY: usize = 0o40000;

/// `O_NOFOLLOW`: fail (`ELOOP`) when the last component is a symbolic link.
pub const O_NOFOLLOW: usize = 0o100000;

/// System call numbers used by ld-cas (the generic table of `asm-generic/unistd.h`).
pub mod nr {
    #![allow(missing_docs)]
    pub const GETCWD: usize = 17;
    pub const FACCESSAT: usize = 48;
    pub const OPENAT: usize = 56;
    pub const CLOSE: usize = 57;
    pub const READ: usize = 63;
    pub const WRITE: usize = 64;
    pub const PREAD64: usize = 67;
    pub const READLINKAT: usize = 78;
    pub const NEWFSTATAT: usize = 79;
    pub const FSTAT: usize = 80;
    pub const EXIT_GROUP: usize = 94;
    pub const MUNMAP: usize = 215;
    pub const MMAP: usize = 222;
    pub const MPROTECT: usize = 226;
}

// The entry point. The kernel starts us with the initial stack (argc, argv, envp, auxv) at
// `sp`, 16-byte aligned. We pass the stack pointer, the run-time address of our own
// `_DYNAMIC` and of our own ELF header to `ldcas_start`, which relocates us before touching
// any relocated data. `adrp`/`add` are PC-relative, so they need no relocation themselves;
// the symbols are hidden so that the linker resolves them inside this object.
global_asm!(
    ".hidden _DYNAMIC",
    ".hidden __ehdr_start",
    // Its own section, so that the linker can place it with the code a start runs.
    ".pushsection .text._start,\"ax\",%progbits",
    ".globl _start",
    ".type _start,%function",
    "_start:",
    "mov x29, #0",
    "mov x30, #0",
    "mov x0, sp",
    "adrp x1, _DYNAMIC",
    "add x1, x1, :lo12:_DYNAMIC",
    "adrp x2, __ehdr_start",
    "add x2, x2, :lo12:__ehdr_start",
    "bl ldcas_start",
    "brk #0",
    ".popsection",
);

/// Restores the initial stack pointer `sp` and jumps to `entry` with the register state the
/// kernel gives a new process (`x0` = 0: no finalizer to register; no frame or link).
///
/// # Safety
/// `sp` must be the process's initial stack (possibly edited in place) and `entry` the entry
/// point of a mapped, ready-to-run loader or program.
pub unsafe fn jump(sp: *mut usize, entry: usize) -> ! {
    // SAFETY: per the caller's contract; nothing after the jump uses our stack frame.
    asm!(
        "mov sp, x0",
        "mov x0, xzr",
        "mov x29, xzr",
        "mov x30, xzr",
        "br x1",
        in("x0") sp,
        in("x1") entry,
        options(noreturn)
    )
}

/// A raw system call with up to six arguments. Returns the kernel's result: a negative
/// value in `-4095..0` is `-errno`.
///
/// # Safety
/// The arguments must be valid for system call `n` (pointers to live memory of the right
/// size, and so on).
#[inline(always)]
pub unsafe fn syscall6(
    n: usize,
    a: usize,
    b: usize,
    c: usize,
    d: usize,
    e: usize,
    f: usize,
) -> isize {
    let ret: isize;
    // SAFETY: per the caller's contract; `svc` preserves every register but x0.
    asm!(
        "svc 0",
        in("x8") n,
        inlateout("x0") a as isize => ret,
        in("x1") b,
        in("x2") c,
        in("x3") d,
        in("x4") e,
        in("x5") f,
        options(nostack)
    );
    ret
}

/// Bytes per machine word: the copies and fills move a word at a time (unaligned, which
/// aarch64 allows), then the tail byte by byte.
const WORD: usize = core::mem::size_of::<usize>();

/// Copies `n` bytes from `src` to `dest` (non-overlapping).
///
/// Forward, each word read before it is written, so that [`memmove`] can use this for a
/// forward copy of overlapping ranges too.
///
/// # Safety
/// Same contract as C's `memcpy`.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let mut i = 0;
    while n - i >= WORD {
        // SAFETY: per the caller's contract, both ranges hold the word at `i`.
        let w = core::ptr::read_unaligned(src.add(i) as *const usize);
        core::ptr::write_unaligned(dest.add(i) as *mut usize, w);
        i += WORD;
    }
    while i < n {
        // SAFETY: per the caller's contract, both ranges are valid for n bytes.
        *dest.add(i) = *src.add(i);
        i += 1;
    }
    dest
}

/// Copies `n` bytes from `src` to `dest`; the ranges may overlap.
///
/// # Safety
/// Same contract as C's `memmove`.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // Forward copy is safe: dest is below src or past its end (a word is always read
        // before a write reaches it).
        return memcpy(dest, src, n);
    }
    let mut i = n;
    while i > 0 {
        i -= 1;
        // SAFETY: per the caller's contract; copying backwards handles the overlap.
        *dest.add(i) = *src.add(i);
    }
    dest
}

/// Fills `n` bytes at `dest` with `c`.
///
/// # Safety
/// Same contract as C's `memset`.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // The byte in each byte of a word.
    let word = usize::from(c as u8) * (usize::MAX / 0xff);
    let mut i = 0;
    while n - i >= WORD {
        // SAFETY: per the caller's contract, the range holds the word at `i`.
        core::ptr::write_unaligned(dest.add(i) as *mut usize, word);
        i += WORD;
    }
    while i < n {
        // SAFETY: per the caller's contract.
        *dest.add(i) = c as u8;
        i += 1;
    }
    dest
}

/// Length of the NUL-terminated string at `s`.
///
/// # Safety
/// Same contract as C's `strlen`.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: scans forward to the terminator the caller guarantees.
    while *s.add(n) != 0 {
        n += 1;
    }
    n
}

/// The loader used when a program records none: glibc's ld.so at its ABI path.
pub const DEFAULT_LOADER: &[u8] = b"/lib/ld-linux-aarch64.so.1\0";

/// Never called: ld-cas aborts on panic, but the precompiled `core` still names the
/// unwinding personality routine in its unwind tables.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
