//! Memory that lives for the rest of the process, without an allocator: the paths the
//! audit name service hands to ld.so, the program headers given to ld.so when ld-cas
//! runs as a command: 64 KiB anonymous mappings, made on first use. (The common start-up
//! writes what it hands to ld.so into [`crate::near`]'s mapping instead, so none is made
//! then, and ld-cas's writable pages stay few: each one costs a copy-on-write fault.)
//!
//! Callers are serialized: ld-cas is single-threaded before the hand-over, and ld.so calls
//! the audit callbacks under its loader lock, one at a time.

use core::ptr::addr_of_mut;

use crate::near::{copy_parts, joined_len};
use crate::out::die;
use crate::sys::{self, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};

/// The mappings are made in multiples of this size (a multiple of every Linux page size;
/// a chunk size, not the page size), so that few are needed.
const CHUNK: usize = 64 << 10;
// Small mutable statics live in `.data`, in the one writable page start-up touches anyway
// (the relocated data is there); the buffers a common start never uses are cold
// (`link/layout.ld`).
#[link_section = ".data"]
static mut ARENA_POS: usize = 0;
#[link_section = ".data"]
static mut ARENA_END: usize = 0;

/// `len` bytes aligned to `align` (a power of two no larger than a page).
///
/// # Safety
/// Callers are serialized (see the module's documentation).
#[allow(unused_unsafe)]
pub unsafe fn alloc(len: usize, align: usize) -> *mut u8 {
    // SAFETY: the arena statics are only touched here, by serialized callers.
    let (pos, end) = unsafe { (&mut *addr_of_mut!(ARENA_POS), &mut *addr_of_mut!(ARENA_END)) };
    let mut at = (*pos + align - 1) & !(align - 1);
    if *end == 0 || at > *end || *end - at < len {
        let size = (len + CHUNK - 1) & !(CHUNK - 1);
        // SAFETY: a fresh anonymous mapping that we own.
        let start = match unsafe {
            sys::mmap(
                0,
                size,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            )
        } {
            Ok(a) => a,
            Err(_) => die(127, |o| {
                o.str("out of memory");
            }),
        };
        if size < len {
            // `len` so large that rounding it up wrapped.
            die(127, |o| {
                o.str("out of memory");
            });
        }
        *end = start + size;
        at = start; // page-aligned
    }
    *pos = at + len;
    at as *mut u8
}

/// Copies `parts` (and a NUL) into memory that lives for the rest of the process: the
/// bytes with their terminator.
///
/// # Safety
/// Callers are serialized (see the module's documentation).
#[allow(unused_unsafe)]
pub unsafe fn keep(parts: &[&[u8]]) -> &'static [u8] {
    let len = joined_len(parts) + 1;
    // SAFETY: per the contract; `alloc` returns `len` writable bytes that are never freed
    // nor handed out again.
    let bytes = unsafe { core::slice::from_raw_parts_mut(alloc(len, 1), len) };
    copy_parts(bytes, parts);
    bytes[len - 1] = 0;
    bytes
}
