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

use crate::dump::quoted;
use crate::metashrew_db::{canonical_u32, parse_entry, MetashrewDb};
use crate::state_root::Hash;

pub struct MetashrewStore {
    db: DB,
    /// `LABEL://`, or nothing.
    prefix: Vec<u8>,
}

impl MetashrewStore {
    /// Opens (creating if needed) a metashrew-layout database in `dir`. A database of this
    /// runner's own layout is refused: its column families say so.
    pub fn open(dir: &Path, label: Option<&str>) -> Result<Self> {
        if dir.join("CURRENT").exists() {
            let families = DB::list_cf(&Options::default(), dir).with_context(|| format!("reading the column families of {}", dir.display()))?;
            anyhow::ensure!(
                families == ["default"],
                "{} has column families {families:?}: it is not a metashrew-layout database (one written without --layout metashrew?); index into a new directory",
                dir.display()
            );
        }
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_max_open_files(256);
        let db = DB::open(&options, dir).with_context(|| format!("opening the metashrew-layout database {}", dir.display()))?;
        let prefix = label.map(|label| format!("{label}://").into_bytes()).unwrap_or_default();
        Ok(Self { db, prefix })
    }

    /// Opens the metashrew-layout database in `dir` without writing to it.
    pub fn open_read_only(dir: &Path, label: Option<&str>) -> Result<Self> {
        let mut options = Options::default();
        options.set_max_open_files(256);
        let db = DB::open_for_read_only(&options, dir, false).with_context(|| format!("opening the metashrew-layout database {} read-only", dir.display()))?;
        let prefix = label.map(|label| format!("{label}://").into_bytes()).unwrap_or_default();
        Ok(Self { db, prefix })
    }

    fn labelled(&self, key: &[u8]) -> Vec<u8> {
        [&self.prefix[..], key].concat()
    }

    fn get(&self, raw: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(raw).with_context(|| format!("reading {}", quoted(raw)))
    }

    /// How many entries `key`'s history has (0 without one).
    fn history_length(&self, key: &[u8]) -> Result<u32> {
        let raw = [&self.labelled(key)[..], b"/length"].concat();
        let Some(length) = self.get(&raw)? else { return Ok(0) };
        std::str::from_utf8(&length)
            .ok()
            .and_then(canonical_u32)
            .with_context(|| format!("damaged history of {}: length {} is not a decimal number", quoted(key), quoted(&length)))
    }

    /// The value of `key` as of `height`: its last history entry at or below it, walking back
    /// from the newest (during indexing the newest is almost always it).
    pub fn value_as_of(&self, key: &[u8], height: u32) -> Result<Option<Vec<u8>>> {
        let labelled = self.labelled(key);
        for n in (0..self.history_length(key)?).rev() {
            let raw = [&labelled[..], format!("/{n}").as_bytes()].concat();
            let entry = self.get(&raw)?.with_context(|| format!("damaged history of {}: entry {n} is missing", quoted(key)))?;
            let (at, value) = parse_entry(&entry).map_err(|what| anyhow::anyhow!("damaged history of {}: entry {n}: {what}", quoted(key)))?;
            if at <= height {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// The last height committed (`/__INTERNAL/tip-height`).
    pub fn tip(&self) -> Result<Option<u32>> {
        let raw = self.labelled(b"/__INTERNAL/tip-height");
        match self.get(&raw)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(u32::from_le_bytes(bytes.as_slice().try_into().with_context(|| format!("{}: not a u32", quoted(&raw)))?))),
        }
    }

    /// `smt:root:{height}`, or 32 zero bytes where there is none.
    pub fn root_at(&self, height: u32) -> Result<Hash> {
        let stored = self.get(&self.labelled(format!("smt:root:{height}").as_bytes()))?;
        Ok(stored.and_then(|bytes| bytes.try_into().ok()).unwrap_or_default())
    }

    /// The root after the last block committed.
    pub fn state_root(&self) -> Result<Hash> {
        match self.tip()? {
            Some(tip) => self.root_at(tip),
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
                None => self.history_length(key)?,
            };
            let entry_key = [&self.labelled(key)[..], format!("/{n}").as_bytes()].concat();
            batch.put(entry_key, format!("{height}:{}", hex::encode(value)));
            lengths.insert(key, n + 1);
        }
        for (key, length) in &lengths {
            batch.put([&self.labelled(key)[..], b"/length"].concat(), length.to_string());
        }
        let root = match pairs.last() {
            Some((key, value)) => smt_root(key, value),
            None => self.state_root()?,
        };
        batch.put(self.labelled(format!("smt:root:{height}").as_bytes()), root);
        batch.put(self.labelled(b"/__INTERNAL/tip-height"), height.to_le_bytes());
        batch.put(b"__INTERNAL/height", height.to_le_bytes());
        if let Some(hash) = block_hash(payload) {
            batch.put(format!("/__INTERNAL/height-to-hash/{height}"), hash);
        }
        self.db.write(batch).context("committing the block to RocksDB")?;
        Ok(root)
    }

    /// The same database, for reading back as a node's ([`MetashrewDb::write_state`]).
    pub fn into_reader(self) -> MetashrewDb {
        MetashrewDb::with_db(self.db, self.prefix)
    }

    /// Writes the memtables to table files (durable).
    pub fn sync(&self) -> Result<()> {
        self.db.flush().context("flushing RocksDB's memtables")
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
