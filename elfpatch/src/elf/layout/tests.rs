//! Tests of the layout on the synthetic files of every class and byte order.

use super::super::synth::{build_with_slack, build_with_symbols, Target};
use super::super::testing::{inputs, parsed, targets, Parsed, Seg};
use super::super::{Edit, Elf, Shdr};
use super::{DYNAMIC_ZERO_TAIL, MARK};
use object::elf::{PF_R, PF_W, PT_DYNAMIC, PT_INTERP, PT_LOAD, PT_PHDR};

const LONG: &str = "/nix/store/0123456789abcdefghijklmnopqrstuv-glibc-2.40/lib/ld.so";

/// `input` with the interpreter [`LONG`], which needs one new load.
struct LongerInterpreter {
    out: Vec<u8>,
    before: Parsed,
    after: Parsed,
    /// The new load (the last one).
    new: Seg,
}

/// Edits `input` to the interpreter [`LONG`] and checks it is there, with one new load,
/// read-only, that ends with the region's mark.
fn longer_interpreter(t: &Target, input: &[u8]) -> LongerInterpreter {
    let mut e = Edit::new();
    e.set_interpreter(LONG);
    let out = e
        .apply(input)
        .unwrap_or_else(|err| panic!("{}: {err}", t.name));
    let (before, after) = (parsed(input), parsed(&out));
    assert_eq!(after.interp.as_deref(), Some(LONG.as_bytes()), "{}", t.name);
    assert_eq!(after.loads().len(), before.loads().len() + 1, "{}", t.name);
    let new = *after.loads().last().expect("a load");
    assert_eq!(new.flags, PF_R, "{}", t.name);
    let end = (new.offset + new.filesz) as usize;
    assert_eq!(&out[end - MARK.len()..end], MARK, "{}", t.name);
    LongerInterpreter {
        out,
        before,
        after,
        new,
    }
}

#[test]
fn a_longer_interpreter_moves_to_an_appended_read_only_load() {
    for (t, input) in inputs() {
        let LongerInterpreter {
            before, after, new, ..
        } = longer_interpreter(&t, &input);
        let old_end = before.loads().iter().map(|l| l.offset + l.filesz).max();
        assert!(Some(new.offset) >= old_end, "{}: {new:?}", t.name);
        let interp = after.seg(PT_INTERP).expect("PT_INTERP");
        assert!(
            interp.offset >= new.offset && interp.offset < new.offset + new.filesz,
            "{}: the interpreter is in the new segment",
            t.name
        );
        // PT_PHDR follows the table.
        let phdr = after.seg(PT_PHDR).expect("PT_PHDR");
        assert_eq!(
            phdr.filesz as usize,
            after.segs.len() * if t.is64 { 56 } else { 32 }
        );
    }
}

#[test]
fn successive_edits_rebuild_the_region_instead_of_adding_one() {
    for (t, input) in inputs() {
        let mut first = Edit::new();
        first
            .set_interpreter(LONG)
            .add_needed("libextra-with-a-long-name.so");
        let once = first
            .apply(&input)
            .unwrap_or_else(|err| panic!("{}: {err}", t.name));
        let mut second = Edit::new();
        second.set_runpath(format!("{LONG}/and/more/of/it"));
        let twice = second
            .apply(&once)
            .unwrap_or_else(|err| panic!("{}: {err}", t.name));
        let (a, b) = (parsed(&once), parsed(&twice));
        assert_eq!(b.loads().len(), a.loads().len(), "{}", t.name);
        assert!(
            b.loads().len() <= parsed(&input).loads().len() + 2,
            "{}",
            t.name
        );
        assert_eq!(b.interp.as_deref(), Some(LONG.as_bytes()), "{}", t.name);
        assert_eq!(b.needed[0], b"libextra-with-a-long-name.so", "{}", t.name);
    }
}

#[test]
fn more_dynamic_entries_move_dynamic_to_a_writable_load() {
    for (t, input) in inputs() {
        let mut e = Edit::new();
        e.add_needed("liba.so")
            .add_needed("libb.so")
            .add_debug_tag();
        let out = e
            .apply(&input)
            .unwrap_or_else(|err| panic!("{}: {err}", t.name));
        let p = parsed(&out);
        let d = p.seg(PT_DYNAMIC).expect("PT_DYNAMIC");
        let holder = p
            .loads()
            .into_iter()
            .find(|l| d.vaddr >= l.vaddr && d.vaddr < l.vaddr + l.filesz)
            .expect("PT_DYNAMIC mapped");
        assert_eq!(holder.flags, PF_R | PF_W, "{}", t.name);
        let old = parsed(&input).loads();
        let old_end = old.iter().map(|l| l.offset + l.filesz).max();
        assert!(Some(holder.offset) >= old_end, "{}: {holder:?}", t.name);
        assert_eq!(p.needed.len(), 4, "{}", t.name);
    }
}

/// Each target with a synthetic file whose sections after the program header table
/// are enough to move for room (see `room`), when it has section headers.
fn roomy_inputs() -> Vec<(Target, Vec<u8>)> {
    targets()
        .into_iter()
        .map(|t| (t, build_with_symbols(t, 16)))
        .collect()
}

/// The header of the section called `name`.
fn header(data: &[u8], name: &str) -> Shdr {
    let elf = Elf::parse(data).expect("parse");
    elf.sections
        .iter()
        .find(|s| s.name == name.as_bytes())
        .unwrap_or_else(|| panic!("no {name}"))
        .hdr
}

/// The bytes of the section called `name`.
fn section<'a>(data: &'a [u8], name: &str) -> &'a [u8] {
    let h = header(data, name);
    &data[h.sh_offset as usize..(h.sh_offset + h.sh_size) as usize]
}

#[test]
fn an_edit_that_needs_room_adds_one_read_only_load() {
    for (t, input) in roomy_inputs() {
        let LongerInterpreter {
            out,
            before,
            after,
            new,
        } = longer_interpreter(&t, &input);
        assert!(after.segs.len() > before.segs.len(), "{}", t.name);
        let interp = after.seg(PT_INTERP).expect("PT_INTERP");
        assert!(interp.offset >= new.offset, "{}", t.name);
        if !t.with_sections {
            continue;
        }
        // The table grew in place: the sections after it moved to the new segment,
        // and the region that holds the interpreter follows them in it.
        let phoff = |d: &[u8]| Elf::parse(d).expect("parse").phoff;
        assert_eq!(phoff(&out), phoff(&input), "{}", t.name);
        let hash = header(&out, ".hash");
        assert!(
            hash.sh_offset >= new.offset && hash.sh_offset < interp.offset,
            "{}: .hash moved before the region",
            t.name
        );
        assert_eq!(
            section(&out, ".hash"),
            section(&input, ".hash"),
            "{}",
            t.name
        );
    }
}

#[test]
fn successive_edits_rebuild_the_region_after_the_moved_sections() {
    for (t, input) in roomy_inputs() {
        let mut first = Edit::new();
        first
            .set_interpreter(LONG)
            .add_needed("libextra-with-a-long-name.so")
            .add_debug_tag();
        let once = first
            .apply(&input)
            .unwrap_or_else(|err| panic!("{}: {err}", t.name));
        // One read-only load for the moved sections and the region, one read-write
        // load for `.dynamic`.
        let base = parsed(&input).loads().len();
        assert_eq!(parsed(&once).loads().len(), base + 2, "{}", t.name);
        // The read-write load reaches past its bytes, as a `.bss` does: the kernel clears
        // the rest of its page, where ld-cas builds the names it gives ld.so.
        let parsed_once = Elf::parse(&once).expect("parse");
        let rw = parsed_once
            .phdrs
            .iter()
            .rfind(|p| p.p_type == PT_LOAD)
            .expect("a load");
        assert_eq!(rw.p_flags, PF_R | PF_W, "{}", t.name);
        assert_eq!(rw.p_memsz, rw.p_filesz + DYNAMIC_ZERO_TAIL, "{}", t.name);
        let mut out = once;
        for k in 0..3 {
            let mut next = Edit::new();
            next.set_runpath(format!("{LONG}/and/more/of/it/{k}"));
            let again = next
                .apply(&out)
                .unwrap_or_else(|err| panic!("{} edit {k}: {err}", t.name));
            let (a, b) = (parsed(&out), parsed(&again));
            assert_eq!(b.loads().len(), a.loads().len(), "{} edit {k}", t.name);
            // The region is rebuilt where it was: the file grows by the new string
            // (the old one stays in `.dynstr`) and alignment, not by another copy.
            let runpath = format!("{LONG}/and/more/of/it/{k}");
            let grown = again.len().saturating_sub(out.len());
            assert!(grown <= runpath.len() + 32, "{} edit {k}", t.name);
            assert_eq!(b.interp.as_deref(), Some(LONG.as_bytes()), "{}", t.name);
            assert_eq!(b.needed[0], b"libextra-with-a-long-name.so", "{}", t.name);
            assert_eq!(b.runpath.as_deref(), Some(runpath.as_bytes()), "{}", t.name);
            if t.with_sections {
                assert_eq!(section(&again, ".hash"), section(&input, ".hash"));
                assert_eq!(section(&again, ".dynsym"), section(&input, ".dynsym"));
            }
            out = again;
        }
    }
}

/// A `uri:blake3:` name, as conversion gives every library's `libc.so.6`.
fn uri(k: u8) -> String {
    format!("uri:blake3:{}", format!("{k:02x}").repeat(32))
}

/// Each target with a synthetic file with `slack` zero bytes after its read-only load.
fn slack_inputs(slack: usize) -> Vec<(Target, Vec<u8>)> {
    targets()
        .into_iter()
        .map(|t| (t, build_with_slack(t, slack)))
        .collect()
}

/// The read-only `PT_LOAD` (the synthetic files have one).
fn read_only_load(data: &[u8]) -> super::super::Phdr {
    *Elf::parse(data)
        .expect("parse")
        .phdrs
        .iter()
        .find(|p| p.p_type == PT_LOAD && p.p_flags == PF_R)
        .expect("a read-only load")
}

#[test]
fn strings_that_fit_in_slack_grow_the_read_only_load() {
    for (t, input) in slack_inputs(512) {
        let mut e = Edit::new();
        e.replace_needed("libc.so.6", uri(1)).set_interpreter(LONG);
        let out = e
            .apply(&input)
            .unwrap_or_else(|err| panic!("{}: {err}", t.name));
        let (before, after) = (parsed(&input), parsed(&out));
        assert_eq!(after.loads().len(), before.loads().len(), "{}", t.name);
        assert_eq!(after.segs.len(), before.segs.len(), "{}", t.name);
        assert_eq!(out.len(), input.len(), "{}: the file does not grow", t.name);
        assert_eq!(after.needed[1], uri(1).as_bytes(), "{}", t.name);
        assert_eq!(after.interp.as_deref(), Some(LONG.as_bytes()), "{}", t.name);
        // The interpreter, then the strings, after the load's old end; no mark.
        let (old, new) = (read_only_load(&input), read_only_load(&out));
        assert_eq!((new.p_offset, new.p_vaddr), (old.p_offset, old.p_vaddr));
        let grown = (LONG.len() + 1 + after.dynstr.len()) as u64;
        assert_eq!(new.p_filesz, old.p_filesz + grown, "{}", t.name);
        assert_eq!(new.p_memsz, new.p_filesz, "{}", t.name);
        let interp = after.seg(PT_INTERP).expect("PT_INTERP");
        assert_eq!(interp.offset, old.file_end(), "{}", t.name);
        let end = new.file_end() as usize;
        assert_ne!(&out[end - MARK.len()..end], MARK, "{}", t.name);
        if t.with_sections {
            let h = header(&out, ".dynstr");
            assert_eq!(h.sh_offset, old.file_end() + LONG.len() as u64 + 1);
            assert_eq!(h.sh_addr, old.mem_end() + LONG.len() as u64 + 1);
            assert_eq!(section(&out, ".dynstr"), &after.dynstr[..], "{}", t.name);
            let was = header(&input, ".dynstr");
            let gone = &out[was.sh_offset as usize..(was.sh_offset + was.sh_size) as usize];
            assert!(gone.iter().all(|&b| b == 0), "{}: old copy zeroed", t.name);
            assert_eq!(header(&out, ".interp").sh_offset, interp.offset);
        }
    }
}

#[test]
fn strings_that_do_not_fit_in_slack_move_to_one_new_load() {
    for (t, input) in slack_inputs(64) {
        let mut e = Edit::new();
        e.replace_needed("libc.so.6", uri(1));
        let out = e
            .apply(&input)
            .unwrap_or_else(|err| panic!("{}: {err}", t.name));
        let (before, after) = (parsed(&input), parsed(&out));
        assert_eq!(after.loads().len(), before.loads().len() + 1, "{}", t.name);
        assert_eq!(read_only_load(&out), read_only_load(&input), "{}", t.name);
        let new = *after.loads().last().expect("a load");
        let end = (new.offset + new.filesz) as usize;
        assert_eq!(&out[end - MARK.len()..end], MARK, "{}", t.name);
        assert_eq!(after.needed[1], uri(1).as_bytes(), "{}", t.name);
    }
}

#[test]
fn edits_after_a_slack_placement_use_what_is_left_then_the_region() {
    for (t, input) in slack_inputs(256) {
        let base = parsed(&input).loads().len();
        let mut first = Edit::new();
        first.replace_needed("libc.so.6", uri(1));
        let once = first
            .apply(&input)
            .unwrap_or_else(|err| panic!("{}: {err}", t.name));
        assert_eq!(parsed(&once).loads().len(), base, "{}", t.name);
        // Still fits after the first table: the load grows again.
        let mut second = Edit::new();
        second.replace_needed("libfoo.so.1", uri(2));
        let twice = second
            .apply(&once)
            .unwrap_or_else(|err| panic!("{}: {err}", t.name));
        let p = parsed(&twice);
        assert_eq!(p.loads().len(), base, "{}", t.name);
        assert_eq!(twice.len(), input.len(), "{}", t.name);
        assert!(read_only_load(&twice).p_filesz > read_only_load(&once).p_filesz);
        assert_eq!(
            p.needed,
            [uri(2).as_bytes(), uri(1).as_bytes()],
            "{}",
            t.name
        );
        // No longer fits: one new load, then the region is rebuilt, not repeated.
        let mut out = twice;
        for k in 0..3 {
            let mut next = Edit::new();
            next.set_runpath(format!("{LONG}/{k}/{}", "x".repeat(300)));
            let again = next
                .apply(&out)
                .unwrap_or_else(|err| panic!("{} edit {k}: {err}", t.name));
            let p = parsed(&again);
            assert_eq!(p.loads().len(), base + 1, "{} edit {k}", t.name);
            assert_eq!(p.needed[0], uri(2).as_bytes(), "{} edit {k}", t.name);
            if k > 0 {
                assert!(again.len() <= out.len() + 400, "{} edit {k}", t.name);
            }
            if t.with_sections {
                assert_eq!(section(&again, ".dynsym"), section(&input, ".dynsym"));
                assert_eq!(section(&again, ".hash"), section(&input, ".hash"));
            }
            out = again;
        }
    }
}

#[test]
fn kept_old_strings_stay_when_the_new_ones_go_to_slack() {
    for (t, input) in slack_inputs(512) {
        let mut e = Edit::new();
        e.replace_needed("libc.so.6", uri(1)).keep_old_pieces(true);
        let out = e
            .apply(&input)
            .unwrap_or_else(|err| panic!("{}: {err}", t.name));
        assert_eq!(parsed(&out).loads().len(), parsed(&input).loads().len());
        let old = parsed(&input).dynstr;
        let at = Elf::parse(&input)
            .expect("parse")
            .strtab
            .expect("strtab")
            .offset as usize;
        assert_eq!(&out[at..at + old.len()], &old[..], "{}", t.name);
    }
}
