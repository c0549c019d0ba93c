//! Where a run commits its blocks: this runner's own layout (`state_store`: the pairs and a
//! real state root, the default) or metashrew's (`metashrew_store`: append-only histories, for
//! comparing a run with a production node's database). The host reads and the runner commits
//! through [`Database`], whichever it is.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use prost::bytes::Bytes;
use rocksdb::{DBPinnableSlice, Options, DB};

use crate::metashrew_store::MetashrewStore;
use crate::state_root::Hash;
use crate::state_store::StateStore;

/// A database layout (`--layout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// This runner's: the pairs as flushed, the state trie, the real state root.
    Memrepro,
    /// metashrew's, optionally under `LABEL://`.
    Metashrew { label: Option<String> },
}

impl Layout {
    pub fn name(&self) -> &'static str {
        match self {
            Layout::Memrepro => "memrepro",
            Layout::Metashrew { .. } => "metashrew",
        }
    }

    /// The layout of the existing database in `dir`, told by its column families (metashrew
    /// keeps everything in `default`); `label` is the node's, if it ran with one.
    pub fn of_existing(dir: &Path, label: Option<String>) -> Result<Layout> {
        anyhow::ensure!(dir.join("CURRENT").exists(), "{} is not a RocksDB directory (no CURRENT file)", dir.display());
        let families = DB::list_cf(&Options::default(), dir).with_context(|| format!("reading the column families of {}", dir.display()))?;
        Ok(match families == ["default"] {
            true => Layout::Metashrew { label },
            false => Layout::Memrepro,
        })
    }
}

/// An open database of either layout (clones share it).
#[derive(Clone)]
pub enum Database {
    Memrepro(StateStore),
    Metashrew(Arc<MetashrewStore>),
}

/// A value read for the guest: pinned in RocksDB (this runner's layout) or decoded from a
/// history entry (metashrew's).
pub enum Value<'a> {
    Pinned(DBPinnableSlice<'a>),
    Decoded(Vec<u8>),
}

impl std::ops::Deref for Value<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Value::Pinned(slice) => slice,
            Value::Decoded(bytes) => bytes,
        }
    }
}

impl Database {
    /// Opens (creating if needed) a database of `layout` in `dir`.
    pub fn open(dir: &Path, layout: &Layout) -> Result<Database> {
        Ok(match layout {
            Layout::Memrepro => Database::Memrepro(StateStore::open(dir)?),
            Layout::Metashrew { label } => Database::Metashrew(Arc::new(MetashrewStore::open(dir, label.as_deref())?)),
        })
    }

    /// Opens the existing database in `dir`, of whichever layout, without writing to it.
    pub fn open_read_only(dir: &Path, label: Option<String>) -> Result<Database> {
        Ok(match Layout::of_existing(dir, label)? {
            Layout::Memrepro => Database::Memrepro(StateStore::open_read_only(dir)?),
            Layout::Metashrew { label } => Database::Metashrew(Arc::new(MetashrewStore::open_read_only(dir, label.as_deref())?)),
        })
    }

    /// What the database holds: its tip, root, stress result and dump (`host-runner state`).
    pub fn stored_state(self, dump_file: Option<&Path>) -> Result<schema::StoredState> {
        let tip = self.tip()?;
        let state_root = hex::encode(self.state_root()?);
        let stress_result = crate::runner::stress_result(&self, tip)?;
        let (dump, dump_file) = self.dump_inline_or_to(dump_file)?;
        Ok(schema::StoredState { tip, state_root, stress_result, dump, dump_file })
    }

    /// The value under `key` that a call at `height` sees: metashrew's layout keeps every
    /// height's value, and a block sees the state before it (`block`), a view the state at its
    /// height. This runner's layout holds the last committed state, which is that state
    /// whenever blocks are run in order.
    pub fn value(&self, key: &[u8], height: u32, block: bool) -> Result<Option<Value<'_>>> {
        match self {
            Database::Memrepro(store) => Ok(store.get_pinned(key)?.map(Value::Pinned)),
            Database::Metashrew(store) => {
                let as_of = match block {
                    true => match height.checked_sub(1) {
                        Some(before) => before,
                        None => return Ok(None),
                    },
                    false => height,
                };
                Ok(store.value_as_of(key, as_of)?.map(Value::Decoded))
            }
        }
    }

    /// The length of [`Database::value`], without loading a value where the layout can avoid it.
    pub fn value_len(&self, key: &[u8], height: u32, block: bool) -> Result<Option<u64>> {
        match self {
            Database::Memrepro(store) => store.value_len(key),
            Database::Metashrew(_) => Ok(self.value(key, height, block)?.map(|value| value.len() as u64)),
        }
    }

    /// Commits block `height` in one batch: its `pairs` in flush order (`payload` gives
    /// metashrew's layout the block hash). Returns the layout's root after it.
    pub fn commit_block(&self, height: u32, payload: &[u8], pairs: Vec<(Bytes, Bytes)>, node_allowance: Option<u64>) -> Result<Hash> {
        match self {
            Database::Memrepro(store) => store.commit_block(height, pairs, node_allowance),
            Database::Metashrew(store) => store.commit_block(height, payload, &pairs),
        }
    }

    /// The root after the last block: the real state root, or metashrew's `smt:root`.
    pub fn state_root(&self) -> Result<Hash> {
        match self {
            Database::Memrepro(store) => store.state_root(),
            Database::Metashrew(store) => store.state_root(),
        }
    }

    pub fn tip(&self) -> Result<Option<u32>> {
        match self {
            Database::Memrepro(store) => store.tip(),
            Database::Metashrew(store) => store.tip(),
        }
    }

    pub fn sync(&self) -> Result<()> {
        match self {
            Database::Memrepro(store) => store.sync(),
            Database::Metashrew(store) => store.sync(),
        }
    }

    /// The latest value under `key`.
    pub fn latest(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            Database::Memrepro(store) => store.get(key),
            Database::Metashrew(store) => store.value_as_of(key, u32::MAX),
        }
    }

    /// The dump of the latest state, inline or streamed to `file`. Closes the store.
    pub fn dump_inline_or_to(self, file: Option<&Path>) -> Result<(Vec<String>, Option<schema::DumpFile>)> {
        match self {
            Database::Memrepro(store) => crate::dump::dump_inline_or_to(&store, file),
            Database::Metashrew(store) => {
                let tip = store.tip()?;
                let store = Arc::try_unwrap(store).map_err(|_| anyhow::anyhow!("the database is still in use: cannot dump it"))?;
                let node = store.into_reader();
                let Some(tip) = tip else { return Ok((Vec::new(), file.map(|f| empty_dump(f)).transpose()?)) };
                match file {
                    Some(path) => {
                        let scratch = tempfile::tempdir_in(beside(path)).context("a scratch directory beside the dump")?;
                        let written = crate::runner::write_atomically_with(path, |out| node.write_state(tip, scratch.path(), out))?;
                        Ok((Vec::new(), Some(schema::DumpFile { path: path.display().to_string(), ..written })))
                    }
                    None => {
                        let scratch = tempfile::tempdir().context("a scratch directory for the dump")?;
                        let mut text = Vec::new();
                        node.write_state(tip, scratch.path(), &mut text)?;
                        Ok((String::from_utf8(text)?.lines().map(str::to_string).collect(), None))
                    }
                }
            }
        }
    }
}

fn beside(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn empty_dump(path: &Path) -> Result<schema::DumpFile> {
    let written = crate::runner::write_atomically_with(path, |out| crate::dump::write_entries(std::iter::empty(), out))?;
    Ok(schema::DumpFile { path: path.display().to_string(), ..written })
}
