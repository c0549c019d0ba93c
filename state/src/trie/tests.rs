//! The trie store against references: a root recomputed from scratch, and a depth-first update
//! with a point read per node.

use std::collections::BTreeMap;

use super::hash::*;
use super::node::*;
use super::options::*;
use super::store::*;
use super::reads::*;
use bytes::Bytes;
use rocksdb::{IteratorMode, Options, WriteBatch, DB};


#[test]
fn a_key_flushed_twice_keeps_its_last_value_and_keys_come_out_sorted() {
    let mut flushed = pairs(&[("b".into(), "1".into()), ("a".into(), "2".into()), ("b".into(), "3".into()), ("c".into(), "4".into()), ("b".into(), "5".into())]);
    keep_last_per_key(&mut flushed);
    assert_eq!(flushed, pairs(&[("a".into(), "2".into()), ("b".into(), "5".into()), ("c".into(), "4".into())]));
}

/// The nodes a block rewrites are charged as they are written; over the allowance the block
/// fails before anything is written, and the same block fits a larger allowance.
#[test]
fn a_commit_over_its_node_allowance_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = TrieStore::open(&dir.path().join("db")).unwrap();
    let block: Vec<(String, String)> = (0..1000).map(|i| (format!("k{i}"), "v".into())).collect();
    let error = store.commit_block(1, pairs(&block), Some(10_000)).unwrap_err();
    assert!(error.is::<NodeBudgetExceeded>(), "{error:#}");
    assert_eq!((store.tip().unwrap(), store.get(b"k1").unwrap()), (None, None));
    assert_eq!(store.state_root().unwrap(), [0; 32]);
    // A node is charged about 150 to 210 bytes (twice its entry, plus the memtable's 48), and
    // 1000 keys make a few thousand nodes.
    let root = store.commit_block(1, pairs(&block), Some(1_000_000)).unwrap();
    let mut leaves: Vec<_> = block.iter().map(|(k, v)| (path_of(k.as_bytes()), leaf_hash(k.as_bytes(), v.as_bytes()))).collect();
    assert_eq!(root, root_of(&mut leaves));
}

fn pairs(items: &[(String, String)]) -> Vec<(Bytes, Bytes)> {
    items.iter().map(|(k, v)| (Bytes::from(k.clone()), Bytes::from(v.clone()))).collect()
}

/// A small deterministic generator (xorshift), so a failure names a reproducible case.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn the_incremental_root_equals_the_root_recomputed_from_scratch() {
    for seed in 1..=20u64 {
        let dir = tempfile::tempdir().unwrap();
        let store = TrieStore::open(&dir.path().join("db")).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut state = BTreeMap::new();
        for height in 0..12 {
            // Blocks of 0 to 40 writes over 60 keys: new keys, overwrites and repeats.
            let block: Vec<(String, String)> = (0..rng.next() % 41)
                .map(|_| (format!("k{}", rng.next() % 60), format!("v{}", rng.next() % 5)))
                .collect();
            for (key, value) in &block {
                state.insert(key.clone(), value.clone());
            }
            let root = store.commit_block(height, pairs(&block), None).unwrap();
            let mut leaves: Vec<_> = state.iter().map(|(k, v)| (path_of(k.as_bytes()), leaf_hash(k.as_bytes(), v.as_bytes()))).collect();
            assert_eq!(root, root_of(&mut leaves), "seed {seed}, height {height}");
            assert_eq!(store.state_root().unwrap(), root, "seed {seed}, height {height}");
        }
    }
}

/// The update as it was before it went a depth at a time: depth first, a point read of every
/// node on and beside the paths as it reaches it, each node written as it is hashed. What
/// [`TrieUpdate`] is checked against.
fn reference_commit(store: &TrieStore, height: u32, mut pairs: Vec<(Bytes, Bytes)>) -> (Hash, u64) {
    keep_last_per_key(&mut pairs);
    let mut batch = WriteBatch::default();
    let mut leaves = Vec::new();
    for (key, value) in &pairs {
        store.put_value(&mut batch, key, value);
        leaves.push((path_of(key), leaf_hash(key, value)));
    }
    leaves.sort_unstable();
    let mut nodes = NodeWriter { batch: &mut batch, nodes: store.cf(NODES), allowance: None, charged: 0 };
    let root = match leaves.is_empty() {
        true => store.state_root().unwrap(),
        false => reference_update(store, 0, &leaves, &mut nodes).hash(),
    };
    let charged = nodes.charged;
    batch.put_cf(store.cf(META), format!("root/{height:010}"), root);
    batch.put_cf(store.cf(META), TIP, height.to_le_bytes());
    store.db.write(batch).unwrap();
    (root, charged)
}

fn reference_update(store: &TrieStore, depth: usize, updates: &[(Hash, Hash)], nodes: &mut NodeWriter) -> Subtree {
    let &(path, _) = updates.first().unwrap();
    match store.nodes().node(depth, &path).unwrap() {
        Some(Node::Branch(_)) => {
            let split = updates.partition_point(|(path, _)| !bit(path, depth));
            let mut sides = [Subtree::Empty; 2];
            for (side, updates) in [&updates[..split], &updates[split..]].into_iter().enumerate() {
                sides[side] = match updates.is_empty() {
                    true => Node::subtree(store.nodes().node(depth + 1, &with_bit(path, depth, side == 1)).unwrap()),
                    false => reference_update(store, depth + 1, updates, nodes),
                };
            }
            let subtree = Subtree::join(sides[0], sides[1]);
            nodes.put(depth, &path, Node::Branch(subtree.hash())).unwrap();
            subtree
        }
        Some(Node::Leaf(existing, leaf)) => {
            let mut leaves = updates.to_vec();
            if let Err(at) = leaves.binary_search_by(|(p, _)| p.cmp(&existing)) {
                leaves.insert(at, (existing, leaf));
            }
            reference_build(depth, &leaves, nodes)
        }
        None => reference_build(depth, updates, nodes),
    }
}

fn reference_build(depth: usize, leaves: &[(Hash, Hash)], nodes: &mut NodeWriter) -> Subtree {
    let &(path, leaf) = leaves.first().unwrap();
    if leaves.len() == 1 {
        nodes.put(depth, &path, Node::Leaf(path, leaf)).unwrap();
        return Subtree::Single(leaf);
    }
    let split = leaves.partition_point(|(path, _)| !bit(path, depth));
    let mut sides = [Subtree::Empty; 2];
    for (side, leaves) in [&leaves[..split], &leaves[split..]].into_iter().enumerate() {
        if !leaves.is_empty() {
            sides[side] = reference_build(depth + 1, leaves, nodes);
        }
    }
    let subtree = Subtree::join(sides[0], sides[1]);
    nodes.put(depth, &path, Node::Branch(subtree.hash())).unwrap();
    subtree
}

/// Every entry of every family, for comparing two stores.
fn contents(store: &TrieStore) -> Vec<(&'static str, Box<[u8]>, Box<[u8]>)> {
    FAMILIES
        .iter()
        .flat_map(|family| store.db.iterator_cf(store.cf(family), IteratorMode::Start).map(move |entry| {
            let (key, value) = entry.unwrap();
            (*family, key, value)
        }))
        .collect()
}

/// Random histories of new keys, overwrites (with the same or another value), keys repeated
/// within a block and empty blocks, over a small and a larger key space: going a depth at a
/// time gives the same roots, the same charges and byte-identical stores as going depth first
/// with point reads.
#[test]
fn a_depth_at_a_time_commits_exactly_what_depth_first_with_point_reads_did() {
    for seed in 1..=12u64 {
        let dir = tempfile::tempdir().unwrap();
        let batched = TrieStore::open(&dir.path().join("batched")).unwrap();
        let point = TrieStore::open(&dir.path().join("point")).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let space = [50, 5_000][seed as usize % 2];
        let mut state = BTreeMap::new();
        for height in 0..25 {
            let writes = [0, 1, 3, 40, 400][(rng.next() % 5) as usize];
            let block: Vec<(String, String)> =
                (0..writes).map(|_| (format!("/k/{}", rng.next() % space), format!("v{}", rng.next() % 3))).collect();
            state.extend(block.iter().cloned());
            let (root, charged) = batched.commit(height, pairs(&block), None).unwrap();
            assert_eq!((root, charged), reference_commit(&point, height, pairs(&block)), "seed {seed}, height {height}");
            let mut leaves: Vec<_> = state.iter().map(|(k, v)| (path_of(k.as_bytes()), leaf_hash(k.as_bytes(), v.as_bytes()))).collect();
            assert_eq!(root, root_of(&mut leaves), "seed {seed}, height {height}");
        }
        assert!(contents(&batched) == contents(&point), "seed {seed}: the stores differ");
    }
}

/// Blocks large enough for a commit to hash their leaves and subtrees, and look up their
/// nodes, on every core this machine has (`parallel`) commit exactly what the reference,
/// one thread and a point read at a time, commits.
#[test]
fn blocks_spread_over_the_cores_commit_what_one_thread_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (spread, point) = (TrieStore::open(&dir.path().join("spread")).unwrap(), TrieStore::open(&dir.path().join("point")).unwrap());
    let mut rng = Rng(0x3c6e_f372_fe94_f82b);
    for height in 0..4 {
        let block: Vec<(String, String)> = (0..6000).map(|_| (format!("/k/{}", rng.next() % 20_000), format!("v{}", rng.next() % 3))).collect();
        assert_eq!(spread.commit(height, pairs(&block), None).unwrap(), reference_commit(&point, height, pairs(&block)), "height {height}");
    }
    assert!(contents(&spread) == contents(&point), "the stores differ");
}

/// Every depth of a trie read both ways, at keys that are there and keys that are not (dense
/// runs, sparse ones, the first and last of a depth): a walk finds what a multi-get finds.
#[test]
fn walking_a_depth_reads_what_looking_each_key_up_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = TrieStore::open(&dir.path().join("db")).unwrap();
    let mut rng = Rng(0x5851_f42d_4c95_7f2d);
    for height in 0..6 {
        let block: Vec<(String, String)> = (0..600).map(|_| (format!("/k/{}", rng.next() % 3000), format!("{height}"))).collect();
        store.commit_block(height, pairs(&block), None).unwrap();
        if height == 2 {
            store.sync().unwrap(); // some depths in a table file, the rest in the memtable
        }
    }
    for depth in 0..24 {
        for every in [1, 2, 7, 300] {
            let mut paths: Vec<Hash> = (0..4000u32).step_by(every).map(|i| path_of(&i.to_le_bytes())).collect();
            paths.extend([[0; 32], [0xff; 32]]);
            let mut keys: Vec<NodeKey> = paths.iter().map(|path| NodeKey::new(depth, path)).collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            keys.dedup();
            let walked = store.nodes().read(depth, &keys, Lookup::Walk).unwrap();
            assert_eq!(walked, store.nodes().read(depth, &keys, Lookup::MultiGet).unwrap(), "depth {depth}, every {every}");
            assert!(depth > 10 || every > 1 || walked.iter().any(Option::is_some), "depth {depth}: nothing found");
        }
    }
}

/// A block's charge is the sum of its nodes' charges, so the same block over the same state
/// fails at the same allowance however its nodes are reached: one byte under what it is
/// charged fails, exactly that fits.
#[test]
fn a_block_fits_exactly_the_allowance_it_is_charged() {
    let dir = tempfile::tempdir().unwrap();
    let history: Vec<Vec<(String, String)>> =
        (0..4).map(|h| (0..300).map(|i| (format!("/k/{}", (i * 7 + h * 131) % 700), format!("{h}"))).collect()).collect();
    let (store, reference) = (TrieStore::open(&dir.path().join("a")).unwrap(), TrieStore::open(&dir.path().join("b")).unwrap());
    for (height, block) in history.iter().enumerate() {
        let (_, charged) = reference_commit(&reference, height as u32, pairs(block));
        let error = store.commit(height as u32, pairs(block), Some(charged - 1)).unwrap_err();
        assert!(error.is::<NodeBudgetExceeded>(), "{error:#}");
        assert_eq!(store.commit(height as u32, pairs(block), Some(charged)).unwrap().1, charged);
    }
    assert!(contents(&store) == contents(&reference));
}

/// Every value's length reads back from its record, an overwritten one its new length, and
/// a missing key has none.
#[test]
fn every_value_length_reads_back_from_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = TrieStore::open(&dir.path().join("db")).unwrap();
    let large = "x".repeat(memory::BLOB_FROM as usize);
    let block = [("small", "abc"), ("empty", ""), ("large", large.as_str())];
    store.commit_block(1, pairs(&block.map(|(k, v)| (k.to_string(), v.to_string()))), None).unwrap();
    let lengths = |keys: &[&str]| keys.iter().map(|key| store.value_len(key.as_bytes()).unwrap()).collect::<Vec<_>>();
    assert_eq!(lengths(&["small", "empty", "large", "missing"]), [Some(3), Some(0), Some(memory::BLOB_FROM), None]);
    store.commit_block(2, pairs(&[("large".into(), "now small".into())]), None).unwrap();
    assert_eq!(lengths(&["large"]), [Some(9)]);
    let records = contents(&store).into_iter().filter(|(family, key, _)| *family == META && key.starts_with(LENGTH_PREFIX)).count();
    assert_eq!(records, 3);
}

#[test]
fn the_root_does_not_depend_on_how_the_state_was_split_into_blocks() {
    let items: Vec<(String, String)> = (0..500).map(|i| (format!("/k/{i}"), format!("{}", i * 7))).collect();
    let dir = tempfile::tempdir().unwrap();
    let one = TrieStore::open(&dir.path().join("one")).unwrap();
    let many = TrieStore::open(&dir.path().join("many")).unwrap();
    let root = one.commit_block(1, pairs(&items), None).unwrap();
    let mut last = [0; 32];
    for (height, chunk) in items.chunks(37).enumerate() {
        last = many.commit_block(height as u32, pairs(chunk), None).unwrap();
    }
    assert_eq!(root, last);
}

#[test]
fn prefixes_and_node_keys_keep_only_the_first_bits() {
    let path = [0xff; 32];
    assert_eq!(prefix(0, &path), [0; 32]);
    assert_eq!(prefix(3, &path)[..2], [0b1110_0000, 0]);
    assert_eq!(prefix(256, &path), path);
    assert_eq!(NodeKey::new(0, &path).as_bytes(), [0, 0]);
    assert_eq!(NodeKey::new(9, &path).as_bytes(), [0, 9, 0xff, 0x80]);
    assert_eq!(NodeKey::new(256, &path).as_bytes(), [[1, 0].as_slice(), &path].concat());
}

#[test]
fn a_database_of_another_layout_is_refused_with_its_families_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    drop(DB::open_cf(&options, dir.path(), ["default", "leaves", "meta"]).unwrap());
    let error = TrieStore::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains("\"leaves\"") && error.contains("another version"), "{error}");
}
