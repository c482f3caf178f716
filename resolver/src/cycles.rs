//! Strongly connected components of the reference graph, for the cycle rule of
//! `docs/uri.md`: an object's address is computed with the references to the members of
//! its own component blanked, when that component is a cycle.

/// For each node, the index of its strongly connected component (Tarjan's algorithm,
/// iterative so deep dependency chains cannot overflow the stack). `edges[n]` lists the
/// nodes `n` refers to.
pub fn components(edges: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = edges.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut component = vec![UNSEEN; n];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut next_component = 0;
    // (node, position in its edge list) frames replace recursion.
    let mut frames: Vec<(usize, usize)> = Vec::new();

    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        frames.push((root, 0));
        while let Some(&mut (node, ref mut edge)) = frames.last_mut() {
            if *edge == 0 && index[node] == UNSEEN {
                index[node] = next_index;
                low[node] = next_index;
                next_index += 1;
                stack.push(node);
                on_stack[node] = true;
            }
            if let Some(&next) = edges[node].get(*edge) {
                *edge += 1;
                if index[next] == UNSEEN {
                    frames.push((next, 0));
                } else if on_stack[next] {
                    low[node] = low[node].min(index[next]);
                }
                continue;
            }
            frames.pop();
            if let Some(&(parent, _)) = frames.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component[member] = next_component;
                    if member == node {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
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
