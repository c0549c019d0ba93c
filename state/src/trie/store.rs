//! [`TrieStore`]: our layout's database, opened, read and committed a block at a time.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use rocksdb::{IteratorMode, WriteBatch, DB};

use super::hash::{leaf_hash, path_of, Hash};
use super::node::{Node, NodeWriter, BATCH_ENTRY_OVERHEAD};
use super::options::{check_families, memory, open_options, FAMILIES, META, NODES};
use super::reads::Nodes;
use super::update::TrieUpdate;
use crate::parallel;

pub(super) const TIP: &[u8] = b"tip";
/// In `meta`: present when the store keeps every value's length (`len/` ++ key = u32 LE).
pub(super) const VALUE_LENGTHS: &[u8] = b"value-lengths";

pub(super) const LENGTH_PREFIX: &[u8] = b"len/";

pub(super) fn length_key(key: &[u8]) -> Vec<u8> {
    [LENGTH_PREFIX, key].concat()
}
/// Leaves hashed, or trie nodes looked up, from which another core is worth a thread.
pub(super) const LEAVES_PER_THREAD: usize = 1024;
/// Batch capacity reserved for the trie nodes a pair adds (a node is about 70 bytes; a block of
/// N keys rewrites about N × (log2(state / N) + 2) of them).
pub(super) const NODES_RESERVED_PER_PAIR: usize = 8 * 80;

/// Sorts `pairs` by key and keeps, for each key, the pair flushed last.
pub(super) fn keep_last_per_key(pairs: &mut Vec<(Bytes, Bytes)>) {
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
pub struct TrieStore {
    pub(super) db: Arc<DB>,
    /// Whether every committed value has its length in `meta` (stores made by this runner
    /// version on); older stores read the value to learn its length.
    pub(super) value_lengths: bool,
}

impl TrieStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.join("CURRENT").exists() {
            Self::create(dir)?;
        }
        check_families(dir)?;
        let (options, families) = open_options()?;
        let db = DB::open_cf_descriptors(&options, dir, families)
            .with_context(|| format!("opening RocksDB in {}", dir.display()))?;
        Ok(Self::with(db))
    }

    /// Creates an empty store with all its column families beside `dir` and renames it into
    /// place, so a process killed while creating it never leaves a half-made database at `dir`.
    pub(super) fn create(dir: &Path) -> Result<()> {
        let creating = dir.with_extension("creating");
        let _ = std::fs::remove_dir_all(&creating);
        let (mut options, families) = open_options()?;
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = DB::open_cf_descriptors(&options, &creating, families)
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
        let (options, families) = open_options()?;
        let db = DB::open_cf_descriptors_read_only(&options, dir, families, false)
            .with_context(|| format!("opening RocksDB in {} read-only", dir.display()))?;
        Ok(Self::with(db))
    }

    pub(super) fn with(db: DB) -> Self {
        let value_lengths = db.cf_handle(META).is_some_and(|meta| matches!(db.get_cf(meta, VALUE_LENGTHS), Ok(Some(_))));
        Self { db: Arc::new(db), value_lengths }
    }

    /// The length of the value under `key` without loading the value (so a read can be charged
    /// before it is made); `None` when there is none.
    pub fn value_len(&self, key: &[u8]) -> Result<Option<u64>> {
        if !self.value_lengths {
            return Ok(self.db.get_pinned(key).context("reading from RocksDB")?.map(|v| v.len() as u64));
        }
        let stored = self.db.get_pinned_cf(self.cf(META), length_key(key)).context("reading a value's length")?;
        Ok(stored.map(|bytes| u32::from_le_bytes(bytes.as_ref().try_into().unwrap_or_default()).into()))
    }

    /// The value under `key`, pinned in RocksDB (not copied out of it).
    pub fn get_pinned(&self, key: &[u8]) -> Result<Option<rocksdb::DBPinnableSlice<'_>>> {
        self.db.get_pinned(key).context("reading from RocksDB")
    }

    pub(super) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
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
        Ok(Node::subtree(self.nodes().node(0, &[0; 32])?).hash())
    }

    /// Commits a block's pairs (in flush order; a later pair for a key wins) in one batch and
    /// returns the new state root.
    ///
    /// What it holds at most, beside the flushed pairs it is given: a sort buffer and a leaf
    /// (64 bytes) per pair, a note of about 40 bytes per trie node it visits (the nodes it
    /// rewrites, and at most one beside each) and about 60 more per node of the depth it is
    /// hashing, a few thread stacks while it hashes, then the batch and RocksDB's memtable copy of it.
    /// The flushed bytes and the notes are freed before the memtable copy is made, and a block
    /// larger than a memtable is flushed to disk before the next one starts, so no block's
    /// memtable outlives it.
    ///
    /// With a `node_allowance` (the deterministic policy), every trie node written is charged
    /// [`node_charge`] against it, and a block that would need more fails with
    /// [`NodeBudgetExceeded`] before it is written: the trie a block rewrites depends on the state
    /// and the block alone, so it fails the same way on every host.
    pub fn commit_block(&self, height: u32, pairs: Vec<(Bytes, Bytes)>, node_allowance: Option<u64>) -> Result<Hash> {
        Ok(self.commit(height, pairs, node_allowance)?.0)
    }

    /// [`TrieStore::commit_block`], also returning what its trie nodes were charged.
    pub(super) fn commit(&self, height: u32, mut pairs: Vec<(Bytes, Bytes)>, node_allowance: Option<u64>) -> Result<(Hash, u64)> {
        keep_last_per_key(&mut pairs);
        let pair_bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + BATCH_ENTRY_OVERHEAD).sum();
        // Reserved once, generously: trie nodes are appended after the pairs, and growing the
        // batch would copy it. Capacity never written costs address space, not memory.
        // Bounded: under RLIMIT_AS even reserved capacity counts.
        let mut batch = WriteBatch::with_capacity_bytes(pair_bytes + (pairs.len() * NODES_RESERVED_PER_PAIR).min(64 << 20) + 1024);
        // The leaves are hashed on every core while this thread fills the batch.
        let mut leaves = vec![([0; 32], [0; 32]); pairs.len()];
        let hash_leaves = |pairs: &[(Bytes, Bytes)], leaves: &mut [(Hash, Hash)]| {
            for ((key, value), leaf) in pairs.iter().zip(leaves) {
                *leaf = (path_of(key), leaf_hash(key, value));
            }
        };
        parallel::in_chunks(parallel::cores(), &pairs, &mut leaves, LEAVES_PER_THREAD, hash_leaves, || {
            pairs.iter().for_each(|(key, value)| self.put_value(&mut batch, key, value))
        });
        drop(pairs);
        leaves.sort_unstable();
        let mut nodes = NodeWriter { batch: &mut batch, nodes: self.cf(NODES), allowance: node_allowance, charged: 0 };
        let root = match leaves.is_empty() {
            true => self.state_root()?,
            false => TrieUpdate::read(&self.nodes(), &leaves)?.write(&mut nodes)?.hash(),
        };
        let charged = nodes.charged;
        drop(leaves);
        batch.put_cf(self.cf(META), format!("root/{height:010}"), root);
        batch.put_cf(self.cf(META), TIP, height.to_le_bytes());
        let batch_bytes = batch.size_in_bytes();
        self.db.write(batch).context("committing the block to RocksDB")?;
        if batch_bytes > memory::WRITE_BUFFER {
            self.sync()?;
        }
        Ok((root, charged))
    }

    /// Puts `value` under `key` into `batch`, with its length record.
    pub(super) fn put_value(&self, batch: &mut WriteBatch, key: &[u8], value: &[u8]) {
        batch.put(key, value);
        batch.put_cf(self.cf(META), length_key(key), (value.len() as u32).to_le_bytes());
    }

    /// Writes every memtable to table files (durable, and the memtables' memory is freed).
    pub fn sync(&self) -> Result<()> {
        let cfs: Vec<_> = FAMILIES.iter().map(|name| self.cf(name)).collect();
        self.db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default()).context("flushing RocksDB's memtables")
    }

    /// The stored trie's nodes, for reading.
    pub(super) fn nodes(&self) -> Nodes<'_> {
        Nodes { db: &self.db, family: self.cf(NODES) }
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
