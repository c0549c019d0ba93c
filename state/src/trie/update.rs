//! A block's update of the stored trie, a depth at a time.

use std::ops::Range;

use anyhow::Result;

use super::hash::{bit, Hash, Subtree};
use super::node::{with_bit, Node, NodeKey, NodeWriter};
use super::reads::{Lookup, Nodes};
use crate::parallel;

/// Trie subtrees hashed (each a SHA-256 or none) from which another core is worth a thread.
const HASHES_PER_THREAD: usize = 2048;

/// A block's update of the stored trie, a depth at a time. Going down, it reads, at each depth
/// and all at once ([`Lookup`]), the stored nodes on the way to the updated keys and the ones
/// beside those ways, and notes the subtrees it visits there. Coming back up, it hashes each
/// depth's subtrees from the ones below and writes the nodes that change: a depth at a time, each
/// in path order, which is key order (RocksDB inserts a sorted run much faster than scattered
/// keys). It writes the same nodes as a depth-first walk with a point read per node would.
pub(super) struct TrieUpdate<'a> {
    /// The block's leaves: sorted, distinct paths.
    pub(super) updates: &'a [(Hash, Hash)],
    /// The stored leaves the updates land beside, as read on the way down.
    pub(super) stored_leaves: Vec<(Hash, Hash)>,
    /// Per depth, the subtrees visited, in path order.
    pub(super) levels: Vec<Vec<Visit>>,
}

/// A subtree the update will visit, before its depth is read.
enum Pending {
    /// A subtree holding the updates in this range.
    Descend(Range<usize>),
    /// A stored subtree beside the updated ones, at this path.
    Beside(Hash),
    /// A subtree rebuilt from its leaves.
    Build(Leaves),
}

/// A subtree the update visits.
pub(super) enum Visit {
    /// A stored subtree of two or more leaves with updates below (a range of the updates): its
    /// sides are the next two visits a depth down.
    Branch(Range<usize>),
    /// A subtree rebuilt from its leaves alone, for it held one stored leaf or none. One leaf is
    /// written as a leaf; more are split, and each side holding any is the next visit a depth down.
    Build(Leaves),
    /// A stored subtree beside the updated ones: unchanged, only its hash counts.
    Beside(Subtree),
}

/// The leaves of a rebuilt subtree: a range of the updates and perhaps one stored leaf (an index
/// into `stored_leaves`) that they now share a subtree with.
#[derive(Clone)]
pub(super) struct Leaves {
    pub(super) updates: Range<usize>,
    pub(super) stored: Option<usize>,
}

impl Leaves {
    pub(super) fn count(&self) -> usize {
        self.updates.len() + usize::from(self.stored.is_some())
    }
}

impl<'a> TrieUpdate<'a> {
    /// Goes down from the root, reading what the update of `updates` needs from `nodes`.
    pub(super) fn read(nodes: &Nodes, updates: &'a [(Hash, Hash)]) -> Result<Self> {
        let mut update = Self { updates, stored_leaves: Vec::new(), levels: Vec::new() };
        let mut pending = vec![Pending::Descend(0..updates.len())];
        for depth in 0.. {
            if pending.is_empty() {
                break;
            }
            let keys: Vec<NodeKey> = pending
                .iter()
                .filter_map(|pending| match pending {
                    Pending::Descend(range) => Some(NodeKey::new(depth, &updates[range.start].0)),
                    Pending::Beside(path) => Some(NodeKey::new(depth, path)),
                    Pending::Build(_) => None,
                })
                .collect();
            let mut read = nodes.read(depth, &keys, Lookup::for_depth(depth, keys.len()))?.into_iter();
            let mut visits = Vec::with_capacity(pending.len());
            let mut next = Vec::new();
            for pending in pending {
                let visit = match pending {
                    Pending::Build(leaves) => Visit::Build(leaves),
                    Pending::Beside(_) => Visit::Beside(Node::subtree(read.next().expect("one node per key"))),
                    Pending::Descend(range) => update.descend(range, read.next().expect("one node per key"), depth, &mut next),
                };
                if let Visit::Build(leaves) = &visit {
                    if leaves.count() > 1 {
                        anyhow::ensure!(depth < 256, "two keys share a whole SHA-256 path");
                        next.extend(update.split(leaves, depth).into_iter().filter(|side| side.count() > 0).map(Pending::Build));
                    }
                }
                visits.push(visit);
            }
            update.levels.push(visits);
            pending = next;
        }
        Ok(update)
    }

    /// The visit of the subtree at `depth` holding the updates in `range`, whose stored node is
    /// `stored`: a stored branch is descended into (its sides are `next`'s to read), a subtree
    /// of one stored leaf or none is rebuilt from its leaves.
    fn descend(&mut self, range: Range<usize>, stored: Option<Node>, depth: usize, next: &mut Vec<Pending>) -> Visit {
        let updates = self.updates;
        match stored {
            Some(Node::Branch(_)) => {
                let path = updates[range.start].0;
                let split = range.start + updates[range.clone()].partition_point(|(path, _)| !bit(path, depth));
                for (side, range) in [range.start..split, split..range.end].into_iter().enumerate() {
                    next.push(match range.is_empty() {
                        true => Pending::Beside(with_bit(path, depth, side == 1)),
                        false => Pending::Descend(range),
                    });
                }
                Visit::Branch(range)
            }
            // The stored leaf joins the updates, unless one of them replaces it.
            Some(Node::Leaf(existing, leaf)) => {
                let stored = updates[range.clone()].binary_search_by(|(path, _)| path.cmp(&existing)).err().map(|_| {
                    self.stored_leaves.push((existing, leaf));
                    self.stored_leaves.len() - 1
                });
                Visit::Build(Leaves { updates: range, stored })
            }
            None => Visit::Build(Leaves { updates: range, stored: None }),
        }
    }

    /// Comes back up, writing every node that changes; returns the new root subtree. A depth's
    /// subtrees are hashed on every core, then its nodes are put in path order.
    pub(super) fn write(&self, nodes: &mut NodeWriter) -> Result<Subtree> {
        let mut below: Vec<Subtree> = Vec::new();
        for (depth, visits) in self.levels.iter().enumerate().rev() {
            // Each visit with where its sides are in `below`.
            let mut sides = 0;
            let visits: Vec<(&Visit, Range<usize>)> = visits
                .iter()
                .map(|visit| {
                    let start = sides;
                    sides += self.sides_below(visit, depth);
                    (visit, start..sides)
                })
                .collect();
            anyhow::ensure!(sides == below.len(), "the trie update lost track of its subtrees at depth {depth}");
            let mut here = vec![Subtree::Empty; visits.len()];
            let hash = |visits: &[(&Visit, Range<usize>)], here: &mut [Subtree]| {
                for ((visit, sides), here) in visits.iter().zip(here) {
                    *here = self.subtree_of(visit, &below[sides.clone()]);
                }
            };
            parallel::in_chunks(parallel::cores(), &visits, &mut here, HASHES_PER_THREAD, hash, || ());
            for ((visit, _), subtree) in visits.iter().zip(&here) {
                if let Some((path, node)) = self.changed_node(visit, *subtree) {
                    nodes.put(depth, &path, node)?;
                }
            }
            below = here;
        }
        Ok(below.first().copied().unwrap_or(Subtree::Empty))
    }

    /// How many visits a depth down are `visit`'s sides.
    pub(super) fn sides_below(&self, visit: &Visit, depth: usize) -> usize {
        match visit {
            Visit::Beside(_) => 0,
            Visit::Branch(_) => 2,
            Visit::Build(leaves) if leaves.count() == 1 => 0,
            // A side without leaves has no visit below.
            Visit::Build(leaves) => self.split(leaves, depth).iter().filter(|side| side.count() > 0).count(),
        }
    }

    /// The subtree `visit` stands for, from its `sides` (hashed a depth down).
    pub(super) fn subtree_of(&self, visit: &Visit, sides: &[Subtree]) -> Subtree {
        match visit {
            Visit::Beside(subtree) => *subtree,
            Visit::Build(leaves) if leaves.count() == 1 => Subtree::Single(self.first_leaf(leaves).1),
            // One filled side of a rebuilt subtree joins as itself (no hashing along a chain).
            Visit::Branch(_) | Visit::Build(_) => sides.iter().fold(Subtree::Empty, |left, side| Subtree::join(left, *side)),
        }
    }

    /// The node to write for `visit`, now `subtree`, with the path that names it; none beside.
    pub(super) fn changed_node(&self, visit: &Visit, subtree: Subtree) -> Option<(Hash, Node)> {
        match visit {
            Visit::Beside(_) => None,
            Visit::Branch(range) => Some((self.updates[range.start].0, Node::Branch(subtree.hash()))),
            Visit::Build(leaves) if leaves.count() == 1 => {
                let (path, leaf) = self.first_leaf(leaves);
                Some((path, Node::Leaf(path, leaf)))
            }
            Visit::Build(leaves) => Some((self.first_leaf(leaves).0, Node::Branch(subtree.hash()))),
        }
    }

    /// `leaves` split by their bit `depth`.
    pub(super) fn split(&self, leaves: &Leaves, depth: usize) -> [Leaves; 2] {
        let Range { start, end } = leaves.updates;
        let split = start + self.updates[start..end].partition_point(|(path, _)| !bit(path, depth));
        let mut sides = [Leaves { updates: start..split, stored: None }, Leaves { updates: split..end, stored: None }];
        if let Some(stored) = leaves.stored {
            sides[usize::from(bit(&self.stored_leaves[stored].0, depth))].stored = Some(stored);
        }
        sides
    }

    /// The first of `leaves` by path (any of them names their subtree; with one, it is the one).
    pub(super) fn first_leaf(&self, leaves: &Leaves) -> (Hash, Hash) {
        let update = self.updates.get(leaves.updates.clone()).and_then(|range| range.first());
        let stored = leaves.stored.map(|stored| &self.stored_leaves[stored]);
        *update.into_iter().chain(stored).min().expect("a rebuilt subtree has leaves")
    }
}
