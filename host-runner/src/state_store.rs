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
/// In `meta`: present when the store keeps every value's length (`len/` ++ key = u32 LE).
const VALUE_LENGTHS: &[u8] = b"value-lengths";

fn length_key(key: &[u8]) -> Vec<u8> {
    [b"len/".as_slice(), key].concat()
}
/// A batch entry's bytes beside its key and value: a tag and two length varints.
const BATCH_ENTRY_OVERHEAD: usize = 11;
/// Batch capacity reserved for the trie nodes a pair adds (a node is about 70 bytes; a block of
/// N keys rewrites about N × (log2(state / N) + 2) of them).
const NODES_RESERVED_PER_PAIR: usize = 8 * 80;

/// What a trie node written by a commit costs the host: its entry in the batch and again in the
/// memtable, plus the memtable's bookkeeping for the entry.
pub fn node_charge(key: usize, value: usize) -> u64 {
    2 * (key + value + BATCH_ENTRY_OVERHEAD) as u64 + MEMTABLE_ENTRY_OVERHEAD
}

/// A memtable entry's bytes beside its key and value (skip-list node, sequence number, lengths).
const MEMTABLE_ENTRY_OVERHEAD: u64 = 48;

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
struct NodeWriter<'a> {
    batch: &'a mut WriteBatch,
    allowance: Option<u64>,
    charged: u64,
}

impl NodeWriter<'_> {
    fn charge(&mut self, bytes: u64) -> Result<()> {
        self.charged += bytes;
        match self.allowance {
            Some(allowance) if self.charged > allowance => Err(NodeBudgetExceeded { allowance }.into()),
            _ => Ok(()),
        }
    }
}

/// Sorts `pairs` by key and keeps, for each key, the pair flushed last.
fn keep_last_per_key(pairs: &mut Vec<(Bytes, Bytes)>) {
    // Stable: pairs of one key stay in flush order.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut kept = 0;
    for i in 0..pairs.len() {
        if pairs.get(i + 1).is_some_and(|next| next.0 == pairs[i].0) {
            continue;
        }
        pairs.swap(kept, i);
        kept += 1;
    }
    pairs.truncate(kept);
}

#[derive(Clone)]
pub struct StateStore {
    db: Arc<DB>,
    /// Whether every committed value has its length in `meta` (stores made by this runner
    /// version on); older stores read the value to learn its length.
    value_lengths: bool,
}

/// Every RocksDB setting that decides how much memory the store holds, so that the runner's
/// memory is bounded by construction (the deterministic policy's preflight counts on it, and
/// `cargo xtask bench` measures the runner's baseline with these settings).
pub mod memory {
    /// One memtable of a column family; a write past it starts a new one and a flush.
    pub const WRITE_BUFFER: usize = 8 << 20;
    /// All memtables of all families together (RocksDB's write buffer manager flushes past it).
    pub const ALL_MEMTABLES: usize = 16 << 20;
    /// The one block cache of all families. Index and filter blocks live in it too (not beside
    /// it, per open table file), so reading a large state costs no more than this. They are
    /// partitioned (4 KiB partitions, the top level pinned): a whole index or filter of a large
    /// table would be megabytes, evicted and read again at every lookup in a cache this size.
    pub const BLOCK_CACHE: usize = 16 << 20;
    /// Table files open at once (each holds a little beside the cache).
    pub const OPEN_FILES: i32 = 256;
    /// Values from this size on are kept in blob files (RocksDB's integrated BlobDB). Flushing a
    /// memtable builds table blocks in memory, and a block holding a large value holds it whole,
    /// twice (measured: a 180 MiB value took the flush to three copies of it); a blob file is
    /// written straight from the memtable, so a block's commit never holds more than twice its
    /// flushes.
    pub const BLOB_FROM: u64 = 64 << 10;
}

/// DB-wide options: memory as in [`memory`], reads through the cache (no mmap).
fn db_options() -> Options {
    let mut options = Options::default();
    options.set_write_buffer_manager(&rocksdb::WriteBufferManager::new_write_buffer_manager(memory::ALL_MEMTABLES, false));
    options.set_max_open_files(memory::OPEN_FILES);
    options.set_allow_mmap_reads(false);
    options.set_allow_mmap_writes(false);
    options.set_max_background_jobs(2);
    options
}

/// A family's options, sharing `cache`. Trie lookups often miss (an empty side): a Bloom filter
/// answers those without reading.
fn family_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
    if name == NODES {
        table.set_bloom_filter(10.0, false);
    }
    let mut options = Options::default();
    options.set_write_buffer_size(memory::WRITE_BUFFER);
    options.set_max_write_buffer_number(2);
    options.set_block_based_table_factory(&table);
    if name == "default" {
        options.set_enable_blob_files(true);
        options.set_min_blob_size(memory::BLOB_FROM);
    }
    options
}

fn families() -> Vec<ColumnFamilyDescriptor> {
    let cache = rocksdb::Cache::new_lru_cache(memory::BLOCK_CACHE);
    FAMILIES.iter().map(|name| ColumnFamilyDescriptor::new(*name, family_options(name, &cache))).collect()
}

/// A new RocksDB in `dir` with the store's options and column families and nothing else in it:
/// what a commit is measured against (`host-runner bench commit` writes the same pairs into it
/// in one plain batch).
pub fn open_plain_db(dir: &Path) -> Result<DB> {
    let mut options = db_options();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    DB::open_cf_descriptors(&options, dir, families()).with_context(|| format!("creating RocksDB in {}", dir.display()))
}

impl StateStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.join("CURRENT").exists() {
            Self::create(dir)?;
        }
        check_families(dir)?;
        let db = DB::open_cf_descriptors(&db_options(), dir, families())
            .with_context(|| format!("opening RocksDB in {}", dir.display()))?;
        Ok(Self::with(db))
    }

    /// Creates an empty store with all its column families beside `dir` and renames it into
    /// place, so a process killed while creating it never leaves a half-made database at `dir`.
    fn create(dir: &Path) -> Result<()> {
        let creating = dir.with_extension("creating");
        let _ = std::fs::remove_dir_all(&creating);
        let mut options = db_options();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = DB::open_cf_descriptors(&options, &creating, families())
            .with_context(|| format!("creating RocksDB in {}", creating.display()))?;
        let meta = db.cf_handle(META).expect("created with its families");
        db.put_cf(meta, VALUE_LENGTHS, b"1").context("marking the new store")?;
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
        let db = DB::open_cf_descriptors_read_only(&db_options(), dir, families(), false)
            .with_context(|| format!("opening RocksDB in {} read-only", dir.display()))?;
        Ok(Self::with(db))
    }

    fn with(db: DB) -> Self {
        let value_lengths = db.cf_handle(META).is_some_and(|meta| matches!(db.get_cf(meta, VALUE_LENGTHS), Ok(Some(_))));
        Self { db: Arc::new(db), value_lengths }
    }

    /// The length of the value under `key` without loading the value (so a read can be charged
    /// before it is made); `None` when there is none.
    pub fn value_len(&self, key: &[u8]) -> Result<Option<u64>> {
        if !self.value_lengths {
            return Ok(self.db.get_pinned(key).context("reading from RocksDB")?.map(|v| v.len() as u64));
        }
        let stored = self.db.get_cf(self.cf(META), length_key(key)).context("reading a value's length")?;
        Ok(stored.map(|bytes| u32::from_le_bytes(bytes.as_slice().try_into().unwrap_or_default()).into()))
    }

    /// The value under `key`, pinned in RocksDB (not copied out of it).
    pub fn get_pinned(&self, key: &[u8]) -> Result<Option<rocksdb::DBPinnableSlice<'_>>> {
        self.db.get_pinned(key).context("reading from RocksDB")
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
    ///
    /// What it holds at most, beside the flushed pairs it is given: a sort buffer and a leaf
    /// (64 bytes) per pair, then the batch and RocksDB's memtable copy of it. The flushed bytes
    /// are freed before the memtable copy is made, and a block larger than a memtable is flushed
    /// to disk before the next one starts, so no block's memtable outlives it.
    ///
    /// With a `node_allowance` (the deterministic policy), every trie node written is charged
    /// [`node_charge`] against it, and a block that would need more fails with
    /// [`NodeBudgetExceeded`] before it is written: the trie a block rewrites depends on the state
    /// and the block alone, so it fails the same way on every host.
    pub fn commit_block(&self, height: u32, mut pairs: Vec<(Bytes, Bytes)>, node_allowance: Option<u64>) -> Result<Hash> {
        keep_last_per_key(&mut pairs);
        let pair_bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + BATCH_ENTRY_OVERHEAD).sum();
        // Reserved once, generously: trie nodes are appended after the pairs, and growing the
        // batch would copy it. Capacity never written costs address space, not memory.
        // Bounded: under RLIMIT_AS even reserved capacity counts.
        let mut batch = WriteBatch::with_capacity_bytes(pair_bytes + (pairs.len() * NODES_RESERVED_PER_PAIR).min(64 << 20) + 1024);
        let mut leaves = Vec::with_capacity(pairs.len());
        for (key, value) in &pairs {
            batch.put(key, value);
            batch.put_cf(self.cf(META), length_key(key), (value.len() as u32).to_le_bytes());
            leaves.push((path_of(key), leaf_hash(key, value)));
        }
        drop(pairs);
        leaves.sort_unstable();
        let mut nodes = NodeWriter { batch: &mut batch, allowance: node_allowance, charged: 0 };
        let root = match leaves.is_empty() {
            true => self.state_root()?,
            false => self.update_subtree(0, &leaves, &mut nodes)?.hash(),
        };
        drop(leaves);
        batch.put_cf(self.cf(META), format!("root/{height:010}"), root);
        batch.put_cf(self.cf(META), TIP, height.to_le_bytes());
        let batch_bytes = batch.size_in_bytes();
        self.db.write(batch).context("committing the block to RocksDB")?;
        if batch_bytes > memory::WRITE_BUFFER {
            self.sync()?;
        }
        Ok(root)
    }

    /// Writes every memtable to table files (durable, and the memtables' memory is freed).
    pub fn sync(&self) -> Result<()> {
        let cfs: Vec<_> = FAMILIES.iter().map(|name| self.cf(name)).collect();
        self.db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default()).context("flushing RocksDB's memtables")
    }

    /// The subtree at `depth` holding `updates` (sorted, distinct paths sharing their first
    /// `depth` bits) after they are applied; every node that changes goes into `batch`.
    fn update_subtree(&self, depth: usize, updates: &[(Hash, Hash)], nodes: &mut NodeWriter) -> Result<Subtree> {
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
                        self.update_subtree(depth + 1, updates, nodes)?
                    };
                }
                let subtree = Subtree::join(sides[0], sides[1]);
                self.put_node(nodes, depth, &path, Node::Branch(subtree.hash()))?;
                Ok(subtree)
            }
            // One leaf so far: the new subtree is that leaf (unless updated) and the updates.
            Some(Node::Leaf(existing, leaf)) => {
                let mut leaves = updates.to_vec();
                if let Err(at) = leaves.binary_search_by(|(p, _)| p.cmp(&existing)) {
                    leaves.insert(at, (existing, leaf));
                }
                self.build_subtree(depth, &leaves, nodes)
            }
            None => self.build_subtree(depth, updates, nodes),
        }
    }

    /// The subtree of `leaves` (sorted by path, at least one) built from scratch, its nodes written.
    fn build_subtree(&self, depth: usize, leaves: &[(Hash, Hash)], nodes: &mut NodeWriter) -> Result<Subtree> {
        let &(path, leaf) = leaves.first().expect("called with leaves");
        if leaves.len() == 1 {
            self.put_node(nodes, depth, &path, Node::Leaf(path, leaf))?;
            return Ok(Subtree::Single(leaf));
        }
        anyhow::ensure!(depth < 256, "two keys share a whole SHA-256 path");
        let split = leaves.partition_point(|(path, _)| !bit(path, depth));
        let mut sides = [Subtree::Empty; 2];
        for (side, leaves) in [&leaves[..split], &leaves[split..]].into_iter().enumerate() {
            if !leaves.is_empty() {
                sides[side] = self.build_subtree(depth + 1, leaves, nodes)?;
            }
        }
        let subtree = Subtree::join(sides[0], sides[1]);
        self.put_node(nodes, depth, &path, Node::Branch(subtree.hash()))?;
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

    fn put_node(&self, nodes: &mut NodeWriter, depth: usize, path: &Hash, node: Node) -> Result<()> {
        let value = match node {
            Node::Branch(hash) => [&[0x01][..], &hash].concat(),
            Node::Leaf(path, leaf) => [&[0x00][..], &path, &leaf].concat(),
        };
        let key = node_key(depth, path);
        nodes.charge(node_charge(key.len(), value.len()))?;
        nodes.batch.put_cf(self.cf(NODES), key, value);
        Ok(())
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
    use std::collections::BTreeMap;

    use super::*;
    use crate::state_root::root_of;

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
        let store = StateStore::open(&dir.path().join("db")).unwrap();
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
                let root = store.commit_block(height, pairs(&block), None).unwrap();
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
