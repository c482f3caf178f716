//! The cycle rule of `docs/uri.md` over a whole cycle at once, with vectors: what the
//! store and the editor call. The rule itself (blanking, colour refinement, addresses) is
//! `resolver_core::cycle_rule`, which the interpreter runs on fixed arrays; its tests are
//! there.

use resolver_core::cycle_rule::addresses;

use crate::uri::Hash;

/// The addresses of a cycle's members. `blanked[i]` is the BLAKE3 hash of member `i`'s bytes
/// with every reference to a member of the cycle replaced by the placeholder;
/// `targets[i]` lists the member each of those references names, in file order.
pub fn cycle_addresses(blanked: &[Hash], targets: &[Vec<usize>]) -> Vec<Hash> {
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
