//! Every RocksDB option of our layout, memory first: the runner's memory is bounded by
//! construction.

use std::path::Path;

use anyhow::{Context, Result};
use rocksdb::{ColumnFamilyDescriptor, Options, DB};

pub(super) const DEFAULT: &str = "default";
pub(super) const RECORDS: &str = "records";
pub(super) const META: &str = "meta";
pub(super) const FAMILIES: [&str; 3] = [DEFAULT, RECORDS, META];

/// Every RocksDB setting that decides how much memory the store holds, so that the runner's
/// memory is bounded by construction (the deterministic policy's preflight counts on it, and
/// `cargo xtask bench` measures the runner's baseline with these settings).
pub mod memory {
    /// One memtable of a column family; a write past it starts a new one and a flush. A large
    /// block's batch fits one without a flush mid-commit (measured with the former trie layout:
    /// 4 MiB memtables made the commit of the large real blocks 40% slower).
    pub const WRITE_BUFFER: usize = 8 << 20;
    /// All memtables of all families together (RocksDB's write buffer manager flushes past it).
    /// They are charged to the block cache: memtables and cached blocks share [`BLOCK_CACHE`].
    pub const ALL_MEMTABLES: usize = 8 << 20;
    /// The one block cache of all families, memtables included: the most the runner's memory
    /// grows by as its state grows from nothing (`cargo xtask bench --only streaming`: +12 MiB
    /// from 1,000 blocks to 50,000; with 12 MiB here, +17, the lattice root's smaller state
    /// filling the cache later than the trie's did). Index and filter blocks live in it too (not beside it, per
    /// open table file), so reading a large state costs no more than this. They are partitioned
    /// (4 KiB partitions, the top level pinned): a whole index or filter of a large table would
    /// be megabytes, evicted and read again at every lookup in a cache this size.
    pub const BLOCK_CACHE: usize = 8 << 20;
    /// Values from this size on are kept in blob files (RocksDB's integrated BlobDB). Flushing a
    /// memtable builds table blocks in memory, and a block holding a large value holds it whole,
    /// twice (measured: a 180 MiB value took the flush to three copies of it); a blob file is
    /// written straight from the memtable, so a block's commit never holds more than twice its
    /// flushes.
    pub const BLOB_FROM: u64 = 64 << 10;
}

/// How the store is opened: the DB-wide options and every family's, sharing one block cache
/// that the memtables are charged to.
pub(super) fn open_options() -> Result<(Options, Vec<ColumnFamilyDescriptor>)> {
    let cache = rocksdb::Cache::new_lru_cache(memory::BLOCK_CACHE);
    let families = FAMILIES.iter().map(|name| ColumnFamilyDescriptor::new(*name, family_options(name, &cache))).collect();
    Ok((db_options(cache)?, families))
}

/// DB-wide options: memory as in [`memory`], reads through the cache (no mmap), table files as
/// the process's file limit allows.
fn db_options(cache: rocksdb::Cache) -> Result<Options> {
    let mut options = Options::default();
    options.set_write_buffer_manager(&rocksdb::WriteBufferManager::new_write_buffer_manager_with_cache(memory::ALL_MEMTABLES, false, cache));
    options.set_max_open_files(crate::rocks::table_files()?);
    options.set_allow_mmap_reads(false);
    options.set_allow_mmap_writes(false);
    options.set_max_background_jobs(2);
    Ok(options)
}

/// A family's options, sharing `cache`. A commit looks up each key it writes (its record, or its
/// small value), and a new key's lookups miss: a Bloom filter answers those without reading.
pub(super) fn family_options(name: &str, cache: &rocksdb::Cache) -> Options {
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
    if name != META {
        table.set_bloom_filter(10.0, false);
    }
    let mut options = Options::default();
    // Uncompressed, as before the codecs were built in (RocksDB would default to Snappy).
    options.set_compression_type(rocksdb::DBCompressionType::None);
    options.set_write_buffer_size(memory::WRITE_BUFFER);
    options.set_max_write_buffer_number(2);
    // Level 0's table files overlap, so a lookup probes each: a commit looks up every key it
    // writes, and compacting them into level 1 at two files, not four, keeps that short
    // (measured: the 100,000-key blocks into 100,000 to 400,000 keys, 1.6–1.95× their floor with
    // four, ≤ 1.56× with two).
    options.set_level_zero_file_num_compaction_trigger(2);
    options.set_block_based_table_factory(&table);
    if name == DEFAULT {
        options.set_enable_blob_files(true);
        options.set_min_blob_size(memory::BLOB_FROM);
    }
    options
}

/// A new RocksDB in `dir` with the store's options and column families and nothing else in it:
/// what a commit is measured against (`host-runner bench commit` writes the same pairs into it
/// in one plain batch).
pub fn open_plain_db(dir: &Path) -> Result<DB> {
    let (mut options, families) = open_options()?;
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    DB::open_cf_descriptors(&options, dir, families).with_context(|| format!("creating RocksDB in {}", dir.display()))
}

/// Refuses a database made by another layout (e.g. an older host-runner's) with a clear message.
pub(super) fn check_families(dir: &Path) -> Result<()> {
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
