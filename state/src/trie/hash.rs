//! The state root: a binary Merkle trie (SHA-256) over the committed state, each entry placed by
//! the SHA-256 of its key. Its shape depends only on the set of keys, so a block updates the root
//! by re-hashing the paths to the keys it wrote (about log2(keys) nodes each), never the whole
//! state.
//!
//! - path = SHA-256(key), read from the most significant bit of its first byte;
//! - leaf = SHA-256(0x00 ++ u32 LE key length ++ key ++ SHA-256(value));
//! - the hash of a set of leaves below a path prefix: none → 32 zero bytes; one → its leaf;
//!   leaves on both sides of the next bit → SHA-256(0x01 ++ left ++ right); all on one side →
//!   that side's hash (no hashing along a chain, so two roots never differ by a chain length);
//! - the root is the hash of the whole set: the same however the state was split into blocks.
//!
//! A leaf commits to its key, and its key fixes its path, so the root commits to the set of
//! (key, value) pairs exactly. `state_store` keeps the hash of every subtree holding two or
//! more leaves; [`root_of`] recomputes a root from scratch (the reference the tests check
//! the incremental one against).

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The root of the empty state.
pub const EMPTY: Hash = [0; 32];

pub fn path_of(key: &[u8]) -> Hash {
    Sha256::digest(key).into()
}

pub fn leaf_hash(key: &[u8], value: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update((key.len() as u32).to_le_bytes());
    hasher.update(key);
    hasher.update(Sha256::digest(value));
    hasher.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Bit `depth` of `path` (0 = the most significant bit of byte 0).
pub fn bit(path: &Hash, depth: usize) -> bool {
    path[depth / 8] & (0x80 >> (depth % 8)) != 0
}

/// The subtree below a prefix, as far as its parent's hash depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subtree {
    Empty,
    Single(Hash),
    /// Two or more leaves.
    Many(Hash),
}

impl Subtree {
    pub fn hash(self) -> Hash {
        match self {
            Subtree::Empty => EMPTY,
            Subtree::Single(hash) | Subtree::Many(hash) => hash,
        }
    }

    /// The subtree whose two children (next bit 0, next bit 1) are `left` and `right`.
    pub fn join(left: Subtree, right: Subtree) -> Subtree {
        match (left, right) {
            (Subtree::Empty, only) | (only, Subtree::Empty) => only,
            (left, right) => Subtree::Many(node_hash(&left.hash(), &right.hash())),
        }
    }
}

/// The root of `leaves` (path, leaf hash), computed from scratch. Paths must be distinct.
pub fn root_of(leaves: &mut [(Hash, Hash)]) -> Hash {
    leaves.sort_unstable();
    subtree_of(leaves, 0).hash()
}

/// The subtree of `leaves` (sorted by path, all sharing their first `depth` bits).
pub fn subtree_of(leaves: &[(Hash, Hash)], depth: usize) -> Subtree {
    match leaves {
        [] => Subtree::Empty,
        [(_, leaf)] => Subtree::Single(*leaf),
        _ => {
            assert!(depth < 256, "two leaves share a whole SHA-256 path");
            let split = leaves.partition_point(|(path, _)| !bit(path, depth));
            Subtree::join(subtree_of(&leaves[..split], depth + 1), subtree_of(&leaves[split..], depth + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> (Hash, Hash) {
        (path_of(key.as_bytes()), leaf_hash(key.as_bytes(), value.as_bytes()))
    }

    #[test]
    fn a_single_leaf_is_its_own_root() {
        let leaf = entry("k", "v");
        assert_eq!(root_of(&mut [leaf]), leaf.1);
    }

    #[test]
    fn the_root_is_independent_of_order_but_not_of_keys_or_values() {
        let (a, b, c) = (entry("a", "1"), entry("b", "2"), entry("c", "3"));
        assert_eq!(root_of(&mut [a, b, c]), root_of(&mut [c, a, b]));
        assert_ne!(root_of(&mut [a, b, c]), root_of(&mut [a, b]));
        assert_ne!(root_of(&mut [a, b]), root_of(&mut [a, entry("b", "3")]));
        assert_ne!(leaf_hash(b"ab", b"c"), leaf_hash(b"a", b"bc"));
    }

    #[test]
    fn two_leaves_hash_as_one_node_whatever_prefix_they_share() {
        let (a, b) = (entry("a", "1"), entry("b", "2"));
        let (left, right) = if bit(&a.0, first_differing_bit(&a.0, &b.0)) { (b, a) } else { (a, b) };
        assert_eq!(root_of(&mut [a, b]), node_hash(&left.1, &right.1));
    }

    fn first_differing_bit(a: &Hash, b: &Hash) -> usize {
        (0..256).find(|&depth| bit(a, depth) != bit(b, depth)).unwrap()
    }

    #[test]
    fn the_empty_state_has_the_zero_root() {
        assert_eq!(root_of(&mut []), EMPTY);
    }

    #[test]
    fn bits_are_read_from_the_most_significant_end() {
        let mut path = [0u8; 32];
        path[0] = 0b1000_0000;
        path[1] = 0b0000_0001;
        assert!(bit(&path, 0) && !bit(&path, 1) && bit(&path, 15) && !bit(&path, 8));
    }
}
