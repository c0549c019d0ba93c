//! The store against its reference: the root recomputed from scratch over the whole state.

use std::collections::BTreeMap;

use super::options::*;
use super::root::*;
use super::store::*;
use bytes::Bytes;
use crate::Found;
use rocksdb::{IteratorMode, Options, DB};

#[test]
fn a_key_flushed_twice_keeps_its_last_value_and_keys_come_out_sorted() {
    let mut flushed = pairs(&[("b".into(), "1".into()), ("a".into(), "2".into()), ("b".into(), "3".into()), ("c".into(), "4".into()), ("b".into(), "5".into())]);
    keep_last_per_key(&mut flushed);
    assert_eq!(flushed, pairs(&[("a".into(), "2".into()), ("b".into(), "5".into()), ("c".into(), "4".into())]));
}

fn pairs(items: &[(String, String)]) -> Vec<(Bytes, Bytes)> {
    items.iter().map(|(k, v)| (Bytes::from(k.clone()), Bytes::from(v.clone()))).collect()
}

fn root_of_state(state: &BTreeMap<String, String>) -> Hash {
    root_of(state.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
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

/// Random histories of new keys, overwrites (with the same or another value, small or large), keys repeated
/// within a block, empty blocks and blocks of several chunks (hashed on several cores), over a
/// small and a larger key space, the store reopened halfway: every root equals the root of the
/// whole state recomputed from scratch.
#[test]
fn the_incremental_root_equals_the_root_recomputed_from_scratch() {
    for seed in 1..=8u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TrieStore::open(&dir.path().join("db")).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let space = [60, 20_000][seed as usize % 2];
        let mut state = BTreeMap::new();
        for height in 0..14 {
            if height == 7 {
                drop(store);
                store = TrieStore::open(&dir.path().join("db")).unwrap();
            }
            let writes = [0, 1, 3, 40, 3000][(rng.next() % 5) as usize];
            // Values small and large (with a record), either side of the threshold, so a key
            // may change from one to the other.
            let value = |rng: &mut Rng| (rng.next() % 3).to_string().repeat([2, 255, 256, 400][(rng.next() % 4) as usize]);
            let block: Vec<(String, String)> = (0..writes).map(|_| (format!("/k/{}", rng.next() % space), value(&mut rng))).collect();
            state.extend(block.iter().cloned());
            let root = store.commit_block(height, pairs(&block)).unwrap();
            assert_eq!(root, root_of_state(&state), "seed {seed}, height {height}");
            assert_eq!((store.state_root().unwrap(), store.tip().unwrap()), (root, Some(height)), "seed {seed}, height {height}");
        }
        assert_records_match(&store, &state);
    }
}

/// Every key of `state` has a record exactly when its value has `RECORDED_FROM` bytes or more,
/// holding that value's length and leaf; no other record is left; every length reads back.
fn assert_records_match(store: &TrieStore, state: &BTreeMap<String, String>) {
    let records: BTreeMap<Box<[u8]>, Box<[u8]>> = store.db.iterator_cf(store.cf(RECORDS), IteratorMode::Start).map(Result::unwrap).collect();
    let expected: BTreeMap<Box<[u8]>, Box<[u8]>> = state
        .iter()
        .filter(|(_, value)| value.len() >= RECORDED_FROM)
        .map(|(key, value)| {
            let record = Record { len: value.len() as u32, leaf: leaf_hash(key.as_bytes(), value.as_bytes()) };
            (key.as_bytes().into(), record.encode().as_slice().into())
        })
        .collect();
    assert!(records == expected, "{} records, {} expected", records.len(), expected.len());
    for (key, value) in state {
        assert_eq!(store.find(key.as_bytes()).unwrap().map(|found| found.len()), Some(value.len() as u64), "{key}");
    }
}

/// Every value's length reads back, a large one's from its record, an overwritten one's its new
/// length, and a missing key has none; a large value overwritten by a small one loses its record.
#[test]
fn every_value_length_reads_back_and_only_large_values_have_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = TrieStore::open(&dir.path().join("db")).unwrap();
    let records = || store.db.iterator_cf(store.cf(RECORDS), IteratorMode::Start).count();
    let large = "x".repeat(memory::BLOB_FROM as usize);
    let block = [("small", "abc"), ("empty", ""), ("large", large.as_str())];
    store.commit_block(1, pairs(&block.map(|(k, v)| (k.to_string(), v.to_string())))).unwrap();
    let lengths = |keys: &[&str]| keys.iter().map(|key| store.find(key.as_bytes()).unwrap().map(|found| found.len())).collect::<Vec<_>>();
    assert_eq!(lengths(&["small", "empty", "large", "missing"]), [Some(3), Some(0), Some(memory::BLOB_FROM), None]);
    assert_eq!(records(), 1);
    // A small value is found with its bytes; a large one by its record alone.
    assert!(matches!(store.find(b"small").unwrap(), Some(Found::Value(value)) if &*value == b"abc"));
    assert!(matches!(store.find(b"large").unwrap(), Some(Found::Large(_))));
    store.commit_block(2, pairs(&[("large".into(), "now small".into())])).unwrap();
    assert_eq!((lengths(&["large"]), records()), (vec![Some(9)], 0));
    store.commit_block(3, pairs(&[("small".into(), "y".repeat(RECORDED_FROM))])).unwrap();
    assert_eq!((lengths(&["small"]), records()), (vec![Some(RECORDED_FROM as u64)], 1));
}

#[test]
fn the_root_does_not_depend_on_how_the_state_was_split_into_blocks() {
    let items: Vec<(String, String)> = (0..5000).map(|i| (format!("/k/{i}"), format!("{}", i * 7))).collect();
    let dir = tempfile::tempdir().unwrap();
    let one = TrieStore::open(&dir.path().join("one")).unwrap();
    let many = TrieStore::open(&dir.path().join("many")).unwrap();
    let root = one.commit_block(1, pairs(&items)).unwrap();
    let mut last = [0; 32];
    for (height, chunk) in items.chunks(37).enumerate() {
        last = many.commit_block(height as u32, pairs(chunk)).unwrap();
    }
    assert_eq!(root, last);
}

/// A block that rewrites keys with their stored values changes nothing but the tip, and one
/// that puts a key back to an earlier value puts the root back too.
#[test]
fn rewriting_what_is_stored_keeps_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = TrieStore::open(&dir.path().join("db")).unwrap();
    let before = store.commit_block(1, pairs(&[("a".into(), "1".into()), ("b".into(), "2".into())])).unwrap();
    assert_eq!(store.commit_block(2, pairs(&[("a".into(), "1".into())])).unwrap(), before);
    assert_ne!(store.commit_block(3, pairs(&[("a".into(), "9".into())])).unwrap(), before);
    assert_eq!(store.commit_block(4, pairs(&[("a".into(), "1".into())])).unwrap(), before);
}

#[test]
fn a_database_of_another_layout_is_refused_with_its_families_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // The families of the layouts before this one: a binary Merkle trie in `nodes`, and before
    // it each key's leaf in `leaves`.
    for (old, family) in [("trie", "nodes"), ("leaves", "leaves")] {
        let dir = dir.path().join(old);
        drop(DB::open_cf(&options, &dir, ["default", family, "meta"]).unwrap());
        let error = TrieStore::open(&dir).err().unwrap().to_string();
        assert!(error.contains(&format!("\"{family}\"")) && error.contains("another version"), "{error}");
    }
}

/// A store is created in place, marked until all its families exist: a creation killed after
/// RocksDB made its first family is completed by the next open; a directory holding other files
/// and no database is refused untouched.
#[test]
fn an_interrupted_creation_is_completed_and_a_foreign_directory_refused() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new");
    let store = TrieStore::open(&new).unwrap();
    let root = store.commit_block(1, pairs(&[("a".into(), "1".into())])).unwrap();
    drop(store);
    assert!(!new.join(CREATING).exists(), "a finished creation leaves its marker");

    // Killed after RocksDB created the database with its default family alone.
    let interrupted = dir.path().join("interrupted");
    std::fs::create_dir(&interrupted).unwrap();
    std::fs::write(interrupted.join(CREATING), b"").unwrap();
    let mut options = Options::default();
    options.create_if_missing(true);
    drop(DB::open(&options, &interrupted).unwrap());
    assert!(TrieStore::open_read_only(&interrupted).err().unwrap().to_string().contains("not finished being created"));
    let store = TrieStore::open(&interrupted).unwrap();
    assert_eq!(store.commit_block(1, pairs(&[("a".into(), "1".into())])).unwrap(), root);
    drop(store);
    assert!(!interrupted.join(CREATING).exists());
    assert_eq!(TrieStore::open_read_only(&interrupted).unwrap().state_root().unwrap(), root);

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    let error = TrieStore::open(&foreign).err().unwrap().to_string();
    assert!(error.contains("holds files but no database"), "{error}");
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
}
