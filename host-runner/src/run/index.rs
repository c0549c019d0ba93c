//! Indexing: every block in a fresh instance, each committed whole or not at all, in order; a
//! block that fails stops the run there.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use blocks::Block;
use schema::{BlockOutcome, BlockReport, EngineKind, RunOutcome, RunResult, Timings};
use state::trie::Hash;
use state::Database;

use super::progress::Progress;
use super::request::{Indexed, Reports, RunRequest};
use super::result::{identity, trap_message, Finished};
use crate::engine::{check_engine_settings, engine, preflight, Execution, Guest, HostLimit, TimeLimitExceeded};
use crate::process::{current_rss, elapsed_ms, limit_address_space};

/// Runs the blocks. Fails with a [`crate::engine::Refusal`] before anything is written when this
/// host cannot back the policy's budget.
pub fn run(request: &RunRequest) -> Result<RunResult> {
    run_timed(request).map(|(result, _)| result)
}

/// Where a run's time went, in milliseconds (`host-runner bench overhead` prints it).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Phases {
    /// Reading and compiling the guest, and the preflight.
    pub compile_ms: f64,
    /// Opening the store (creating it when new).
    pub open_ms: f64,
    /// Running and committing the blocks, with their reports.
    pub blocks_ms: f64,
    /// The store made durable and dumped, and the result put together.
    pub finish_ms: f64,
}

/// [`run`], timed by [`Phases`].
pub fn run_timed(request: &RunRequest) -> Result<(RunResult, Phases)> {
    let identity = std::thread::Builder::new().spawn(identity).ok();
    let (mut phases, mut lap) = (Phases::default(), Instant::now());
    check_engine_settings(request.engine, request.policy, request.linear_memory, request.native_stack)?;
    if let Some(limit) = request.address_space_limit {
        limit_address_space(limit)?;
    }
    let wasm_bytes = std::fs::read(&request.wasm).with_context(|| format!("reading guest {}", request.wasm.display()))?;
    let engine = engine(request.engine, request.policy, request.linear_memory, request.native_stack)?;
    let guest = Guest::from_bytes(&engine, request.engine, request.policy, request.time_limit, &request.wasm, &wasm_bytes)?;
    anyhow::ensure!(guest.has_export("_start"), "{} exports no `_start`", request.wasm.display());
    // Before anything is written: can this host back the policy with this guest?
    let started = Instant::now();
    preflight(request.policy, guest.code_bytes())?;
    let preflight_ms = elapsed_ms(started);
    phases.compile_ms = next_lap(&mut lap);
    let store = Database::open(&request.db, &request.db_layout)?;
    phases.open_ms = next_lap(&mut lap);
    let indexed = index_blocks(request, &guest, &store)?;
    phases.blocks_ms = next_lap(&mut lap);
    let result = Finished { request, guest: &guest, wasm_bytes: &wasm_bytes, preflight_ms, indexed, identity }.into_result(store)?;
    phases.finish_ms = next_lap(&mut lap);
    Ok((result, phases))
}

/// Milliseconds since `lap`, which starts the next lap.
fn next_lap(lap: &mut Instant) -> f64 {
    let ms = elapsed_ms(*lap);
    *lap = Instant::now();
    ms
}

/// Runs and commits the blocks in order, up to the first that fails; under `resume`, after the
/// height the database holds.
fn index_blocks(request: &RunRequest, guest: &Guest, store: &Database) -> Result<Indexed> {
    let resumed_after = if request.resume { store.tip()? } else { None };
    let mut indexed = Indexed {
        reports: Reports::new(request.block_reports.as_deref())?,
        resumed_after,
        outcome: RunOutcome::Completed,
        root: store.state_root()?,
        wasm_memory_bytes: 0,
        runner_rss_bytes: current_rss(),
    };
    let extent = request.blocks.extent();
    let mut progress = Progress::new(remaining(&extent, resumed_after));
    let mut expected = resumed_after.map(|tip| tip + 1);
    for block in request.blocks.after(resumed_after)? {
        let block = block?;
        if let Some(next) = expected.take().filter(|next| *next != block.height) {
            bail!("the database holds blocks up to height {}, but the blocks resume at {}: height {next} is missing", next - 1, block.height);
        }
        let execution = guest.run_block(store, block.height, &block.payload);
        indexed.wasm_memory_bytes = execution.wasm_memory_bytes;
        let report = commit_block(store, &block, execution, &mut indexed.root)?;
        // The instance is gone: what is resident now is the runner's own.
        indexed.runner_rss_bytes = indexed.runner_rss_bytes.max(current_rss());
        let stop = stop_at(&report.outcome, block.height, request.engine);
        indexed.reports.push(report)?;
        progress.done(block.height);
        if let Some(outcome) = stop {
            indexed.outcome = outcome;
            break;
        }
    }
    Ok(indexed)
}

/// How many of the blocks asked for lie above `after`.
fn remaining(extent: &blocks::map::Extent, after: Option<u32>) -> u64 {
    match (after, extent.first, extent.last) {
        (Some(after), Some(first), Some(last)) if after >= first => u64::from(last.saturating_sub(after)),
        _ => extent.count,
    }
}

/// Commits what `execution` flushed for `block` when its `_start` returned (a block the guest
/// marked failed under the metashrew engine is done with none of its flushes), and reports it.
pub fn commit_block(store: &Database, block: &Block, execution: Execution<()>, root: &mut Hash) -> Result<BlockReport> {
    let started = Instant::now();
    let flushed_pairs = execution.pairs.len() as u64;
    // The commit runs after the guest's memory is freed: its pairs take at most twice their charge.
    let (pairs, failed) = match execution.failed {
        Some(why) => (Vec::new(), Some(why)),
        None => (execution.pairs, None),
    };
    let outcome = match execution.result {
        Ok(()) => match store.commit_block(block.height, &block.payload, pairs) {
            Ok(new_root) => {
                *root = new_root;
                failed.map_or(BlockOutcome::Completed, |message| BlockOutcome::Aborted { message })
            }
            Err(error) => return Err(error),
        },
        Err(error) if error.is::<TimeLimitExceeded>() => BlockOutcome::TimedOut { message: error.to_string() },
        Err(error) if error.is::<HostLimit>() => BlockOutcome::HostLimit { message: error.to_string() },
        Err(trap) => BlockOutcome::Trapped { message: trap_message(&trap) },
    };
    Ok(BlockReport {
        height: block.height,
        outcome,
        flushed_pairs,
        flushed_bytes: execution.flushed_bytes,
        host_charged_bytes: execution.charged_bytes,
        fuel_consumed: execution.fuel_consumed,
        state_root: hex::encode(root),
        wasm_memory_bytes: execution.wasm_memory_bytes,
        refused_growths: execution.refused_growths,
        timings: Timings { instantiate_ms: execution.instantiate_ms, execute_ms: execution.execute_ms, commit_ms: elapsed_ms(started) },
    })
}

/// The run's outcome when a block ended this way: the indexer cannot go past a block it failed
/// to index (metashrew's would retry it).
fn stop_at(outcome: &BlockOutcome, height: u32, engine: EngineKind) -> Option<RunOutcome> {
    match outcome {
        BlockOutcome::Completed | BlockOutcome::Aborted { .. } => None,
        BlockOutcome::Trapped { message } => Some(RunOutcome::Trapped { height, message: message.clone(), node: engine.after_trap(height) }),
        BlockOutcome::TimedOut { message } => Some(RunOutcome::TimedOut { height, message: message.clone() }),
        BlockOutcome::HostLimit { message } => Some(RunOutcome::HostLimit { height, message: message.clone() }),
    }
}
