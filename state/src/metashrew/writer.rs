//! Indexing into metashrew's own database layouts (`host-runner run --layout metashrew` for v9,
//! `--layout metashrew-v10`), so that a run of ours can be compared key for key with a production
//! node's database (`metashrew-diff`, `cargo xtask diff --db`). Each block is committed as
//! metashrew commits it, in one `WriteBatch`:
//!
//! - every flushed pair appends an entry `KEY/N` (its height and value, in the version's
//!   encoding) to KEY's history and sets `KEY/length`: one entry per occurrence, in flush order (a
//!   key flushed twice in a block gets two entries at that height; the later one is its value);
//! - v9: `smt:root:{height}` = [`last_pair_hash`] of the block's last pair (what metashrew calls
//!   its state root, though it commits to that pair alone), or the root of the block committed
//!   before it (32 zero bytes before any) when it flushed nothing;
//! - v10: `/__INTERNAL/keys-at-height/{height}` = the keys the block wrote, when it wrote any;
//! - `/__INTERNAL/tip-height` = the height (u32 LE). With a label, all of the above are under
//!   `LABEL://` (the root is still computed over the key as the guest flushed it);
//! - what metashrew's sync layer adds, never labelled: `__INTERNAL/height` = the height (u32 LE)
//!   and `/__INTERNAL/height-to-hash/{height}` = the block hash in display order, when the
//!   block's payload is a Bitcoin block (a stress payload has no hash, and none is written).
//!
//! A block reads the state as of the height before it (`__get` never sees the block's own
//! flushes), as metashrew's runtime does. [`super::MetashrewDb`] reads the layout back.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use bytes::Bytes;
use rocksdb::{Options, WriteBatch, DB};
use sha2::{Digest, Sha256};

use super::keys::{self, Version};
use super::reader::MetashrewDb;
use crate::rocks::{column_families, holds_a_metashrew_layout};
use crate::trie::Hash;

/// A metashrew-layout database open for indexing: [`MetashrewDb`]'s reads, and commits.
pub struct MetashrewStore {
    pub(super) node: MetashrewDb,
}

impl MetashrewStore {
    /// Opens (creating if needed) a database of metashrew's `version` layout in `dir`. A
    /// database of our own layout, or of the other version, is refused.
    pub fn open(dir: &Path, label: Option<&str>, version: Version) -> Result<Self> {
        if dir.join("CURRENT").exists() {
            refuse_another_layout(dir, label, version)?;
        }
        let db = DB::open(&options()?, dir).with_context(|| format!("opening the metashrew-layout database {}", dir.display()))?;
        Ok(Self { node: MetashrewDb::with_db(db, label, version) })
    }

    /// Opens the metashrew-layout database in `dir` without writing to it.
    pub fn open_read_only(dir: &Path, label: Option<&str>) -> Result<Self> {
        Ok(Self { node: MetashrewDb::open(dir, label, None)? })
    }

    /// The value of `key` as of `height` ([`MetashrewDb::value_as_of`]).
    pub fn value_as_of(&self, key: &[u8], height: u32) -> Result<Option<Vec<u8>>> {
        self.node.value_as_of(key, height)
    }

    /// Which of metashrew's layouts it is in.
    pub fn version(&self) -> Version {
        self.node.version()
    }

    /// The label its keys are under, if any.
    pub fn label(&self) -> Option<String> {
        let prefix = self.node.prefix.strip_suffix(b"://")?;
        Some(String::from_utf8_lossy(prefix).into_owned())
    }

    /// The last height committed (`/__INTERNAL/tip-height`).
    pub fn tip(&self) -> Result<Option<u32>> {
        self.node.tip_height()
    }

    /// The root after the last block committed.
    pub fn state_root(&self) -> Result<Hash> {
        match self.tip()? {
            Some(tip) => self.node.recorded_root(tip),
            None => Ok([0; 32]),
        }
    }

    /// Commits block `height` (its payload for the block hash, its pairs in flush order) in one
    /// batch and returns its `smt:root` (v9; 32 zero bytes in v10, which records none).
    pub fn commit_block(&self, height: u32, payload: &[u8], pairs: &[(Bytes, Bytes)]) -> Result<Hash> {
        let mut batch = WriteBatch::default();
        self.append_histories(&mut batch, height, pairs)?;
        let root = match self.node.version() {
            Version::V9 => {
                let root = match pairs.last() {
                    Some((key, value)) => last_pair_hash(key, value),
                    None => self.state_root()?,
                };
                batch.put(self.node.labelled(&keys::root_key(height)), root);
                root
            }
            Version::V10 => {
                if !pairs.is_empty() {
                    batch.put(self.node.labelled(&keys::manifest_key(height)), keys::encode_manifest(pairs.iter().map(|(key, _)| key.as_ref())));
                }
                [0; 32]
            }
        };
        batch.put(self.node.labelled(keys::TIP_HEIGHT.as_bytes()), height.to_le_bytes());
        batch.put(keys::SYNC_HEIGHT, height.to_le_bytes());
        if let Some(hash) = block_hash(payload) {
            batch.put(keys::height_to_hash_key(height), hash);
        }
        self.node.db.write(batch).context("committing the block to RocksDB")?;
        Ok(root)
    }

    /// Appends each pair to its key's history (in flush order) and sets the lengths.
    fn append_histories(&self, batch: &mut WriteBatch, height: u32, pairs: &[(Bytes, Bytes)]) -> Result<()> {
        let mut lengths: HashMap<&[u8], u32> = HashMap::new();
        for (key, value) in pairs {
            let n = match lengths.get(key.as_ref()) {
                Some(&n) => n,
                None => self.node.history_length(key)?,
            };
            batch.put(keys::entry_key(&self.node.labelled(key), n), self.node.version().encode_entry(height, value));
            lengths.insert(key, n + 1);
        }
        for (key, length) in &lengths {
            batch.put(keys::length_key(&self.node.labelled(key)), self.node.version().encode_length(*length));
        }
        Ok(())
    }

    /// The same database, for reading back as a node's ([`MetashrewDb::write_state`]).
    pub fn into_reader(self) -> MetashrewDb {
        self.node
    }

    /// Writes the memtables to table files (durable).
    pub fn sync(&self) -> Result<()> {
        self.node.db.flush().context("flushing RocksDB's memtables")
    }
}

/// What metashrew records as a block's `smt:root`: SHA-256(0x01 ++ key ++ SHA-256(value)) of
/// the block's last pair, which commits to that pair alone, not to the state.
pub fn last_pair_hash(key: &[u8], value: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(key);
    hasher.update(Sha256::digest(value));
    hasher.finalize().into()
}

/// The hash of `payload` in display order, when it is a whole Bitcoin block.
fn block_hash(payload: &[u8]) -> Option<[u8; 32]> {
    let mut hash = ::blocks::bitcoin::decode_block(payload).ok()?.hash;
    hash.reverse();
    Some(hash)
}

/// The options a metashrew layout is written with: tables a node's RocksDB reads. Format
/// version 5 is read by every RocksDB from 6.6 on, so by the 8.x that metashrew's rocksdb crate
/// 0.21 links (the default of ours, 7, is refused there); no compression, which every build reads.
fn options() -> Result<Options> {
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_format_version(TABLE_FORMAT_VERSION);
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_max_open_files(crate::rocks::table_files()?);
    options.set_compression_type(rocksdb::DBCompressionType::None);
    options.set_block_based_table_factory(&table);
    Ok(options)
}

/// The block-based table format our metashrew-layout tables are written in.
pub const TABLE_FORMAT_VERSION: i32 = 5;

/// Refuses to write `version`'s layout into the database in `dir` when it holds ours, or the
/// other version of metashrew's.
fn refuse_another_layout(dir: &Path, label: Option<&str>, version: Version) -> Result<()> {
    if !holds_a_metashrew_layout(dir)? {
        let families = column_families(dir)?;
        anyhow::bail!(
            "{} has column families {families:?}: it is not a metashrew-layout database (one written without --layout metashrew?); index into a new directory",
            dir.display()
        );
    }
    let found = MetashrewDb::open(dir, label, None)?.version();
    anyhow::ensure!(
        found == version,
        "{} holds {} layout, not {}: index into a new directory",
        dir.display(),
        found.layout_name(),
        version.layout_name()
    );
    Ok(())
}
