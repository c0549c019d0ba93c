//! The stored trie's nodes: how a node and its key are encoded, and what writing one is charged.

use anyhow::{Context, Result};
use rocksdb::WriteBatch;

use super::hash::{Hash, Subtree};

/// A stored trie node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Node {
    /// Two or more leaves below.
    Branch(Hash),
    /// The only leaf below: its path and leaf hash.
    Leaf(Hash, Hash),
}

impl Node {
    pub(super) fn decode(bytes: &[u8]) -> Result<Node> {
        Ok(match (bytes.first(), bytes.len()) {
            (Some(0x01), 33) => Node::Branch(to_hash(&bytes[1..])?),
            (Some(0x00), 65) => Node::Leaf(to_hash(&bytes[1..33])?, to_hash(&bytes[33..])?),
            _ => anyhow::bail!("a state trie node of {} bytes is malformed: the database is corrupt", bytes.len()),
        })
    }

    /// The stored bytes, in `buffer`.
    pub(super) fn encode(self, buffer: &mut [u8; 65]) -> &[u8] {
        match self {
            Node::Branch(hash) => {
                buffer[0] = 0x01;
                buffer[1..33].copy_from_slice(&hash);
                &buffer[..33]
            }
            Node::Leaf(path, leaf) => {
                buffer[0] = 0x00;
                buffer[1..33].copy_from_slice(&path);
                buffer[33..].copy_from_slice(&leaf);
                &buffer[..]
            }
        }
    }

    /// The subtree this node stands for, as far as its parent's hash depends on it.
    pub(super) fn subtree(node: Option<Node>) -> Subtree {
        match node {
            Some(Node::Branch(hash)) => Subtree::Many(hash),
            Some(Node::Leaf(_, leaf)) => Subtree::Single(leaf),
            None => Subtree::Empty,
        }
    }
}

/// A batch entry's bytes beside its key and value: a tag and two length varints.
pub(super) const BATCH_ENTRY_OVERHEAD: usize = 11;

/// What a trie node written by a commit costs the host: its entry in the batch and again in the
/// memtable, plus the memtable's bookkeeping for the entry.
pub fn node_charge(key: usize, value: usize) -> u64 {
    2 * (key + value + BATCH_ENTRY_OVERHEAD) as u64 + MEMTABLE_ENTRY_OVERHEAD
}

/// A memtable entry's bytes beside its key and value (skip-list node, sequence number, lengths).
pub(super) const MEMTABLE_ENTRY_OVERHEAD: u64 = 48;

/// A commit's trie nodes would need more than the block's allowance (deterministic policy).
#[derive(Debug)]
pub struct NodeBudgetExceeded {
    pub allowance: u64,
}

impl std::fmt::Display for NodeBudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "commit: the state trie nodes this block rewrites would take more than the {} bytes left of the memory budget (nothing of the block was written)",
            self.allowance
        )
    }
}

impl std::error::Error for NodeBudgetExceeded {}

/// Puts a commit's trie nodes into its batch, charging each against the allowance.
pub(super) struct NodeWriter<'a> {
    pub(super) batch: &'a mut WriteBatch,
    pub(super) nodes: &'a rocksdb::ColumnFamily,
    pub(super) allowance: Option<u64>,
    pub(super) charged: u64,
}

impl NodeWriter<'_> {
    pub(super) fn put(&mut self, depth: usize, path: &Hash, node: Node) -> Result<()> {
        let key = NodeKey::new(depth, path);
        let mut buffer = [0; 65];
        let value = node.encode(&mut buffer);
        self.charged += node_charge(key.as_bytes().len(), value.len());
        if let Some(allowance) = self.allowance.filter(|&allowance| self.charged > allowance) {
            return Err(NodeBudgetExceeded { allowance }.into());
        }
        self.batch.put_cf(self.nodes, key.as_bytes(), value);
        Ok(())
    }
}

/// A node's key in `nodes`: the depth (u16 BE), then the bytes of the path's first `depth` bits
/// (the bits after them zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NodeKey {
    pub(super) bytes: [u8; 34],
    pub(super) len: u8,
}

impl NodeKey {
    /// The key of the subtree at `depth` on the way to `path`.
    pub(super) fn new(depth: usize, path: &Hash) -> Self {
        let mut bytes = [0; 34];
        bytes[..2].copy_from_slice(&(depth as u16).to_be_bytes());
        let len = depth.div_ceil(8);
        bytes[2..2 + len].copy_from_slice(&prefix(depth, path)[..len]);
        Self { bytes, len: (2 + len) as u8 }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for NodeKey {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

pub(super) fn to_hash(bytes: &[u8]) -> Result<Hash> {
    bytes.try_into().context("a stored state trie hash is not 32 bytes: the database is corrupt")
}

/// `path` with its bits from `depth` on cleared.
pub(super) fn prefix(depth: usize, path: &Hash) -> Hash {
    let mut prefix = *path;
    for (i, byte) in prefix.iter_mut().enumerate() {
        let kept = depth.saturating_sub(i * 8).min(8);
        *byte &= !(0xffu8.checked_shr(kept as u32).unwrap_or(0));
    }
    prefix
}

/// `path` with bit `depth` set to `value`.
pub(super) fn with_bit(mut path: Hash, depth: usize, value: bool) -> Hash {
    let mask = 0x80 >> (depth % 8);
    if value {
        path[depth / 8] |= mask;
    } else {
        path[depth / 8] &= !mask;
    }
    path
}
