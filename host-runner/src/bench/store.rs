//! Stores of N synthetic keys, in either layout: the state the dump, node-diff and commit
//! figures are measured over.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use state::{Database, DbLayout};

/// A store of `keys` keys (`/bench/{i:08}` → 32 bytes) in `layout`, committed in blocks of
/// 100,000 like an indexer would; `changed` of them, evenly spread, get other values (the
/// "other node").
pub fn make_store(db: &Path, keys: u64, changed: u64, layout: &DbLayout) -> Result<Value> {
    anyhow::ensure!(!db.exists(), "{} exists: make_store builds a new store", db.display());
    let store = Database::open(db, layout)?;
    let every = if changed == 0 { u64::MAX } else { (keys / changed).max(1) };
    let started = Instant::now();
    let mut root = [0; 32];
    for (height, pairs) in synthetic_blocks(0..keys, every).enumerate() {
        root = store.commit_block(height as u32, &[], pairs)?;
    }
    store.sync()?;
    Ok(json!({ "keys": keys, "changed": changed, "secs": started.elapsed().as_secs_f64(), "state_root": hex::encode(root) }))
}

/// Synthetic pairs `keys` (`/bench/{i:08}` → 32 bytes) in blocks of [`SYNTHETIC_BLOCK`]; every
/// `every`th key from `every / 2` on has another value.
/// Keys in a synthetic block.
pub(super) const SYNTHETIC_BLOCK: u64 = 100_000;

pub(super) fn synthetic_blocks(keys: std::ops::Range<u64>, every: u64) -> impl Iterator<Item = Vec<(Bytes, Bytes)>> {
    keys.clone().step_by(SYNTHETIC_BLOCK as usize).map(move |start| {
        (start..keys.end.min(start + SYNTHETIC_BLOCK))
            .map(|i| {
                let seed = if i % every == every / 2 { i | 1 << 63 } else { i };
                (Bytes::from(format!("/bench/{i:08}")), Bytes::from(Sha256::digest(seed.to_le_bytes()).to_vec()))
            })
            .collect()
    })
}
