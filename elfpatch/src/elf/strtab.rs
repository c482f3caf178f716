//! The dynamic string table being edited: adding strings (sharing suffixes), zeroing the
//! ones no longer referenced, and compacting what edits appended.

use std::collections::BTreeMap;

use super::codec::cstr;
use super::consts::*;
use super::error::{Error, Result};
use super::parse::Elf;
use super::tables::{self, Verneed};

/// A copy of `.dynstr` that grows at its end.
pub(crate) struct Strings {
    pub(crate) bytes: Vec<u8>,
}

impl Strings {
    /// Offset of `s` in the table, appending it when it is not already there (suffixes of
    /// existing strings are shared, as linkers do).
    pub(crate) fn add(&mut self, s: &str) -> Result<u64> {
        let s = s.as_bytes();
        if s.contains(&0) {
            return Err(Error::Unsupported(
                "a string to add contains a NUL byte".into(),
            ));
        }
        let mut pat = s.to_vec();
        pat.push(0);
        if let Some(p) = find(&self.bytes, &pat) {
            return Ok(p as u64);
        }
        if self.bytes.is_empty() {
            self.bytes.push(0);
        }
        let at = self.bytes.len() as u64;
        self.bytes.extend_from_slice(&pat);
        Ok(at)
    }
    pub(crate) fn get(&self, off: u64) -> Option<&[u8]> {
        cstr(&self.bytes, off)
    }
}

fn find(hay: &[u8], pat: &[u8]) -> Option<usize> {
    let first = *pat.first()?;
    let mut i = 0;
    while i + pat.len() <= hay.len() {
        match hay[i..].iter().position(|&b| b == first) {
            Some(p) => i += p,
            None => return None,
        }
        if hay.get(i..i + pat.len()) == Some(pat) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Keeps the string table from growing with every edit: the strings referenced only by
/// what this module rewrites (string tags, `vn_file`) are dropped from the end of the
/// table and added back once each. Everything before the last byte referenced by
/// something else (symbol and version names, unknown tags) or of a string this edit
/// removed (`removed`, overwritten by [`scrub`]) stays put.
pub(crate) fn compact(
    elf: &Elf,
    st: &mut Strings,
    entries: &mut [(u64, u64)],
    verneed: Option<&mut Vec<Verneed>>,
    removed: &[u64],
) -> Result<()> {
    let Some(syms) = tables::dynsym(elf).ok().flatten() else {
        return Ok(()); // symbol names unknown: their extent cannot be known
    };
    let end_of = |st: &Strings, off: u64| off + st.get(off).map_or(0, |s| s.len() as u64) + 1;
    let mut fixed_end = 1u64;
    for i in 0..syms.1 {
        fixed_end = fixed_end.max(end_of(st, u64::from(tables::sym_name(elf, syms.0, i)?)));
    }
    for &(tag, val) in entries.iter() {
        if !is_string_tag(tag) && !is_known_non_string_tag(tag) && val < st.bytes.len() as u64 {
            fixed_end = fixed_end.max(end_of(st, val));
        }
    }
    let verneed = verneed.map(|v| v.as_mut_slice()).unwrap_or_default();
    for v in verneed.iter() {
        for a in &v.aux {
            fixed_end = fixed_end.max(end_of(st, u64::from(a.name)));
        }
    }
    for n in tables::verdef_names(elf)? {
        fixed_end = fixed_end.max(end_of(st, u64::from(n)));
    }
    // The X-ed remains of removed strings stay, as patchelf leaves them: scanners (Nix's,
    // for store paths) read them as a reference that was there and is gone.
    for &off in removed {
        if off < st.bytes.len() as u64 {
            fixed_end = fixed_end.max(end_of(st, off));
        }
    }
    let fixed_end = fixed_end.min(st.bytes.len() as u64) as usize;
    let value =
        |st: &Strings, off: u64| st.get(off).map(|s| String::from_utf8_lossy(s).into_owned());
    let tag_vals: Vec<Option<String>> = entries
        .iter()
        .map(|&(t, v)| if is_string_tag(t) { value(st, v) } else { None })
        .collect();
    let vn_vals: Vec<Option<String>> = verneed
        .iter()
        .map(|v| value(st, u64::from(v.file)))
        .collect();
    if tag_vals
        .iter()
        .chain(&vn_vals)
        .flatten()
        .any(|s| s.contains('\u{fffd}'))
    {
        return Ok(()); // not UTF-8: leave the table as it is
    }
    st.bytes.truncate(fixed_end);
    for (e, v) in entries.iter_mut().zip(tag_vals) {
        if let Some(v) = v {
            e.1 = st.add(&v)?;
        }
    }
    for (n, v) in verneed.iter_mut().zip(vn_vals) {
        if let Some(v) = v {
            n.file = u32::try_from(st.add(&v)?)
                .map_err(|_| Error::Unsupported("string table larger than 4 GiB".into()))?;
        }
    }
    // Never shrink below the original size: the table may then stay where it was.
    let orig = elf.strtab_bytes().len();
    if st.bytes.len() < orig {
        st.bytes.resize(orig, 0);
    }
    Ok(())
}

/// Overwrites the bytes of strings that are no longer referenced with `X`, as patchelf
/// does (Nix and others scan binaries for store paths, and look for the `X`s of an old
/// one). A byte is kept when any live reference (dynamic tag, symbol name, version record)
/// still covers it, since strings share suffixes.
pub(crate) fn scrub(
    elf: &Elf,
    st: &mut Strings,
    entries: &[(u64, u64)],
    verneed: Option<&[Verneed]>,
    removed: &[u64],
    renamed: &BTreeMap<u64, (u32, Vec<u8>)>,
) -> Result<()> {
    if removed.is_empty() {
        return Ok(());
    }
    let Some(syms) = tables::dynsym(elf).ok().flatten() else {
        return Ok(()); // symbol names unknown: scrubbing could break one of them
    };
    let mut live: Vec<u64> = Vec::new();
    for &(tag, val) in entries {
        if is_string_tag(tag) || !is_known_non_string_tag(tag) {
            live.push(val);
        }
    }
    for i in 0..syms.1 {
        match renamed.get(&i) {
            Some((new, _)) => live.push(u64::from(*new)),
            None => live.push(u64::from(tables::sym_name(elf, syms.0, i)?)),
        }
    }
    for v in verneed.unwrap_or_default() {
        live.push(u64::from(v.file));
        live.extend(v.aux.iter().map(|a| u64::from(a.name)));
    }
    live.extend(tables::verdef_names(elf)?.into_iter().map(u64::from));
    let len = st.bytes.len() as u64;
    let mut keep = vec![false; st.bytes.len()];
    for off in live {
        if off >= len {
            continue;
        }
        let n = st.get(off).map_or(0, |s| s.len() as u64);
        for k in keep
            .iter_mut()
            .take((off + n + 1).min(len) as usize)
            .skip(off as usize)
        {
            *k = true;
        }
    }
    for &off in removed {
        let n = st.get(off).map_or(0, |s| s.len() as u64);
        for i in off..(off + n).min(len) {
            if !keep[i as usize] {
                st.bytes[i as usize] = b'X';
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{inputs, parsed};
    use super::super::Edit;
    use super::Strings;

    fn table() -> Strings {
        Strings {
            bytes: b"\0libfoo.so.1\0libc.so.6\0".to_vec(),
        }
    }

    #[test]
    fn add_shares_suffixes_and_appends_the_rest() {
        let mut st = table();
        assert_eq!(st.add("libc.so.6").expect("add"), 13);
        assert_eq!(st.add("c.so.6").expect("add"), 16);
        let at = st.add("libnew.so").expect("add");
        assert_eq!(at, 23);
        assert_eq!(st.get(at), Some(&b"libnew.so"[..]));
        assert_eq!(st.bytes.len(), 33);
        assert!(st.add("a\0b").is_err());
    }

    #[test]
    fn an_empty_table_starts_with_its_empty_string() {
        let mut st = Strings { bytes: Vec::new() };
        assert_eq!(st.add("x").expect("add"), 1);
        assert_eq!(st.bytes, b"\0x\0");
    }

    #[test]
    fn removed_strings_are_x_ed_where_nothing_else_uses_them() {
        for (t, input) in inputs() {
            let mut e = Edit::new();
            e.remove_needed("libfoo.so.1");
            let out = e
                .apply(&input)
                .unwrap_or_else(|err| panic!("{}: {err}", t.name));
            let p = parsed(&out);
            assert_eq!(
                p.dynstr, b"\0XXXXXXXXXXX\0libc.so.6\0/opt/lib\0",
                "{}",
                t.name
            );
            assert_eq!(p.needed, [&b"libc.so.6"[..]], "{}", t.name);
        }
    }
}
