//! Folded stacks as a tree of frames with inclusive sample counts, for
//! flame graphs drawn in the terminal: children in name order so a frame
//! keeps its place from one refresh to the next.

use std::collections::BTreeMap;

/// A frame of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The frame's name.
    pub name: String,
    /// Samples in this frame and below it.
    pub total: u64,
    /// Children, in name order (indices into the tree).
    pub children: Vec<usize>,
    /// The parent (None for the root).
    pub parent: Option<usize>,
    /// Frames between it and the root.
    pub depth: usize,
}

/// The tree; node 0 is the root, named "all".
#[derive(Debug, Clone, PartialEq)]
pub struct FlameTree {
    nodes: Vec<Node>,
}

impl FlameTree {
    /// Builds the tree from `stack -> samples`, stacks root first and
    /// separated by ';'.
    pub fn from_folded(folded: &BTreeMap<String, u64>) -> Self {
        let mut tree = FlameTree {
            nodes: vec![Node {
                name: "all".into(),
                total: 0,
                children: Vec::new(),
                parent: None,
                depth: 0,
            }],
        };
        // Children by name while building; BTreeMap iteration order means
        // the folded input is already sorted, so siblings arrive in order.
        let mut index: BTreeMap<(usize, &str), usize> = BTreeMap::new();
        for (stack, &n) in folded {
            let mut at = 0;
            tree.nodes[0].total += n;
            for frame in stack.split(';').filter(|f| !f.is_empty()) {
                let next = match index.get(&(at, frame)) {
                    Some(&i) => i,
                    None => {
                        let i = tree.nodes.len();
                        tree.nodes.push(Node {
                            name: frame.to_string(),
                            total: 0,
                            children: Vec::new(),
                            parent: Some(at),
                            depth: tree.nodes[at].depth + 1,
                        });
                        tree.nodes[at].children.push(i);
                        index.insert((at, frame), i);
                        i
                    }
                };
                tree.nodes[next].total += n;
                at = next;
            }
        }
        for i in 0..tree.nodes.len() {
            let mut kids = std::mem::take(&mut tree.nodes[i].children);
            kids.sort_by(|&a, &b| tree.nodes[a].name.cmp(&tree.nodes[b].name));
            tree.nodes[i].children = kids;
        }
        tree
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Nodes in the tree, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.nodes[0].total == 0
    }

    /// The names from the root's child down to `i`.
    pub fn path(&self, mut i: usize) -> Vec<&str> {
        let mut names = Vec::new();
        while let Some(p) = self.nodes[i].parent {
            names.push(self.nodes[i].name.as_str());
            i = p;
        }
        names.reverse();
        names
    }

    /// The node at `path` (names below the root), if it still exists.
    pub fn find(&self, path: &[String]) -> Option<usize> {
        let mut at = 0;
        for name in path {
            at = *self.nodes[at]
                .children
                .iter()
                .find(|&&c| &self.nodes[c].name == name)?;
        }
        Some(at)
    }

    /// Samples in frames whose name contains `needle` (each sample counted
    /// once, at its outermost matching frame).
    pub fn matching(&self, needle: &str) -> u64 {
        fn walk(t: &FlameTree, i: usize, needle: &str) -> u64 {
            let n = &t.nodes[i];
            if i != 0 && n.name.contains(needle) {
                return n.total;
            }
            n.children.iter().map(|&c| walk(t, c, needle)).sum()
        }
        if needle.is_empty() {
            return 0;
        }
        walk(self, 0, needle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> FlameTree {
        let mut f = BTreeMap::new();
        f.insert("vcpu;vmm;world_switch;vcpu_enter".to_string(), 30);
        f.insert("vcpu;vmm;world_switch".to_string(), 10);
        f.insert("vcpu;guest;guest_native".to_string(), 20);
        f.insert("io;vmapp;vmnet_rx".to_string(), 5);
        FlameTree::from_folded(&f)
    }

    #[test]
    fn totals_are_inclusive_and_children_sorted() {
        let t = tree();
        assert_eq!(t.node(0).total, 65);
        let names: Vec<&str> = t
            .node(0)
            .children
            .iter()
            .map(|&c| t.node(c).name.as_str())
            .collect();
        assert_eq!(names, ["io", "vcpu"]);
        let ws = t.find(&["vcpu".into(), "vmm".into(), "world_switch".into()]);
        let ws = ws.unwrap();
        assert_eq!(t.node(ws).total, 40);
        assert_eq!(t.node(ws).depth, 3);
        assert_eq!(t.path(ws), ["vcpu", "vmm", "world_switch"]);
        assert!(t.find(&["vcpu".into(), "nope".into()]).is_none());
    }

    #[test]
    fn search_counts_each_sample_once() {
        let t = tree();
        assert_eq!(t.matching("world"), 40);
        assert_eq!(t.matching("vcpu"), 60, "outermost match only");
        assert_eq!(t.matching(""), 0);
        assert!(FlameTree::from_folded(&BTreeMap::new()).is_empty());
    }
}
