//! The cycle rule of `docs/uri.md` (version 2), without allocation: the caller provides
//! every buffer, so the interpreter (fixed arrays) and the store (vectors) run the same code.
//!
//! In an object that belongs to a dependency cycle (a strongly connected component of the
//! reference graph with more than one member, or an object that refers to itself), every
//! reference to a member of its cycle is hashed as [`PLACEHOLDER`] ([`feed_blanked`]). Each
//! member's address then commits to its own blanked bytes, to which member each of those
//! references names, and to the whole cycle's membership, so neither swapping references
//! inside a cycle nor adding a member to it keeps any member's address ([`addresses`]).
//!
//! The structure is captured by colour refinement: a member's colour starts as the hash of
//! its blanked bytes and is refined, round after round, by the colours of the members its
//! references name, in file order, until the partition of the members by colour stops
//! changing. Members that end with one colour are indistinguishable (same blanked bytes,
//! same structure) and get one address, so they are one object.

use crate::blake3::Hasher;
use crate::refs::references;
use crate::uri::{Hash, URI_LEN};

pub use crate::uri::PLACEHOLDER;

/// Domain of the hashes that refine a member's colour.
const COLOUR_DOMAIN: &[u8] = b"ld-cas cycle colour";
/// Domain of the hash that gives a member its address.
const ADDRESS_DOMAIN: &[u8] = b"ld-cas cycle address";

/// Feeds `bytes` to `feed`, in pieces, with every reference whose hash satisfies
/// `in_cycle` replaced by [`PLACEHOLDER`]: hashing the pieces in order gives the object's
/// blanked hash, with whichever BLAKE3 implementation the caller has.
pub fn feed_blanked(bytes: &[u8], in_cycle: impl Fn(&Hash) -> bool, mut feed: impl FnMut(&[u8])) {
    let mut done = 0;
    for (at, hash) in references(bytes) {
        if in_cycle(&hash) {
            feed(&bytes[done..at]);
            feed(&PLACEHOLDER);
            done = at + URI_LEN;
        }
    }
    feed(&bytes[done..]);
}

/// Replaces, in place, every reference whose hash satisfies `in_cycle` by [`PLACEHOLDER`].
/// The editor writes cycle members this way, hashes them, then writes the real URIs back.
pub fn blank_in_place(bytes: &mut [u8], in_cycle: impl Fn(&Hash) -> bool) {
    let mut at = 0;
    // One reference at a time: the scanner borrows the bytes that are then written.
    while let Some((offset, hash)) = references(&bytes[at..]).next() {
        let start = at + offset;
        if in_cycle(&hash) {
            bytes[start..start + URI_LEN].copy_from_slice(&PLACEHOLDER);
        }
        at = start + URI_LEN;
    }
}

/// The work space of [`components`] for one node.
#[derive(Clone, Copy, Debug, Default)]
pub struct Slot {
    index: usize,
    low: usize,
    on_stack: bool,
    /// The node at this depth of Tarjan's stack.
    stack: usize,
    /// The (node, position in its edge list) frame at this depth of the walk, which
    /// replaces recursion so deep dependency chains cannot overflow the call stack.
    frame: (usize, usize),
}

const UNSEEN: usize = usize::MAX;

/// Writes into `component[v]` the index of the strongly connected component of each node
/// `v` below `n` (Tarjan's algorithm, iterative). `edges(v)` lists the nodes `v` refers to;
/// those not below `n` are ignored. `work` and `component` need at least `n` places.
///
/// # Panics
/// When `work` or `component` is shorter than `n`.
pub fn components<'e, T, F>(n: usize, edges: F, work: &mut [Slot], component: &mut [usize])
where
    T: Copy + Into<usize> + 'e,
    F: Fn(usize) -> &'e [T],
{
    let work = &mut work[..n];
    let component = &mut component[..n];
    for slot in work.iter_mut() {
        *slot = Slot {
            index: UNSEEN,
            ..Slot::default()
        };
    }
    let mut depth = 0;
    let mut next_index = 0;
    let mut next_component = 0;
    for root in 0..n {
        if work[root].index != UNSEEN {
            continue;
        }
        // A node gets a frame only while unseen and is seen at once, so at most `n`
        // frames and `n` stack entries exist at any time.
        work[0].frame = (root, 0);
        let mut top = 1;
        while top > 0 {
            let (node, edge) = work[top - 1].frame;
            if edge == 0 && work[node].index == UNSEEN {
                work[node].index = next_index;
                work[node].low = next_index;
                next_index += 1;
                work[depth].stack = node;
                depth += 1;
                work[node].on_stack = true;
            }
            if let Some(&next) = edges(node).get(edge) {
                work[top - 1].frame.1 += 1;
                let next: usize = next.into();
                if next >= n {
                    continue;
                }
                if work[next].index == UNSEEN {
                    work[top].frame = (next, 0);
                    top += 1;
                } else if work[next].on_stack {
                    work[node].low = work[node].low.min(work[next].index);
                }
                continue;
            }
            top -= 1;
            if top > 0 {
                let parent = work[top - 1].frame.0;
                work[parent].low = work[parent].low.min(work[node].low);
            }
            if work[node].low == work[node].index {
                while depth > 0 {
                    depth -= 1;
                    let member = work[depth].stack;
                    work[member].on_stack = false;
                    component[member] = next_component;
                    if member == node {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
}

/// How many distinct colours `colours` has; `distinct` ends up holding them, sorted, in its
/// first that many places.
fn count_distinct(colours: &[Hash], distinct: &mut [Hash]) -> usize {
    let part = &mut distinct[..colours.len()];
    part.copy_from_slice(colours);
    part.sort_unstable();
    let mut d = 0;
    for i in 0..part.len() {
        if d == 0 || part[d - 1] != part[i] {
            part[d] = part[i];
            d += 1;
        }
    }
    d
}

/// The addresses of the members of one cycle. On entry `colours[k]` is the BLAKE3 hash of
/// member `k`'s blanked bytes (see [`feed_blanked`]); on return it is member `k`'s address.
/// `targets(k)` yields, in file order, the member (below `colours.len()`) that each of
/// member `k`'s references inside the cycle names. `next` and `distinct` are scratch space
/// of at least `colours.len()` places.
///
/// # Panics
/// When a scratch buffer is too short or a target is not a member.
pub fn addresses<I, F>(colours: &mut [Hash], targets: F, next: &mut [Hash], distinct: &mut [Hash])
where
    I: IntoIterator<Item = usize>,
    F: Fn(usize) -> I,
{
    let m = colours.len();
    let next = &mut next[..m];
    let mut classes = count_distinct(colours, distinct);
    // Each round can only split classes (a colour includes the previous one), so this
    // ends within as many rounds as there are members.
    loop {
        for (k, out) in next.iter_mut().enumerate() {
            let mut h = Hasher::new();
            h.update(COLOUR_DOMAIN);
            h.update(&colours[k].0);
            for t in targets(k) {
                h.update(&colours[t].0);
            }
            *out = Hash(h.finalize());
        }
        colours.copy_from_slice(next);
        let now = count_distinct(colours, distinct);
        if now == classes {
            break;
        }
        classes = now;
    }
    for colour in colours.iter_mut() {
        let mut h = Hasher::new();
        h.update(ADDRESS_DOMAIN);
        h.update(&colour.0);
        for d in &distinct[..classes] {
            h.update(&d.0);
        }
        *colour = Hash(h.finalize());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    fn h(n: u8) -> Hash {
        Hash([n; 32])
    }

    fn cycle(blanked: &[Hash], targets: &[Vec<usize>]) -> Vec<Hash> {
        let mut colours = blanked.to_vec();
        let mut next = vec![Hash::default(); blanked.len()];
        let mut distinct = next.clone();
        addresses(
            &mut colours,
            |k| targets[k].iter().copied(),
            &mut next,
            &mut distinct,
        );
        colours
    }

    #[test]
    fn structure_and_membership_change_every_address() {
        // A <-> B.
        let ring = cycle(&[h(1), h(2)], &[vec![1], vec![0]]);
        assert_ne!(ring[0], ring[1]);
        // Swapped: each names itself.
        let swapped = cycle(&[h(1), h(2)], &[vec![0], vec![1]]);
        assert_ne!(swapped[0], ring[0]);
        assert_ne!(swapped[1], ring[1]);
        // A third member injected between B and A: A's blanked bytes are unchanged, its
        // address is not.
        let injected = cycle(&[h(1), h(2), h(3)], &[vec![1], vec![2], vec![0]]);
        assert_ne!(injected[0], ring[0]);
        assert_ne!(injected[1], ring[1]);
    }

    #[test]
    fn indistinguishable_members_share_an_address_as_their_one_object_does() {
        let pair = cycle(&[h(7), h(7)], &[vec![1], vec![0]]);
        assert_eq!(pair[0], pair[1]);
        // Written out, both are one object that names itself: same address.
        let one = cycle(&[h(7)], &[vec![0]]);
        assert_eq!(one[0], pair[0]);
        // Order of the members does not matter.
        let a = cycle(&[h(1), h(2), h(3)], &[vec![1, 2], vec![2], vec![0]]);
        let b = cycle(&[h(3), h(1), h(2)], &[vec![1], vec![2, 0], vec![0]]);
        assert_eq!((a[0], a[1], a[2]), (b[1], b[2], b[0]));
    }

    #[test]
    fn blanking_in_place_matches_the_fed_pieces() {
        let (me, peer, outside) = (h(1), h(2), h(3));
        let mut file = b"head ".to_vec();
        for (uri, sep) in [(peer, &b" mid "[..]), (outside, b""), (me, b" tail")] {
            file.extend_from_slice(&uri.to_uri_bytes());
            file.extend_from_slice(sep);
        }
        let in_cycle = |x: &Hash| *x == me || *x == peer;
        let mut fed = Vec::new();
        feed_blanked(&file, in_cycle, |piece| fed.extend_from_slice(piece));
        let mut blanked = file.clone();
        blank_in_place(&mut blanked, in_cycle);
        assert_eq!(fed, blanked);
        let left: Vec<Hash> = references(&blanked).map(|(_, x)| x).collect();
        assert_eq!(left, vec![outside]);
    }

    #[test]
    fn components_find_cycles_on_deep_chains() {
        // 0 -> 1 -> 2 -> 0 (a cycle), 2 -> 3, 3 -> 3 (self loop), 4 alone, 5 -> 4, and an
        // edge past `n` that is ignored.
        let edges: [&[u16]; 6] = [&[1], &[2], &[0, 3], &[3, 9], &[], &[4]];
        let mut work = [Slot::default(); 6];
        let mut comp = [0usize; 6];
        components(6, |v| edges[v], &mut work, &mut comp);
        assert!(comp[0] == comp[1] && comp[1] == comp[2]);
        let distinct: std::collections::BTreeSet<_> = comp[2..].iter().collect();
        assert_eq!(distinct.len(), 4);
        // References lead to the same or lower-numbered components.
        assert!(comp[3] < comp[2] && comp[4] < comp[5]);

        let n = 200_000;
        let chain: Vec<Vec<usize>> = (0..n).map(|i| vec![(i + 1) % n]).collect();
        let mut work = vec![Slot::default(); n];
        let mut comp = vec![usize::MAX; n];
        components(n, |v| chain[v].as_slice(), &mut work, &mut comp);
        assert!(comp.iter().all(|&c| c == comp[0]));
    }
}
