//! Exits at a chosen point of the start-up, for the start-up benchmark's decomposition of
//! ld-cas's own cost (`benches/startup/phases.sh`). Only a build with the `phase-exits`
//! feature has the points; in any other build [`reached`] is empty and this module adds
//! nothing to the binary.
//!
//! The build holds one marker, `ldcas-phase-at:` and a byte, the number of the [`Phase`]
//! to exit at (0: none). The benchmark makes one copy of a merged interpreter per phase
//! with that byte set, so that every copy is the same code at the same addresses and only
//! the point where it stops differs.

/// The points of a start, in order.
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Phase {
    /// ld-cas's first instruction: the kernel's `execve` of the program and of the
    /// interpreter file, and the process's exit.
    Entry = 1,
    /// ld-cas relocated itself (its writable page's first fault).
    Relocated = 2,
    /// The program's headers and dynamic section are read, its environment scanned, and
    /// the hand-over's frame set up.
    Started = 3,
    /// The store is found and its table read and checked.
    TableRead = 4,
    /// The loader is mapped (nothing, for a merged interpreter whose ld.so serves).
    LoaderMapped = 5,
    /// The `uri:` names are pointed at the store: ld-cas's whole work, right before the
    /// jump into ld.so.
    NamesHanded = 6,
}

/// The marker and the phase to exit at, patched in the file by the benchmark.
#[cfg(feature = "phase-exits")]
#[used]
static EXIT_AT: [u8; 16] = *b"ldcas-phase-at:\0";

/// Ends the process (status 0) if the build exits at `phase`.
#[inline(always)]
pub fn reached(phase: Phase) {
    #[cfg(feature = "phase-exits")]
    {
        // SAFETY: our own static, read without relocation (PC-relative); volatile, because
        // the benchmark changes the byte in the file after the build.
        let at = unsafe { core::ptr::read_volatile(&EXIT_AT[15]) };
        if at == phase as u8 {
            crate::sys::exit(0);
        }
    }
    #[cfg(not(feature = "phase-exits"))]
    let _ = phase;
}
