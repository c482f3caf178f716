//! The lookup table: one immutable file per store mapping a hash to the object's
//! store-relative path, original soname, size and kind. The format is specified byte for
//! byte in `docs/table-format.md`; [`format`] holds its constants and field offsets.
//!
//! The reader ([`Table`]) is allocation-free and zero-copy: it borrows the bytes of a
//! memory-mapped file and checks every offset before it uses it, so no input makes it panic
//! or read out of bounds. The writer, which needs std, is `resolver::table::write`.

pub mod format;
mod path_check;
mod read;

pub use path_check::path_problem;
pub use read::{entry_check, Entries, Entry, Table, TableError};

use core::fmt;

/// What an object in the store is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A shared library, named by `DT_NEEDED` entries.
    Library,
    /// A program interpreter (`ld.so`) that converted programs hand over to.
    Interpreter,
    /// An executable program.
    Program,
}

impl Kind {
    /// The on-disk code of this kind.
    pub fn code(self) -> u8 {
        match self {
            Kind::Library => 1,
            Kind::Interpreter => 2,
            Kind::Program => 3,
        }
    }

    /// The kind with on-disk code `code`, if there is one.
    pub fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Library),
            2 => Some(Kind::Interpreter),
            3 => Some(Kind::Program),
            _ => None,
        }
    }

    /// The name used by the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Library => "library",
            Kind::Interpreter => "interpreter",
            Kind::Program => "program",
        }
    }

    /// The kind named `name` (as printed by [`Kind::name`]).
    pub fn from_name(name: &str) -> Option<Kind> {
        [Kind::Library, Kind::Interpreter, Kind::Program]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// FNV-1a, 64 bits: the table's checksum function. Chosen because a reader with no
/// dependencies can compute it in a few lines, and because every step of it is a bijection
/// of the state, so any change confined to one byte always changes the result.
#[derive(Clone, Copy)]
pub struct Fnv64(u64);

impl Fnv64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// A fresh checksum.
    pub fn new() -> Fnv64 {
        Fnv64(Fnv64::OFFSET_BASIS)
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut state = self.0;
        // Eight bytes per turn of the loop, written out: each byte still needs its own
        // xor and multiply, but the loop's counting and testing is paid once per eight.
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            state = Fnv64::step(state, w[0]);
            state = Fnv64::step(state, w[1]);
            state = Fnv64::step(state, w[2]);
            state = Fnv64::step(state, w[3]);
            state = Fnv64::step(state, w[4]);
            state = Fnv64::step(state, w[5]);
            state = Fnv64::step(state, w[6]);
            state = Fnv64::step(state, w[7]);
        }
        for &b in words.remainder() {
            state = Fnv64::step(state, b);
        }
        self.0 = state;
    }

    /// One byte of FNV-1a: xor, then multiply.
    #[inline(always)]
    fn step(state: u64, byte: u8) -> u64 {
        (state ^ u64::from(byte)).wrapping_mul(Fnv64::PRIME)
    }

    /// The checksum of everything fed so far.
    pub fn finish(self) -> u64 {
        self.0
    }

    /// The checksum of `bytes`.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut c = Fnv64::new();
        c.update(bytes);
        c.finish()
    }
}

impl Default for Fnv64 {
    fn default() -> Fnv64 {
        Fnv64::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Fnv64;
    use std::prelude::rust_2021::*;

    /// FNV-1a-64 one byte at a time, as specified.
    fn fnv_reference(bytes: &[u8]) -> u64 {
        let mut state = 0xcbf2_9ce4_8422_2325u64;
        for &b in bytes {
            state ^= u64::from(b);
            state = state.wrapping_mul(0x0000_0100_0000_01b3);
        }
        state
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(Fnv64::of(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv64::of(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv64::of(b"foobar"), 0x8594_4171_f739_67e8);
    }

    proptest::proptest! {
        #[test]
        fn fnv_agrees_with_the_bytewise_definition(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
            cut in 0usize..100,
        ) {
            proptest::prop_assert_eq!(Fnv64::of(&bytes), fnv_reference(&bytes));
            // Fed in two pieces, cut anywhere: the same.
            let (a, b) = bytes.split_at(cut.min(bytes.len()));
            let mut c = Fnv64::new();
            c.update(a);
            c.update(b);
            proptest::prop_assert_eq!(c.finish(), fnv_reference(&bytes));
        }
    }
}
