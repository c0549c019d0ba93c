//! The fixed cost of a block: many tiny blocks of the counter guest.

use std::time::Instant;

use anyhow::Result;
use blocks::{Block, BlockStream};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use state::trie::TrieStore;
use state::Database;
use wasmtime::Engine;

use super::guests::COUNTER_GUEST;
use super::timing::TIME_LIMIT;
use crate::engine::{config, engine, engine_from, Guest, LinearMemory, MemoryPolicy};
use crate::run::{run, RunRequest};

/// Per-block cost over `count` blocks of the counter guest: the whole runner (fresh instance,
/// `_start`, one synced batch per block) and, without commits, instance creation on demand
/// against wasmtime's pooling allocator.
pub fn blocks(count: u32) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let wasm = dir.path().join("counter.wat");
    std::fs::write(&wasm, COUNTER_GUEST)?;
    let payload = |height: u32| Sha256::digest(height.to_le_bytes()).to_vec();
    let blocks = BlockStream::Held((1..=count).map(|height| Block { height, payload: payload(height) }).collect());
    let request = RunRequest { dump_file: Some(dir.path().join("dump.txt")), ..RunRequest::unbounded(wasm.clone(), dir.path().join("db"), blocks, TIME_LIMIT) };
    let started = Instant::now();
    let result = run(&request)?;
    let runner_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(result.outcome == schema::RunOutcome::Completed, "the counter guest did not complete: {:?}", result.outcome);
    let counted = TrieStore::open_read_only(&request.db)?.get(b"/count")?;
    anyhow::ensure!(counted == Some(count.to_le_bytes().to_vec()), "the counter guest counted {counted:?}, not {count}");
    let mean = |blocks: &[schema::BlockReport], field: fn(&schema::Timings) -> f64| {
        blocks.iter().map(|b| field(&b.timings)).sum::<f64>() / blocks.len().max(1) as f64
    };
    let tenth = (result.blocks.len() / 10).max(1);
    let (first, last) = (&result.blocks[..tenth], &result.blocks[result.blocks.len() - tenth..]);

    let strategies = [("on_demand", false), ("pooling", true)].map(|(name, pooling)| -> Result<(String, Value)> {
        let store = Database::Trie(TrieStore::open(&dir.path().join(format!("db-{name}")))?);
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
        return engine(schema::EngineKind::Memrepro, MemoryPolicy::Unbounded, LinearMemory::Reserved, None);
    }
    let mut config = config::config(schema::EngineKind::Memrepro, MemoryPolicy::Unbounded, LinearMemory::Reserved, None);
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_core_instances(1).total_memories(1).total_tables(1).max_memory_size(1 << 32);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    engine_from(config)
}
