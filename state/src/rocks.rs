//! What both layouts ask of a RocksDB directory before opening it.

use std::path::Path;

use anyhow::{Context, Result};
use rocksdb::{Options, DB};

/// The column families of the RocksDB database in `dir`: metashrew keeps everything in
/// `default`, our layout has its own families.
pub fn column_families(dir: &Path) -> Result<Vec<String>> {
    anyhow::ensure!(dir.join("CURRENT").exists(), "{} is not a RocksDB directory (no CURRENT file)", dir.display());
    DB::list_cf(&Options::default(), dir).with_context(|| format!("reading the column families of {}", dir.display()))
}

/// Whether the database in `dir` is in one of metashrew's layouts (only `default`).
pub fn holds_a_metashrew_layout(dir: &Path) -> Result<bool> {
    Ok(column_families(dir)? == ["default"])
}
