//! What `host-runner` writes and `xtask` reads, defined once: the result JSON of a run (this
//! file), the dump text (`dump`), the runner's exit codes, the log framing of Kubernetes runs
//! (`log_files`), and the size, policy and engine types both command lines take.

use serde::{Deserialize, Serialize};

pub mod dump;
mod engine;
pub mod log_files;
mod policy;
mod size;
pub use engine::EngineKind;
pub use policy::{Policy, RUNNER_OVERHEAD};
pub use size::{BadSize, ByteSize};

/// How `host-runner run` exits: written by the runner, read by the xtask.
pub mod runner_exit {
    /// Every block completed.
    pub const COMPLETED: u8 = 0;
    /// A block trapped or timed out: reported, nothing of it committed.
    pub const BLOCK_FAILED: u8 = 1;
    /// The runner could not do its job (bad arguments, unreadable guest, database error).
    pub const FAILED: u8 = 2;
    /// Refused: this host cannot back the deterministic policy's budget (nothing written).
    pub const REFUSED: u8 = 3;
}

/// How two metashrew nodes' databases compare (`host-runner metashrew-diff`'s `verdict`, and
/// its exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeVerdict {
    /// Every guest key's history agrees up to the lower tip.
    Identical,
    /// The nodes indexed different blocks (a reorg, another chain): their states are not compared.
    DifferentBlocks,
    /// The same blocks, different state from some height on.
    DifferentState,
}

impl NodeVerdict {
    /// `metashrew-diff`'s exit code: 0 identical, 1 different state, 3 not compared.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Identical => 0,
            Self::DifferentState => 1,
            Self::DifferentBlocks => 3,
        }
    }
}

/// `host-runner metashrew-diff`'s answer: where two nodes' databases first differ, as of the
/// heights both indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeComparison {
    pub verdict: NodeVerdict,
    /// The first height that differs.
    pub height: Option<u32>,
    /// Each node's tip height.
    pub tips: [u32; 2],
    /// Heights whose block hashes both nodes recorded and that were compared.
    pub block_hashes_compared: u32,
    /// At `different_blocks`: each node's block hash there (display order, hex).
    pub block_hashes: Option<[String; 2]>,
    /// Guest keys read in either node.
    pub keys_compared: u64,
    /// At `different_state`: the keys that first differ at `height` (the first few),
    /// with each node's history around it.
    pub keys: Vec<KeyDivergence>,
    /// How many keys first differ at `height`.
    pub keys_differing_there: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyDivergence {
    pub key: String,
    /// Each node's entries up to the height (the last few) and the first after it: `[height, value]`.
    pub histories: [Vec<(u32, String)>; 2],
}

/// Bumped whenever a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 4;

/// Everything one `host-runner run` observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub schema_version: u32,
    pub runner_version: String,
    /// What ran: the runner binary's SHA-256, its wasmtime, the CPU architecture.
    #[serde(default)]
    pub runner: RunnerIdentity,
    pub wasm: WasmInfo,
    pub policy: PolicyReport,
    /// The blocks asked for (where from, heights, sizes; never their bytes).
    pub input: InputReport,
    /// The height the database already held when the run began (`--resume`): the run started
    /// after it. `None` for a run from an empty database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<u32>,
    /// Each block run, in order, with what happened to it; blocks after a trapped one are not
    /// run. Empty when the run streamed them to `block_reports` (`--block-reports`, long runs).
    #[serde(default)]
    pub blocks: Vec<BlockReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_reports: Option<ReportsFile>,
    /// What the blocks run added up to, kept whether the reports are inline or streamed.
    pub totals: BlockTotals,
    pub outcome: RunOutcome,
    /// `/memory-stress-result/{height}` of the last block run, when the guest stored one.
    pub stress_result: Option<String>,
    /// Merkle root (SHA-256, hex) over the whole committed state after the run; under the
    /// `metashrew` layout, metashrew's `smt:root` of the last block (a hash of its last pair,
    /// which does not commit to the state: compare dumps).
    pub state_root: String,
    /// The database layout the run committed in: `trie` (ours; results from before this field,
    /// and those that named it `memrepro`) or `metashrew`.
    #[serde(default = "trie_layout")]
    pub db_layout: String,
    /// The committed state, one line per key, sorted: the text the pipeline diffs. Empty when
    /// the run streamed it to `dump_file` instead (`--dump`, for states too big to hold).
    pub dump: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_file: Option<DumpFile>,
    pub memory: MemoryReport,
}

/// A snapshot's copy made ready for a replay (`host-runner snapshot`): its layout, and the height
/// it holds the state of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// `trie`, `metashrew` (v9) or `metashrew-v10`: what the replays commit in.
    pub layout: String,
    pub label: Option<String>,
    /// The height it holds the state of: the replay starts after it.
    pub height: u32,
    /// The tip it was rolled back from, when `--at` was below it.
    pub rolled_back_from: Option<u32>,
    /// History entries above `height` removed from the copy.
    pub entries_removed: u64,
}

/// Which runner produced a result, so runs made on different machines can be told apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerIdentity {
    pub version: String,
    /// SHA-256 of the runner's own executable.
    pub sha256: String,
    pub wasmtime_version: String,
    /// The CPU architecture it was built for (`x86_64`, `aarch64`).
    pub arch: String,
}

/// A storage dump written to a file: the same lines as an inline `dump`, newline-terminated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpFile {
    /// The path the runner wrote (as the runner saw it, e.g. inside a container).
    pub path: String,
    pub lines: u64,
    /// SHA-256 of the file.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WasmInfo {
    pub path: String,
    pub sha256: String,
    pub size_bytes: u64,
}

/// The memory policy the run used (see host-runner's `policy.rs`), and the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyReport {
    /// `unbounded`, `headroom` or `deterministic`.
    pub name: String,
    /// `memrepro` (ours, and results from before the field) or `metashrew`.
    #[serde(default)]
    pub engine: EngineKind,
    /// The deterministic policy's fixed budget for linear memory (and for the host's buffers).
    pub memory_budget_bytes: Option<u64>,
    /// What the preflight required this host to back: 2 x the budget + the runner's overhead +
    /// the compiled guest.
    pub required_bytes: Option<u64>,
    /// The guest's compiled code and metadata, as loaded.
    #[serde(default)]
    pub compiled_guest_bytes: u64,
    /// `reserved-4gib` (wasmtime's default), `budget` or `small-movable`.
    pub memory_layout: String,
    /// RLIMIT_AS the runner applied to itself.
    pub address_space_limit_bytes: Option<u64>,
    /// Time the preflight took (reading the cgroup limit).
    pub preflight_ms: f64,
    /// Wall-clock limit of one block; a block past it traps with `time limit: …`.
    pub block_time_limit_secs: f64,
    /// The deterministic policy's fuel per block.
    #[serde(default)]
    pub fuel_per_block: Option<u64>,
    /// The deterministic policy's logical stack limit, in slots.
    #[serde(default)]
    pub logical_stack_slots: Option<u32>,
}

/// The blocks a run was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputReport {
    /// Where they came from, in words (`block map …`, `HEIGHT HEX text …`).
    pub source: String,
    pub first_height: Option<u32>,
    pub last_height: Option<u32>,
    pub blocks: u64,
    /// Their bytes, without the heights.
    pub bytes: u64,
}

/// Block reports written one JSON object per line (appended to by a resumed run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportsFile {
    /// The path the runner wrote (as the runner saw it, e.g. inside a container).
    pub path: String,
    /// Lines this run appended.
    pub lines: u64,
}

/// The blocks a run ran, added up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTotals {
    pub run: u64,
    /// Done under the metashrew engine without their writes (see `BlockOutcome::Aborted`).
    pub aborted: u64,
    pub last_height: Option<u32>,
    pub flushed_pairs: u64,
    /// The guest's largest linear memory at the end of a block.
    pub max_wasm_memory_bytes: u64,
}

impl BlockTotals {
    pub fn add(&mut self, report: &BlockReport) {
        self.run += 1;
        self.aborted += u64::from(matches!(report.outcome, BlockOutcome::Aborted { .. }));
        self.last_height = Some(report.height);
        self.flushed_pairs += report.flushed_pairs;
        self.max_wasm_memory_bytes = self.max_wasm_memory_bytes.max(report.wasm_memory_bytes);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockReport {
    pub height: u32,
    pub outcome: BlockOutcome,
    /// Key-value pairs the guest flushed (committed only when the block completed).
    pub flushed_pairs: u64,
    pub flushed_bytes: u64,
    /// What the host was charged for holding and committing this block's flushes (its keys and
    /// values plus a fixed cost per pair); the deterministic policy caps it at the budget.
    #[serde(default)]
    pub host_charged_bytes: u64,
    /// Fuel `_start` used (the deterministic policy's time measure); `None` under other policies.
    #[serde(default)]
    pub fuel_consumed: Option<u64>,
    /// State root after this block (unchanged from the previous one when it trapped).
    pub state_root: String,
    /// Linear memory size of the guest when `_start` ended.
    pub wasm_memory_bytes: u64,
    /// `memory.grow` requests the policy refused during this block.
    pub refused_growths: u64,
    pub timings: Timings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BlockOutcome {
    /// `_start` returned; the block's writes were committed in one batch.
    Completed,
    /// `_start` trapped; nothing of the block was committed.
    Trapped { message: String },
    /// `_start` ran past the block time limit and was interrupted; nothing was committed.
    TimedOut { message: String },
    /// The host could not give the block's instance what it needs (its linear memory's address
    /// space: RLIMIT_AS, or the kernel's overcommit refused the mapping); nothing was committed.
    /// A limit of the host, never the guest's outcome.
    HostLimit { message: String },
    /// Metashrew engine only: the guest marked the block failed without trapping (`abort()`, or
    /// a flush that did not decode) and `_start` returned. The block is done with nothing of it
    /// written (its flushes dropped), and the run moves on to the next block, as metashrew does.
    Aborted { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    Completed,
    Trapped {
        height: u32,
        message: String,
        /// What a node running the engine does about it, beside stopping there (metashrew
        /// engine: it would retry the block for ever); absent for ours.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    TimedOut { height: u32, message: String },
    /// The host could not instantiate the guest for the block at `height` (see
    /// `BlockOutcome::HostLimit`).
    HostLimit { height: u32, message: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub instantiate_ms: f64,
    pub execute_ms: f64,
    pub commit_ms: f64,
}

/// Memory as this process saw it. `None` where the kernel does not expose the figure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryReport {
    /// 1 or 2, `None` when no cgroup memory controller is mounted.
    pub cgroup_version: Option<u8>,
    /// The cgroup's memory limit; `None` when unlimited or unreadable.
    pub cgroup_limit_bytes: Option<u64>,
    /// The cgroup's peak usage (v2 `memory.peak`, v1 `memory.max_usage_in_bytes`).
    pub cgroup_peak_bytes: Option<u64>,
    /// This process's peak resident set (`VmHWM`): the runner and the guest's linear memory.
    pub peak_rss_bytes: Option<u64>,
    /// The runner's own peak: the largest resident set measured between blocks, when no guest
    /// instance is alive (engine, database, the blocks read ahead, the reports).
    #[serde(default)]
    pub runner_rss_bytes: Option<u64>,
    /// This process's RLIMIT_AS (`Max address space` in /proc/self/limits); `None` when unlimited.
    #[serde(default)]
    pub address_space_limit_bytes: Option<u64>,
    /// The guest's linear memory when the last block ended.
    pub wasm_memory_bytes: u64,
    /// Whether the cgroup can swap: a limited run that swaps is slowed, not killed, so its
    /// outcome says nothing about the limit.
    #[serde(default)]
    pub swap: SwapState,
}

/// Whether a memory cgroup can use swap, read back from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SwapState {
    /// No swap: the cgroup's swap limit is zero, or the host has no swap at all.
    Off { because: String },
    /// The cgroup may swap `bytes` (`None`: without limit).
    Allowed { bytes: Option<u64>, because: String },
    /// Nothing could be read (no cgroup, or unreadable files).
    #[default]
    Unknown,
}

/// What a memory cgroup counted while a run lasted (differences of the kernel's counters).
/// `None` where this kernel or cgroup version does not count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupEvents {
    /// Times usage reached the limit (v2 `memory.events` `max`, v1 `memory.failcnt`).
    pub limit_hits: Option<u64>,
    /// Times the cgroup's own OOM killer was invoked (v2 `memory.events` `oom`; v1 has no counter).
    pub ooms: Option<u64>,
    /// Processes killed by the OOM killer (v2 `memory.events`, v1 `memory.oom_control`: `oom_kill`).
    pub oom_kills: Option<u64>,
}

impl CgroupEvents {
    /// What was counted between `self` (before) and `after`.
    pub fn since(self, after: Self) -> Self {
        let delta = |before: Option<u64>, after: Option<u64>| Some(after?.saturating_sub(before.unwrap_or(0)));
        Self {
            limit_hits: delta(self.limit_hits, after.limit_hits),
            ooms: delta(self.ooms, after.ooms),
            oom_kills: delta(self.oom_kills, after.oom_kills),
        }
    }
}

impl RunResult {
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("RunResult serializes")
    }
}

/// Written by `host-runner watch`, the small supervisor that runs `host-runner run` as its child
/// inside the container, so that a kill of the run is observed from inside the same cgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchReport {
    pub schema_version: u32,
    /// Memory as seen when the watcher started: the container's limit, read back from its cgroup.
    pub memory_at_start: MemoryReport,
    /// The run's exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended the run (9 for SIGKILL, as the OOM killer sends).
    pub signal: Option<i32>,
    /// What the run's memory cgroup counted while the run lasted; `None` without a cgroup.
    pub cgroup_events: Option<CgroupEvents>,
    /// The cgroup's peak usage at the end.
    pub cgroup_peak_bytes: Option<u64>,
    pub wall_ms: f64,
    /// The sandbox as seen from inside: hardening verified, not assumed.
    pub sandbox: SandboxReport,
}

/// What the runner's process can see of its own confinement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Effective capabilities (`CapEff` of /proc/self/status, hex); all zeros means none.
    pub capabilities: Option<String>,
    /// Network interfaces visible (/proc/net/dev); `["lo"]` means no network.
    pub network_interfaces: Vec<String>,
    /// Whether `/` is mounted read-only (/proc/self/mountinfo).
    pub root_read_only: Option<bool>,
    /// The pids cgroup's limit; `None` when unlimited or unreadable.
    pub pids_limit: Option<u64>,
}

impl WatchReport {
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("WatchReport serializes")
    }
}

/// What `host-runner state --db DIR` reads back from a database, e.g. one a killed run left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredState {
    /// The last committed height, `None` for an empty database.
    pub tip: Option<u32>,
    pub state_root: String,
    /// As in [`RunResult`]: `trie` (ours, whose root commits to the state) or a metashrew layout.
    #[serde(default = "trie_layout")]
    pub db_layout: String,
    /// `/memory-stress-result/{tip}`, when the guest stored one.
    #[serde(default)]
    pub stress_result: Option<String>,
    /// As in [`RunResult`]: inline, or empty with `dump_file` set.
    pub dump: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_file: Option<DumpFile>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_verdicts_read_and_print_as_metashrew_diff_writes_them_and_exit_as_repro_does() {
        for (verdict, name, code) in [(NodeVerdict::Identical, "identical", 0), (NodeVerdict::DifferentState, "different_state", 1), (NodeVerdict::DifferentBlocks, "different_blocks", 3)] {
            assert_eq!(serde_json::to_string(&verdict).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<NodeVerdict>(&format!("\"{name}\"")).unwrap(), verdict);
            assert_eq!(verdict.exit_code(), code);
        }
    }

    #[test]
    fn outcomes_serialize_with_a_status_tag() {
        let trapped = RunOutcome::Trapped { height: 7, message: "unreachable".into(), node: None };
        let json = serde_json::to_value(&trapped).unwrap();
        assert_eq!(json, serde_json::json!({ "status": "trapped", "height": 7, "message": "unreachable" }));
        assert_eq!(serde_json::to_value(BlockOutcome::Completed).unwrap(), serde_json::json!({ "status": "completed" }));
        let aborted = BlockOutcome::Aborted { message: "abort()".into() };
        assert_eq!(serde_json::to_value(aborted).unwrap(), serde_json::json!({ "status": "aborted", "message": "abort()" }));
    }

    #[test]
    fn a_policy_report_without_an_engine_is_ours() {
        let old = serde_json::json!({
            "name": "unbounded", "memory_budget_bytes": null, "required_bytes": null, "memory_layout": "reserved-4gib",
            "address_space_limit_bytes": null, "preflight_ms": 0.0, "block_time_limit_secs": 300.0
        });
        assert_eq!(serde_json::from_value::<PolicyReport>(old).unwrap().engine, EngineKind::Memrepro);
    }

    #[test]
    fn a_result_survives_a_json_round_trip() {
        let result = RunResult {
            schema_version: SCHEMA_VERSION,
            runner_version: "0.1.0".into(),
            runner: RunnerIdentity { version: "0.1.0".into(), sha256: "ab".into(), wasmtime_version: "48.0.8".into(), arch: "x86_64".into() },
            wasm: WasmInfo { path: "g.wasm".into(), sha256: "ab".into(), size_bytes: 3 },
            policy: PolicyReport {
                name: "deterministic".into(),
                engine: EngineKind::Memrepro,
                memory_budget_bytes: Some(1),
                required_bytes: Some(2),
                compiled_guest_bytes: 1,
                memory_layout: "budget".into(),
                address_space_limit_bytes: None,
                preflight_ms: 0.5,
                block_time_limit_secs: 60.0,
                fuel_per_block: Some(10),
                logical_stack_slots: Some(65536),
            },
            input: InputReport { source: "t".into(), first_height: Some(1), last_height: Some(1), blocks: 1, bytes: 1 },
            resumed_after: None,
            block_reports: None,
            totals: BlockTotals { run: 1, aborted: 0, last_height: Some(1), flushed_pairs: 2, max_wasm_memory_bytes: 65536 },
            blocks: vec![BlockReport {
                height: 1,
                outcome: BlockOutcome::Trapped { message: "m".into() },
                flushed_pairs: 2,
                flushed_bytes: 9,
                host_charged_bytes: 2050,
                fuel_consumed: Some(1234),
                state_root: "00".into(),
                wasm_memory_bytes: 65536,
                refused_growths: 1,
                timings: Timings { instantiate_ms: 1.5, execute_ms: 2.0, commit_ms: 0.0 },
            }],
            outcome: RunOutcome::Trapped { height: 1, message: "m".into(), node: Some("n".into()) },
            stress_result: None,
            state_root: "00".into(),
            db_layout: "metashrew".into(),
            dump: vec!["\"k\" = \"v\"".into()],
            dump_file: Some(DumpFile { path: "/out/dump.txt".into(), lines: 1, sha256: "cd".into() }),
            memory: MemoryReport {
                cgroup_version: Some(2),
                cgroup_limit_bytes: Some(1 << 29),
                cgroup_peak_bytes: None,
                peak_rss_bytes: Some(1),
                runner_rss_bytes: Some(1),
                address_space_limit_bytes: None,
                wasm_memory_bytes: 65536,
                swap: SwapState::Off { because: "memory.swap.max = 0".into() },
            },
        };
        assert_eq!(RunResult::from_json(&result.to_json()).unwrap(), result);
    }

    #[test]
    fn event_differences_ignore_what_was_counted_before_and_keep_unknowns() {
        let before = CgroupEvents { limit_hits: Some(5), ooms: None, oom_kills: Some(1) };
        let after = CgroupEvents { limit_hits: Some(9), ooms: None, oom_kills: Some(2) };
        assert_eq!(before.since(after), CgroupEvents { limit_hits: Some(4), ooms: None, oom_kills: Some(1) });
    }
}

fn trie_layout() -> String {
    "trie".into()
}
