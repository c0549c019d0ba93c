//! The committed state in RocksDB. Column families:
//! - `default`: the guest's keys and values, exactly as flushed;
//! - `nodes`: the state trie (see `state_root`), keyed `depth (u16 BE) ++ path prefix`: every
//!   subtree holding two or more leaves as `0x01 ++ hash`, and every leaf, at the top of the
//!   subtree it is alone in, as `0x00 ++ path ++ leaf hash`. A block re-hashes only the paths to
//!   the keys it wrote, reading the nodes beside them with point lookups;
//! - `meta`: `tip` (last committed height) and `root/{height}` (state root after that height).
//!
//! A block is committed with one `WriteBatch` holding its pairs, their leaves and trie nodes,
//! its root and the new tip: after a crash the database is at a block boundary, never inside a
//! block. Batches go to the write-ahead log without an fsync each (a killed process loses
//! nothing: the log is in the OS's hands); [`StateStore::sync`] makes them durable, once per run.
//! A machine crash before that may lose the last blocks, never part of one (RocksDB recovers the
//! log to a consistent point), and `tip` says where to resume. Keys are never deleted (the ABI has no delete), so a subtree never shrinks.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use prost::bytes::Bytes;
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, DB};

use crate::state_root::{bit, leaf_hash, path_of, Hash, Subtree};

const NODES: &str = "nodes";
const META: &str = "meta";
const FAMILIES: [&str; 3] = ["default", NODES, META];

/// A stored trie node.
enum Node {
    /// Two or more leaves below.
    Branch(Hash),
    /// The only leaf below: its path and leaf hash.
    Leaf(Hash, Hash),
}
const TIP: &[u8] = b"tip";

#[derive(Clone)]
pub struct StateStore {
    db: Arc<DB>,
}

impl StateStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.join("CURRENT").exists() {
            Self::create(dir)?;
        }
        check_families(dir)?;
        let db = DB::open_cf_descriptors(&Options::default(), dir, Self::families())
            .with_context(|| format!("opening RocksDB in {}", dir.display()))?;
        Ok(Self { db: Arc::new(db) })
    }

    fn families() -> [ColumnFamilyDescriptor; 3] {
        FAMILIES.map(|name| ColumnFamilyDescriptor::new(name, Self::family_options(name)))
    }

    /// Trie lookups often miss (an empty side): a Bloom filter answers those without reading.
    fn family_options(name: &str) -> Options {
        let mut options = Options::default();
        if name == NODES {
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_bloom_filter(10.0, false);
            options.set_block_based_table_factory(&table);
        }
        options
    }

    /// Creates an empty store with all its column families beside `dir` and renames it into
    /// place, so a process killed while creating it never leaves a half-made database at `dir`.
    fn create(dir: &Path) -> Result<()> {
        let creating = dir.with_extension("creating");
        let _ = std::fs::remove_dir_all(&creating);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = DB::open_cf_descriptors(&options, &creating, Self::families())
            .with_context(|| format!("creating RocksDB in {}", creating.display()))?;
        drop(db);
        std::fs::rename(&creating, dir).with_context(|| format!("moving the new database into {}", dir.display()))
    }

    /// Opens an existing store without taking the write lock (for `dump` and `view`).
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        anyhow::ensure!(
            dir.join("CURRENT").exists(),
            "{} is not a RocksDB directory (no CURRENT file)",
            dir.display()
        );
        check_families(dir)?;
        let db = DB::open_cf_for_read_only(&Options::default(), dir, FAMILIES, false)
            .with_context(|| format!("opening RocksDB in {} read-only", dir.display()))?;
        Ok(Self { db: Arc::new(db) })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column family created at open")
    }

    /// The committed value under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).context("reading from RocksDB")
    }

    pub fn tip(&self) -> Result<Option<u32>> {
        let tip = self.db.get_cf(self.cf(META), TIP).context("reading the tip height")?;
        Ok(tip.and_then(|bytes| Some(u32::from_le_bytes(bytes.as_slice().try_into().ok()?))))
    }

    /// The root of the committed state.
    pub fn state_root(&self) -> Result<Hash> {
        Ok(self.stored_subtree(0, &[0; 32])?.hash())
    }

    /// Commits a block's pairs (in flush order; a later pair for a key wins) in one batch and
    /// returns the new state root.
    pub fn commit_block(&self, height: u32, pairs: Vec<(Bytes, Bytes)>) -> Result<Hash> {
        let mut latest: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
        for (key, value) in &pairs {
            latest.insert(key, value);
        }
        let mut batch = WriteBatch::default();
        let mut leaves = Vec::with_capacity(latest.len());
        for (key, value) in &latest {
            batch.put(key, value);
            leaves.push((path_of(key), leaf_hash(key, value)));
        }
        // The batch holds its own copy: free the flushed bytes before RocksDB copies them again
        // into its memtable, so a block costs at most twice its flushes, never three times.
        drop(latest);
        drop(pairs);
        leaves.sort_unstable();
        let root = match leaves.is_empty() {
            true => self.state_root()?,
            false => self.update_subtree(0, &leaves, &mut batch)?.hash(),
        };
        batch.put_cf(self.cf(META), format!("root/{height:010}"), root);
        batch.put_cf(self.cf(META), TIP, height.to_le_bytes());
        self.db.write(batch).context("committing the block to RocksDB")?;
        Ok(root)
    }

    /// Makes every committed block durable (fsyncs the write-ahead log).
    pub fn sync(&self) -> Result<()> {
        let cfs: Vec<_> = FAMILIES.iter().map(|name| self.cf(name)).collect();
        self.db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default()).context("flushing RocksDB's memtables")
    }

    /// The subtree at `depth` holding `updates` (sorted, distinct paths sharing their first
    /// `depth` bits) after they are applied; every node that changes goes into `batch`.
    fn update_subtree(&self, depth: usize, updates: &[(Hash, Hash)], batch: &mut WriteBatch) -> Result<Subtree> {
        let &(path, _) = updates.first().expect("called with updates");
        match self.node(depth, &path)? {
            // Two or more leaves already: only the sides with updates change.
            Some(Node::Branch(_)) => {
                let split = updates.partition_point(|(path, _)| !bit(path, depth));
                let mut sides = [Subtree::Empty; 2];
                for (side, updates) in [&updates[..split], &updates[split..]].into_iter().enumerate() {
                    sides[side] = if updates.is_empty() {
                        let mut sibling = path;
                        set_bit(&mut sibling, depth, side == 1);
                        self.stored_subtree(depth + 1, &sibling)?
                    } else {
                        self.update_subtree(depth + 1, updates, batch)?
                    };
                }
                let subtree = Subtree::join(sides[0], sides[1]);
                self.put_node(batch, depth, &path, Node::Branch(subtree.hash()));
                Ok(subtree)
            }
            // One leaf so far: the new subtree is that leaf (unless updated) and the updates.
            Some(Node::Leaf(existing, leaf)) => {
                let mut leaves = updates.to_vec();
                if let Err(at) = leaves.binary_search_by(|(p, _)| p.cmp(&existing)) {
                    leaves.insert(at, (existing, leaf));
                }
                self.build_subtree(depth, &leaves, batch)
            }
            None => self.build_subtree(depth, updates, batch),
        }
    }

    /// The subtree of `leaves` (sorted by path, at least one) built from scratch, its nodes into `batch`.
    fn build_subtree(&self, depth: usize, leaves: &[(Hash, Hash)], batch: &mut WriteBatch) -> Result<Subtree> {
        let &(path, leaf) = leaves.first().expect("called with leaves");
        if leaves.len() == 1 {
            self.put_node(batch, depth, &path, Node::Leaf(path, leaf));
            return Ok(Subtree::Single(leaf));
        }
        anyhow::ensure!(depth < 256, "two keys share a whole SHA-256 path");
        let split = leaves.partition_point(|(path, _)| !bit(path, depth));
        let mut sides = [Subtree::Empty; 2];
        for (side, leaves) in [&leaves[..split], &leaves[split..]].into_iter().enumerate() {
            if !leaves.is_empty() {
                sides[side] = self.build_subtree(depth + 1, leaves, batch)?;
            }
        }
        let subtree = Subtree::join(sides[0], sides[1]);
        self.put_node(batch, depth, &path, Node::Branch(subtree.hash()));
        Ok(subtree)
    }

    /// The committed subtree at `depth` on the way to `path`.
    fn stored_subtree(&self, depth: usize, path: &Hash) -> Result<Subtree> {
        Ok(match self.node(depth, path)? {
            Some(Node::Branch(hash)) => Subtree::Many(hash),
            Some(Node::Leaf(_, leaf)) => Subtree::Single(leaf),
            None => Subtree::Empty,
        })
    }

    /// The stored node at `depth` on the way to `path`, if its subtree holds any leaf.
    fn node(&self, depth: usize, path: &Hash) -> Result<Option<Node>> {
        let stored = self.db.get_pinned_cf(self.cf(NODES), node_key(depth, path)).context("reading a state trie node")?;
        let Some(bytes) = stored else { return Ok(None) };
        Ok(Some(match (bytes.first(), bytes.len()) {
            (Some(0x01), 33) => Node::Branch(to_hash(&bytes[1..])?),
            (Some(0x00), 65) => Node::Leaf(to_hash(&bytes[1..33])?, to_hash(&bytes[33..])?),
            _ => anyhow::bail!("a state trie node of {} bytes is malformed: the database is corrupt", bytes.len()),
        }))
    }

    fn put_node(&self, batch: &mut WriteBatch, depth: usize, path: &Hash, node: Node) {
        let value = match node {
            Node::Branch(hash) => [&[0x01][..], &hash].concat(),
            Node::Leaf(path, leaf) => [&[0x00][..], &path, &leaf].concat(),
        };
        batch.put_cf(self.cf(NODES), node_key(depth, path), value);
    }

    /// Every committed pair in key order.
    pub fn entries(&self) -> impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>)>> + '_ {
        // One pass over everything: keep the blocks it reads out of the cache (memory stays flat
        // however big the state) and read ahead.
        let mut options = rocksdb::ReadOptions::default();
        options.fill_cache(false);
        options.set_readahead_size(2 << 20);
        self.db
            .iterator_opt(IteratorMode::Start, options)
            .map(|entry| entry.context("iterating the committed state"))
    }
}

fn to_hash(bytes: &[u8]) -> Result<Hash> {
    bytes.try_into().context("a stored state trie hash is not 32 bytes: the database is corrupt")
}

/// `path` with its bits from `depth` on cleared.
fn prefix(depth: usize, path: &Hash) -> Hash {
    let mut prefix = *path;
    for (i, byte) in prefix.iter_mut().enumerate() {
        let kept = depth.saturating_sub(i * 8).min(8);
        *byte &= !(0xffu8.checked_shr(kept as u32).unwrap_or(0));
    }
    prefix
}

fn set_bit(path: &mut Hash, depth: usize, value: bool) {
    let mask = 0x80 >> (depth % 8);
    if value {
        path[depth / 8] |= mask;
    } else {
        path[depth / 8] &= !mask;
    }
}

/// The `nodes` key of the subtree at `depth` on the way to `path`: the depth, then the prefix's bytes.
fn node_key(depth: usize, path: &Hash) -> Vec<u8> {
    let mut key = Vec::with_capacity(34);
    key.extend_from_slice(&(depth as u16).to_be_bytes());
    key.extend_from_slice(&prefix(depth, path)[..depth.div_ceil(8)]);
    key
}

/// Refuses a database made by another layout (e.g. an older host-runner's) with a clear message.
fn check_families(dir: &Path) -> Result<()> {
    let mut found = DB::list_cf(&Options::default(), dir).with_context(|| format!("reading the column families of {}", dir.display()))?;
    let mut expected: Vec<String> = FAMILIES.iter().map(|f| f.to_string()).collect();
    found.sort();
    expected.sort();
    anyhow::ensure!(
        found == expected,
        "{} has column families {found:?}, this host-runner expects {expected:?}: it was written by another version; index into a new directory",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_root::root_of;

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
            let store = StateStore::open(&dir.path().join("db")).unwrap();
            let mut rng = Rng(seed * 0x9e37_79b9_7f4a_7c15);
            let mut state = BTreeMap::new();
            for height in 0..12 {
                // Blocks of 0 to 40 writes over 60 keys: new keys, overwrites and repeats.
                let block: Vec<(String, String)> = (0..rng.next() % 41)
                    .map(|_| (format!("k{}", rng.next() % 60), format!("v{}", rng.next() % 5)))
                    .collect();
                for (key, value) in &block {
                    state.insert(key.clone(), value.clone());
                }
                let root = store.commit_block(height, pairs(&block)).unwrap();
                let mut leaves: Vec<_> = state.iter().map(|(k, v)| (path_of(k.as_bytes()), leaf_hash(k.as_bytes(), v.as_bytes()))).collect();
                assert_eq!(root, root_of(&mut leaves), "seed {seed}, height {height}");
                assert_eq!(store.state_root().unwrap(), root, "seed {seed}, height {height}");
            }
        }
    }

    #[test]
    fn the_root_does_not_depend_on_how_the_state_was_split_into_blocks() {
        let items: Vec<(String, String)> = (0..500).map(|i| (format!("/k/{i}"), format!("{}", i * 7))).collect();
        let dir = tempfile::tempdir().unwrap();
        let one = StateStore::open(&dir.path().join("one")).unwrap();
        let many = StateStore::open(&dir.path().join("many")).unwrap();
        let root = one.commit_block(1, pairs(&items)).unwrap();
        let mut last = [0; 32];
        for (height, chunk) in items.chunks(37).enumerate() {
            last = many.commit_block(height as u32, pairs(chunk)).unwrap();
        }
        assert_eq!(root, last);
    }

    #[test]
    fn prefixes_and_node_keys_keep_only_the_first_bits() {
        let path = [0xff; 32];
        assert_eq!(prefix(0, &path), [0; 32]);
        assert_eq!(prefix(3, &path)[..2], [0b1110_0000, 0]);
        assert_eq!(prefix(256, &path), path);
        assert_eq!(node_key(0, &path), [0, 0]);
        assert_eq!(node_key(9, &path), [0, 9, 0xff, 0x80]);
    }

    #[test]
    fn a_database_of_another_layout_is_refused_with_its_families_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        drop(DB::open_cf(&options, dir.path(), ["default", "leaves", "meta"]).unwrap());
        let error = StateStore::open(dir.path()).err().unwrap().to_string();
        assert!(error.contains("\"leaves\"") && error.contains("another version"), "{error}");
    }
}
