//! [`MetashrewDb`]: a metashrew node's database, opened without writing to it (read-only, or as
//! a secondary instance beside a running node), read by point reads. The value of KEY as of
//! height h is its history's last entry whose height is at most h.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rocksdb::{IteratorMode, Options, DB};
use schema::dump::quoted;

use super::keys::{self, canonical_u32, damaged, Internal, Version};

/// A metashrew database, opened without writing to it.
pub struct MetashrewDb {
    pub(super) db: DB,
    /// `LABEL://`, when the node ran with `--label`.
    pub(super) prefix: Vec<u8>,
    /// How its histories are encoded.
    pub(super) version: Version,
}

impl MetashrewDb {
    /// Opens `dir` read-only, or, with `secondary`, as a RocksDB secondary instance (for a
    /// database a running node is writing; `secondary` holds the instance's own files).
    pub fn open(dir: &Path, label: Option<&str>, secondary: Option<&Path>) -> Result<Self> {
        anyhow::ensure!(dir.join("CURRENT").exists(), "{} is not a RocksDB directory (no CURRENT file)", dir.display());
        let mut options = Options::default();
        options.set_max_open_files(crate::rocks::table_files()?);
        let db = match secondary {
            None => DB::open_for_read_only(&options, dir, false),
            Some(own) => DB::open_as_secondary(&options, dir, own).and_then(|db| db.try_catch_up_with_primary().map(|()| db)),
        }
        .with_context(|| format!("opening the metashrew database {}", dir.display()))?;
        let prefix = label_prefix(label);
        let version = detect_version(&db, &prefix).with_context(|| format!("reading {}", dir.display()))?;
        Ok(Self { db, prefix, version })
    }

    /// A database already open in `version`'s layout (e.g. one a run writes), its keys under
    /// `LABEL://` with a label.
    pub fn with_db(db: DB, label: Option<&str>, version: Version) -> Self {
        Self { db, prefix: label_prefix(label), version }
    }

    /// Which of metashrew's layouts the database is in.
    pub fn version(&self) -> Version {
        self.version
    }

    /// `key` as stored: under the label's prefix.
    pub(super) fn labelled(&self, key: &[u8]) -> Vec<u8> {
        keys::labelled(&self.prefix, key)
    }

    /// How many entries `key`'s history has (0 without one).
    pub(super) fn history_length(&self, key: &[u8]) -> Result<u32> {
        match self.get(&keys::length_key(&self.labelled(key)))? {
            None => Ok(0),
            Some(length) => self.version.parse_length(key, &length),
        }
    }

    /// The value of `key` as of `height`, by point reads: its last history entry at or below
    /// it, walking back from the newest (during indexing the newest is almost always it).
    pub fn value_as_of(&self, key: &[u8], height: u32) -> Result<Option<Vec<u8>>> {
        let labelled = self.labelled(key);
        for n in (0..self.history_length(key)?).rev() {
            let entry = self.get(&keys::entry_key(&labelled, n))?;
            let entry = entry.ok_or_else(|| damaged(key, format!("entry {n} is missing")))?;
            let (at, value) = self.version.parse_entry(&entry).map_err(|what| damaged(key, format!("entry {n}: {what}")))?;
            if at <= height {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// The root metashrew recorded for `height` (`smt:root:{height}`), or 32 zero bytes where
    /// there is none (always in v10, which records no root).
    pub fn recorded_root(&self, height: u32) -> Result<[u8; 32]> {
        let stored = self.get(&self.labelled(&keys::root_key(height)))?;
        Ok(stored.and_then(|bytes| bytes.try_into().ok()).unwrap_or_default())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).with_context(|| format!("reading {}", quoted(key)))
    }

    /// The last height indexed (`/__INTERNAL/tip-height`).
    pub fn tip_height(&self) -> Result<Option<u32>> {
        let key = self.labelled(keys::TIP_HEIGHT.as_bytes());
        match self.get(&key)? {
            None => Ok(None),
            Some(bytes) => match <[u8; 4]>::try_from(bytes.as_slice()) {
                Ok(le) => Ok(Some(u32::from_le_bytes(le))),
                Err(_) => bail!("{}: {} bytes, expected a u32", quoted(&key), bytes.len()),
            },
        }
    }

    /// The block hash indexed at `height`, which metashrew's sync layer writes without the
    /// label (a labelled copy is read where there is no other).
    pub fn block_hash(&self, height: u32) -> Result<Option<Vec<u8>>> {
        let key = keys::height_to_hash_key(height);
        match self.get(&key)? {
            Some(hash) => Ok(Some(hash)),
            None if self.prefix.is_empty() => Ok(None),
            None => self.get(&self.labelled(&key)),
        }
    }

    /// Each `(height, hash)` recorded, unlabelled then labelled, in key order (not height order).
    pub fn recorded_hashes(&self) -> impl Iterator<Item = Result<(u32, Box<[u8]>)>> + '_ {
        let prefixes = if self.prefix.is_empty() { vec![Vec::new()] } else { vec![Vec::new(), self.prefix.clone()] };
        prefixes.into_iter().flat_map(move |prefix| {
            let start = keys::labelled(&prefix, keys::HEIGHT_TO_HASH.as_bytes());
            self.db
                .iterator(IteratorMode::From(&start.clone(), rocksdb::Direction::Forward))
                .map(|entry| entry.context("reading block hashes"))
                .take_while(move |entry| entry.as_ref().map_or(true, |(raw, _)| raw.starts_with(&start)))
                .filter_map(move |entry| match entry {
                    Err(error) => Some(Err(error)),
                    Ok((raw, hash)) => {
                        let height = std::str::from_utf8(&raw[prefix.len() + keys::HEIGHT_TO_HASH.len()..]).ok().and_then(canonical_u32)?;
                        Some(Ok((height, hash)))
                    }
                })
        })
    }
}

fn label_prefix(label: Option<&str>) -> Vec<u8> {
    label.map(|label| format!("{label}://").into_bytes()).unwrap_or_default()
}

/// Which layout the database under `prefix` is in, told by its first history: v9's length is
/// ASCII decimal and its entries `{height}:{hex}`, v10's a u32 LE and `[u32 LE height][value]`
/// (a v10 entry cannot read as v9 below height 2^24: its fourth byte is zero). Without any
/// history, a manifest says v10 and a root v9; a database with neither holds no state, and is
/// read as v10.
fn detect_version(db: &DB, prefix: &[u8]) -> Result<Version> {
    let (mut manifest, mut root) = (false, false);
    for record in db.iterator(IteratorMode::From(prefix, rocksdb::Direction::Forward)) {
        let (raw, length) = record.context("iterating the database")?;
        let Some(key) = raw.strip_prefix(prefix) else { break };
        match Internal::of(key) {
            Some(Internal::KeysAtHeight(_)) => manifest = true,
            Some(Internal::Root(_)) => root = true,
            Some(_) => {}
            None => {
                if let Some(owner) = key.strip_suffix(keys::LENGTH_SUFFIX) {
                    return version_of_history(db, &raw[..prefix.len() + owner.len()], owner, &length);
                }
            }
        }
    }
    Ok(if root && !manifest { Version::V9 } else { Version::V10 })
}

/// The layout whose encoding `owner`'s length record and first entry (under `stored`) both
/// read in.
fn version_of_history(db: &DB, stored: &[u8], owner: &[u8], length: &[u8]) -> Result<Version> {
    let first = db.get(keys::entry_key(stored, 0)).context("reading a history entry")?;
    let fits = |version: Version| {
        version.parse_length(owner, length).is_ok() && first.as_deref().is_some_and(|entry| version.parse_entry(entry).is_ok())
    };
    match (fits(Version::V9), fits(Version::V10)) {
        (true, _) => Ok(Version::V9),
        (false, true) => Ok(Version::V10),
        (false, false) => Err(damaged(owner, "neither metashrew's v9 nor its v10 layout reads its length and first entry".into())),
    }
}
