//! What a run is asked to do, and what indexing its blocks left.

use std::path::PathBuf;
use std::time::Duration;

use blocks::Block;
use schema::{BlockReport, EngineKind, RunOutcome};
use state::trie::Hash;
use state::DbLayout;

use crate::engine::{LinearMemory, MemoryPolicy};

/// What to run, and how.
pub struct RunRequest {
    pub wasm: PathBuf,
    pub db: PathBuf,
    pub blocks: Vec<Block>,
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

/// What indexing the blocks left.
pub struct Indexed {
    pub reports: Vec<BlockReport>,
    pub outcome: RunOutcome,
    /// The layout's root after the last block committed.
    pub root: Hash,
    /// The guest's linear memory at the end of the last block run.
    pub wasm_memory_bytes: u64,
}
