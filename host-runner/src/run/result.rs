//! What a run reports: the result JSON (`schema::RunResult`) assembled from what indexing left,
//! the runner's identity, the stress guest's stored result, and the lines a person reads first.

use anyhow::Result;
use schema::{InputReport, RunOutcome, RunResult};
use sha2::{Digest, Sha256};
use state::Database;

use super::request::{Indexed, RunRequest};
use crate::engine::{stack_limit, Guest};
use crate::process::memory_report;

/// A run whose blocks are done: what its result is made of.
pub struct Finished<'a> {
    pub request: &'a RunRequest,
    pub guest: &'a Guest,
    pub wasm_bytes: &'a [u8],
    pub preflight_ms: f64,
    pub indexed: Indexed,
    /// [`identity`], worked out beside the run (it reads the whole executable); here, when no
    /// thread could be started for it.
    pub identity: Option<std::thread::JoinHandle<schema::RunnerIdentity>>,
}

impl Finished<'_> {
    /// The result, with the state's dump (inline or streamed to the requested file), once the
    /// state is durable; closes `store`.
    pub fn into_result(self, store: Database) -> Result<RunResult> {
        let Finished { request, guest, wasm_bytes, preflight_ms, indexed, identity: hashing } = self;
        let (blocks, block_reports, totals) = indexed.reports.finish();
        let stress_result = stress_result(&store, totals.last_height)?;
        let (dump, dump_file) = store.sync_and_dump(request.dump_file.as_deref())?;
        let extent = request.blocks.extent();
        Ok(RunResult {
            schema_version: schema::SCHEMA_VERSION,
            runner_version: env!("CARGO_PKG_VERSION").to_string(),
            runner: hashing.and_then(|thread| thread.join().ok()).unwrap_or_else(identity),
            wasm: schema::WasmInfo {
                path: request.wasm.display().to_string(),
                sha256: hex::encode(Sha256::digest(wasm_bytes)),
                size_bytes: wasm_bytes.len() as u64,
            },
            policy: policy_report(request, guest, preflight_ms),
            input: InputReport {
                source: request.source.clone(),
                first_height: extent.first,
                last_height: extent.last,
                blocks: extent.count,
                bytes: extent.bytes,
            },
            resumed_after: indexed.resumed_after,
            blocks,
            block_reports,
            totals,
            outcome: indexed.outcome,
            stress_result,
            state_root: hex::encode(indexed.root),
            db_layout: request.db_layout.name().into(),
            dump,
            dump_file,
            memory: memory_report(indexed.wasm_memory_bytes, indexed.runner_rss_bytes),
        })
    }
}

fn policy_report(request: &RunRequest, guest: &Guest, preflight_ms: f64) -> schema::PolicyReport {
    schema::PolicyReport {
        name: request.policy.name().into(),
        engine: request.engine,
        memory_budget_bytes: request.policy.budget(),
        required_bytes: request.policy.required_bytes(guest.code_bytes()),
        compiled_guest_bytes: guest.code_bytes(),
        memory_layout: request.linear_memory.name().into(),
        address_space_limit_bytes: request.address_space_limit,
        preflight_ms,
        block_time_limit_secs: request.time_limit.as_secs_f64(),
        fuel_per_block: request.policy.fuel(),
        logical_stack_slots: request.policy.fuel().map(|_| stack_limit::LIMIT_SLOTS),
    }
}

/// This runner: version, its executable's SHA-256, its wasmtime, its CPU architecture.
pub fn identity() -> schema::RunnerIdentity {
    // Streamed: the executable is tens of MiB, and the runner's memory is counted.
    let hash = || -> std::io::Result<String> {
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::fs::File::open(std::env::current_exe()?)?, &mut hasher)?;
        Ok(hex::encode(hasher.finalize()))
    };
    schema::RunnerIdentity {
        version: env!("CARGO_PKG_VERSION").into(),
        sha256: hash().unwrap_or_else(|_| "unknown".into()),
        wasmtime_version: env!("MEMREPRO_WASMTIME_VERSION").into(),
        arch: std::env::consts::ARCH.into(),
    }
}

/// What the stress guest stores as its result: `/memory-stress-result/{height}`, as text.
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
    let (aborted, run) = (result.totals.aborted, result.totals.run);
    match &result.outcome {
        RunOutcome::Completed if aborted > 0 => {
            format!("RESULT: WASM completed, {aborted} of {run} blocks aborted (done, nothing of them written), stored: {stored}")
        }
        RunOutcome::Completed => format!("RESULT: WASM completed successfully, stored: {stored}"),
        RunOutcome::Trapped { height, message, node } => {
            let node = node.as_deref().map_or(String::new(), |node| format!("; {node}"));
            format!("RESULT: WASM trapped at height {height}: {message} (nothing of that block committed{node}; stored: {stored})")
        }
        RunOutcome::TimedOut { height, message } => {
            format!("RESULT: WASM timed out at height {height}: {message} (nothing of that block committed; stored: {stored})")
        }
        RunOutcome::HostLimit { height, message } => {
            format!("RESULT: host limit at height {height}: {message} (not the guest's outcome; nothing of that block committed; stored: {stored})")
        }
    }
}
