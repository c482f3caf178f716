//! Malformed inputs: elfpatch exits non-zero with a message, never dies of a signal, and
//! leaves the input byte-identical. The cases are made from a built fixture: truncated at
//! every header boundary, overlapping segments, huge counts, string offsets past the end,
//! zero-length, not ELF.

mod editor_common;

use std::path::Path;

use editor_common::*;

fn u16le(b: &[u8], o: usize) -> usize {
    u16::from_le_bytes([b[o], b[o + 1]]) as usize
}
fn u64le(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}
fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}
fn put16(b: &mut [u8], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}

/// Offsets of the dynamic entries of an ELF64 little-endian file.
fn dyn_entries(b: &[u8]) -> Vec<usize> {
    let (phoff, phnum) = (u64le(b, 32) as usize, u16le(b, 56));
    for i in 0..phnum {
        let ph = phoff + 56 * i;
        if u32::from_le_bytes(b[ph..ph + 4].try_into().expect("4 bytes")) == 2 {
            let (off, size) = (u64le(b, ph + 8) as usize, u64le(b, ph + 32) as usize);
            return (0..size / 16)
                .map(|k| off + 16 * k)
                .take_while(|&e| u64le(b, e) != 0)
                .collect();
        }
    }
    Vec::new()
}

fn cases(good: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = vec![
        ("zero-length".into(), Vec::new()),
        (
            "not ELF".into(),
            b"#!/bin/sh\necho not an ELF file\n".to_vec(),
        ),
        ("magic only".into(), b"\x7fELF".to_vec()),
    ];
    let (phoff, shoff) = (u64le(good, 32) as usize, u64le(good, 40) as usize);
    let (phnum, shnum) = (u16le(good, 56), u16le(good, 60));
    let mut cuts: Vec<usize> = vec![5, 16, 24, 40, 63, 64];
    cuts.extend((0..=phnum).map(|i| phoff + 56 * i));
    cuts.extend((0..phnum).map(|i| phoff + 56 * i + 20));
    cuts.extend((0..shnum).map(|i| shoff + 64 * i + 1));
    for i in 0..phnum {
        let ph = phoff + 56 * i;
        let off = u64le(good, ph + 8) as usize;
        let size = u64le(good, ph + 32) as usize;
        cuts.extend([off + 1, off + size / 2]);
    }
    if let Some(&e) = dyn_entries(good).first() {
        cuts.push(e + 8);
    }
    cuts.push(good.len() - 1);
    cuts.sort_unstable();
    cuts.dedup();
    for c in cuts.into_iter().filter(|&c| c < good.len()) {
        v.push((format!("truncated at {c:#x}"), good[..c].to_vec()));
    }
    let mut m = good.to_vec();
    m[4] = 7;
    v.push(("bad EI_CLASS".into(), m));
    let mut m = good.to_vec();
    put16(&mut m, 56, 0xfffe);
    v.push(("huge e_phnum".into(), m));
    let mut m = good.to_vec();
    put16(&mut m, 60, 0xfffe);
    v.push(("huge e_shnum".into(), m));
    let mut m = good.to_vec();
    put64(&mut m, 32, u64::MAX - 8);
    v.push(("e_phoff past the end".into(), m));
    let mut m = good.to_vec();
    put64(&mut m, 40, 1 << 40);
    v.push(("e_shoff past the end".into(), m));
    // Two PT_LOADs at the same address.
    let loads: Vec<usize> = (0..phnum)
        .map(|i| phoff + 56 * i)
        .filter(|&ph| good[ph] == 1 && good[ph + 1..ph + 4] == [0, 0, 0])
        .collect();
    let mut m = good.to_vec();
    let first_vaddr = u64le(good, loads[0] + 16);
    put64(&mut m, loads[1] + 16, first_vaddr);
    put64(&mut m, loads[1] + 24, first_vaddr);
    v.push(("overlapping PT_LOADs".into(), m));
    let mut m = good.to_vec();
    put64(&mut m, loads[0] + 32, 1 << 44);
    put64(&mut m, loads[0] + 40, 1 << 44);
    v.push(("PT_LOAD past the end".into(), m));
    let entries = dyn_entries(good);
    for (tag, name, val) in [
        (1u64, "DT_NEEDED string offset past the end", 0xfff_ffffu64),
        (10, "huge DT_STRSZ", u64::MAX / 2),
        (5, "DT_STRTAB unmapped", 0x7fff_0000_0000),
        (0x6fff_ffff, "huge DT_VERNEEDNUM", 0xffff_ffff),
        (0x6fff_fffe, "DT_VERNEED unmapped", 0x7fff_0000_0000),
    ] {
        let mut m = good.to_vec();
        let e = *entries
            .iter()
            .find(|&&e| u64le(good, e) == tag)
            .unwrap_or_else(|| panic!("fixture has tag {tag:#x}"));
        put64(&mut m, e + 8, val);
        v.push((name.into(), m));
    }
    let mut m = good.to_vec();
    let last = *entries.last().expect("entries");
    let mut e = last + 16;
    while u64le(&m, e) == 0 && e + 16 <= m.len() && e < last + 16 * 64 {
        put64(&mut m, e, 0x6000_0001);
        e += 16;
    }
    v.push(("dynamic section without DT_NULL".into(), m));
    v
}

fn check(name: &str, bytes: &[u8], dir: &Path, args: &[&str]) {
    let f = dir.join("input");
    std::fs::write(&f, bytes).expect("write case");
    let mut a = args.to_vec();
    a.push(f.to_str().expect("utf-8"));
    let out = elfpatch(&a);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some(),
        "{name}: {args:?} killed by a signal: {err}"
    );
    assert!(
        !out.status.success(),
        "{name}: {args:?} succeeded on a malformed file"
    );
    assert!(
        err.starts_with("patchelf: ") && err.len() > 20,
        "{name}: unclear message {err:?}"
    );
    assert!(!err.contains("panicked"), "{name}: {err}");
    assert_eq!(
        std::fs::read(&f).expect("read back"),
        bytes,
        "{name}: {args:?} changed the input"
    );
}

#[test]
fn malformed_inputs_are_refused_cleanly() {
    let fx = Fixture::build(x86_64("pie", &["-fPIE", "-pie"]));
    let good = std::fs::read(&fx.prog).expect("read fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let long = format!("/{}", "i".repeat(120));
    let list = cases(&good);
    assert!(list.len() > 40, "only {} cases", list.len());
    for (name, bytes) in &list {
        for args in [
            &["--print-needed"][..],
            &["--print-interpreter", "--print-rpath"],
            &["--set-interpreter", &long],
            &["--replace-needed", "libgreet.so.1", &uri(1)],
            &["--add-needed", "libx.so", "--set-rpath", "/x"],
        ] {
            check(name, bytes, dir.path(), args);
        }
    }
    println!("{} malformed inputs refused cleanly", list.len());
}

/// Index of section `name` of `file`, from `readelf -SW`.
fn section_index(file: &Path, name: &str) -> usize {
    readelf("-S", file)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('['))
        .filter_map(|l| l.split_once(']'))
        .find(|(_, rest)| rest.split_whitespace().next() == Some(name))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no section {name}"))
}

/// Corrupt headers are refused with patchelf 0.19's words (its suite, and scripts, match
/// them), and a symbol of an unnamed section gets patchelf's warning.
#[test]
fn corrupt_headers_get_patchelfs_messages() {
    let fx = Fixture::build(x86_64("pie", &["-fPIE", "-pie"]));
    let good = std::fs::read(&fx.prog).expect("read fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let shoff = u64le(&good, 40) as usize;
    let shdr = |name: &str| shoff + 64 * section_index(&fx.prog, name);
    let field = |name: &str, at: usize| u64le(&good, shdr(name) + at) as usize;
    let shstrndx = u16le(&good, 62);
    let names = shoff + 64 * shstrndx;
    let names_end = u64le(&good, names + 24) as usize + u64le(&good, names + 32) as usize;
    let dynstr_end = field(".dynstr", 24) + field(".dynstr", 32);
    let needed = *dyn_entries(&good)
        .iter()
        .find(|&&e| u64le(&good, e) == 1)
        .expect("DT_NEEDED");
    let gnu_hash = field(".gnu.hash", 24);
    let text = section_index(&fx.prog, ".text");
    let map = dir.path().join("map");
    std::fs::write(&map, "greet greet2\n").expect("write map");
    let map = map.to_str().expect("utf-8").to_string();
    let rename: [&str; 2] = ["--rename-dynamic-symbols", &map];
    type Poke = (usize, Vec<u8>);
    let cases: Vec<(&str, Poke, &[&str])> = vec![
        (
            "string table index out of bounds",
            (62, vec![0xff, 0xff]),
            &[],
        ),
        (
            "data region extends past file end",
            (names + 32, (u64::MAX / 2).to_le_bytes().to_vec()),
            &[],
        ),
        ("string table size is zero", (names + 32, vec![0; 8]), &[]),
        (
            "string table is not zero terminated",
            (names_end - 1, vec![b'A']),
            &[],
        ),
        (
            "section name offset out of bounds",
            (shoff + 64, 0x7fff_ffffu32.to_le_bytes().to_vec()),
            &[],
        ),
        ("section headers have wrong size", (58, vec![0x30, 0]), &[]),
        (
            "data offset extends past file end",
            (shdr(".dynamic") + 24, (u64::MAX / 2).to_le_bytes().to_vec()),
            &["--print-needed"],
        ),
        (
            "section content is not naturally aligned",
            (shdr(".dynamic") + 24, 1u64.to_le_bytes().to_vec()),
            &["--print-needed"],
        ),
        (
            "string table index out of bounds",
            (needed + 8, (u64::MAX / 2).to_le_bytes().to_vec()),
            &["--print-needed"],
        ),
        (
            "string table is not NUL-terminated",
            (dynstr_end - 1, vec![b'A']),
            &["--print-needed"],
        ),
        (
            "hash table header out of range",
            (gnu_hash, vec![0; 4]),
            &rename,
        ),
        (
            "program header table out of bounds",
            (32, (u64::MAX / 2).to_le_bytes().to_vec()),
            &[],
        ),
    ];
    let f = dir.path().join("input");
    for (msg, (at, bytes), args) in cases {
        let mut m = good.clone();
        m[at..at + bytes.len()].copy_from_slice(&bytes);
        std::fs::write(&f, &m).expect("write case");
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--set-rpath", "/x", f.to_str().expect("utf-8")]);
        let out = elfpatch(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(msg), "{msg}: {err}");
        assert_eq!(
            std::fs::read(&f).expect("read back"),
            m,
            "{msg}: input changed"
        );
    }
    // The section .text's name is gone: edited, with patchelf's warning.
    let mut m = good.clone();
    m[shoff + 64 * text..shoff + 64 * text + 4].fill(0);
    std::fs::write(&f, &m).expect("write case");
    let out = elfpatch(&["--set-rpath", "/x", f.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "warning: symbol table entry refers to an unnamed section (index {text})"
        )),
        "{err}"
    );
}
