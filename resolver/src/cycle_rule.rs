//! The addresses of the members of one dependency cycle (`docs/uri.md`, the cycle rule,
//! version 2): each member's address commits to its own bytes with the references inside
//! the cycle blanked, to which member each of those references names, and to the whole
//! cycle's membership, so neither swapping references inside a cycle nor adding a member
//! to it keeps any member's address.
//!
//! The structure is captured by colour refinement: a member's colour starts as the hash of
//! its blanked bytes and is refined, round after round, by the colours of the members its
//! references name, in file order, until the partition of the members by colour stops
//! changing. Members that end with one colour are indistinguishable (same blanked bytes,
//! same structure) and get one address, so they are one object.

use crate::uri::Hash;

/// One round of refinement: each member's colour followed by its targets' colours.
fn refine(colours: &[Hash], targets: &[Vec<usize>]) -> Vec<Hash> {
    colours
        .iter()
        .zip(targets)
        .map(|(own, refs)| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(b"ld-cas cycle colour");
            hasher.update(&own.0);
            for &t in refs {
                hasher.update(&colours[t].0);
            }
            Hash(*hasher.finalize().as_bytes())
        })
        .collect()
}

/// How many classes a colouring has.
fn classes(colours: &[Hash]) -> usize {
    let mut sorted = colours.to_vec();
    sorted.sort_unstable_by_key(|h| h.0);
    sorted.dedup();
    sorted.len()
}

/// The addresses of a cycle's members. `blanked[i]` is the BLAKE3 hash of member `i`'s bytes
/// with every reference to a member of the cycle replaced by the placeholder;
/// `targets[i]` lists the member each of those references names, in file order.
pub fn cycle_addresses(blanked: &[Hash], targets: &[Vec<usize>]) -> Vec<Hash> {
    let mut colours = blanked.to_vec();
    let mut count = classes(&colours);
    // Each round can only split classes (a colour includes the previous one), so this
    // ends within as many rounds as there are members.
    loop {
        let next = refine(&colours, targets);
        let next_count = classes(&next);
        colours = next;
        if next_count == count {
            break;
        }
        count = next_count;
    }
    let mut distinct = colours.clone();
    distinct.sort_unstable_by_key(|h| h.0);
    distinct.dedup();
    colours
        .iter()
        .map(|own| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(b"ld-cas cycle address");
            hasher.update(&own.0);
            for c in &distinct {
                hasher.update(&c.0);
            }
            Hash(*hasher.finalize().as_bytes())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> Hash {
        Hash([n; 32])
    }

    #[test]
    fn structure_and_membership_change_every_address() {
        // A <-> B.
        let ring = cycle_addresses(&[h(1), h(2)], &[vec![1], vec![0]]);
        assert_ne!(ring[0], ring[1]);
        // Swapped: each names itself.
        let swapped = cycle_addresses(&[h(1), h(2)], &[vec![0], vec![1]]);
        assert_ne!(swapped[0], ring[0]);
        assert_ne!(swapped[1], ring[1]);
        // A third member injected between B and A: A's blanked bytes are unchanged, its
        // address is not.
        let injected = cycle_addresses(&[h(1), h(2), h(3)], &[vec![1], vec![2], vec![0]]);
        assert_ne!(injected[0], ring[0]);
        assert_ne!(injected[1], ring[1]);
    }

    #[test]
    fn indistinguishable_members_share_an_address_as_their_one_object_does() {
        let pair = cycle_addresses(&[h(7), h(7)], &[vec![1], vec![0]]);
        assert_eq!(pair[0], pair[1]);
        // Written out, both are one object that names itself: same address.
        let one = cycle_addresses(&[h(7)], &[vec![0]]);
        assert_eq!(one[0], pair[0]);
        // Order of the members does not matter.
        let a = cycle_addresses(&[h(1), h(2), h(3)], &[vec![1, 2], vec![2], vec![0]]);
        let b = cycle_addresses(&[h(3), h(1), h(2)], &[vec![1], vec![2, 0], vec![0]]);
        assert_eq!((a[0], a[1], a[2]), (b[1], b[2], b[0]));
    }
}

/// The address of one member of a cycle, and what the first version of the rule gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberAddress {
    /// Its address by the rule.
    pub address: Hash,
    /// Its bytes hashed with the cycle's references blanked, which was its whole address
    /// under version 1 of the rule (stores converted before it changed).
    pub blanked: Hash,
}

/// The addresses of the members of one cycle, whose bytes are `members[i]` and whose
/// URIs (the ones their references use) are `uris[i]`.
pub fn member_addresses(members: &[&[u8]], uris: &[Hash]) -> Vec<MemberAddress> {
    let blanked: Vec<Hash> = members
        .iter()
        .map(|bytes| crate::hash::hash_modulo_cycle(bytes, uris))
        .collect();
    let targets: Vec<Vec<usize>> = members
        .iter()
        .map(|bytes| {
            crate::refs::references(bytes)
                .filter_map(|(_, h)| uris.iter().position(|c| *c == h))
                .collect()
        })
        .collect();
    cycle_addresses(&blanked, &targets)
        .into_iter()
        .zip(blanked)
        .map(|(address, blanked)| MemberAddress { address, blanked })
        .collect()
}
