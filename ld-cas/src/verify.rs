//! `--verify`: rehashing a closure against its content addresses, with the cycle rule of
//! `docs/uri.md` (`resolver_core::cycle_rule`): in an object that belongs to a dependency
//! cycle (a strongly connected component of the reference graph with more than one member,
//! or an object that refers to itself), every reference to a member of its cycle is hashed
//! as the placeholder (`uri:blake3:` and 64 `x`).

use resolver_core::blake3::{self, Hasher};
use resolver_core::cycle_rule::{self, Slot};
use resolver_core::refs;

use crate::cas::{Hash, URI_PREFIX};
use crate::out::Out;
use crate::sys::{self, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};

/// Most objects a closure may have here.
pub const MAX: usize = 1024;
/// Most distinct references per object (more fails the verification, loudly).
pub const MAX_REFS: usize = 256;

/// Each reference in `bytes` to an object of `objs`: (offset, index).
fn references<'a>(
    bytes: &'a [u8],
    objs: &'a [(Hash, &[u8])],
) -> impl Iterator<Item = (usize, usize)> + 'a {
    refs::references(bytes)
        .filter_map(move |(at, h)| objs.iter().position(|o| o.0 == h).map(|j| (at, j)))
}

struct Graph {
    refs: &'static mut [u16],
    counts: [u16; MAX],
}

impl Graph {
    fn of(&self, i: usize) -> &[u16] {
        &self.refs[i * MAX_REFS..i * MAX_REFS + self.counts[i] as usize]
    }
}

fn write_uri(o: &mut Out, h: &[u8; 32]) {
    let mut hex = [0u8; 64];
    for (i, b) in h.iter().enumerate() {
        hex[2 * i] = b"0123456789abcdef"[(b >> 4) as usize];
        hex[2 * i + 1] = b"0123456789abcdef"[(b & 15) as usize];
    }
    o.bytes(URI_PREFIX).bytes(&hex);
}

/// Rehashes every object of `objs` (hash it should have, bytes), printing one line each;
/// returns whether all match. `page` is the page size.
pub fn closure(objs: &[(Hash, &[u8])], page: usize, o: &mut Out) -> bool {
    let n = objs.len().min(MAX);
    let size = (MAX * MAX_REFS * 2 + page - 1) & !(page - 1);
    // SAFETY: a fresh anonymous mapping, used only as this graph's storage.
    let refs = match unsafe {
        sys::mmap(
            0,
            size,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    } {
        // SAFETY: the mapping is `size` bytes, zeroed, aligned for u16, and never freed.
        Ok(a) => unsafe { core::slice::from_raw_parts_mut(a as *mut u16, MAX * MAX_REFS) },
        Err(_) => {
            o.str("verify: out of memory\n");
            return false;
        }
    };
    let mut g = Graph {
        refs,
        counts: [0; MAX],
    };
    if objs.len() > MAX {
        o.str("verify: the closure has more than ");
        let _ = core::fmt::write(o, format_args!("{MAX}"));
        o.str(" objects, more than ld-cas --verify handles: not verified\n");
        return false;
    }
    for i in 0..n {
        for (_, j) in references(objs[i].1, &objs[..n]) {
            let c = g.counts[i] as usize;
            if g.of(i).contains(&(j as u16)) {
                continue;
            }
            if c == MAX_REFS {
                o.str("verify ");
                write_uri(o, &objs[i].0 .0);
                let _ = core::fmt::write(
                    o,
                    format_args!(
                        " refers to more than {MAX_REFS} objects of its closure, more than ld-cas --verify handles: not verified\n"
                    ),
                );
                return false;
            }
            g.refs[i * MAX_REFS + c] = j as u16;
            g.counts[i] += 1;
        }
    }
    let mut comp = [0usize; MAX];
    cycle_rule::components(n, |i| g.of(i), &mut [Slot::default(); MAX], &mut comp);
    let mut size = [0u16; MAX];
    for &c in &comp[..n] {
        size[c] += 1;
    }
    let cyclic = |i: usize| size[comp[i]] > 1 || g.of(i).contains(&(i as u16));
    let mut expected = [[0u8; 32]; MAX];
    let mut done = [false; MAX];
    for i in 0..n {
        if cyclic(i) && !done[comp[i]] {
            done[comp[i]] = true;
            cycle_addresses(&objs[..n], &comp, comp[i], &mut expected);
        }
    }
    let mut ok = true;
    for i in 0..n {
        let in_cycle = cyclic(i);
        let got = if in_cycle {
            expected[i]
        } else {
            blake3::hash(objs[i].1)
        };
        o.str("verify ");
        write_uri(o, &objs[i].0 .0);
        if got == objs[i].0 .0 {
            o.str(" ok");
            if in_cycle {
                o.str(" (in a dependency cycle)");
            }
        } else {
            ok = false;
            o.str(" MISMATCH: the object hashes to ");
            write_uri(o, &got);
            if in_cycle {
                o.str(" by the cycle rule (version 2; stores converted before it must be converted again)");
            }
        }
        o.str("\n");
    }
    ok
}

/// Writes into `address[i]` the address by the cycle rule of every member `i` of component
/// `c` of `objs`.
fn cycle_addresses(
    objs: &[(Hash, &[u8])],
    comp: &[usize; MAX],
    c: usize,
    address: &mut [[u8; 32]; MAX],
) {
    // The rule numbers a cycle's members 0..m: `members[k]` is member k's object,
    // `member_of[i]` object i's member number.
    let mut members = [0usize; MAX];
    let mut member_of = [0usize; MAX];
    let mut m = 0;
    for i in 0..objs.len() {
        if comp[i] == c {
            members[m] = i;
            member_of[i] = m;
            m += 1;
        }
    }
    let inside = |j: usize| comp[j] == c;
    let mut colours = [Hash([0; 32]); MAX];
    for (colour, &i) in colours.iter_mut().zip(&members[..m]) {
        let mut h = Hasher::new();
        // `Option::is_some_and` is newer than Rust 1.63.
        let in_cycle =
            |x: &Hash| matches!(objs.iter().position(|o| o.0 == *x), Some(j) if inside(j));
        cycle_rule::feed_blanked(objs[i].1, in_cycle, |piece| h.update(piece));
        *colour = Hash(h.finalize());
    }
    cycle_rule::addresses(
        &mut colours[..m],
        |k| {
            references(objs[members[k]].1, objs)
                .filter(|&(_, j)| inside(j))
                .map(|(_, j)| member_of[j])
        },
        &mut [Hash([0; 32]); MAX],
        &mut [Hash([0; 32]); MAX],
    );
    for (colour, &i) in colours[..m].iter().zip(&members[..m]) {
        address[i] = colour.0;
    }
}
