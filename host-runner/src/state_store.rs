//! The committed state in RocksDB. Column families:
//! - `default`: the guest's keys and values, exactly as flushed;
//! - `leaves`: key → Merkle leaf hash, so a state root never re-reads the values;
//! - `meta`: `tip` (last committed height) and `root/{height}` (state root after that height).
//!
//! A block is committed with one `WriteBatch` holding its pairs, their leaves, its root and the
//! new tip: after a crash the database is at a block boundary, never inside a block.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use prost::bytes::Bytes;
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use crate::state_root::{leaf_hash, merkle_root, Hash};

const LEAVES: &str = "leaves";
const META: &str = "meta";
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
        let db = DB::open_cf_descriptors(&Options::default(), dir, Self::families())
            .with_context(|| format!("opening RocksDB in {}", dir.display()))?;
        Ok(Self { db: Arc::new(db) })
    }

    fn families() -> [ColumnFamilyDescriptor; 3] {
        ["default", LEAVES, META].map(|name| ColumnFamilyDescriptor::new(name, Options::default()))
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
        let db = DB::open_cf_for_read_only(&Options::default(), dir, ["default", LEAVES, META], false)
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

    /// The root of the committed state (recomputed from the leaves).
    pub fn state_root(&self) -> Result<Hash> {
        let mut leaves = Vec::new();
        for entry in self.db.iterator_cf(self.cf(LEAVES), IteratorMode::Start) {
            let (_, leaf) = entry.context("iterating leaves")?;
            leaves.push(to_hash(&leaf)?);
        }
        Ok(merkle_root(&leaves))
    }

    /// Commits a block's pairs (in flush order; a later pair for a key wins) in one batch and
    /// returns the new state root.
    pub fn commit_block(&self, height: u32, pairs: Vec<(Bytes, Bytes)>) -> Result<Hash> {
        let mut latest: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
        for (key, value) in &pairs {
            latest.insert(key, value);
        }
        let new_leaves: BTreeMap<&[u8], Hash> =
            latest.iter().map(|(key, value)| (*key, leaf_hash(key, value))).collect();
        let root = merkle_root(&self.merged_leaves(&new_leaves)?);

        let mut batch = WriteBatch::default();
        for (key, value) in &latest {
            batch.put(key, value);
            batch.put_cf(self.cf(LEAVES), key, new_leaves[key]);
        }
        batch.put_cf(self.cf(META), format!("root/{height:010}"), root);
        batch.put_cf(self.cf(META), TIP, height.to_le_bytes());
        // The batch holds its own copy: free the flushed bytes before RocksDB copies them again
        // into its memtable, so a block costs at most twice its flushes, never three times.
        drop((latest, new_leaves));
        drop(pairs);
        let mut write_options = WriteOptions::default();
        write_options.set_sync(true);
        self.db.write_opt(batch, &write_options).context("committing the block to RocksDB")?;
        Ok(root)
    }

    /// The committed leaves with `updates` applied, in key order.
    fn merged_leaves(&self, updates: &BTreeMap<&[u8], Hash>) -> Result<Vec<Hash>> {
        let mut merged = Vec::new();
        let mut pending = updates.iter().peekable();
        for entry in self.db.iterator_cf(self.cf(LEAVES), IteratorMode::Start) {
            let (key, leaf) = entry.context("iterating leaves")?;
            while let Some((new_key, new_leaf)) = pending.next_if(|(k, _)| **k < &*key) {
                let _ = new_key;
                merged.push(*new_leaf);
            }
            match pending.next_if(|(k, _)| **k == &*key) {
                Some((_, new_leaf)) => merged.push(*new_leaf),
                None => merged.push(to_hash(&leaf)?),
            }
        }
        merged.extend(pending.map(|(_, leaf)| *leaf));
        Ok(merged)
    }

    /// Every committed pair in key order.
    pub fn entries(&self) -> impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>)>> + '_ {
        self.db
            .iterator(IteratorMode::Start)
            .map(|entry| entry.context("iterating the committed state"))
    }
}

fn to_hash(bytes: &[u8]) -> Result<Hash> {
    bytes.try_into().context("a stored leaf hash is not 32 bytes: the database is corrupt")
}
