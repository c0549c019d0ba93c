//! Which layout a database is in: named on the command line for a new one, told by its column
//! families for an existing one.

use std::path::Path;

use anyhow::{Context, Result};
use rocksdb::{Options, DB};

/// A database layout (`--layout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLayout {
    /// Ours ([`crate::trie`]): the pairs as flushed, the state trie, the real state root.
    Trie,
    /// metashrew's ([`crate::metashrew`]), its keys under `LABEL://` when the node ran with a label.
    Metashrew { label: Option<String> },
}

impl DbLayout {
    /// The name results and `--layout` use.
    pub fn name(&self) -> &'static str {
        match self {
            DbLayout::Trie => "trie",
            DbLayout::Metashrew { .. } => "metashrew",
        }
    }

    /// The layout of the existing database in `dir`, told by its column families (metashrew
    /// keeps everything in `default`); `label` is the node's, if it ran with one.
    pub fn of_existing(dir: &Path, label: Option<String>) -> Result<DbLayout> {
        Ok(match column_families(dir)? == ["default"] {
            true => DbLayout::Metashrew { label },
            false => DbLayout::Trie,
        })
    }
}

/// The column families of the RocksDB database in `dir`.
pub fn column_families(dir: &Path) -> Result<Vec<String>> {
    anyhow::ensure!(dir.join("CURRENT").exists(), "{} is not a RocksDB directory (no CURRENT file)", dir.display());
    DB::list_cf(&Options::default(), dir).with_context(|| format!("reading the column families of {}", dir.display()))
}
