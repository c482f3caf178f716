//! Fuzz target: ld-cas's reading of ELF files (`ld-cas/src/elf.rs`, compiled in as a plain
//! module): the header, program headers, dynamic section, string table and `DT_NEEDED`
//! names of arbitrary bytes. It must never panic or read out of bounds.
#![no_main]

#[path = "driver.rs"]
#[macro_use]
mod driver;

#[path = "../../../ld-cas/src/elf.rs"]
#[allow(dead_code)]
mod elf;

fuzz_target!(|bytes| {
    for machine in [62u16, 183] {
        let file = match elf::File::parse(bytes, machine) {
            Some(f) => f,
            None => continue,
        };
        let mut n = 0usize;
        for p in file.phdrs() {
            let _ = file.offset_of(p.p_vaddr);
            n += 1;
        }
        assert!(n <= file.header.e_phnum as usize);
        let strtab = file.strtab();
        for d in file.dynamic().take(4096) {
            let s = file.string(d.d_val);
            assert!(s.len() <= strtab.len());
            assert!(!s.contains(&0));
        }
        for name in file.needed().take(4096) {
            assert!(!name.contains(&0));
        }
        let _ = file.tag(1);
        let _ = elf::str_at(bytes, bytes.len() as u64 / 2);
    }
});
