//! [`Database`]: an open database of either layout, which the host reads and the runner commits
//! through: ours ([`crate::trie`], the default) or metashrew's ([`crate::metashrew`], for
//! comparing a run with a production node's database).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;

use crate::files::{directory_of, write_atomically_with};
use crate::layout::DbLayout;
use crate::rocks::holds_a_metashrew_layout;
use crate::metashrew::{MetashrewStore, RolledBack};
use crate::trie::{Hash, TrieStore};
use crate::value::{Found, Value};

/// An open database of either layout (clones share it).
#[derive(Clone)]
pub enum Database {
    Trie(TrieStore),
    Metashrew(Arc<MetashrewStore>),
}

impl Database {
    /// Opens (creating if needed) a database of `layout` in `dir`.
    pub fn open(dir: &Path, layout: &DbLayout) -> Result<Database> {
        Ok(match layout {
            DbLayout::Trie => Database::Trie(TrieStore::open(dir)?),
            DbLayout::Metashrew { label, version } => Database::Metashrew(Arc::new(MetashrewStore::open(dir, label.as_deref(), *version)?)),
        })
    }

    /// Opens the existing database in `dir`, of whichever layout (told by its column families,
    /// and for metashrew's by its histories), without writing to it.
    pub fn open_read_only(dir: &Path, label: Option<String>) -> Result<Database> {
        // Before the families are told apart: ours, half made, holds `default` alone.
        if dir.join(crate::trie::CREATING).exists() {
            return Ok(Database::Trie(TrieStore::open_read_only(dir)?));
        }
        Ok(match holds_a_metashrew_layout(dir)? {
            false => Database::Trie(TrieStore::open_read_only(dir)?),
            true => Database::Metashrew(Arc::new(MetashrewStore::open_read_only(dir, label.as_deref())?)),
        })
    }

    /// Makes the database in `dir` (a snapshot's copy: it is written) hold its state as of
    /// `height` (default: its tip), and opens it for indexing after it: metashrew's layouts are
    /// rolled back to it; ours keeps only its latest state, so only its tip will do.
    pub fn snapshot_at(dir: &Path, label: Option<String>, height: Option<u32>) -> Result<(Database, Option<RolledBack>)> {
        let layout = match Database::open_read_only(dir, label.clone())? {
            Database::Trie(store) => {
                let tip = store.tip()?.context("the snapshot holds no block")?;
                if let Some(height) = height.filter(|h| *h != tip) {
                    anyhow::bail!("the snapshot is in our layout, which keeps only its latest state (height {tip}): --at {height} needs a metashrew-layout database");
                }
                DbLayout::Trie
            }
            Database::Metashrew(store) => DbLayout::Metashrew { label, version: store.version() },
        };
        let database = Database::open(dir, &layout)?;
        let rolled = match (&database, height) {
            (Database::Metashrew(store), Some(height)) => Some(store.roll_back_to(height)?),
            _ => None,
        };
        Ok((database, rolled))
    }

    /// The layout this database is in.
    pub fn layout(&self) -> DbLayout {
        match self {
            Database::Trie(_) => DbLayout::Trie,
            Database::Metashrew(store) => DbLayout::Metashrew { label: store.label(), version: store.version() },
        }
    }

    /// The value under `key` that a call at `height` sees: metashrew's layout keeps every
    /// height's value, and a block sees the state before it (`block`), a view the state at its
    /// height. This runner's layout holds the last committed state, which is that state
    /// whenever blocks are run in order.
    pub fn value(&self, key: &[u8], height: u32, block: bool) -> Result<Option<Value<'_>>> {
        match self {
            Database::Trie(store) => Ok(store.get_pinned(key)?.map(Value::Pinned)),
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

    /// What [`Database::value`] finds, the value itself unless it is large enough that its
    /// layout can tell its length without loading it (so a read is charged before it is made).
    pub fn find(&self, key: &[u8], height: u32, block: bool) -> Result<Option<Found<'_>>> {
        match self {
            Database::Trie(store) => store.find(key),
            Database::Metashrew(_) => Ok(self.value(key, height, block)?.map(Found::Value)),
        }
    }

    /// Commits block `height` in one batch: its `pairs` in flush order (`payload` gives
    /// metashrew's layout the block hash). Returns the layout's root after it.
    pub fn commit_block(&self, height: u32, payload: &[u8], pairs: Vec<(Bytes, Bytes)>) -> Result<Hash> {
        match self {
            Database::Trie(store) => store.commit_block(height, pairs),
            Database::Metashrew(store) => store.commit_block(height, payload, &pairs),
        }
    }

    /// The root after the last block: the real state root, or metashrew's `smt:root`.
    pub fn state_root(&self) -> Result<Hash> {
        match self {
            Database::Trie(store) => store.state_root(),
            Database::Metashrew(store) => store.state_root(),
        }
    }

    pub fn tip(&self) -> Result<Option<u32>> {
        match self {
            Database::Trie(store) => store.tip(),
            Database::Metashrew(store) => store.tip(),
        }
    }

    pub fn sync(&self) -> Result<()> {
        match self {
            Database::Trie(store) => store.sync(),
            Database::Metashrew(store) => store.sync(),
        }
    }

    /// The latest value under `key`.
    pub fn latest(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            Database::Trie(store) => store.get(key),
            Database::Metashrew(store) => store.value_as_of(key, u32::MAX),
        }
    }

    /// Makes the committed state durable, then [`Database::dump_inline_or_to`]. Ours writes its
    /// memtables out on another thread while the dump reads them.
    pub fn sync_and_dump(self, file: Option<&Path>) -> Result<(Vec<String>, Option<schema::DumpFile>)> {
        let syncing = match &self {
            Database::Trie(store) => Some(store.clone()),
            Database::Metashrew(_) => None,
        };
        std::thread::scope(|scope| {
            // The thread holds the database open until its memtables are written.
            let synced = syncing.and_then(|store| std::thread::Builder::new().spawn_scoped(scope, move || store.sync()).ok());
            if synced.is_none() {
                self.sync()?;
            }
            let dumped = self.dump_inline_or_to(file);
            if let Some(synced) = synced {
                synced.join().map_err(|_| anyhow::anyhow!("writing the memtables out panicked"))??;
            }
            dumped
        })
    }

    /// The dump of the latest state, inline or streamed to `file`. Closes the store.
    pub fn dump_inline_or_to(self, file: Option<&Path>) -> Result<(Vec<String>, Option<schema::DumpFile>)> {
        match self {
            Database::Trie(store) => crate::dump::inline_or_to(store.entries(), file),
            Database::Metashrew(store) => {
                let store = Arc::try_unwrap(store).map_err(|_| anyhow::anyhow!("the database is still in use: cannot dump it"))?;
                metashrew_dump(store, file)
            }
        }
    }
}

/// The dump of a metashrew-layout database's state at its tip, sorted through a scratch RocksDB
/// beside the dump file (or in the temporary directory for an inline dump).
fn metashrew_dump(store: MetashrewStore, file: Option<&Path>) -> Result<(Vec<String>, Option<schema::DumpFile>)> {
    let tip = store.tip()?;
    let node = store.into_reader();
    let Some(tip) = tip else { return crate::dump::inline_or_to(std::iter::empty(), file) };
    match file {
        Some(path) => {
            let scratch = tempfile::tempdir_in(directory_of(path)).context("a scratch directory beside the dump")?;
            let written = write_atomically_with(path, |out| node.write_state(tip, scratch.path(), out))?;
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
