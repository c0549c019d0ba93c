//! [`TrieStore`]: our layout's database, opened, read and committed a block at a time.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use rocksdb::{IteratorMode, WriteBatch, DB};

use super::options::{check_families, memory, open_options, DEFAULT, FAMILIES, RECORDS, META};
use super::root::{leaf_hash, Hash, Lattice};
use crate::parallel;
use crate::value::{Found, Value};

pub(super) const TIP: &[u8] = b"tip";
/// In `meta`: the state's lattice (see [`super::root`]), 2,048 bytes.
pub(super) const LATTICE: &[u8] = b"lattice";
/// A batch entry's bytes beside its key and value: a tag and two length varints.
const BATCH_ENTRY_OVERHEAD: usize = 11;
/// A key's record in `records`: its value's length (u32 LE), then its leaf.
const RECORD_BYTES: usize = 4 + 32;
/// Values from this size on have a record in `records`. A smaller value is read to learn its length
/// or its leaf; a larger one never is (its length is charged before it is read, and a commit
/// never loads the values it replaces). Most values are smaller: their pairs are a block's only
/// entries, as in a plain batch.
pub(super) const RECORDED_FROM: usize = 256;
/// Pairs a commit hashes (and whose former leaves it looks up) in one piece of work: enough for
/// another core to be worth a thread, few enough that the lookups' results stay small.
pub(super) const PAIRS_PER_CHUNK: usize = 256;
/// Small values a commit reads at once to hash the leaves they held (each pins a table block).
const SMALL_VALUES_AT_ONCE: usize = 32;

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

/// Beside a store's files while it is being created: a process killed before all its column
/// families exist leaves it there, and the next open completes the creation instead of
/// refusing a database with families missing.
pub const CREATING: &str = "memrepro-creating";

/// Marks `dir` (new, empty, or a creation that was interrupted) as a store being created.
/// Refuses a directory that holds other files and no database.
fn mark_creation(dir: &Path, marker: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !marker.exists() {
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        anyhow::ensure!(entries.next().is_none(), "{} holds files but no database (no CURRENT file): give an empty or new directory", dir.display());
        std::fs::write(marker, b"").with_context(|| format!("writing {}", marker.display()))?;
    }
    Ok(())
}

#[derive(Clone)]
pub struct TrieStore {
    pub(super) db: Arc<DB>,
}

impl TrieStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let marker = dir.join(CREATING);
        let creating = !dir.join("CURRENT").exists() || marker.exists();
        if creating {
            mark_creation(dir, &marker)?;
        } else {
            check_families(dir)?;
        }
        let (mut options, families) = open_options()?;
        options.create_if_missing(creating);
        options.create_missing_column_families(creating);
        let db = DB::open_cf_descriptors(&options, dir, families)
            .with_context(|| format!("opening RocksDB in {}", dir.display()))?;
        if creating {
            std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
        }
        Ok(Self { db: Arc::new(db) })
    }

    /// Opens an existing store without taking the write lock (for `dump` and `view`).
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        anyhow::ensure!(
            dir.join("CURRENT").exists(),
            "{} is not a RocksDB directory (no CURRENT file)",
            dir.display()
        );
        anyhow::ensure!(
            !dir.join(CREATING).exists(),
            "{} was not finished being created (a run was killed while creating it): index into it to complete it",
            dir.display()
        );
        check_families(dir)?;
        let (options, families) = open_options()?;
        let db = DB::open_cf_descriptors_read_only(&options, dir, families, false)
            .with_context(|| format!("opening RocksDB in {} read-only", dir.display()))?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The value under `key` if it is small; a large one's length from its record, without
    /// loading the value (so a read can be charged before it is made); `None` when there is none.
    pub fn find(&self, key: &[u8]) -> Result<Option<Found<'_>>> {
        if let Some(record) = self.db.get_pinned_cf(self.cf(RECORDS), key).context("reading a value's record")? {
            return Ok(Some(Found::Large(Record::decode(&record)?.len.into())));
        }
        // No record: the value is smaller than `RECORDED_FROM`, or there is none.
        Ok(self.get_pinned(key)?.map(|value| Found::Value(Value::Pinned(value))))
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
        Ok(self.lattice()?.root())
    }

    /// The committed state's lattice.
    pub(super) fn lattice(&self) -> Result<Lattice> {
        match self.db.get_pinned_cf(self.cf(META), LATTICE).context("reading the state lattice")? {
            Some(bytes) => Lattice::from_bytes(&bytes),
            None => Ok(Lattice::default()),
        }
    }

    /// Commits a block's pairs (in flush order; a later pair for a key wins) in one batch and
    /// returns the new state root: the pairs, the records of their large values, the new
    /// lattice, the root and the tip.
    ///
    /// While this thread puts the pairs into the batch, the other cores look up, a chunk of keys
    /// at a time, the leaves the pairs replace (a record's, or the small value's hashed), hash the
    /// new ones and sum what the block adds to the lattice. What it holds beside the flushed
    /// pairs: a sort buffer, a leaf (32 bytes) per pair, per chunk a lattice (2 KiB: 8 bytes a
    /// pair), per thread 32 small values it replaces (and the table blocks they pin), then the
    /// batch and RocksDB's memtable copy of it. The flushed pairs are freed before the memtable
    /// copy is made, and a block larger than a memtable is flushed to disk before the next one
    /// starts, so no block's memtable outlives it.
    pub fn commit_block(&self, height: u32, mut pairs: Vec<(Bytes, Bytes)>) -> Result<Hash> {
        keep_last_per_key(&mut pairs);
        // Each pair, and its record put (large value) or perhaps deleted (small one).
        let record_bytes = |k: &[u8], v: &[u8]| entry_bytes(k, if v.len() >= RECORDED_FROM { &[0; RECORD_BYTES] } else { &[] });
        let pair_bytes: usize = pairs.iter().map(|(k, v)| entry_bytes(k, v) + record_bytes(k, v)).sum();
        let mut batch = WriteBatch::with_capacity_bytes(pair_bytes + 4096);
        let chunks: Vec<&[(Bytes, Bytes)]> = pairs.chunks(PAIRS_PER_CHUNK).collect();
        let mut hashed: Vec<Result<Hashed>> = chunks.iter().map(|_| Err(anyhow::anyhow!("a chunk of the block was not hashed"))).collect();
        let hash_chunks = |chunks: &[&[(Bytes, Bytes)]], hashed: &mut [Result<Hashed>]| {
            for (chunk, hashed) in chunks.iter().zip(hashed) {
                *hashed = self.hash_chunk(chunk);
            }
        };
        parallel::in_chunks(parallel::cores(), &chunks, &mut hashed, 1, hash_chunks, || {
            pairs.iter().for_each(|(key, value)| batch.put(key, value))
        });
        let mut lattice = self.lattice()?;
        let records = self.cf(RECORDS);
        for (chunk, hashed) in chunks.iter().zip(hashed) {
            let hashed = hashed?;
            lattice.merge(&hashed.added);
            for ((key, value), (leaf, recorded)) in chunk.iter().zip(&hashed.leaves) {
                match value.len() >= RECORDED_FROM {
                    true => batch.put_cf(records, key, Record { len: value.len() as u32, leaf: *leaf }.encode()),
                    false if *recorded => batch.delete_cf(records, key),
                    false => {}
                }
            }
        }
        drop(chunks);
        drop(pairs);
        let root = lattice.root();
        batch.put_cf(self.cf(META), LATTICE, lattice.to_bytes());
        batch.put_cf(self.cf(META), format!("root/{height:010}"), root);
        batch.put_cf(self.cf(META), TIP, height.to_le_bytes());
        let batch_bytes = batch.size_in_bytes();
        self.db.write(batch).context("committing the block to RocksDB")?;
        if batch_bytes > memory::WRITE_BUFFER {
            self.sync()?;
        }
        Ok(root)
    }

    /// A chunk of a block's pairs (sorted, distinct keys) hashed: each pair's leaf and whether
    /// its key had a record, and what the chunk adds to the lattice (its leaves, less the stored
    /// leaves they replace).
    fn hash_chunk(&self, pairs: &[(Bytes, Bytes)]) -> Result<Hashed> {
        let records = self.db.batched_multi_get_cf(self.cf(RECORDS), pairs.iter().map(|(key, _)| key), true);
        let records: Vec<Option<Record>> = records
            .into_iter()
            .map(|record| record.context("reading the leaves a block replaces")?.map(|record| Record::decode(&record)).transpose())
            .collect::<Result<_>>()?;
        // A key without a record holds a small value, or none: its leaf is hashed from it, a few
        // keys at a time so that few of RocksDB's blocks are pinned at once.
        let unrecorded: Vec<&Bytes> = pairs.iter().zip(&records).filter(|(_, record)| record.is_none()).map(|((key, _), _)| key).collect();
        let mut small_leaves = Vec::with_capacity(unrecorded.len());
        for keys in unrecorded.chunks(SMALL_VALUES_AT_ONCE) {
            for (key, small) in keys.iter().zip(self.db.batched_multi_get_cf(self.cf(DEFAULT), keys, true)) {
                small_leaves.push(small.context("reading the values a block replaces")?.map(|old| leaf_hash(key, &old)));
            }
        }
        let mut small_leaves = small_leaves.into_iter();
        let mut hashed = Hashed { added: Lattice::default(), leaves: Vec::with_capacity(pairs.len()) };
        for ((key, value), record) in pairs.iter().zip(&records) {
            let replaced = match record {
                Some(record) => Some(record.leaf),
                None => small_leaves.next().expect("a lookup per key without a record"),
            };
            let leaf = leaf_hash(key, value);
            if replaced != Some(leaf) {
                hashed.added.insert(&leaf);
                if let Some(replaced) = replaced {
                    hashed.added.remove(&replaced);
                }
            }
            hashed.leaves.push((leaf, record.is_some()));
        }
        Ok(hashed)
    }

    /// Returns once no compaction is running or due (for benchmarks: nothing left in the
    /// background to compete with what is timed next).
    pub fn wait_for_compactions(&self) -> Result<()> {
        self.db.wait_for_compact(&rocksdb::WaitForCompactOptions::default()).context("waiting for RocksDB's compactions")
    }

    /// Writes every memtable to table files (durable, and the memtables' memory is freed).
    pub fn sync(&self) -> Result<()> {
        let cfs: Vec<_> = FAMILIES.iter().map(|name| self.cf(name)).collect();
        self.db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default()).context("flushing RocksDB's memtables")
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

/// A chunk of a block's pairs, hashed.
struct Hashed {
    /// The chunk's leaves less the stored leaves they replace.
    added: Lattice,
    /// Each pair's leaf, and whether its key had a record, in order.
    leaves: Vec<(Hash, bool)>,
}

/// What a pair takes in a batch.
fn entry_bytes(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + BATCH_ENTRY_OVERHEAD
}

/// A key's record in `records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    /// Its value's length.
    pub(super) len: u32,
    pub(super) leaf: Hash,
}

impl Record {
    pub(super) fn encode(self) -> [u8; RECORD_BYTES] {
        let mut bytes = [0; RECORD_BYTES];
        bytes[..4].copy_from_slice(&self.len.to_le_bytes());
        bytes[4..].copy_from_slice(&self.leaf);
        bytes
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self> {
        anyhow::ensure!(bytes.len() == RECORD_BYTES, "a key's record of {} bytes is malformed: the database is corrupt", bytes.len());
        let (len, leaf) = bytes.split_at(4);
        Ok(Self { len: u32::from_le_bytes(len.try_into()?), leaf: leaf.try_into()? })
    }
}
