//! The check of a table entry's path: that it names a place inside the store. One pass,
//! eight bytes at a time, since ld-cas checks the path of every entry it uses at every
//! program start.

use crate::bytes::bytes_in;

/// Why `path` is not a store-relative path that stays inside the store, naming the field:
/// a table entry's path must be relative (no leading `/`), normalised (no empty and no `.`
/// component, so no `//` and no trailing `/`), have no `..` component and no NUL byte.
/// Any such path is accepted, wherever in the store it points (`objects/<hex>/<name>`,
/// `bin/...`, `roots/<link>/...`). `None` when the path is fine.
pub fn path_problem(path: &[u8]) -> Option<&'static str> {
    if path.is_empty() {
        return Some("the path field is empty");
    }
    if path[0] == b'/' {
        return Some("the path field is absolute (it must be relative to the store)");
    }
    // One pass, eight bytes at a time. A NUL anywhere is reported before a bad component,
    // so the first bad component is only remembered until the end.
    let mut scan = Components {
        path,
        start: 0,
        problem: None,
    };
    let mut words = path.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        if let Err(nul) = scan.word(u64::from_le_bytes(w), at) {
            return Some(nul);
        }
        at += 8;
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // Padded with `a`, which is neither NUL nor `/`.
        let mut w = [b'a'; 8];
        w[..rest.len()].copy_from_slice(rest);
        if let Err(nul) = scan.word(u64::from_le_bytes(w), at) {
            return Some(nul);
        }
    }
    scan.end(path.len());
    scan.problem
}

/// The state of [`path_problem`]'s pass: where the current component starts, and the
/// first bad component seen.
struct Components<'a> {
    path: &'a [u8],
    start: usize,
    problem: Option<&'static str>,
}

impl Components<'_> {
    /// Scans the eight bytes of `word` (little-endian: byte `at` of the path lowest): a
    /// NUL ends the pass, each `/` ends a component. Inlined, so the masks stay in
    /// registers across the loop.
    #[inline(always)]
    fn word(&mut self, word: u64, at: usize) -> Result<(), &'static str> {
        // NUL and `/` are both below `0`: most words hold neither.
        if bytes_in(word, 0, b'0' - 1) == 0 {
            return Ok(());
        }
        if bytes_in(word, 0, 0) != 0 {
            return Err("the path field contains a NUL byte");
        }
        let mut slashes = bytes_in(word, b'/', b'/');
        while slashes != 0 {
            let end = at + (slashes.trailing_zeros() / 8) as usize;
            self.end(end);
            self.start = end + 1;
            slashes &= slashes - 1;
        }
        Ok(())
    }

    /// Notes the problem of the component that ends at `end`, unless one was noted.
    fn end(&mut self, end: usize) {
        if self.problem.is_none() {
            self.problem = self.path.get(self.start..end).and_then(component_problem);
        }
    }
}

/// What is wrong with one component of a table entry's path, if anything.
fn component_problem(component: &[u8]) -> Option<&'static str> {
    match component {
        b"" => Some("the path field has an empty component (not normalised)"),
        b"." => Some("the path field has a `.` component (not normalised)"),
        b".." => Some("the path field has a `..` component (it leaves the store)"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    /// `path_problem` as first written (a search for the NUL, then one for each `/`): the
    /// reference the one-pass version must agree with.
    fn path_problem_reference(path: &[u8]) -> Option<&'static str> {
        if path.is_empty() {
            return Some("the path field is empty");
        }
        if path[0] == b'/' {
            return Some("the path field is absolute (it must be relative to the store)");
        }
        if path.contains(&0) {
            return Some("the path field contains a NUL byte");
        }
        for component in path.split(|&c| c == b'/') {
            match component {
                b"" => return Some("the path field has an empty component (not normalised)"),
                b"." => return Some("the path field has a `.` component (not normalised)"),
                b".." => return Some("the path field has a `..` component (it leaves the store)"),
                _ => {}
            }
        }
        None
    }

    #[test]
    fn path_problems() {
        let cases: [(&[u8], Option<&str>); 12] = [
            (b"objects/ab/libc.so.6", None),
            (b"", Some("empty")),
            (b"/objects/x", Some("absolute")),
            (b"objects/x\0/..", Some("NUL")),
            (b"./x\0", Some("NUL")),
            (b"objects//x", Some("empty component")),
            (b"objects/x/", Some("empty component")),
            (b"objects/./x", Some("`.` component")),
            (b"objects/x/..", Some("`..` component")),
            (b"objects/.../x", None),
            (b"abcdefg/..", Some("`..` component")),
            (b"abcdefg./x./..", Some("`..` component")),
        ];
        for (path, want) in cases {
            let got = path_problem(path);
            assert_eq!(got, path_problem_reference(path), "{:?}", path);
            match want {
                None => assert_eq!(got, None, "{:?}", path),
                Some(w) => assert!(
                    matches!(got, Some(g) if g.contains(w)),
                    "{:?}: {:?}",
                    path,
                    got
                ),
            }
        }
    }

    /// Paths of three kinds, a third of the cases each: made of the bytes that matter
    /// (`/`, `.`, NUL, a high byte), with long components, and of any bytes.
    fn paths() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::collection::vec;
        use proptest::sample::select;
        proptest::prop_oneof![
            vec(select(b"//..ab\0\xff".to_vec()), 0..40),
            vec(
                select(b"/.abcdefghijklmnopqrstuvwxyz0123456789\0".to_vec()),
                0..80
            ),
            vec(proptest::num::u8::ANY, 0..40),
        ]
    }

    proptest::proptest! {
        // As many cases of each kind as when each kind had a test of its own.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(768))]
        #[test]
        fn path_problem_agrees_with_the_reference(path in paths()) {
            proptest::prop_assert_eq!(path_problem(&path), path_problem_reference(&path));
        }
    }
}
