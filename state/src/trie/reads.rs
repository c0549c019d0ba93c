//! Reading the stored trie's nodes: one at a time, or a whole depth's at once (one batched
//! multi-get, or one iterator walk), spread over the cores.

use anyhow::{Context, Result};
use rocksdb::{ColumnFamily, DB};

use super::hash::Hash;
use super::node::{Node, NodeKey};
use crate::parallel;

/// Trie nodes looked up from which another core is worth a thread.
const LOOKUPS_PER_THREAD: usize = 512;

/// How the nodes of one depth are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// One batched multi-get (a lookup per key, through each table's Bloom filter).
    MultiGet,
    /// One iterator over the depth, stepping from key to key: where the keys are a fair share of
    /// the depth's nodes (the top of the trie, which a large block rewrites nearly whole, and the
    /// depths below it in a large state), a step costs a fraction of a lookup, and the keys' table
    /// blocks are read once each, in order.
    Walk,
}

impl Lookup {
    /// Steps an iterator takes towards the next key before it seeks instead.
    pub(super) const STEPS_BEFORE_A_SEEK: usize = 16;

    /// A walk where `keys` are a thirty-second or more of the 2^`depth` nodes a depth can hold,
    /// and enough of them to be worth an iterator. (Measured over a million keys, block 574200's
    /// reads: a walk is faster down to about a sixty-fourth; over twenty thousand keys, its top
    /// depths are read three to five times faster than by a multi-get.)
    pub(super) fn for_depth(depth: usize, keys: usize) -> Self {
        match keys >= 64 && (depth as u32) < usize::BITS && keys.saturating_mul(32) >= 1 << depth {
            true => Lookup::Walk,
            false => Lookup::MultiGet,
        }
    }
}

/// The `nodes` family of a store, for reading.
pub(super) struct Nodes<'a> {
    pub(super) db: &'a DB,
    pub(super) family: &'a ColumnFamily,
}

impl Nodes<'_> {
    /// The stored nodes under `keys`: all of one depth, in path order (which is key order).
    pub(super) fn read(&self, depth: usize, keys: &[NodeKey], lookup: Lookup) -> Result<Vec<Option<Node>>> {
        let mut read: Vec<Result<Option<Node>>> = keys.iter().map(|_| Ok(None)).collect();
        let read_chunk = |keys: &[NodeKey], read: &mut [Result<Option<Node>>]| match lookup {
            Lookup::MultiGet => {
                for (value, node) in self.db.batched_multi_get_cf(self.family, keys, true).into_iter().zip(read) {
                    *node = value.context("reading state trie nodes").and_then(|value| value.as_deref().map(Node::decode).transpose());
                }
            }
            Lookup::Walk => self.walk(depth, keys, read),
        };
        parallel::in_chunks(parallel::cores(), keys, &mut read, LOOKUPS_PER_THREAD, read_chunk, || ());
        read.into_iter().collect()
    }

    /// [`Lookup::Walk`]: one iterator over `depth` from the first of `keys` to the last.
    fn walk(&self, depth: usize, keys: &[NodeKey], read: &mut [Result<Option<Node>>]) {
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_upper_bound((depth as u16 + 1).to_be_bytes());
        let mut walk = self.db.raw_iterator_cf_opt(self.family, options);
        walk.seek(keys.first().map_or(&[][..], NodeKey::as_bytes));
        for (key, node) in keys.iter().zip(read) {
            // A few steps to the next key, or a seek if it is further on.
            let mut steps = 0;
            while walk.key().is_some_and(|at| at < key.as_bytes()) {
                if steps == Lookup::STEPS_BEFORE_A_SEEK {
                    walk.seek(key);
                    break;
                }
                walk.next();
                steps += 1;
            }
            *node = match walk.key() == Some(key.as_bytes()) {
                true => Node::decode(walk.value().unwrap_or_default()).map(Some),
                false => walk.status().context("reading state trie nodes").map(|()| None),
            };
        }
    }

    /// The stored node at `depth` on the way to `path`, if its subtree holds any leaf.
    pub(super) fn node(&self, depth: usize, path: &Hash) -> Result<Option<Node>> {
        let stored = self.db.get_pinned_cf(self.family, NodeKey::new(depth, path)).context("reading a state trie node")?;
        stored.as_deref().map(Node::decode).transpose()
    }
}
