//! The state root: a binary Merkle tree (SHA-256) over the whole committed state, leaves in key
//! order.
//!
//! - leaf     = SHA-256(0x00 ++ u32 LE key length ++ key ++ SHA-256(value))
//! - node     = SHA-256(0x01 ++ left ++ right)
//! - an odd node at the end of a level moves up unchanged (no duplication, so no two different
//!   states share a root by repeating their last leaf);
//! - the empty state's root is 32 zero bytes.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(key: &[u8], value: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update((key.len() as u32).to_le_bytes());
    hasher.update(key);
    hasher.update(Sha256::digest(value));
    hasher.finalize().into()
}

pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return [0; 32];
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut hasher = Sha256::new();
                    hasher.update([0x01]);
                    hasher.update(left);
                    hasher.update(right);
                    hasher.finalize().into()
                }
                [odd] => *odd,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_leaf_is_its_own_root() {
        let leaf = leaf_hash(b"k", b"v");
        assert_eq!(merkle_root(&[leaf]), leaf);
    }

    #[test]
    fn order_value_and_key_boundaries_all_change_the_root() {
        let a = leaf_hash(b"a", b"1");
        let b = leaf_hash(b"b", b"2");
        assert_ne!(merkle_root(&[a, b]), merkle_root(&[b, a]));
        assert_ne!(leaf_hash(b"ab", b"c"), leaf_hash(b"a", b"bc"));
        assert_ne!(leaf_hash(b"a", b"1"), leaf_hash(b"a", b"2"));
    }

    #[test]
    fn repeating_the_last_leaf_gives_a_different_root() {
        let [a, b, c] = [b"a", b"b", b"c"].map(|k| leaf_hash(k, b"v"));
        assert_ne!(merkle_root(&[a, b, c]), merkle_root(&[a, b, c, c]));
    }

    #[test]
    fn the_empty_state_has_the_zero_root() {
        assert_eq!(merkle_root(&[]), [0; 32]);
    }
}
