//! ld-cas: the ELF interpreter of content-addressed programs.
//!
//! A converted program names its libraries `uri:blake3:<hash>` and has ld-cas as its
//! `PT_INTERP`. ld-cas finds the store and its lookup table, maps the real ld.so recorded
//! for the program, gives ld.so a name service for `uri:` names (see [`audit`]) and hands
//! the process over in place. See `docs/ld-cas.md`.
#![no_std]
#![no_main]

#[cfg(target_arch = "aarch64")]
use aarch64_linux as arch;
#[cfg(target_arch = "x86_64")]
use x86_64_linux as arch;

mod arena;
mod audit;
mod cas;
mod cli;
mod debugger;
mod elf;
mod launch;
mod loader;
mod loadmap;
mod locate;
mod mem;
mod merged;
mod names;
mod near;
mod out;
mod path;
mod phase;
mod program;
mod startup;
mod store;
mod sys;
mod trust;
mod verify;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    out::die(127, |o| {
        o.str("internal error (a bug in ld-cas; please report it with LD_CAS_DEBUG=1 output)");
    })
}

/// Called by the platform's `_start` with the initial stack pointer and the run-time
/// addresses of our own `_DYNAMIC` and ELF header.
///
/// # Safety
/// Only the entry point may call this, once.
#[no_mangle]
pub unsafe extern "C" fn ldcas_start(sp: *mut usize, dynamic: *const elf::Dyn, base: usize) -> ! {
    phase::reached(phase::Phase::Entry);
    // SAFETY: called once from `_start` with our own dynamic section and load address.
    startup::relocate_self(dynamic, base);
    phase::reached(phase::Phase::Relocated);
    // SAFETY: `sp` is the initial stack pointer.
    let stack = startup::Stack::new(sp);
    if stack.aux(startup::AT_BASE) == 0 {
        cli::main(stack, base)
    } else {
        launch::interp(stack, base)
    }
}
