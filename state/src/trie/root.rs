//! The state root: a lattice hash (LtHash) of the committed pairs. Each pair's leaf is expanded
//! to a vector of 1,024 16-bit numbers; the state's lattice is their sum, element by element,
//! modulo 2^16, and the root is the SHA-256 of that sum. A sum does not depend on order, so a
//! block updates it by adding its new leaves and subtracting the ones they replace: a commit
//! costs the same whatever the size of the state, with no tree to read or rewrite.
//!
//! - leaf = SHA-256(0x00 ++ u32 LE key length ++ key ++ SHA-256(value));
//! - a leaf's vector = the first 2,048 bytes of BLAKE3's extendable output of the leaf, read as
//!   1,024 u16 LE;
//! - root = SHA-256(the lattice, 2,048 bytes LE) of a non-empty state, 32 zero bytes of the
//!   empty one.
//!
//! The parameters are those studied by Lewi, Kim, Maykov and Weis ("Securing Update Propagation
//! with Homomorphic Hashing", 2019) and used by Solana's accounts lattice hash: finding two sets
//! with the same sum is as hard as a short-integer-solution lattice problem (their estimate:
//! over 200 bits of security). A leaf commits to its key and value, so the root commits to the
//! set of (key, value) pairs. Each key is in the sum once (a commit subtracts the leaf it
//! replaces), so LtHash's known weakness, an element added 2^16 times summing to nothing, cannot
//! arise.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The root of the empty state.
pub const EMPTY: Hash = [0; 32];

/// Numbers in a lattice.
const ELEMENTS: usize = 1024;
/// A lattice's bytes, as stored.
pub const LATTICE_BYTES: usize = 2 * ELEMENTS;

pub fn leaf_hash(key: &[u8], value: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update((key.len() as u32).to_le_bytes());
    hasher.update(key);
    hasher.update(Sha256::digest(value));
    hasher.finalize().into()
}

/// A sum of leaves' vectors: a set of pairs, or what a block adds to one.
#[derive(Clone, PartialEq, Eq)]
pub struct Lattice(Box<[u16; ELEMENTS]>);

impl Default for Lattice {
    fn default() -> Self {
        Self(Box::new([0; ELEMENTS]))
    }
}

impl std::fmt::Debug for Lattice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lattice(root {})", hex::encode(self.root()))
    }
}

impl Lattice {
    /// Adds a leaf to the set.
    pub fn insert(&mut self, leaf: &Hash) {
        self.combine(&vector_of(leaf), u16::wrapping_add);
    }

    /// Takes a leaf out of the set.
    pub fn remove(&mut self, leaf: &Hash) {
        self.combine(&vector_of(leaf), u16::wrapping_sub);
    }

    /// Adds another sum to this one.
    pub fn merge(&mut self, other: &Lattice) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine = mine.wrapping_add(*theirs);
        }
    }

    fn combine(&mut self, vector: &[u8; LATTICE_BYTES], op: fn(u16, u16) -> u16) {
        for (element, bytes) in self.0.iter_mut().zip(vector.chunks_exact(2)) {
            *element = op(*element, u16::from_le_bytes([bytes[0], bytes[1]]));
        }
    }

    pub fn root(&self) -> Hash {
        match self.0.iter().all(|&element| element == 0) {
            true => EMPTY,
            false => Sha256::digest(self.to_bytes()).into(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|element| element.to_le_bytes()).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            bytes.len() == LATTICE_BYTES,
            "the stored state lattice is {} bytes, not {LATTICE_BYTES}: the database is corrupt",
            bytes.len()
        );
        let mut lattice = Self::default();
        for (element, bytes) in lattice.0.iter_mut().zip(bytes.chunks_exact(2)) {
            *element = u16::from_le_bytes([bytes[0], bytes[1]]);
        }
        Ok(lattice)
    }
}

/// A leaf's vector: BLAKE3's extendable output of it.
fn vector_of(leaf: &Hash) -> [u8; LATTICE_BYTES] {
    let mut vector = [0; LATTICE_BYTES];
    blake3::Hasher::new().update(leaf).finalize_xof().fill(&mut vector);
    vector
}

/// The root of a set of pairs (distinct keys), computed from scratch: the reference the tests
/// check a store's root against, and the hashing a commit of the pairs cannot do without.
pub fn root_of<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Hash {
    let mut lattice = Lattice::default();
    for (key, value) in pairs {
        lattice.insert(&leaf_hash(key, value));
    }
    lattice.root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_independent_of_order_but_not_of_keys_or_values() {
        let root = |pairs: &[(&str, &str)]| root_of(pairs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
        assert_eq!(root(&[("a", "1"), ("b", "2"), ("c", "3")]), root(&[("c", "3"), ("a", "1"), ("b", "2")]));
        assert_ne!(root(&[("a", "1"), ("b", "2"), ("c", "3")]), root(&[("a", "1"), ("b", "2")]));
        assert_ne!(root(&[("a", "1"), ("b", "2")]), root(&[("a", "1"), ("b", "3")]));
        assert_ne!(leaf_hash(b"ab", b"c"), leaf_hash(b"a", b"bc"));
    }

    #[test]
    fn the_empty_state_has_the_zero_root_and_removing_every_leaf_returns_to_it() {
        assert_eq!(root_of([]), EMPTY);
        let mut lattice = Lattice::default();
        let (a, b) = (leaf_hash(b"a", b"1"), leaf_hash(b"b", b"2"));
        lattice.insert(&a);
        lattice.insert(&b);
        assert_ne!(lattice.root(), EMPTY);
        lattice.remove(&a);
        assert_eq!(lattice.root(), root_of([(&b"b"[..], &b"2"[..])]));
        lattice.remove(&b);
        assert_eq!(lattice.root(), EMPTY);
    }

    #[test]
    fn a_lattice_round_trips_through_its_bytes_and_sums_merge() {
        let (mut one, mut other) = (Lattice::default(), Lattice::default());
        one.insert(&leaf_hash(b"a", b"1"));
        other.insert(&leaf_hash(b"b", b"2"));
        assert_eq!(Lattice::from_bytes(&one.to_bytes()).unwrap(), one);
        assert!(Lattice::from_bytes(&[0; 10]).unwrap_err().to_string().contains("corrupt"));
        one.merge(&other);
        assert_eq!(one.root(), root_of([(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"2"[..])]));
    }
}
