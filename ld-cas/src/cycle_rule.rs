//! The cycle rule of `docs/uri.md` (version 2), for `--verify`, without allocation: the
//! strongly connected components of a closure's reference graph (Tarjan, iterative), and
//! the address of every member of a cycle: its bytes with the references inside the cycle
//! blanked, refined by the colours of the members those references name until the
//! partition by colour stops changing, then hashed with the cycle's distinct colours.

use crate::blake3::Hasher;
use crate::cas::{Hash, URI_LEN, URI_PREFIX};
use crate::verify::{references, MAX};

const UNSEEN: u16 = u16::MAX;

/// The strongly connected component of each of the first `n` objects (`comp[i]`), given
/// each object's distinct references (`edges(i)`, indices below `n`).
pub fn components<'g>(n: usize, edges: &dyn Fn(usize) -> &'g [u16], comp: &mut [u16; MAX]) {
    let mut index = [UNSEEN; MAX];
    let mut low = [0u16; MAX];
    let mut on_stack = [false; MAX];
    let mut stack = [0u16; MAX];
    let mut depth = 0;
    // (node, position in its edge list) frames replace recursion.
    let mut frames = [(0u16, 0u16); MAX];
    let mut top = 0;
    let mut next_index = 0u16;
    let mut next_comp = 0u16;
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        frames[0] = (root as u16, 0);
        top = 1;
        while top > 0 {
            let (node, edge) = frames[top - 1];
            let v = node as usize;
            if edge == 0 && index[v] == UNSEEN {
                index[v] = next_index;
                low[v] = next_index;
                next_index += 1;
                stack[depth] = node;
                depth += 1;
                on_stack[v] = true;
            }
            if let Some(&w) = edges(v).get(edge as usize) {
                frames[top - 1].1 += 1;
                let w = w as usize;
                if w >= n {
                    continue;
                }
                if index[w] == UNSEEN {
                    frames[top] = (w as u16, 0);
                    top += 1;
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            top -= 1;
            if top > 0 {
                let parent = frames[top - 1].0 as usize;
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                while depth > 0 {
                    depth -= 1;
                    let member = stack[depth] as usize;
                    on_stack[member] = false;
                    comp[member] = next_comp;
                    if member == v {
                        break;
                    }
                }
                next_comp += 1;
            }
        }
    }
    let _ = top;
}

/// The placeholder that stands for a reference inside a cycle.
fn placeholder() -> [u8; URI_LEN] {
    let mut p = [b'x'; URI_LEN];
    p[..URI_PREFIX.len()].copy_from_slice(URI_PREFIX);
    p
}

/// BLAKE3 of `bytes` with every reference to a member of component `c` blanked.
fn blanked(bytes: &[u8], objs: &[(Hash, &[u8])], comp: &[u16; MAX], c: u16) -> [u8; 32] {
    let blank = placeholder();
    let mut h = Hasher::new();
    let mut done = 0;
    for (at, j) in references(bytes, objs) {
        if comp[j] == c {
            h.update(&bytes[done..at]);
            h.update(&blank);
            done = at + URI_LEN;
        }
    }
    h.update(&bytes[done..]);
    h.finalize()
}

/// How many distinct colours the members of `c` have; `scratch` ends up holding them,
/// sorted, in its first that many places.
fn distinct(
    colour: &[[u8; 32]; MAX],
    comp: &[u16; MAX],
    c: u16,
    n: usize,
    scratch: &mut [[u8; 32]; MAX],
) -> usize {
    let mut k = 0;
    for i in 0..n {
        if comp[i] == c {
            scratch[k] = colour[i];
            k += 1;
        }
    }
    let part = &mut scratch[..k];
    part.sort_unstable();
    let mut d = 0;
    for i in 0..k {
        if d == 0 || part[d - 1] != part[i] {
            part[d] = part[i];
            d += 1;
        }
    }
    d
}

/// Writes into `address[i]` the address by the rule of every member `i` of component `c`
/// of the first `n` objects.
pub fn member_addresses(
    objs: &[(Hash, &[u8])],
    n: usize,
    comp: &[u16; MAX],
    c: u16,
    address: &mut [[u8; 32]; MAX],
) {
    let objs = &objs[..n];
    let mut colour = [[0u8; 32]; MAX];
    let mut scratch = [[0u8; 32]; MAX];
    for i in 0..n {
        if comp[i] == c {
            colour[i] = blanked(objs[i].1, objs, comp, c);
        }
    }
    let mut classes = distinct(&colour, comp, c, n, &mut scratch);
    // Colours only split classes: at most as many rounds as there are members.
    loop {
        for i in 0..n {
            if comp[i] != c {
                continue;
            }
            let mut h = Hasher::new();
            h.update(b"ld-cas cycle colour");
            h.update(&colour[i]);
            for (_, t) in references(objs[i].1, objs) {
                if comp[t] == c {
                    h.update(&colour[t]);
                }
            }
            // `address` is free until the end: it holds this round's colours.
            address[i] = h.finalize();
        }
        for i in 0..n {
            if comp[i] == c {
                colour[i] = address[i];
            }
        }
        let next = distinct(&colour, comp, c, n, &mut scratch);
        if next == classes {
            break;
        }
        classes = next;
    }
    for i in 0..n {
        if comp[i] != c {
            continue;
        }
        let mut h = Hasher::new();
        h.update(b"ld-cas cycle address");
        h.update(&colour[i]);
        for d in &scratch[..classes] {
            h.update(d);
        }
        address[i] = h.finalize();
    }
}
