//! What a run is asked to do, and what indexing its blocks left.

use std::path::PathBuf;
use std::time::Duration;

use blocks::BlockStream;
use schema::{EngineKind, RunOutcome};
use state::trie::Hash;
use state::DbLayout;

use crate::engine::{LinearMemory, MemoryPolicy};

/// What to run, and how.
pub struct RunRequest {
    pub wasm: PathBuf,
    pub db: PathBuf,
    /// The blocks, held (small inputs) or streamed from a block map.
    pub blocks: BlockStream,
    /// Where the blocks came from, in words.
    pub source: String,
    /// Continue after the height the database holds (`--resume`) instead of from the first block.
    pub resume: bool,
    /// Append each block's report to this file (JSON lines) instead of holding them (long runs).
    pub block_reports: Option<PathBuf>,
    /// Our engine, or metashrew's configuration and host semantics.
    pub engine: EngineKind,
    pub policy: MemoryPolicy,
    pub linear_memory: LinearMemory,
    /// RLIMIT_AS the runner applies to itself before loading the guest.
    pub address_space_limit: Option<u64>,
    /// Wall-clock limit of one block's `_start`.
    pub time_limit: Duration,
    /// Stream the dump to this file instead of holding it in the result (big states).
    pub dump_file: Option<PathBuf>,
    /// Replaces wasmtime's native stack limit (hidden `--native-stack`).
    pub native_stack: Option<usize>,
    /// The database layout the blocks are committed in (`--layout`).
    pub db_layout: DbLayout,
}

impl RunRequest {
    /// `blocks` under our engine, unbounded, from the first block, the reports and the dump in
    /// the result: what the benches vary from.
    pub fn unbounded(wasm: PathBuf, db: PathBuf, blocks: BlockStream, time_limit: Duration) -> Self {
        Self {
            wasm,
            db,
            blocks,
            source: "given in process".into(),
            resume: false,
            block_reports: None,
            engine: EngineKind::Memrepro,
            policy: MemoryPolicy::Unbounded,
            linear_memory: LinearMemory::Reserved,
            address_space_limit: None,
            time_limit,
            dump_file: None,
            native_stack: None,
            db_layout: DbLayout::Trie,
        }
    }
}

/// What indexing the blocks left.
pub struct Indexed {
    pub reports: Reports,
    /// The database's tip before the first block, when the run resumed after it.
    pub resumed_after: Option<u32>,
    pub outcome: RunOutcome,
    /// The layout's root after the last block committed.
    pub root: Hash,
    /// The guest's linear memory at the end of the last block run.
    pub wasm_memory_bytes: u64,
    /// The largest resident set measured between blocks (no instance alive).
    pub runner_rss_bytes: Option<u64>,
}

pub use super::reports::Reports;
