//! The committed state in RocksDB. Column families:
//! - `default`: the guest's keys and values, exactly as flushed;
//! - `nodes`: the state trie (see `state_root`), keyed `depth (u16 BE) ++ path prefix`: every
//!   subtree holding two or more leaves as `0x01 ++ hash`, and every leaf, at the top of the
//!   subtree it is alone in, as `0x00 ++ path ++ leaf hash`. A block re-hashes only the paths to
//!   the keys it wrote: it reads the nodes on and beside those paths one depth at a time (each
//!   depth in one batched multi-get, or one iterator where they are dense), then writes the
//!   nodes that change a depth at a time, each in key order ([`TrieUpdate`]);
//! - `meta`: `tip` (last committed height), `root/{height}` (state root after that height) and
//!   `len/` ++ key (the value's length, u32 LE: a read is charged before it is made).
//!
//! A block is committed with one `WriteBatch` holding its pairs, their leaves and trie nodes,
//! its root and the new tip: after a crash the database is at a block boundary, never inside a
//! block. Batches go to the write-ahead log without an fsync each (a killed process loses
//! nothing: the log is in the OS's hands); [`StateStore::sync`] makes them durable, once per run.
//! A machine crash before that may lose the last blocks, never part of one (RocksDB recovers the
//! log to a consistent point), and `tip` says where to resume. Keys are never deleted (the ABI has no delete), so a subtree never shrinks.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use prost::bytes::Bytes;
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, DB};

use crate::parallel;
use crate::state_root::{bit, leaf_hash, path_of, Hash, Subtree};

const NODES: &str = "nodes";
const META: &str = "meta";
const FAMILIES: [&str; 3] = ["default", NODES, META];

/// A stored trie node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// Two or more leaves below.
    Branch(Hash),
    /// The only leaf below: its path and leaf hash.
    Leaf(Hash, Hash),
}

impl Node {
    fn decode(bytes: &[u8]) -> Result<Node> {
        Ok(match (bytes.first(), bytes.len()) {
            (Some(0x01), 33) => Node::Branch(to_hash(&bytes[1..])?),
            (Some(0x00), 65) => Node::Leaf(to_hash(&bytes[1..33])?, to_hash(&bytes[33..])?),
            _ => anyhow::bail!("a state trie node of {} bytes is malformed: the database is corrupt", bytes.len()),
        })
    }

    /// The stored bytes, in `buffer`.
    fn encode(self, buffer: &mut [u8; 65]) -> &[u8] {
        match self {
            Node::Branch(hash) => {
                buffer[0] = 0x01;
                buffer[1..33].copy_from_slice(&hash);
                &buffer[..33]
            }
            Node::Leaf(path, leaf) => {
                buffer[0] = 0x00;
                buffer[1..33].copy_from_slice(&path);
                buffer[33..].copy_from_slice(&leaf);
                &buffer[..]
            }
        }
    }

    /// The subtree this node stands for, as far as its parent's hash depends on it.
    fn subtree(node: Option<Node>) -> Subtree {
        match node {
            Some(Node::Branch(hash)) => Subtree::Many(hash),
            Some(Node::Leaf(_, leaf)) => Subtree::Single(leaf),
            None => Subtree::Empty,
        }
    }
}

const TIP: &[u8] = b"tip";
/// In `meta`: present when the store keeps every value's length (`len/` ++ key = u32 LE).
const VALUE_LENGTHS: &[u8] = b"value-lengths";

const LENGTH_PREFIX: &[u8] = b"len/";

fn length_key(key: &[u8]) -> Vec<u8> {
    [LENGTH_PREFIX, key].concat()
}
/// Leaves hashed, or trie nodes looked up, from which another core is worth a thread.
const LEAVES_PER_THREAD: usize = 1024;
const LOOKUPS_PER_THREAD: usize = 512;
/// Trie subtrees hashed (each a SHA-256 or none) from which another core is worth a thread.
const HASHES_PER_THREAD: usize = 2048;

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
    nodes: &'a rocksdb::ColumnFamily,
    allowance: Option<u64>,
    charged: u64,
}

impl NodeWriter<'_> {
    fn put(&mut self, depth: usize, path: &Hash, node: Node) -> Result<()> {
        let key = NodeKey::new(depth, path);
        let mut buffer = [0; 65];
        let value = node.encode(&mut buffer);
        self.charged += node_charge(key.as_bytes().len(), value.len());
        if let Some(allowance) = self.allowance.filter(|&allowance| self.charged > allowance) {
            return Err(NodeBudgetExceeded { allowance }.into());
        }
        self.batch.put_cf(self.nodes, key.as_bytes(), value);
        Ok(())
    }
}

/// A node's key in `nodes`: the depth (u16 BE), then the bytes of the path's first `depth` bits
/// (the bits after them zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeKey {
    bytes: [u8; 34],
    len: u8,
}

impl NodeKey {
    /// The key of the subtree at `depth` on the way to `path`.
    fn new(depth: usize, path: &Hash) -> Self {
        let mut bytes = [0; 34];
        bytes[..2].copy_from_slice(&(depth as u16).to_be_bytes());
        let len = depth.div_ceil(8);
        bytes[2..2 + len].copy_from_slice(&prefix(depth, path)[..len]);
        Self { bytes, len: (2 + len) as u8 }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for NodeKey {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A block's update of the stored trie, a depth at a time. Going down, it reads, at each depth
/// and all at once ([`Lookup`]), the stored nodes on the way to the updated keys and the ones
/// beside those ways, and notes the subtrees it visits there. Coming back up, it hashes each
/// depth's subtrees from the ones below and writes the nodes that change: a depth at a time, each
/// in path order, which is key order (RocksDB inserts a sorted run much faster than scattered
/// keys). It writes the same nodes as a depth-first walk with a point read per node would.
struct TrieUpdate<'a> {
    /// The block's leaves: sorted, distinct paths.
    updates: &'a [(Hash, Hash)],
    /// The stored leaves the updates land beside, as read on the way down.
    stored_leaves: Vec<(Hash, Hash)>,
    /// Per depth, the subtrees visited, in path order.
    levels: Vec<Vec<Visit>>,
}

/// A subtree the update visits.
enum Visit {
    /// A stored subtree of two or more leaves with updates below (a range of the updates): its
    /// sides are the next two visits a depth down.
    Branch(Range<usize>),
    /// A subtree rebuilt from its leaves alone, for it held one stored leaf or none. One leaf is
    /// written as a leaf; more are split, and each side holding any is the next visit a depth down.
    Build(Leaves),
    /// A stored subtree beside the updated ones: unchanged, only its hash counts.
    Beside(Subtree),
}

/// How the nodes of one depth are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// One batched multi-get (a lookup per key, through each table's Bloom filter).
    MultiGet,
    /// One iterator over the depth, stepping from key to key: where the keys are a fair share of
    /// the depth's nodes (the top of the trie, which a large block rewrites nearly whole, and the
    /// depths below it in a large state), a step costs a fraction of a lookup, and the keys' table
    /// blocks are read once each, in order.
    Walk,
}

impl Lookup {
    /// Steps an iterator takes towards the next key before it seeks instead.
    const STEPS_BEFORE_A_SEEK: usize = 16;

    /// A walk where `keys` are a thirty-second or more of the 2^`depth` nodes a depth can hold,
    /// and enough of them to be worth an iterator. (Measured over a million keys, block 574200's
    /// reads: a walk is faster down to about a sixty-fourth; over twenty thousand keys, its top
    /// depths are read three to five times faster than by a multi-get.)
    fn for_depth(depth: usize, keys: usize) -> Self {
        match keys >= 64 && (depth as u32) < usize::BITS && keys.saturating_mul(32) >= 1 << depth {
            true => Lookup::Walk,
            false => Lookup::MultiGet,
        }
    }
}

/// The leaves of a rebuilt subtree: a range of the updates and perhaps one stored leaf (an index
/// into `stored_leaves`) that they now share a subtree with.
#[derive(Clone)]
struct Leaves {
    updates: Range<usize>,
    stored: Option<usize>,
}

impl Leaves {
    fn count(&self) -> usize {
        self.updates.len() + usize::from(self.stored.is_some())
    }
}

impl<'a> TrieUpdate<'a> {
    /// Goes down from the root, reading what the update of `updates` needs from `store`.
    fn read(store: &StateStore, updates: &'a [(Hash, Hash)]) -> Result<Self> {
        /// What a depth holds before it is read.
        enum Pending {
            Descend(Range<usize>),
            Beside(Hash),
            Build(Leaves),
        }
        let mut update = Self { updates, stored_leaves: Vec::new(), levels: Vec::new() };
        let mut pending = vec![Pending::Descend(0..updates.len())];
        for depth in 0.. {
            if pending.is_empty() {
                break;
            }
            let keys: Vec<NodeKey> = pending
                .iter()
                .filter_map(|pending| match pending {
                    Pending::Descend(range) => Some(NodeKey::new(depth, &updates[range.start].0)),
                    Pending::Beside(path) => Some(NodeKey::new(depth, path)),
                    Pending::Build(_) => None,
                })
                .collect();
            let mut read = store.read_nodes(depth, &keys, Lookup::for_depth(depth, keys.len()))?.into_iter();
            let mut read_node = || read.next().expect("one node per key");
            let mut visits = Vec::with_capacity(pending.len());
            let mut next = Vec::new();
            for pending in pending {
                let visit = match pending {
                    Pending::Build(leaves) => Visit::Build(leaves),
                    Pending::Beside(_) => Visit::Beside(Node::subtree(read_node())),
                    Pending::Descend(range) => match read_node() {
                        Some(Node::Branch(_)) => {
                            let path = updates[range.start].0;
                            let split = range.start + updates[range.clone()].partition_point(|(path, _)| !bit(path, depth));
                            for (side, range) in [range.start..split, split..range.end].into_iter().enumerate() {
                                next.push(match range.is_empty() {
                                    true => Pending::Beside(with_bit(path, depth, side == 1)),
                                    false => Pending::Descend(range),
                                });
                            }
                            Visit::Branch(range)
                        }
                        // The stored leaf joins the updates, unless one of them replaces it.
                        Some(Node::Leaf(existing, leaf)) => {
                            let stored = updates[range.clone()].binary_search_by(|(path, _)| path.cmp(&existing)).err().map(|_| {
                                update.stored_leaves.push((existing, leaf));
                                update.stored_leaves.len() - 1
                            });
                            Visit::Build(Leaves { updates: range, stored })
                        }
                        None => Visit::Build(Leaves { updates: range, stored: None }),
                    },
                };
                if let Visit::Build(leaves) = &visit {
                    if leaves.count() > 1 {
                        anyhow::ensure!(depth < 256, "two keys share a whole SHA-256 path");
                        next.extend(update.split(leaves, depth).into_iter().filter(|side| side.count() > 0).map(Pending::Build));
                    }
                }
                visits.push(visit);
            }
            update.levels.push(visits);
            pending = next;
        }
        Ok(update)
    }

    /// Comes back up, writing every node that changes; returns the new root subtree. A depth's
    /// subtrees are hashed on every core, then its nodes are put in path order.
    fn write(&self, nodes: &mut NodeWriter) -> Result<Subtree> {
        let mut below: Vec<Subtree> = Vec::new();
        for (depth, visits) in self.levels.iter().enumerate().rev() {
            // Each visit with where its sides are in `below`.
            let mut sides = 0;
            let visits: Vec<(&Visit, Range<usize>)> = visits
                .iter()
                .map(|visit| {
                    let start = sides;
                    sides += self.sides_below(visit, depth);
                    (visit, start..sides)
                })
                .collect();
            anyhow::ensure!(sides == below.len(), "the trie update lost track of its subtrees at depth {depth}");
            let mut here = vec![Subtree::Empty; visits.len()];
            let hash = |visits: &[(&Visit, Range<usize>)], here: &mut [Subtree]| {
                for ((visit, sides), here) in visits.iter().zip(here) {
                    *here = self.subtree_of(visit, &below[sides.clone()]);
                }
            };
            parallel::in_chunks(parallel::cores(), &visits, &mut here, HASHES_PER_THREAD, hash, || ());
            for ((visit, _), subtree) in visits.iter().zip(&here) {
                if let Some((path, node)) = self.changed_node(visit, *subtree) {
                    nodes.put(depth, &path, node)?;
                }
            }
            below = here;
        }
        Ok(below.first().copied().unwrap_or(Subtree::Empty))
    }

    /// How many visits a depth down are `visit`'s sides.
    fn sides_below(&self, visit: &Visit, depth: usize) -> usize {
        match visit {
            Visit::Beside(_) => 0,
            Visit::Branch(_) => 2,
            Visit::Build(leaves) if leaves.count() == 1 => 0,
            // A side without leaves has no visit below.
            Visit::Build(leaves) => self.split(leaves, depth).iter().filter(|side| side.count() > 0).count(),
        }
    }

    /// The subtree `visit` stands for, from its `sides` (hashed a depth down).
    fn subtree_of(&self, visit: &Visit, sides: &[Subtree]) -> Subtree {
        match visit {
            Visit::Beside(subtree) => *subtree,
            Visit::Build(leaves) if leaves.count() == 1 => Subtree::Single(self.first_leaf(leaves).1),
            // One filled side of a rebuilt subtree joins as itself (no hashing along a chain).
            Visit::Branch(_) | Visit::Build(_) => sides.iter().fold(Subtree::Empty, |left, side| Subtree::join(left, *side)),
        }
    }

    /// The node to write for `visit`, now `subtree`, with the path that names it; none beside.
    fn changed_node(&self, visit: &Visit, subtree: Subtree) -> Option<(Hash, Node)> {
        match visit {
            Visit::Beside(_) => None,
            Visit::Branch(range) => Some((self.updates[range.start].0, Node::Branch(subtree.hash()))),
            Visit::Build(leaves) if leaves.count() == 1 => {
                let (path, leaf) = self.first_leaf(leaves);
                Some((path, Node::Leaf(path, leaf)))
            }
            Visit::Build(leaves) => Some((self.first_leaf(leaves).0, Node::Branch(subtree.hash()))),
        }
    }

    /// `leaves` split by their bit `depth`.
    fn split(&self, leaves: &Leaves, depth: usize) -> [Leaves; 2] {
        let Range { start, end } = leaves.updates;
        let split = start + self.updates[start..end].partition_point(|(path, _)| !bit(path, depth));
        let mut sides = [Leaves { updates: start..split, stored: None }, Leaves { updates: split..end, stored: None }];
        if let Some(stored) = leaves.stored {
            sides[usize::from(bit(&self.stored_leaves[stored].0, depth))].stored = Some(stored);
        }
        sides
    }

    /// The first of `leaves` by path (any of them names their subtree; with one, it is the one).
    fn first_leaf(&self, leaves: &Leaves) -> (Hash, Hash) {
        let update = self.updates.get(leaves.updates.clone()).and_then(|range| range.first());
        let stored = leaves.stored.map(|stored| &self.stored_leaves[stored]);
        *update.into_iter().chain(stored).min().expect("a rebuilt subtree has leaves")
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
        let stored = self.db.get_pinned_cf(self.cf(META), length_key(key)).context("reading a value's length")?;
        Ok(stored.map(|bytes| u32::from_le_bytes(bytes.as_ref().try_into().unwrap_or_default()).into()))
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
        Ok(Node::subtree(self.node(0, &[0; 32])?).hash())
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

    /// [`StateStore::commit_block`], also returning what its trie nodes were charged.
    fn commit(&self, height: u32, mut pairs: Vec<(Bytes, Bytes)>, node_allowance: Option<u64>) -> Result<(Hash, u64)> {
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
            false => TrieUpdate::read(self, &leaves)?.write(&mut nodes)?.hash(),
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
    fn put_value(&self, batch: &mut WriteBatch, key: &[u8], value: &[u8]) {
        batch.put(key, value);
        batch.put_cf(self.cf(META), length_key(key), (value.len() as u32).to_le_bytes());
    }

    /// Writes every memtable to table files (durable, and the memtables' memory is freed).
    pub fn sync(&self) -> Result<()> {
        let cfs: Vec<_> = FAMILIES.iter().map(|name| self.cf(name)).collect();
        self.db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default()).context("flushing RocksDB's memtables")
    }

    /// The stored nodes under `keys`: all of one depth, in path order (which is key order).
    fn read_nodes(&self, depth: usize, keys: &[NodeKey], lookup: Lookup) -> Result<Vec<Option<Node>>> {
        let mut read: Vec<Result<Option<Node>>> = keys.iter().map(|_| Ok(None)).collect();
        let read_chunk = |keys: &[NodeKey], read: &mut [Result<Option<Node>>]| match lookup {
            Lookup::MultiGet => {
                for (value, node) in self.db.batched_multi_get_cf(self.cf(NODES), keys, true).into_iter().zip(read) {
                    *node = value.context("reading state trie nodes").and_then(|value| value.as_deref().map(Node::decode).transpose());
                }
            }
            Lookup::Walk => self.walk(depth, keys, read),
        };
        parallel::in_chunks(parallel::cores(), keys, &mut read, LOOKUPS_PER_THREAD, read_chunk, || ());
        read.into_iter().collect()
    }

    /// [`Lookup::Walk`]: one iterator over `depth` from the first of `keys` to the last.
    fn walk(&self, depth: usize, keys: &[NodeKey], read: &mut [Result<Option<Node>>]) {
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_upper_bound((depth as u16 + 1).to_be_bytes());
        let mut walk = self.db.raw_iterator_cf_opt(self.cf(NODES), options);
        walk.seek(keys.first().map_or(&[][..], NodeKey::as_bytes));
        for (key, node) in keys.iter().zip(read) {
            // A few steps to the next key, or a seek if it is further on.
            let mut steps = 0;
            while walk.key().is_some_and(|at| at < key.as_bytes()) {
                if steps == Lookup::STEPS_BEFORE_A_SEEK {
                    walk.seek(key);
                    break;
                }
                walk.next();
                steps += 1;
            }
            *node = match walk.key() == Some(key.as_bytes()) {
                true => Node::decode(walk.value().unwrap_or_default()).map(Some),
                false => walk.status().context("reading state trie nodes").map(|()| None),
            };
        }
    }

    /// The stored node at `depth` on the way to `path`, if its subtree holds any leaf.
    fn node(&self, depth: usize, path: &Hash) -> Result<Option<Node>> {
        let stored = self.db.get_pinned_cf(self.cf(NODES), NodeKey::new(depth, path)).context("reading a state trie node")?;
        stored.as_deref().map(Node::decode).transpose()
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

/// `path` with bit `depth` set to `value`.
fn with_bit(mut path: Hash, depth: usize, value: bool) -> Hash {
    let mask = 0x80 >> (depth % 8);
    if value {
        path[depth / 8] |= mask;
    } else {
        path[depth / 8] &= !mask;
    }
    path
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

    /// The update as it was before it went a depth at a time: depth first, a point read of every
    /// node on and beside the paths as it reaches it, each node written as it is hashed. What
    /// [`TrieUpdate`] is checked against.
    fn reference_commit(store: &StateStore, height: u32, mut pairs: Vec<(Bytes, Bytes)>) -> (Hash, u64) {
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

    fn reference_update(store: &StateStore, depth: usize, updates: &[(Hash, Hash)], nodes: &mut NodeWriter) -> Subtree {
        let &(path, _) = updates.first().unwrap();
        match store.node(depth, &path).unwrap() {
            Some(Node::Branch(_)) => {
                let split = updates.partition_point(|(path, _)| !bit(path, depth));
                let mut sides = [Subtree::Empty; 2];
                for (side, updates) in [&updates[..split], &updates[split..]].into_iter().enumerate() {
                    sides[side] = match updates.is_empty() {
                        true => Node::subtree(store.node(depth + 1, &with_bit(path, depth, side == 1)).unwrap()),
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
    fn contents(store: &StateStore) -> Vec<(&'static str, Box<[u8]>, Box<[u8]>)> {
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
            let batched = StateStore::open(&dir.path().join("batched")).unwrap();
            let point = StateStore::open(&dir.path().join("point")).unwrap();
            let mut rng = Rng(seed * 0x2545_f491_4f6c_dd1d);
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
        let (spread, point) = (StateStore::open(&dir.path().join("spread")).unwrap(), StateStore::open(&dir.path().join("point")).unwrap());
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
        let store = StateStore::open(&dir.path().join("db")).unwrap();
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
                let walked = store.read_nodes(depth, &keys, Lookup::Walk).unwrap();
                assert_eq!(walked, store.read_nodes(depth, &keys, Lookup::MultiGet).unwrap(), "depth {depth}, every {every}");
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
        let (store, reference) = (StateStore::open(&dir.path().join("a")).unwrap(), StateStore::open(&dir.path().join("b")).unwrap());
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
        let store = StateStore::open(&dir.path().join("db")).unwrap();
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
        let error = StateStore::open(dir.path()).err().unwrap().to_string();
        assert!(error.contains("\"leaves\"") && error.contains("another version"), "{error}");
    }
}
