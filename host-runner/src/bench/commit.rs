//! A block's commit against its floor: the same pairs in one plain RocksDB `WriteBatch`, and the
//! hashing the state root asks of them alone.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use blocks::Block;
use bytes::Bytes;
use serde_json::{json, Value};
use state::rocksdb;
use state::trie::{open_plain_db, root_of, TrieStore};
use state::Database;

use super::store::synthetic_blocks;
use super::guests::PAIRS_GUEST;
use super::timing::{median, TIME_LIMIT};
use crate::engine::{engine, Guest, LinearMemory, MemoryPolicy};
use crate::process::elapsed_ms;

/// What `bench commit` measures.
pub struct CommitBench {
    /// The guest whose flushes are committed; [`PAIRS_GUEST`] when `None`.
    pub wasm: Option<std::path::PathBuf>,
    /// The blocks timed, in order, each committed into the state the ones before it left.
    pub blocks: Vec<Block>,
    /// Blocks run and committed first, untimed: the state the timed blocks are committed into.
    pub after: Vec<Block>,
    /// Synthetic keys committed first, untimed ([`super::make_store`]'s shape).
    pub state_keys: u64,
    /// Synthetic keys committed after the blocks, timed, in blocks of [`super::store::SYNTHETIC_BLOCK`].
    pub synthetic_keys: u64,
    pub runs: usize,
}

/// Each block's pairs, exactly as the guest flushes them in `Guest::run_block`, committed by
/// `TrieStore::commit_block` (pairs, records, lattice, root, one batch) against one plain
/// `WriteBatch` of the same pairs into a second database with the store's options, against
/// the hashing the state root asks of the pairs alone ([`root_from_scratch`]), and against the
/// lookup of the values they replace ([`former_values_lookup`]). Every run
/// starts from new databases holding the same pairs (the plain one without the records and the
/// lattice); the two writes alternate which goes first, and after each block both flush their
/// memtables and finish their compactions (untimed) so the next block finds them alike.
pub fn commit(bench: &CommitBench) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let guest = bench_guest(bench, dir.path())?;
    let mut timed: Vec<Vec<Times>> = vec![Vec::new(); bench.blocks.len()];
    let mut shapes = Vec::new();
    for run in 0..bench.runs.max(1) {
        let run_dir = tempfile::tempdir_in(dir.path())?;
        let stores = Stores::before_the_timed_blocks(run_dir.path(), bench, &guest)?;
        shapes.clear();
        for (block, times) in bench.blocks.iter().zip(&mut timed) {
            let pairs = flushed(&guest, &stores.trie, block)?;
            shapes.push(shape(block.height, &pairs));
            times.push(stores.time(block.height, pairs, run % 2 == 1)?);
        }
        let synthetic = bench.state_keys..bench.state_keys + bench.synthetic_keys;
        for (i, pairs) in synthetic_blocks(synthetic, u64::MAX).enumerate() {
            let height = SYNTHETIC_HEIGHTS + i as u32;
            shapes.push(shape(height, &pairs));
            if timed.len() < shapes.len() {
                timed.push(Vec::new());
            }
            timed[shapes.len() - 1].push(stores.time(height, pairs, run % 2 == 1)?);
        }
    }
    Ok(json!({
        "guest": bench.wasm.as_ref().map_or("built-in pairs guest".into(), |w| w.display().to_string()),
        "runs": bench.runs.max(1),
        "state_keys": bench.state_keys,
        "after_blocks": bench.after.len(),
        "blocks": shapes.into_iter().zip(&timed).map(|(shape, times)| summary(shape, times)).collect::<Vec<_>>(),
    }))
}

/// The guest whose flushes are committed: the bench's, or [`PAIRS_GUEST`] written into `dir`.
fn bench_guest(bench: &CommitBench, dir: &std::path::Path) -> Result<Guest> {
    let wasm = match &bench.wasm {
        Some(wasm) => wasm.clone(),
        None => {
            let wasm = dir.join("pairs.wat");
            std::fs::write(&wasm, PAIRS_GUEST)?;
            wasm
        }
    };
    let kind = schema::EngineKind::Memrepro;
    Guest::load(&engine(kind, MemoryPolicy::Unbounded, LinearMemory::Reserved, None)?, kind, MemoryPolicy::Unbounded, TIME_LIMIT, &wasm)
}

/// The heights the timed synthetic blocks are committed at (after any real block's).
const SYNTHETIC_HEIGHTS: u32 = 1 << 30;

/// One block's times in milliseconds: the commit, the plain batch, the root's hashing alone, the
/// lookup of the values the pairs replace.
type Times = [f64; 4];

/// The store a commit writes and the plain database its floor writes, holding the same pairs.
struct Stores {
    trie: TrieStore,
    plain: rocksdb::DB,
}

impl Stores {
    /// New stores in `dir` holding the bench's state before its timed blocks (untimed).
    fn before_the_timed_blocks(dir: &std::path::Path, bench: &CommitBench, guest: &Guest) -> Result<Self> {
        let stores = Stores { trie: TrieStore::open(&dir.join("store"))?, plain: open_plain_db(&dir.join("plain"))? };
        for (height, pairs) in synthetic_blocks(0..bench.state_keys, u64::MAX).enumerate() {
            plain_batch(&stores.plain, &pairs)?;
            stores.trie.commit_block(height as u32, pairs)?;
        }
        for block in &bench.after {
            let pairs = flushed(guest, &stores.trie, block)?;
            plain_batch(&stores.plain, &pairs)?;
            stores.trie.commit_block(block.height, pairs)?;
        }
        stores.flush()?;
        Ok(stores)
    }

    /// Times `block`'s commit of `pairs`, its plain batch and its root's hashing, the commit
    /// first or last; then both flush their memtables (untimed) so the next block finds them alike.
    fn time(&self, height: u32, pairs: Vec<(Bytes, Bytes)>, commit_last: bool) -> Result<Times> {
        // Given its own copy of the pairs (cheap: `Bytes` are shared) before the clock starts.
        let commit = |pairs: Vec<(Bytes, Bytes)>| -> Result<f64> {
            let started = Instant::now();
            self.trie.commit_block(height, pairs)?;
            Ok(elapsed_ms(started))
        };
        let plain_write = |pairs: &[(Bytes, Bytes)]| -> Result<f64> {
            let started = Instant::now();
            plain_batch(&self.plain, pairs)?;
            Ok(elapsed_ms(started))
        };
        let times = match commit_last {
            false => {
                let commit_ms = commit(pairs.clone())?;
                let lookup_ms = former_values_lookup(&self.plain, &pairs)?;
                [commit_ms, plain_write(&pairs)?, root_from_scratch(&pairs), lookup_ms]
            }
            true => {
                let hash_ms = root_from_scratch(&pairs);
                let lookup_ms = former_values_lookup(&self.plain, &pairs)?;
                let plain_ms = plain_write(&pairs)?;
                [commit(pairs.clone())?, plain_ms, hash_ms, lookup_ms]
            }
        };
        self.flush()?;
        Ok(times)
    }

    /// Both memtables written out, and both databases' compactions done: no background work
    /// left to slow the next block's timing.
    fn flush(&self) -> Result<()> {
        self.trie.sync()?;
        self.plain.flush().context("flushing the plain database")?;
        self.trie.wait_for_compactions()?;
        self.plain.wait_for_compact(&rocksdb::WaitForCompactOptions::default()).context("waiting for the plain database's compactions")
    }
}

/// A block's height, its pairs, distinct keys and bytes.
fn shape(height: u32, pairs: &[(Bytes, Bytes)]) -> Value {
    let mut keys: Vec<&[u8]> = pairs.iter().map(|(key, _)| key.as_ref()).collect();
    keys.sort_unstable();
    keys.dedup();
    let bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    json!({ "height": height, "pairs": pairs.len(), "keys": keys.len(), "pair_bytes": bytes })
}

/// A block's `shape` with the medians of its runs' times and the times themselves.
fn summary(mut shape: Value, times: &[Times]) -> Value {
    let column = |i: usize| times.iter().map(|t| t[i]).collect::<Vec<f64>>();
    let (commit_ms, plain_ms, hash_ms, lookup_ms) = (column(0), column(1), column(2), column(3));
    let ratios: Vec<f64> = times.iter().map(|t| t[0] / t[1]).collect();
    shape["commit_ms"] = json!(median(&commit_ms));
    shape["plain_ms"] = json!(median(&plain_ms));
    shape["ratio"] = json!(median(&ratios));
    shape["hash_ms"] = json!(median(&hash_ms));
    shape["lookup_ms"] = json!(median(&lookup_ms));
    shape["commit_ms_runs"] = json!(commit_ms);
    shape["plain_ms_runs"] = json!(plain_ms);
    shape
}

/// The hashing the state root's definition asks of `pairs` alone, whatever the store: each
/// key's last pair's leaf and its vector summed into a lattice (`trie::root_of`), in
/// milliseconds (the last pair of each key found before the clock starts). A floor under any
/// commit of them.
fn root_from_scratch(pairs: &[(Bytes, Bytes)]) -> f64 {
    let last: BTreeMap<&[u8], &[u8]> = pairs.iter().map(|(key, value)| (key.as_ref(), value.as_ref())).collect();
    let started = Instant::now();
    std::hint::black_box(root_of(last));
    elapsed_ms(started)
}

/// What any commit that updates a root incrementally must also do: read the value each key held
/// before (here from the plain database, before the plain batch is written, a chunk of keys at a
/// time on one thread), in milliseconds.
fn former_values_lookup(db: &rocksdb::DB, pairs: &[(Bytes, Bytes)]) -> Result<f64> {
    let mut keys: Vec<&[u8]> = pairs.iter().map(|(key, _)| key.as_ref()).collect();
    keys.sort_unstable();
    keys.dedup();
    let values = db.cf_handle("default").context("the default family")?;
    let started = Instant::now();
    for chunk in keys.chunks(256) {
        for value in db.batched_multi_get_cf(&values, chunk, true) {
            std::hint::black_box(value.context("looking up a former value")?);
        }
    }
    Ok(elapsed_ms(started))
}

/// The pairs `_start` flushes for `block` against `store`.
fn flushed(guest: &Guest, store: &TrieStore, block: &Block) -> Result<Vec<(Bytes, Bytes)>> {
    let execution = guest.run_block(&Database::Trie(store.clone()), block.height, &block.payload);
    execution.result.with_context(|| format!("the guest failed at height {}", block.height))?;
    Ok(execution.pairs)
}

/// The pairs in one `WriteBatch`, written as `commit_block` writes its batch.
fn plain_batch(db: &rocksdb::DB, pairs: &[(Bytes, Bytes)]) -> Result<()> {
    let bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 11).sum();
    let mut batch = rocksdb::WriteBatch::with_capacity_bytes(bytes + 1024);
    for (key, value) in pairs {
        batch.put(key, value);
    }
    db.write(batch).context("writing the plain batch")
}


#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    /// Bytes that look like a block to the pairs guest: no two 40-byte windows alike.
    fn payload(seed: u32) -> Vec<u8> {
        (0..1000u32).flat_map(|i| Sha256::digest([seed.to_le_bytes(), i.to_le_bytes()].concat())[..4].to_vec()).collect()
    }

    #[test]
    fn the_commit_bench_times_every_block_against_a_plain_batch_of_its_pairs() {
        let block = |height: u32| Block { height, payload: payload(height) };
        let figures = commit(&CommitBench { wasm: None, blocks: vec![block(5), block(6)], after: vec![block(4)], state_keys: 1000, synthetic_keys: 2500, runs: 2 }).unwrap();
        assert_eq!((figures["runs"].as_u64(), figures["state_keys"].as_u64(), figures["after_blocks"].as_u64()), (Some(2), Some(1000), Some(1)));
        let blocks = figures["blocks"].as_array().unwrap();
        let heights: Vec<u64> = blocks.iter().map(|b| b["height"].as_u64().unwrap()).collect();
        assert_eq!(heights, [5, 6, u64::from(SYNTHETIC_HEIGHTS)]);
        // The synthetic keys after the blocks, as one block of 2,500, timed in every run.
        assert_eq!((blocks[2]["pairs"].as_u64(), blocks[2]["keys"].as_u64()), (Some(2500), Some(2500)));
        for (i, block) in blocks.iter().enumerate() {
            if i < 2 {
                // (4000 - 200) / 40 + 1 pairs of 36..70 + 8..120 bytes, all keys distinct.
                assert_eq!((block["pairs"].as_u64(), block["keys"].as_u64()), (Some(96), Some(96)), "{block}");
                let bytes = block["pair_bytes"].as_u64().unwrap();
                assert!((96 * 44..=96 * 190).contains(&bytes), "{block}");
            }
            for field in ["commit_ms_runs", "plain_ms_runs"] {
                let runs = block[field].as_array().unwrap();
                assert!(runs.len() == 2 && runs.iter().all(|ms| ms.as_f64().unwrap() > 0.0), "{block}");
            }
            for field in ["commit_ms", "plain_ms", "ratio", "hash_ms", "lookup_ms"] {
                assert!(block[field].as_f64().unwrap() > 0.0, "{block}");
            }
        }
    }
}
