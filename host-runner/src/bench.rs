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
use crate::host::{engine, engine_from, Guest};
use crate::policy::{MemoryLayout, MemoryPolicy};
use crate::runner::{run, RunRequest};
use crate::state_store::StateStore;

const TIME_LIMIT: Duration = Duration::from_secs(600);

/// The runner (compile, open RocksDB, run, commit, state root, dump) against a bare wasmtime
/// call of the same `_start` (default engine, imports that store nothing), `runs` times each,
/// alternating so both see the same machine.
pub fn overhead(wasm: &Path, payload: &[u8], runs: usize) -> Result<Value> {
    let mut runner_secs = Vec::new();
    let mut bare_secs = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let request = RunRequest {
            wasm: wasm.to_path_buf(),
            db: dir.path().join("db"),
            blocks: vec![Block { height: 1, payload: payload.to_vec() }],
            policy: MemoryPolicy::Unbounded,
            layout: MemoryLayout::Reserved,
            address_space_limit: None,
            time_limit: TIME_LIMIT,
            dump_file: None,
            native_stack: None,
        };
        let started = Instant::now();
        let result = run(&request)?;
        runner_secs.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(result.outcome == schema::RunOutcome::Completed, "the guest did not complete: {:?}", result.outcome);
        last = Some(result);

        let started = Instant::now();
        bare_start(wasm, 1, payload)?;
        bare_secs.push(started.elapsed().as_secs_f64());
    }
    let result = last.context("no runs")?;
    let block = &result.blocks[0];
    Ok(json!({
        "runner_secs": runner_secs,
        "bare_secs": bare_secs,
        "stored": result.stress_result,
        "wasm_memory_bytes": block.wasm_memory_bytes,
        "flushed_pairs": block.flushed_pairs,
        "last_run_ms": { "instantiate": block.timings.instantiate_ms, "execute": block.timings.execute_ms, "commit": block.timings.commit_ms },
    }))
}

/// `_start` on wasmtime's default engine with the metashrew imports reduced to what the guest
/// needs to run: its input, an empty state and flushes that are dropped.
fn bare_start(wasm: &Path, height: u32, payload: &[u8]) -> Result<()> {
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
    let input = [&height.to_le_bytes()[..], payload].concat();
    let mut store = Store::new(&engine, input);
    let instance = linker.instantiate(&mut store, &module).map_err(anyhow::Error::from)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start").map_err(anyhow::Error::from)?;
    start.call(&mut store, ()).map_err(anyhow::Error::from).context("bare _start trapped")
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
        policy: MemoryPolicy::Unbounded,
        layout: MemoryLayout::Reserved,
        address_space_limit: None,
        time_limit: TIME_LIMIT,
        dump_file: Some(dir.path().join("dump.txt")),
        native_stack: None,
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
        let store = StateStore::open(&dir.path().join(format!("db-{name}")))?;
        let guest = Guest::load(&strategy_engine(pooling)?, MemoryPolicy::Unbounded, TIME_LIMIT, &wasm)?;
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
        return engine(MemoryPolicy::Unbounded, MemoryLayout::Reserved, None);
    }
    let mut config = crate::host::config(MemoryPolicy::Unbounded, MemoryLayout::Reserved, None);
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_core_instances(1).total_memories(1).total_tables(1).max_memory_size(1 << 32);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    engine_from(config)
}

/// A store of `keys` keys (`/bench/{i:08}` → 32 bytes), committed in blocks of 100,000 like an
/// indexer would; `changed` of them, evenly spread, get other values (the "other node").
pub fn make_store(db: &Path, keys: u64, changed: u64) -> Result<Value> {
    anyhow::ensure!(!db.exists(), "{} exists: make_store builds a new store", db.display());
    let store = StateStore::open(db)?;
    let every = if changed == 0 { u64::MAX } else { (keys / changed).max(1) };
    let started = Instant::now();
    let mut root = [0; 32];
    for (height, start) in (0..keys).step_by(100_000).enumerate() {
        let pairs = (start..keys.min(start + 100_000))
            .map(|i| {
                let seed = if i % every == every / 2 { i | 1 << 63 } else { i };
                (Bytes::from(format!("/bench/{i:08}")), Bytes::from(Sha256::digest(seed.to_le_bytes()).to_vec()))
            })
            .collect();
        root = store.commit_block(height as u32, pairs, None)?;
    }
    store.sync()?;
    Ok(json!({ "keys": keys, "changed": changed, "secs": started.elapsed().as_secs_f64(), "state_root": hex::encode(root) }))
}
