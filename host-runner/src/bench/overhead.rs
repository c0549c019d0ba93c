//! The runner against its floor: the same guest and blocks, `_start` in a fresh instance each on
//! bare wasmtime, and each block's pairs in a plain RocksDB `WriteBatch`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use blocks::{Block, BlockStream};
use bytes::Bytes;
use serde_json::{json, Value};
use state::rocksdb;
use state::trie::open_plain_db;
use wasmtime::{Caller, Engine, Linker, Module, Store};

use super::timing::TIME_LIMIT;

use crate::engine::config::epoch_ticks;
use crate::engine::flush::decode_flush;
use crate::engine::{engine, LinearMemory, MemoryPolicy};
use crate::engine::guest_memory::{address, arraybuffer, span_mut};
use crate::run::index::run_timed;
use crate::run::RunRequest;

/// The runner (compile, open RocksDB, run, commit, state root, dump) over `blocks` against bare
/// wasmtime and against its floor ([`bare_run`]: the same `_start`s on bare wasmtime, and plain
/// batches of their pairs), and against that floor on the runner's own engine settings (the time
/// limit's epoch checks, canonical NaNs: [`Floor::RunnerEngine`]), `runs` times each, in turn so
/// all see the same machine.
pub fn overhead(wasm: &Path, blocks: &[Block], runs: usize) -> Result<Value> {
    let mut runner_secs = Vec::new();
    let mut bare_secs = Vec::new();
    let mut floor_secs = Vec::new();
    let mut runner_engine_floor_secs = Vec::new();
    let (mut runner_phases, mut floor_compile_secs) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let request = RunRequest::unbounded(wasm.to_path_buf(), dir.path().join("db"), BlockStream::Held(blocks.to_vec()), TIME_LIMIT);
        let started = Instant::now();
        let (result, phases) = run_timed(&request)?;
        runner_secs.push(started.elapsed().as_secs_f64());
        runner_phases.push(phases);
        anyhow::ensure!(result.outcome == schema::RunOutcome::Completed, "the guest did not complete: {:?}", result.outcome);
        last = Some(result);

        let floors = [(Floor::Bare, &mut bare_secs), (Floor::Plain, &mut floor_secs), (Floor::RunnerEngine, &mut runner_engine_floor_secs)];
        for (i, (floor, secs)) in floors.into_iter().enumerate() {
            // Each floor's own new database.
            let plain = dir.path().join(format!("plain-{i}"));
            let started = Instant::now();
            let compile_secs = bare_run(wasm, blocks, floor, &plain)?;
            secs.push(started.elapsed().as_secs_f64());
            if matches!(floor, Floor::Plain) {
                floor_compile_secs.push(compile_secs);
            }
        }
    }
    let result = last.context("no runs")?;
    let sum = |ms: fn(&schema::BlockReport) -> f64| result.blocks.iter().map(ms).sum::<f64>();
    Ok(json!({
        "blocks": blocks.len(),
        "runner_secs": runner_secs,
        "bare_secs": bare_secs,
        "floor_secs": floor_secs,
        "runner_engine_floor_secs": runner_engine_floor_secs,
        "runner_phases": runner_phases,
        "floor_compile_secs": floor_compile_secs,
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

/// What a bare block run holds: its input, the plain database it reads and writes (none: an
/// empty state, flushes dropped), the pairs it flushed.
struct Bare {
    input: Vec<u8>,
    db: Option<Arc<rocksdb::DB>>,
    pairs: Vec<(Bytes, Bytes)>,
}

/// What a bare run is.
#[derive(Clone, Copy)]
enum Floor {
    /// Bare wasmtime alone: wasmtime's default engine, an empty state, flushes dropped.
    Bare,
    /// The runner's floor (issue 27): wasmtime's default engine, reads straight from a RocksDB
    /// with the store's options, each block's flushes decoded and written in one plain
    /// `WriteBatch` (no policy, no charge, no root, no reports).
    Plain,
    /// [`Floor::Plain`] on the runner's engine: the epoch checks behind its time limit and the
    /// settings that make a guest's floats the same on every CPU.
    RunnerEngine,
}

/// Each block's `_start` in a fresh instance of one module, with the metashrew imports at their
/// plainest, as `floor` says; a plain database, when it has one, in `plain_db`. Returns the
/// seconds it took to compile the guest.
fn bare_run(wasm: &Path, blocks: &[Block], floor: Floor, plain_db: &Path) -> Result<f64> {
    let (engine, deadline) = match floor {
        Floor::Bare | Floor::Plain => (Engine::default(), None),
        Floor::RunnerEngine => {
            let kind = schema::EngineKind::Memrepro;
            (engine(kind, MemoryPolicy::Unbounded, LinearMemory::Reserved, None)?, Some(epoch_ticks(TIME_LIMIT)))
        }
    };
    let db = match floor {
        Floor::Bare => None,
        Floor::Plain | Floor::RunnerEngine => Some(Arc::new(open_plain_db(plain_db)?)),
    };
    let started = Instant::now();
    let module = Module::from_file(&engine, wasm).map_err(anyhow::Error::from)?;
    let compile_secs = started.elapsed().as_secs_f64();
    let mut linker: Linker<Bare> = Linker::new(&engine);
    bare_imports(&mut linker)?;
    linker.define_unknown_imports_as_traps(&module)?;
    for block in blocks {
        let input = [&block.height.to_le_bytes()[..], &block.payload].concat();
        let mut store = Store::new(&engine, Bare { input, db: db.clone(), pairs: Vec::new() });
        if let Some(deadline) = deadline {
            store.set_epoch_deadline(deadline);
        }
        let instance = linker.instantiate(&mut store, &module).map_err(anyhow::Error::from)?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start").map_err(anyhow::Error::from)?;
        start.call(&mut store, ()).map_err(anyhow::Error::from).with_context(|| format!("bare _start trapped at height {}", block.height))?;
        if let Some(db) = &db {
            let mut batch = rocksdb::WriteBatch::default();
            for (key, value) in &store.data().pairs {
                batch.put(key, value);
            }
            db.write(batch).context("writing the bare run's batch")?;
        }
    }
    Ok(compile_secs)
}

/// `__host_len`, `__load_input`, `__log`, `__get_len`, `__get` and `__flush`, with no checks
/// beyond the bounds of guest memory.
fn bare_imports(linker: &mut Linker<Bare>) -> Result<()> {
    fn memory(caller: &mut Caller<'_, Bare>) -> wasmtime::Result<wasmtime::Memory> {
        caller.get_export("memory").and_then(|e| e.into_memory()).ok_or_else(|| wasmtime::Error::msg("no memory"))
    }
    fn value(caller: &mut Caller<'_, Bare>, key_ptr: i32) -> wasmtime::Result<Option<Vec<u8>>> {
        let memory = memory(caller)?;
        let key = arraybuffer(memory.data(&*caller), key_ptr, "key")?;
        let Some(db) = &caller.data().db else { return Ok(None) };
        db.get(key).map_err(wasmtime::Error::new)
    }
    linker.func_wrap("env", "__host_len", |caller: Caller<'_, Bare>| caller.data().input.len() as i32)?;
    linker.func_wrap("env", "__load_input", |mut caller: Caller<'_, Bare>, ptr: i32| {
        let memory = memory(&mut caller)?;
        let (data, bare) = memory.data_and_store_mut(&mut caller);
        span_mut(data, address(ptr), bare.input.len() as u64, "input")?.copy_from_slice(&bare.input);
        Ok(())
    })?;
    linker.func_wrap("env", "__log", |_: Caller<'_, Bare>, _: i32| {})?;
    linker.func_wrap("env", "__get_len", |mut caller: Caller<'_, Bare>, key_ptr: i32| {
        Ok(value(&mut caller, key_ptr)?.map_or(0, |value| value.len() as i32))
    })?;
    linker.func_wrap("env", "__get", |mut caller: Caller<'_, Bare>, key_ptr: i32, value_ptr: i32| {
        let value = value(&mut caller, key_ptr)?.unwrap_or_default();
        let memory = memory(&mut caller)?;
        span_mut(memory.data_mut(&mut caller), address(value_ptr), value.len() as u64, "value")?.copy_from_slice(&value);
        Ok(())
    })?;
    linker.func_wrap("env", "__flush", |mut caller: Caller<'_, Bare>, ptr: i32| {
        let memory = memory(&mut caller)?;
        let (data, bare) = memory.data_and_store_mut(&mut caller);
        if bare.db.is_some() {
            bare.pairs.extend(decode_flush(arraybuffer(data, ptr, "__flush")?).map_err(wasmtime::Error::new)?);
        }
        Ok(())
    })?;
    Ok(())
}
