//! Indexing into metashrew's own database layout (`host-runner run --layout metashrew`), so that
//! a run of ours can be compared key for key with a production node's database
//! (`metashrew-diff`, `cargo xtask diff --db`). Each block is committed as metashrew commits it,
//! in one `WriteBatch`:
//!
//! - every flushed pair appends `KEY/N = "{height}:{lowercase hex}"` to KEY's history and sets
//!   `KEY/length`: one entry per occurrence, in flush order (a key flushed twice in a block gets
//!   two entries at that height; the later one is its value);
//! - `smt:root:{height}` = SHA-256(0x01 ++ last key ++ SHA-256(last value)) of the block's last
//!   pair, or the root of the block committed before it (32 zero bytes before any) when it
//!   flushed nothing;
//! - `/__INTERNAL/tip-height` = the height (u32 LE). With a label, all of the above are under
//!   `LABEL://` (the root is still computed over the key as the guest flushed it);
//! - what metashrew's sync layer adds, never labelled: `__INTERNAL/height` = the height (u32 LE)
//!   and `/__INTERNAL/height-to-hash/{height}` = the block hash in display order, when the
//!   block's payload is a Bitcoin block (a stress payload has no hash, and none is written).
//!
//! A block reads the state as of the height before it (`__get` never sees the block's own
//! flushes), as metashrew's runtime does. [`crate::metashrew_db`] reads the layout back.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use prost::bytes::Bytes;
use rocksdb::{Options, WriteBatch, DB};
use sha2::{Digest, Sha256};

use crate::metashrew_db::MetashrewDb;
use crate::state_root::Hash;
use crate::store::Layout;

/// A metashrew-layout database open for indexing: [`MetashrewDb`]'s reads, and commits.
pub struct MetashrewStore {
    node: MetashrewDb,
}

impl MetashrewStore {
    /// Opens (creating if needed) a metashrew-layout database in `dir`. A database of this
    /// runner's own layout is refused: its column families say so.
    pub fn open(dir: &Path, label: Option<&str>) -> Result<Self> {
        if dir.join("CURRENT").exists() && Layout::of_existing(dir, None)? == Layout::Memrepro {
            let families = DB::list_cf(&Options::default(), dir).unwrap_or_default();
            anyhow::bail!(
                "{} has column families {families:?}: it is not a metashrew-layout database (one written without --layout metashrew?); index into a new directory",
                dir.display()
            );
        }
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_max_open_files(256);
        let db = DB::open(&options, dir).with_context(|| format!("opening the metashrew-layout database {}", dir.display()))?;
        Ok(Self { node: MetashrewDb::with_db(db, label) })
    }

    /// Opens the metashrew-layout database in `dir` without writing to it.
    pub fn open_read_only(dir: &Path, label: Option<&str>) -> Result<Self> {
        Ok(Self { node: MetashrewDb::open(dir, label, None)? })
    }

    /// The value of `key` as of `height` ([`MetashrewDb::value_as_of`]).
    pub fn value_as_of(&self, key: &[u8], height: u32) -> Result<Option<Vec<u8>>> {
        self.node.value_as_of(key, height)
    }

    /// The last height committed (`/__INTERNAL/tip-height`).
    pub fn tip(&self) -> Result<Option<u32>> {
        self.node.tip_height()
    }

    /// The root after the last block committed.
    pub fn state_root(&self) -> Result<Hash> {
        match self.tip()? {
            Some(tip) => self.node.smt_root(tip),
            None => Ok([0; 32]),
        }
    }

    /// Commits block `height` (its payload for the block hash, its pairs in flush order) in one
    /// batch and returns its `smt:root`.
    pub fn commit_block(&self, height: u32, payload: &[u8], pairs: &[(Bytes, Bytes)]) -> Result<Hash> {
        let mut batch = WriteBatch::default();
        let mut lengths: HashMap<&[u8], u32> = HashMap::new();
        for (key, value) in pairs {
            let n = match lengths.get(key.as_ref()) {
                Some(&n) => n,
                None => self.node.history_length(key)?,
            };
            let entry_key = [&self.node.labelled(key)[..], format!("/{n}").as_bytes()].concat();
            batch.put(entry_key, format!("{height}:{}", hex::encode(value)));
            lengths.insert(key, n + 1);
        }
        for (key, length) in &lengths {
            batch.put([&self.node.labelled(key)[..], b"/length"].concat(), length.to_string());
        }
        let root = match pairs.last() {
            Some((key, value)) => smt_root(key, value),
            None => self.state_root()?,
        };
        batch.put(self.node.labelled(format!("smt:root:{height}").as_bytes()), root);
        batch.put(self.node.labelled(b"/__INTERNAL/tip-height"), height.to_le_bytes());
        batch.put(b"__INTERNAL/height", height.to_le_bytes());
        if let Some(hash) = block_hash(payload) {
            batch.put(format!("/__INTERNAL/height-to-hash/{height}"), hash);
        }
        self.node.db.write(batch).context("committing the block to RocksDB")?;
        Ok(root)
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

/// metashrew's per-block "state root": a hash of the block's last pair alone.
pub fn smt_root(key: &[u8], value: &[u8]) -> Hash {
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
