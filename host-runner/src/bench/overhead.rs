//! The runner against bare wasmtime: the same guest and blocks, `_start` in a fresh instance
//! each, with imports that store nothing.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use blocks::{Block, BlockStream};
use serde_json::{json, Value};
use wasmtime::{Caller, Engine, Linker, Module, Store};

use super::timing::TIME_LIMIT;

use crate::run::{run, RunRequest};

/// The runner (compile, open RocksDB, run, commit, state root, dump) over `blocks` against a
/// bare wasmtime run of the same `_start`s (default engine, one instance per block, imports that
/// store nothing), `runs` times each, alternating so both see the same machine.
pub fn overhead(wasm: &Path, blocks: &[Block], runs: usize) -> Result<Value> {
    let mut runner_secs = Vec::new();
    let mut bare_secs = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let request = RunRequest::unbounded(wasm.to_path_buf(), dir.path().join("db"), BlockStream::Held(blocks.to_vec()), TIME_LIMIT);
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
