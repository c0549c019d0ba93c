//! `run`: every block in a fresh instance, each committed whole or not at all, then the result.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use schema::{BlockInput, BlockOutcome, BlockReport, EngineKind, RunOutcome, RunResult, Timings};
use sha2::{Digest, Sha256};

use crate::blocks::Block;
use crate::host::{check_engine_settings, elapsed_ms, engine, Guest, TimeLimitExceeded};
use crate::memory_report::memory_report;
use crate::policy::{limit_address_space, preflight, MemoryLayout, MemoryPolicy};
use crate::state_store::NodeBudgetExceeded;
use crate::store::{Database, Layout};

pub struct RunRequest {
    pub wasm: PathBuf,
    pub db: PathBuf,
    pub blocks: Vec<Block>,
    /// Our engine, or metashrew's configuration and host semantics.
    pub engine: EngineKind,
    pub policy: MemoryPolicy,
    pub layout: MemoryLayout,
    /// RLIMIT_AS the runner applies to itself before loading the guest.
    pub address_space_limit: Option<u64>,
    /// Wall-clock limit of one block's `_start`.
    pub time_limit: std::time::Duration,
    /// Stream the dump to this file instead of holding it in the result (big states).
    pub dump_file: Option<PathBuf>,
    /// Replaces wasmtime's native stack limit (hidden `--native-stack`).
    pub native_stack: Option<usize>,
    /// The database layout the blocks are committed in (`--layout`).
    pub db_layout: Layout,
}

/// Runs the blocks. Fails with a [`crate::policy::Refusal`] before anything is written when this
/// host cannot back the policy's budget.
pub fn run(request: &RunRequest) -> Result<RunResult> {
    check_engine_settings(request.engine, request.policy, request.layout, request.native_stack)?;
    if let Some(limit) = request.address_space_limit {
        limit_address_space(limit)?;
    }
    let wasm_bytes = std::fs::read(&request.wasm)
        .with_context(|| format!("reading guest {}", request.wasm.display()))?;
    let engine = engine(request.engine, request.policy, request.layout, request.native_stack)?;
    let guest = Guest::from_bytes(&engine, request.engine, request.policy, request.time_limit, &request.wasm, &wasm_bytes)?;
    anyhow::ensure!(guest.has_export("_start"), "{} exports no `_start`", request.wasm.display());
    // Before anything is written: can this host back the policy with this guest?
    let started = std::time::Instant::now();
    preflight(request.policy, guest.code_bytes())?;
    let preflight_ms = elapsed_ms(started);
    let store = Database::open(&request.db, &request.db_layout)?;

    let mut reports = Vec::new();
    let mut outcome = RunOutcome::Completed;
    let mut root = store.state_root()?;
    let mut wasm_memory_bytes = 0;
    for block in &request.blocks {
        let execution = guest.run_block(&store, block.height, &block.payload);
        wasm_memory_bytes = execution.wasm_memory_bytes;
        let started = std::time::Instant::now();
        let flushed_pairs = execution.pairs.len() as u64;
        let charged_bytes = execution.charged_bytes;
        // The commit runs after the guest's memory is freed: its pairs take at most twice their
        // charge, and its trie nodes what is left of twice the budget.
        let node_allowance = request.policy.budget().map(|budget| (2 * budget).saturating_sub(2 * charged_bytes));
        // Metashrew engine: a block the guest marked failed is done, with none of its flushes.
        let (pairs, failed) = match execution.failed {
            Some(why) => (Vec::new(), Some(why)),
            None => (execution.pairs, None),
        };
        let block_outcome = match execution.result {
            Ok(()) => match store.commit_block(block.height, &block.payload, pairs, node_allowance) {
                Ok(new_root) => {
                    root = new_root;
                    failed.map_or(BlockOutcome::Completed, |message| BlockOutcome::Aborted { message })
                }
                Err(error) if error.is::<NodeBudgetExceeded>() => BlockOutcome::Trapped { message: error.to_string() },
                Err(error) => return Err(error),
            },
            Err(error) if error.is::<TimeLimitExceeded>() => BlockOutcome::TimedOut { message: error.to_string() },
            Err(trap) => BlockOutcome::Trapped { message: trap_message(&trap) },
        };
        reports.push(BlockReport {
            height: block.height,
            outcome: block_outcome.clone(),
            flushed_pairs,
            flushed_bytes: execution.flushed_bytes,
            host_charged_bytes: charged_bytes,
            fuel_consumed: execution.fuel_consumed,
            state_root: hex::encode(root),
            wasm_memory_bytes: execution.wasm_memory_bytes,
            refused_growths: execution.refused_growths,
            timings: Timings {
                instantiate_ms: execution.instantiate_ms,
                execute_ms: execution.execute_ms,
                commit_ms: elapsed_ms(started),
            },
        });
        // The indexer cannot go past a block it failed to index (metashrew's would retry it).
        match block_outcome {
            BlockOutcome::Completed | BlockOutcome::Aborted { .. } => {}
            BlockOutcome::Trapped { message } => {
                outcome = RunOutcome::Trapped { height: block.height, message, node: request.engine.after_trap(block.height) };
                break;
            }
            BlockOutcome::TimedOut { message } => {
                outcome = RunOutcome::TimedOut { height: block.height, message };
                break;
            }
        }
    }

    // Durable before the result says what was committed.
    store.sync()?;
    let stress_result = stress_result(&store, reports.last().map(|r| r.height))?;
    let (dump, dump_file) = store.dump_inline_or_to(request.dump_file.as_deref())?;
    Ok(RunResult {
        schema_version: schema::SCHEMA_VERSION,
        runner_version: env!("CARGO_PKG_VERSION").to_string(),
        runner: identity(),
        wasm: schema::WasmInfo {
            path: request.wasm.display().to_string(),
            sha256: hex::encode(Sha256::digest(&wasm_bytes)),
            size_bytes: wasm_bytes.len() as u64,
        },
        policy: schema::PolicyReport {
            name: request.policy.name().into(),
            engine: request.engine,
            memory_budget_bytes: request.policy.budget(),
            required_bytes: request.policy.required_bytes(guest.code_bytes()),
            compiled_guest_bytes: guest.code_bytes(),
            memory_layout: request.layout.name().into(),
            address_space_limit_bytes: request.address_space_limit,
            preflight_ms,
            block_time_limit_secs: request.time_limit.as_secs_f64(),
            fuel_per_block: request.policy.fuel(),
            logical_stack_slots: request.policy.fuel().map(|_| crate::stack_limit::LIMIT_SLOTS),
        },
        inputs: request
            .blocks
            .iter()
            .map(|b| BlockInput { height: b.height, payload_hex: hex::encode(&b.payload) })
            .collect(),
        blocks: reports,
        outcome,
        stress_result,
        state_root: hex::encode(root),
        db_layout: request.db_layout.name().into(),
        dump,
        dump_file,
        memory: memory_report(wasm_memory_bytes),
    })
}

/// This runner: version, its executable's SHA-256, its wasmtime, its CPU architecture.
pub fn identity() -> schema::RunnerIdentity {
    // Streamed: the executable is tens of MiB, and the runner's memory is counted.
    let hash = || -> std::io::Result<String> {
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::fs::File::open(std::env::current_exe()?)?, &mut hasher)?;
        Ok(hex::encode(hasher.finalize()))
    };
    let sha256 = hash().unwrap_or_else(|_| "unknown".into());
    schema::RunnerIdentity {
        version: env!("CARGO_PKG_VERSION").into(),
        sha256,
        wasmtime_version: env!("MEMREPRO_WASMTIME_VERSION").into(),
        arch: std::env::consts::ARCH.into(),
    }
}

/// `/memory-stress-result/{height}`, as text, when the guest stored one.
pub fn stress_result(store: &Database, height: Option<u32>) -> Result<Option<String>> {
    let Some(height) = height else { return Ok(None) };
    let stored = store.latest(format!("/memory-stress-result/{height}").as_bytes())?;
    Ok(stored.map(|value| String::from_utf8_lossy(&value).into_owned()))
}

/// The trap's cause chain on one line, without wasmtime's multi-line backtrace.
pub fn trap_message(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let first_line = text.lines().next().unwrap_or("").trim().to_string();
        if !first_line.is_empty() && !first_line.starts_with("error while executing at wasm backtrace") {
            parts.push(first_line);
        }
    }
    parts.dedup();
    parts.join(": ")
}

/// The line a person reads first, in the seed's words.
pub fn summary_line(result: &RunResult) -> String {
    let stored = result.stress_result.as_deref().unwrap_or("(no stress result)");
    let aborted = result.blocks.iter().filter(|b| matches!(b.outcome, BlockOutcome::Aborted { .. })).count();
    match &result.outcome {
        RunOutcome::Completed if aborted > 0 => {
            format!("RESULT: WASM completed, {aborted} of {} blocks aborted (done, nothing of them written), stored: {stored}", result.blocks.len())
        }
        RunOutcome::Completed => format!("RESULT: WASM completed successfully, stored: {stored}"),
        RunOutcome::Trapped { height, message, node } => {
            let node = node.as_deref().map_or(String::new(), |node| format!("; {node}"));
            format!("RESULT: WASM trapped at height {height}: {message} (nothing of that block committed{node}; stored: {stored})")
        }
        RunOutcome::TimedOut { height, message } => {
            format!("RESULT: WASM timed out at height {height}: {message} (nothing of that block committed; stored: {stored})")
        }
    }
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, then a rename.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    write_atomically_with(path, |file| Ok(file.write_all(text.as_bytes())?))
}

/// `write` fills a temporary file in `path`'s directory, which is synced and renamed to `path`.
/// A `path` that exists and is not a regular file (`/dev/null`, `/dev/stdout`, a FIFO) is written
/// in place: renaming over it would replace the device with a file.
pub fn write_atomically_with<T>(path: &Path, write: impl FnOnce(&mut std::fs::File) -> Result<T>) -> Result<T> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let mut file = std::fs::OpenOptions::new().write(true).open(path).with_context(|| format!("opening {}", path.display()))?;
        return write(&mut file);
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let value = write(file.as_file_mut())?;
    file.as_file().sync_all()?;
    file.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_written_in_place_never_replaced() {
        write_atomically(Path::new("/dev/null"), "result").unwrap();
        let kind = std::fs::metadata("/dev/null").unwrap().file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(&kind), "/dev/null is still a device");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("result.json");
        write_atomically(&file, "one").unwrap();
        write_atomically(&file, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "two");
    }
}
