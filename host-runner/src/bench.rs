//! `host-runner bench …` (hidden): the measurements `cargo xtask bench` drives, made by the same
//! binary the image ships. Each prints one JSON object; `xtask` lays the figures side by side.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prost::bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wasmtime::{Caller, Engine, Linker, Module, Store};

use crate::blocks::Block;
use crate::host::{elapsed_ms, engine, engine_from, Guest};
use crate::policy::{MemoryLayout, MemoryPolicy};
use crate::runner::{run, RunRequest};
use crate::state_root::{leaf_hash, path_of, root_of, Hash};
use crate::state_store::StateStore;
use crate::store::{Database, Layout};

const TIME_LIMIT: Duration = Duration::from_secs(600);

/// The runner (compile, open RocksDB, run, commit, state root, dump) over `blocks` against a
/// bare wasmtime run of the same `_start`s (default engine, one instance per block, imports that
/// store nothing), `runs` times each, alternating so both see the same machine.
pub fn overhead(wasm: &Path, blocks: &[Block], runs: usize) -> Result<Value> {
    let mut runner_secs = Vec::new();
    let mut bare_secs = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let request = RunRequest {
            wasm: wasm.to_path_buf(),
            db: dir.path().join("db"),
            blocks: blocks.to_vec(),
            engine: schema::EngineKind::Memrepro,
            policy: MemoryPolicy::Unbounded,
            layout: MemoryLayout::Reserved,
            address_space_limit: None,
            time_limit: TIME_LIMIT,
            dump_file: None,
            native_stack: None,
            db_layout: Layout::Memrepro,
        };
        let started = Instant::now();
        let result = run(&request)?;
        runner_secs.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(result.outcome == schema::RunOutcome::Completed, "the guest did not complete: {:?}", result.outcome);
        last = Some(result);

        let started = Instant::now();
        bare_run(wasm, blocks)?;
        bare_secs.push(started.elapsed().as_secs_f64());
    }
    let result = last.context("no runs")?;
    let sum = |ms: fn(&schema::BlockReport) -> f64| result.blocks.iter().map(ms).sum::<f64>();
    Ok(json!({
        "blocks": blocks.len(),
        "runner_secs": runner_secs,
        "bare_secs": bare_secs,
        "stored": result.stress_result,
        "wasm_memory_bytes": result.blocks.iter().map(|b| b.wasm_memory_bytes).max(),
        "flushed_pairs": result.blocks.iter().map(|b| b.flushed_pairs).sum::<u64>(),
        "last_run_ms": {
            "instantiate": sum(|b| b.timings.instantiate_ms),
            "execute": sum(|b| b.timings.execute_ms),
            "commit": sum(|b| b.timings.commit_ms),
        },
    }))
}

/// Each block's `_start` in a fresh instance of one module compiled on wasmtime's default
/// engine, with the metashrew imports reduced to what the guest needs to run: its input, an
/// empty state and flushes that are dropped.
fn bare_run(wasm: &Path, blocks: &[Block]) -> Result<()> {
    let engine = Engine::default();
    let module = Module::from_file(&engine, wasm).map_err(anyhow::Error::from)?;
    let mut linker: Linker<Vec<u8>> = Linker::new(&engine);
    let memory = |caller: &mut Caller<'_, Vec<u8>>| caller.get_export("memory").and_then(|e| e.into_memory()).expect("memory");
    linker.func_wrap("env", "__host_len", |caller: Caller<'_, Vec<u8>>| caller.data().len() as i32)?;
    linker.func_wrap("env", "__load_input", move |mut caller: Caller<'_, Vec<u8>>, ptr: i32| {
        let input = caller.data().clone();
        memory(&mut caller).write(&mut caller, ptr as u32 as usize, &input).map_err(wasmtime::Error::from)
    })?;
    linker.func_wrap("env", "__log", |_: Caller<'_, Vec<u8>>, _: i32| {})?;
    linker.func_wrap("env", "__get_len", |_: Caller<'_, Vec<u8>>, _: i32| 0i32)?;
    linker.func_wrap("env", "__get", |_: Caller<'_, Vec<u8>>, _: i32, _: i32| {})?;
    linker.func_wrap("env", "__flush", |_: Caller<'_, Vec<u8>>, _: i32| {})?;
    linker.define_unknown_imports_as_traps(&module)?;
    for block in blocks {
        let input = [&block.height.to_le_bytes()[..], &block.payload].concat();
        let mut store = Store::new(&engine, input);
        let instance = linker.instantiate(&mut store, &module).map_err(anyhow::Error::from)?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start").map_err(anyhow::Error::from)?;
        start.call(&mut store, ()).map_err(anyhow::Error::from).with_context(|| format!("bare _start trapped at height {}", block.height))?;
    }
    Ok(())
}

/// A small indexer: counts blocks in `/count` (read back with `__get`) and stores each block's
/// payload under `/b/{height}`, so the state grows by one key per block.
pub const COUNTER_GUEST: &str = r#"(module
  (import "env" "__host_len" (func $host_len (result i32)))
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__get_len" (func $get_len (param i32) (result i32)))
  (import "env" "__get" (func $get (param i32 i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  ;; The key "/count" (ArrayBuffer layout: length at 12).
  (data (i32.const 12) "\06\00\00\00/count")
  ;; KeyValueFlush at 2048: "/count", count, "/b/" ++ height, payload.
  (data (i32.const 2048) "\0a\06/count\0a\04")
  (data (i32.const 2062) "\0a\07/b/")
  (func (export "_start")
    (local $len i32)
    (local.set $len (call $host_len))
    (call $load_input (i32.const 1028))
    (if (i32.eq (call $get_len (i32.const 16)) (i32.const 4))
      (then (call $get (i32.const 16) (i32.const 64))))
    (i32.store (i32.const 2058) (i32.add (i32.load (i32.const 64)) (i32.const 1)))
    (i32.store (i32.const 2067) (i32.load (i32.const 1028)))
    (i32.store8 (i32.const 2071) (i32.const 0x0a))
    (i32.store8 (i32.const 2072) (i32.sub (local.get $len) (i32.const 4)))
    (memory.copy (i32.const 2073) (i32.const 1032) (i32.sub (local.get $len) (i32.const 4)))
    (i32.store (i32.const 2044) (i32.add (i32.const 21) (local.get $len)))
    (call $flush (i32.const 2048))))"#;

/// Per-block cost over `count` blocks of the counter guest: the whole runner (fresh instance,
/// `_start`, one synced batch per block) and, without commits, instance creation on demand
/// against wasmtime's pooling allocator.
pub fn blocks(count: u32) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let wasm = dir.path().join("counter.wat");
    std::fs::write(&wasm, COUNTER_GUEST)?;
    let payload = |height: u32| Sha256::digest(height.to_le_bytes()).to_vec();
    let request = RunRequest {
        wasm: wasm.clone(),
        db: dir.path().join("db"),
        blocks: (1..=count).map(|height| Block { height, payload: payload(height) }).collect(),
        engine: schema::EngineKind::Memrepro,
        policy: MemoryPolicy::Unbounded,
        layout: MemoryLayout::Reserved,
        address_space_limit: None,
        time_limit: TIME_LIMIT,
        dump_file: Some(dir.path().join("dump.txt")),
        native_stack: None,
        db_layout: Layout::Memrepro,
    };
    let started = Instant::now();
    let result = run(&request)?;
    let runner_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(result.outcome == schema::RunOutcome::Completed, "the counter guest did not complete: {:?}", result.outcome);
    let counted = StateStore::open_read_only(&request.db)?.get(b"/count")?;
    anyhow::ensure!(counted == Some(count.to_le_bytes().to_vec()), "the counter guest counted {counted:?}, not {count}");
    let mean = |blocks: &[schema::BlockReport], field: fn(&schema::Timings) -> f64| {
        blocks.iter().map(|b| field(&b.timings)).sum::<f64>() / blocks.len().max(1) as f64
    };
    let tenth = (result.blocks.len() / 10).max(1);
    let (first, last) = (&result.blocks[..tenth], &result.blocks[result.blocks.len() - tenth..]);

    let strategies = [("on_demand", false), ("pooling", true)].map(|(name, pooling)| -> Result<(String, Value)> {
        let store = Database::Memrepro(StateStore::open(&dir.path().join(format!("db-{name}")))?);
        let guest = Guest::load(&strategy_engine(pooling)?, schema::EngineKind::Memrepro, MemoryPolicy::Unbounded, TIME_LIMIT, &wasm)?;
        let started = Instant::now();
        for height in 1..=count {
            guest.run_block(&store, height, &payload(height)).result?;
        }
        Ok((name.into(), json!(started.elapsed().as_secs_f64() / f64::from(count) * 1e6)))
    });
    let strategies: serde_json::Map<String, Value> = strategies.into_iter().collect::<Result<_>>()?;
    Ok(json!({
        "blocks": count,
        "runner_secs": runner_secs,
        "mean_ms": {
            "instantiate": mean(&result.blocks, |t| t.instantiate_ms),
            "execute": mean(&result.blocks, |t| t.execute_ms),
            "commit": mean(&result.blocks, |t| t.commit_ms),
        },
        "commit_ms_first_tenth": mean(first, |t| t.commit_ms),
        "commit_ms_last_tenth": mean(last, |t| t.commit_ms),
        "instantiate_and_run_us": strategies,
    }))
}

/// The runner's engine, or the same settings with instances taken from a pool of one slot.
fn strategy_engine(pooling: bool) -> Result<Engine> {
    if !pooling {
        return engine(schema::EngineKind::Memrepro, MemoryPolicy::Unbounded, MemoryLayout::Reserved, None);
    }
    let mut config = crate::host::config(schema::EngineKind::Memrepro, MemoryPolicy::Unbounded, MemoryLayout::Reserved, None);
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_core_instances(1).total_memories(1).total_tables(1).max_memory_size(1 << 32);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    engine_from(config)
}

/// A store of `keys` keys (`/bench/{i:08}` → 32 bytes) in `layout`, committed in blocks of
/// 100,000 like an indexer would; `changed` of them, evenly spread, get other values (the
/// "other node").
pub fn make_store(db: &Path, keys: u64, changed: u64, layout: &Layout) -> Result<Value> {
    anyhow::ensure!(!db.exists(), "{} exists: make_store builds a new store", db.display());
    let store = Database::open(db, layout)?;
    let every = if changed == 0 { u64::MAX } else { (keys / changed).max(1) };
    let started = Instant::now();
    let mut root = [0; 32];
    for (height, pairs) in synthetic_blocks(keys, every).enumerate() {
        root = store.commit_block(height as u32, &[], pairs, None)?;
    }
    store.sync()?;
    Ok(json!({ "keys": keys, "changed": changed, "secs": started.elapsed().as_secs_f64(), "state_root": hex::encode(root) }))
}

/// `keys` synthetic pairs (`/bench/{i:08}` → 32 bytes) in blocks of 100,000; every `every`th key
/// from `every / 2` on has another value.
fn synthetic_blocks(keys: u64, every: u64) -> impl Iterator<Item = Vec<(Bytes, Bytes)>> {
    (0..keys).step_by(100_000).map(move |start| {
        (start..keys.min(start + 100_000))
            .map(|i| {
                let seed = if i % every == every / 2 { i | 1 << 63 } else { i };
                (Bytes::from(format!("/bench/{i:08}")), Bytes::from(Sha256::digest(seed.to_le_bytes()).to_vec()))
            })
            .collect()
    })
}

/// An indexer-shaped guest for `bench commit` when no guest is given: one flush per block of a
/// pair per 40 bytes of the block, key `/p/` ++ 33 to 67 of those bytes (36 to 70 bytes in all),
/// value 8 to 120 bytes of the block further on (a 1.2 MB block gives about 31,000 pairs).
pub const PAIRS_GUEST: &str = r#"(module
  (import "env" "__host_len" (func $host_len (result i32)))
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $len i32) (local $at i32) (local $end i32) (local $buf i32) (local $out i32) (local $key i32) (local $value i32)
    (local.set $len (call $host_len))
    ;; The input at 64 KiB, the flush after it (at most 194 bytes per 40 bytes of input).
    (local.set $buf (i32.and (i32.add (i32.add (i32.const 65536) (local.get $len)) (i32.const 15)) (i32.const -16)))
    (drop (memory.grow (i32.sub
      (i32.shr_u (i32.add (i32.add (local.get $buf) (i32.mul (local.get $len) (i32.const 5))) (i32.const 131072)) (i32.const 16))
      (memory.size))))
    (call $load_input (i32.const 65536))
    (local.set $at (i32.const 65540))
    (local.set $end (i32.sub (i32.add (i32.const 65536) (local.get $len)) (i32.const 200)))
    (local.set $out (i32.add (local.get $buf) (i32.const 4)))
    (block $done (loop $next
      (br_if $done (i32.gt_s (local.get $at) (local.get $end)))
      (local.set $key (i32.add (i32.const 33) (i32.rem_u (i32.load8_u (local.get $at)) (i32.const 35))))
      (local.set $value (i32.add (i32.const 8) (i32.rem_u (i32.load8_u offset=1 (local.get $at)) (i32.const 113))))
      (i32.store8 (local.get $out) (i32.const 0x0a))
      (i32.store8 offset=1 (local.get $out) (i32.add (local.get $key) (i32.const 3)))
      (i32.store8 offset=2 (local.get $out) (i32.const 0x2f))
      (i32.store8 offset=3 (local.get $out) (i32.const 0x70))
      (i32.store8 offset=4 (local.get $out) (i32.const 0x2f))
      (memory.copy (i32.add (local.get $out) (i32.const 5)) (local.get $at) (local.get $key))
      (local.set $out (i32.add (local.get $out) (i32.add (local.get $key) (i32.const 5))))
      (i32.store8 (local.get $out) (i32.const 0x0a))
      (i32.store8 offset=1 (local.get $out) (local.get $value))
      (memory.copy (i32.add (local.get $out) (i32.const 2)) (i32.add (local.get $at) (i32.const 70)) (local.get $value))
      (local.set $out (i32.add (local.get $out) (i32.add (local.get $value) (i32.const 2))))
      (local.set $at (i32.add (local.get $at) (i32.const 40)))
      (br $next)))
    (i32.store (local.get $buf) (i32.sub (local.get $out) (i32.add (local.get $buf) (i32.const 4))))
    (call $flush (i32.add (local.get $buf) (i32.const 4)))))"#;

/// What `bench commit` measures.
pub struct CommitBench {
    /// The guest whose flushes are committed; [`PAIRS_GUEST`] when `None`.
    pub wasm: Option<std::path::PathBuf>,
    /// The blocks timed, in order, each committed into the state the ones before it left.
    pub blocks: Vec<Block>,
    /// Blocks run and committed first, untimed: the state the timed blocks are committed into.
    pub after: Vec<Block>,
    /// Synthetic keys committed first, untimed ([`make_store`]'s shape).
    pub state_keys: u64,
    pub runs: usize,
}

/// Each block's pairs, exactly as the guest flushes them in `Guest::run_block`, committed by
/// `StateStore::commit_block` (pairs, lengths, state trie, root, one batch) against one plain
/// `WriteBatch` of the same pairs into a second database with the store's options, and against
/// the hashing the state root asks of the pairs alone ([`root_from_scratch`]). Every run
/// starts from new databases holding the same pairs (the plain one without the trie); the two
/// writes alternate which goes first, and after each block both flush their memtables (untimed)
/// so the next block finds them alike.
pub fn commit(bench: &CommitBench) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let wasm = match &bench.wasm {
        Some(wasm) => wasm.clone(),
        None => {
            let wasm = dir.path().join("pairs.wat");
            std::fs::write(&wasm, PAIRS_GUEST)?;
            wasm
        }
    };
    let kind = schema::EngineKind::Memrepro;
    let guest = Guest::load(&engine(kind, MemoryPolicy::Unbounded, MemoryLayout::Reserved, None)?, kind, MemoryPolicy::Unbounded, TIME_LIMIT, &wasm)?;
    let mut timed: Vec<Vec<[f64; 3]>> = vec![Vec::new(); bench.blocks.len()];
    let mut shapes = Vec::new();
    for run in 0..bench.runs.max(1) {
        let run_dir = tempfile::tempdir_in(dir.path())?;
        let store = StateStore::open(&run_dir.path().join("store"))?;
        let plain = crate::state_store::open_plain_db(&run_dir.path().join("plain"))?;
        for (height, pairs) in synthetic_blocks(bench.state_keys, u64::MAX).enumerate() {
            plain_batch(&plain, &pairs)?;
            store.commit_block(height as u32, pairs, None)?;
        }
        for block in &bench.after {
            let pairs = flushed(&guest, &store, block)?;
            plain_batch(&plain, &pairs)?;
            store.commit_block(block.height, pairs, None)?;
        }
        store.sync()?;
        plain.flush().context("flushing the plain database")?;
        shapes.clear();
        for (block, times) in bench.blocks.iter().zip(&mut timed) {
            let pairs = flushed(&guest, &store, block)?;
            let mut keys: Vec<&[u8]> = pairs.iter().map(|(key, _)| key.as_ref()).collect();
            keys.sort_unstable();
            keys.dedup();
            let bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
            shapes.push(json!({ "height": block.height, "pairs": pairs.len(), "keys": keys.len(), "pair_bytes": bytes }));
            // Given its own copy of the pairs (cheap: `Bytes` are shared) before the clock starts.
            let commit = |pairs: Vec<(Bytes, Bytes)>| -> Result<f64> {
                let started = Instant::now();
                store.commit_block(block.height, pairs, None)?;
                Ok(elapsed_ms(started))
            };
            let plain_write = || -> Result<f64> {
                let started = Instant::now();
                plain_batch(&plain, &pairs)?;
                Ok(elapsed_ms(started))
            };
            times.push(match run % 2 {
                0 => [commit(pairs.clone())?, plain_write()?, root_from_scratch(&pairs)],
                _ => {
                    let hash_ms = root_from_scratch(&pairs);
                    let plain_ms = plain_write()?;
                    [commit(pairs.clone())?, plain_ms, hash_ms]
                }
            });
            store.sync()?;
            plain.flush().context("flushing the plain database")?;
        }
    }
    let blocks: Vec<Value> = shapes
        .into_iter()
        .zip(&timed)
        .map(|(mut shape, times)| {
            let commit_ms: Vec<f64> = times.iter().map(|t| t[0]).collect();
            let plain_ms: Vec<f64> = times.iter().map(|t| t[1]).collect();
            let hash_ms: Vec<f64> = times.iter().map(|t| t[2]).collect();
            let ratios: Vec<f64> = times.iter().map(|t| t[0] / t[1]).collect();
            shape["commit_ms"] = json!(median(&commit_ms));
            shape["plain_ms"] = json!(median(&plain_ms));
            shape["ratio"] = json!(median(&ratios));
            shape["hash_ms"] = json!(median(&hash_ms));
            shape["commit_ms_runs"] = json!(commit_ms);
            shape["plain_ms_runs"] = json!(plain_ms);
            shape
        })
        .collect();
    Ok(json!({
        "guest": bench.wasm.as_ref().map_or("built-in pairs guest".into(), |w| w.display().to_string()),
        "runs": bench.runs.max(1),
        "state_keys": bench.state_keys,
        "after_blocks": bench.after.len(),
        "blocks": blocks,
    }))
}

/// The hashing the state root's definition asks of `pairs` alone, whatever the store: their
/// paths and leaves and the root of them (`state_root::root_of`), in milliseconds. A floor under
/// any commit of them.
fn root_from_scratch(pairs: &[(Bytes, Bytes)]) -> f64 {
    let started = Instant::now();
    // Each key's last pair, found by path (a path is its key's SHA-256).
    let mut paths: Vec<(Hash, usize)> = pairs.iter().enumerate().map(|(i, (key, _))| (path_of(key), i)).collect();
    paths.sort_unstable();
    let mut leaves = Vec::with_capacity(paths.len());
    for (at, &(path, i)) in paths.iter().enumerate() {
        if paths.get(at + 1).is_none_or(|next| next.0 != path) {
            leaves.push((path, leaf_hash(&pairs[i].0, &pairs[i].1)));
        }
    }
    std::hint::black_box(root_of(&mut leaves));
    elapsed_ms(started)
}

/// The pairs `_start` flushes for `block` against `store`.
fn flushed(guest: &Guest, store: &StateStore, block: &Block) -> Result<Vec<(Bytes, Bytes)>> {
    let execution = guest.run_block(&Database::Memrepro(store.clone()), block.height, &block.payload);
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

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that look like a block to the pairs guest: no two 40-byte windows alike.
    fn payload(seed: u32) -> Vec<u8> {
        (0..1000u32).flat_map(|i| Sha256::digest([seed.to_le_bytes(), i.to_le_bytes()].concat())[..4].to_vec()).collect()
    }

    #[test]
    fn the_commit_bench_times_every_block_against_a_plain_batch_of_its_pairs() {
        let block = |height: u32| Block { height, payload: payload(height) };
        let figures = commit(&CommitBench { wasm: None, blocks: vec![block(5), block(6)], after: vec![block(4)], state_keys: 1000, runs: 2 }).unwrap();
        assert_eq!((figures["runs"].as_u64(), figures["state_keys"].as_u64(), figures["after_blocks"].as_u64()), (Some(2), Some(1000), Some(1)));
        let blocks = figures["blocks"].as_array().unwrap();
        assert_eq!(blocks.iter().map(|b| b["height"].as_u64().unwrap()).collect::<Vec<_>>(), [5, 6]);
        for block in blocks {
            // (4000 - 200) / 40 + 1 pairs of 36..70 + 8..120 bytes, all keys distinct.
            assert_eq!((block["pairs"].as_u64(), block["keys"].as_u64()), (Some(96), Some(96)), "{block}");
            let bytes = block["pair_bytes"].as_u64().unwrap();
            assert!((96 * 44..=96 * 190).contains(&bytes), "{block}");
            for field in ["commit_ms_runs", "plain_ms_runs"] {
                let runs = block[field].as_array().unwrap();
                assert!(runs.len() == 2 && runs.iter().all(|ms| ms.as_f64().unwrap() > 0.0), "{block}");
            }
            for field in ["commit_ms", "plain_ms", "ratio", "hash_ms"] {
                assert!(block[field].as_f64().unwrap() > 0.0, "{block}");
            }
        }
    }
}
