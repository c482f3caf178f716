//! Strongly connected components of the reference graph, for the cycle rule of
//! `docs/uri.md`: an object's address is computed with the references to the members of
//! its own component blanked, when that component is a cycle.

use resolver_core::cycle_rule::{self, Slot};

/// For each node, the index of its strongly connected component (the core's iterative
/// Tarjan, so deep dependency chains cannot overflow the stack). `edges[n]` lists the nodes
/// `n` refers to.
pub fn components(edges: &[Vec<usize>]) -> Vec<usize> {
    let n = edges.len();
    let mut work = vec![Slot::default(); n];
    let mut component = vec![0; n];
    cycle_rule::components(n, |v| edges[v].as_slice(), &mut work, &mut component);
    component
}

/// For each node, the nodes of its cycle: the members of its component when the component
/// has more than one node or the node refers to itself; otherwise nothing.
pub fn cycle_members(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let component = components(edges);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); edges.len()];
    for (node, &c) in component.iter().enumerate() {
        members[c].push(node);
    }
    (0..edges.len())
        .map(|node| {
            let group = &members[component[node]];
            if group.len() > 1 || edges[node].contains(&node) {
                group.clone()
            } else {
                Vec::new()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cycles_and_self_loops() {
        // 0 -> 1 -> 2 -> 0 (a cycle), 2 -> 3, 3 -> 3 (self loop), 4 alone, 5 -> 4.
        let edges = vec![vec![1], vec![2], vec![0, 3], vec![3], vec![], vec![4]];
        let cycles = cycle_members(&edges);
        for members in &cycles[..3] {
            let mut m = members.clone();
            m.sort();
            assert_eq!(m, vec![0, 1, 2]);
        }
        assert_eq!(cycles[3], vec![3]);
        assert!(cycles[4].is_empty());
        assert!(cycles[5].is_empty());
    }

    #[test]
    fn deep_chain_does_not_overflow() {
        let n = 200_000;
        let edges: Vec<Vec<usize>> = (0..n)
            .map(|i| if i + 1 < n { vec![i + 1] } else { vec![0] })
            .collect();
        let c = components(&edges);
        assert!(c.iter().all(|&x| x == c[0]));
    }
}
