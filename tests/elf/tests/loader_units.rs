//! Unit tests of ld-cas's pure code (ld-cas is a freestanding binary with no test harness
//! of its own): its modules compiled here as plain modules, their `#[cfg(test)]` tests run
//! with the standard harness.

// The byte comparisons (not exported here, where libc's serve).
#[path = "../../../ld-cas/src/mem.rs"]
mod mem;
