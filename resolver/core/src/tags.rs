//! The dynamic-section tags of ld-cas (`docs/ld-cas.md`). Their values lie in the
//! OS-specific range (`DT_LOOS` 0x6000000d to `DT_HIOS` 0x6ffff000), spelling `ldc` in their
//! upper bytes, and below 2^31: the same value whether a reader takes `d_tag` as the gABI's
//! signed `Elf64_Sxword` or as an unsigned word.

/// String (a `.dynstr` offset): the URI of the real `ld.so` (table kind `interpreter`) that
/// goes with the program's libc. Written by `elfpatch` when it converts a program.
pub const DT_LDCAS_LOADER: u64 = 0x6c64_6301;

/// String: the store directory; when relative, relative to the directory holding the
/// program. Written by `elfpatch`.
pub const DT_LDCAS_STORE: u64 = 0x6c64_6302;

/// Address: ld-cas's callbacks for its audit copy. Written by ld-cas in memory only, into
/// the program's mapped dynamic section; a file that carries it is not trusted for it.
pub const DT_LDCAS_HOOK: u64 = 0x6c64_6303;

/// String: the directory holding the lookup table (`table`) and its `index/`, relative to
/// the store. Absent means the store directory itself.
pub const DT_LDCAS_TABLE: u64 = 0x6c64_6304;

/// Value: a bit set of `LDCAS_FLAG_*` (absent means none). Bits this build does not know
/// are reserved.
pub const DT_LDCAS_FLAGS: u64 = 0x6c64_6305;

/// Bit of [`DT_LDCAS_FLAGS`]: the program needs ld-cas's audit name service (ld-cas loads
/// itself as an audit module to resolve `uri:` names for the real loader).
pub const LDCAS_FLAG_NAME_SERVICE: u64 = 1 << 0;

/// Bit of [`DT_LDCAS_FLAGS`]: the first entry of the program's search path (`DT_RPATH`, or
/// `DT_RUNPATH` when it has one) is the store's index, written for tools that run ld.so on
/// the file (`ldd`); ld-cas puts the index's absolute path in its place.
pub const LDCAS_FLAG_INDEX_FIRST: u64 = 1 << 1;

/// Bit of [`DT_LDCAS_FLAGS`]: the program's store is the one its interpreter lies in, a
/// merged interpreter `STORE/interp/<64 hex digits>/<file>` (`elfpatch convert` gives a
/// program its store's own). ld-cas then takes the store from `PT_INTERP`, already in
/// memory, instead of resolving `DT_LDCAS_STORE` against the program's directory (a
/// `readlink` of `/proc/self/exe` at every start); `DT_LDCAS_STORE` stays for tools and
/// for any other interpreter.
pub const LDCAS_FLAG_STORE_OF_INTERP: u64 = 1 << 2;

/// Every tag above with its name, for tools that print or check dynamic sections.
pub const ALL: [(u64, &str); 5] = [
    (DT_LDCAS_LOADER, "DT_LDCAS_LOADER"),
    (DT_LDCAS_STORE, "DT_LDCAS_STORE"),
    (DT_LDCAS_HOOK, "DT_LDCAS_HOOK"),
    (DT_LDCAS_TABLE, "DT_LDCAS_TABLE"),
    (DT_LDCAS_FLAGS, "DT_LDCAS_FLAGS"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_distinct_os_specific_and_fit_a_signed_word() {
        for (i, &(tag, name)) in ALL.iter().enumerate() {
            assert!((0x6000_000d..0x6fff_f000).contains(&tag), "{name}");
            assert!(i64::try_from(tag).is_ok(), "{name}");
            assert!(ALL[..i].iter().all(|&(other, _)| other != tag), "{name}");
        }
    }
}
