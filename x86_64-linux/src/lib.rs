//! The x86_64 Linux platform layer of ld-cas: the process entry point, raw system calls,
//! the copies and fills a `no_std` static binary must bring itself (`ld-cas/src/mem.rs` has
//! the comparisons, which are the same everywhere), and the jump into the real loader.
//!
//! Everything architecture-specific lives here; `aarch64-linux/` is its twin with the same
//! items. The rest of ld-cas is portable and builds with Rust 1.63.
#![no_std]

use core::arch::{asm, global_asm};

/// The relocation type of `R_X86_64_RELATIVE`: the only one a static PIE applies to itself.
pub const R_RELATIVE: u32 = 8;

/// The ELF machine this platform runs (`EM_X86_64`).
pub const EM_MACHINE: u16 = 62;

/// Offset of `st_mode` in the kernel's `struct stat`.
pub const STAT_MODE_OFFSET: usize = 24;

/// Offset of `st_uid` in the kernel's `struct stat` (`st_gid` follows it).
pub const STAT_UID_OFFSET: usize = 28;

/// Offset of `st_nlink` in the kernel's `struct stat` (64 bits here; its low half is read).
pub const STAT_NLINK_OFFSET: usize = 16;

/// `O_DIRECTORY`: fail unless the path names a directory.
pub const O_DIRECTORY: usize = 0o200000;

/// `O_NOFOLLOW`: fail (`ELOOP`) when the last component is a symbolic link.
pub const O_NOFOLLOW: usize = 0o400000;

/// System call numbers used by ld-cas.
pub mod nr {
    #![allow(missing_docs)]
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const FSTAT: usize = 5;
    pub const MMAP: usize = 9;
    pub const MPROTECT: usize = 10;
    pub const MUNMAP: usize = 11;
    pub const PREAD64: usize = 17;
    pub const EXIT_GROUP: usize = 231;
    pub const GETCWD: usize = 79;
    pub const OPENAT: usize = 257;
    pub const NEWFSTATAT: usize = 262;
    pub const READLINKAT: usize = 267;
    pub const FACCESSAT: usize = 269;
}

// The entry point. The kernel starts us with the initial stack (argc, argv, envp, auxv) at
// %rsp and nothing else we may rely on. We pass the stack pointer, the run-time address of
// our own `_DYNAMIC` and of our own ELF header to `ldcas_start`, which relocates us before
// touching any relocated data. `lea` is PC-relative, so it needs no relocation itself.
global_asm!(
    // Its own section, so that the linker can place it with the code a start runs.
    ".pushsection .text._start,\"ax\",@progbits",
    ".globl _start",
    ".type _start,@function",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "lea rsi, [rip + _DYNAMIC]",
    "lea rdx, [rip + __ehdr_start]",
    "and rsp, -16",
    "call ldcas_start",
    "ud2",
    ".popsection",
);

/// Restores the initial stack pointer `sp` and jumps to `entry` with the register state the
/// kernel gives a new process (`%rdx` = 0: no finalizer to register).
///
/// # Safety
/// `sp` must be the process's initial stack (possibly edited in place) and `entry` the entry
/// point of a mapped, ready-to-run loader or program.
pub unsafe fn jump(sp: *mut usize, entry: usize) -> ! {
    // SAFETY: per the caller's contract; nothing after the jump uses our stack frame.
    // Fixed registers: an operand allocated to %rdx would be cleared before the jump.
    asm!(
        "mov rsp, rdi",
        "xor edx, edx",
        "xor ebp, ebp",
        "jmp rsi",
        in("rdi") sp,
        in("rsi") entry,
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
    // SAFETY: per the caller's contract; `syscall` clobbers rcx and r11 only.
    asm!(
        "syscall",
        inlateout("rax") n as isize => ret,
        in("rdi") a,
        in("rsi") b,
        in("rdx") c,
        in("r10") d,
        in("r8") e,
        in("r9") f,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack)
    );
    ret
}

// The memory functions the compiler may call. A `no_std` static binary linked with
// `-nostdlib` has no libc to provide them. `rep movs`/`rep stos` are short and fast on
// every x86_64 (ERMSB since Ivy Bridge), and cannot be turned back into calls to
// themselves. From eight bytes on they move eight bytes per step (`movsq`/`stosq`), the
// last eight bytes, which the words may not reach, with one more move of their own.

/// Copies `n` bytes from `src` to `dest` (non-overlapping).
///
/// The last word is read before anything is written and written last, so that
/// [`memmove`] can use this for a forward copy of overlapping ranges too.
///
/// # Safety
/// Same contract as C's `memcpy`.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: per the caller's contract; the last word lies inside both ranges (n >= 8).
    asm!(
        "cmp rcx, 8",
        "jb 2f",
        "mov {last}, qword ptr [rsi + rcx - 8]",
        "lea {end}, [rdi + rcx - 8]",
        "shr rcx, 3",
        "rep movsq",
        "mov qword ptr [{end}], {last}",
        "jmp 3f",
        "2:",
        "rep movsb",
        "3:",
        last = out(reg) _,
        end = out(reg) _,
        inout("rcx") n => _,
        inout("rdi") dest => _,
        inout("rsi") src => _,
        options(nostack)
    );
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
        // before a write reaches it, and `memcpy` reads its last word first).
        return memcpy(dest, src, n);
    }
    // SAFETY: copy backwards with the direction flag set, then clear it again.
    asm!("std", "rep movsb", "cld",
         inout("rcx") n => _, inout("rdi") dest.add(n).wrapping_sub(1) => _,
         inout("rsi") src.add(n).wrapping_sub(1) => _, options(nostack));
    dest
}

/// Fills `n` bytes at `dest` with `c`.
///
/// # Safety
/// Same contract as C's `memset`.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // The byte in each of the eight bytes (`rep stosb` uses the lowest one).
    let word = u64::from(c as u8) * 0x0101_0101_0101_0101;
    // SAFETY: per the caller's contract; the last word lies inside the range (n >= 8).
    asm!(
        "cmp rcx, 8",
        "jb 2f",
        "mov qword ptr [rdi + rcx - 8], rax",
        "shr rcx, 3",
        "rep stosq",
        "jmp 3f",
        "2:",
        "rep stosb",
        "3:",
        inout("rcx") n => _,
        inout("rdi") dest => _,
        in("rax") word,
        options(nostack)
    );
    dest
}

/// The loader used when a program records none: glibc's ld.so at its ABI path.
pub const DEFAULT_LOADER: &[u8] = b"/lib64/ld-linux-x86-64.so.2\0";

/// Length of the NUL-terminated string at `s`.
///
/// # Safety
/// Same contract as C's `strlen`.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let end: *const u8;
    // SAFETY: scans forward to the terminator the caller guarantees.
    asm!("repne scasb", inout("rdi") s => end, inout("rcx") usize::MAX => _, in("al") 0u8,
         options(nostack, readonly));
    end as usize - s as usize - 1
}

/// Never called: ld-cas aborts on panic, but the precompiled `core` still names the
/// unwinding personality routine in its unwind tables.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
