//! Every flag of `cargo xtask`, declared once; the help text comes from these comments. The
//! values they parse into are defined below the commands (in `config`, `input`, `backend`), so
//! this module depends on no command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::image::ImageBuild;
use crate::backend::BackendChoice;
use crate::config::{ByteSize, EngineKind, Policy, ReproConfig, StressPayload};
use crate::input::{Guest, GuestChoice};
use blocks::BlockArgs;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Reproduce (and measure) memory-dependent state divergence of a WASM indexer")]
pub struct Flags {
    #[command(subcommand)]
    pub command: Command,
    /// Where runs happen: Docker when a daemon answers, else a local process.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// How to build the runner image (default: host on Linux, dockerfile elsewhere).
    #[arg(long, global = true, value_enum)]
    pub image_build: Option<ImageBuild>,
}

/// What every run takes on top of `[workspace.metadata.repro]`.
#[derive(Args)]
pub struct RunFlags {
    /// Stress payload `MBxCOUNT[:digest][:release]`, e.g. `10x5`.
    #[arg(long)]
    pub payload: Option<StressPayload>,
    /// The runner's memory policy for every run.
    #[arg(long, value_enum)]
    pub policy: Option<Policy>,
    /// The deterministic policy's budget, e.g. `192m`.
    #[arg(long)]
    pub memory_budget: Option<ByteSize>,
    /// The deterministic policy's fuel per block (default: the runner's, 10^11, about one unit
    /// per wasm instruction).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Where run directories go (default: target/repro).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

impl RunFlags {
    /// The configuration with these flags applied, checked again (`--policy` may not suit a
    /// profile's engine).
    pub fn apply(&self, mut config: ReproConfig) -> anyhow::Result<ReproConfig> {
        config.payload = self.payload.unwrap_or(config.payload);
        config.policy = self.policy.unwrap_or(config.policy);
        config.memory_budget = self.memory_budget.unwrap_or(config.memory_budget);
        config.fuel = self.fuel.or(config.fuel);
        config.check()?;
        Ok(config)
    }
}

/// Which guest runs, over which blocks.
#[derive(Args, Clone, Debug, Default)]
pub struct InputFlags {
    /// One of the workspace's guests: `stress` (the memory-stress indexer, the default) or
    /// `chain` (a Bitcoin chain indexer; needs blocks).
    #[arg(long, value_enum, conflicts_with = "wasm")]
    pub guest: Option<GuestChoice>,
    /// Run this metashrew-ABI guest instead of one of ours (needs blocks).
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    #[command(flatten)]
    pub source: BlockArgs,
}

impl InputFlags {
    /// Our guest (the stress guest unless `--guest` says otherwise), or the file `--wasm` names.
    pub fn guest(&self) -> Guest {
        match &self.wasm {
            Some(path) => Guest::File(path.clone()),
            None => Guest::Ours(self.guest.unwrap_or(GuestChoice::Stress)),
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Build the guest and the runner image, run one container per memory profile, compare.
    Repro(Repro),
    /// Run `repro` under every policy (or only `--policy`) over the `matrix_profiles` and print
    /// policy x profile.
    Matrix(Matrix),
    /// The seed's gradual-increase test: growing payloads under one limit until one fails.
    Sweep(Sweep),
    /// Binary search over the limit for where the outcome starts matching the upper bound.
    Bisect(Bisect),
    /// A stand-in for Bitcoin Core's JSON-RPC serving the blocks of a block source (consecutive
    /// heights), until stopped: to try `--rpc` where no node runs. It is not Bitcoin Core.
    #[command(hide = true)]
    RpcStandIn(RpcStandIn),
    /// Block workloads: `generate` writes a valid, chained regtest block file from a seed.
    #[command(subcommand)]
    Blocks(BlocksCommand),
    /// The verdict over run directories made anywhere (other machines, backends, CPU
    /// architectures): the same table, diff and exit codes as `repro`. Runs of different guests
    /// or blocks are refused.
    Compare(Compare),
    /// Kubernetes Jobs from the same profiles, and the verdict over what their logs bring back.
    K8s(K8s),
    /// Compare two storage dumps (as `host-runner dump` prints them, sorted by key) in one
    /// streaming pass: a unified diff and the first differing key. Exit 0 identical, 1 different.
    /// With `--db A --db B`, two metashrew nodes' databases: the first height where they
    /// diverge, the keys, and the state diff there (exit 3: they indexed different blocks).
    Diff(Diff),
    /// Measure overhead, per-block cost, image size, warm repro, dump + compare and build times
    /// side by side; print them with their goals. Exit 1 when a goal is missed.
    Bench(Bench),
    /// Check this machine: Docker, memory limits, cgroups, libclang, the wasm32 target, disk.
    Doctor,
    /// Build the guest and the runner, then run every test (Docker tests included).
    Test(Test),
    /// Check the repository's shape: no circle between a crate's source files, no import from a
    /// lower layer to a higher one, no function over 60 lines. Exit 1 when a check fails.
    Tidy,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once, from the command line")]
pub enum K8sCommand {
    /// Write a ConfigMap (the guest and the blocks) and one Job per profile, checked.
    Render(K8sRender),
    /// Rebuild a run directory from the Jobs' logs and give the verdict (exit codes as `repro`).
    Collect(K8sCollect),
}

#[derive(Args)]
pub struct Repro {
    /// Run only this configured profile (repeatable), e.g. `--profile low`.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Replace the configured profiles with one per limit (repeatable), e.g. `--limit 1g`.
    #[arg(long = "limit", value_name = "LIMIT")]
    pub limits: Vec<ByteSize>,
    /// Run every profile under this engine: `memrepro` (ours) or `metashrew` (metashrew's
    /// own; unbounded policy only). Default: each profile's `engine`.
    #[arg(long, value_enum)]
    pub engine: Option<EngineKind>,
    /// Block height given to the stress block.
    #[arg(long, conflicts_with = "block_source")]
    pub height: Option<u32>,
    #[command(flatten)]
    pub input: InputFlags,
    /// Seconds one run may take before it is killed.
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// Commit in this database layout: `trie` (ours, the default), or metashrew's `metashrew`
    /// (v9) or `metashrew-v10`, so the profiles' databases are node databases (`diff --db`).
    #[arg(long, value_enum, conflicts_with = "from_db")]
    pub layout: Option<crate::config::Layout>,
    /// Start every profile from this database (ours, or a metashrew node's, v9 or v10) instead
    /// of an empty one, and replay the blocks after it; it is never written (each profile gets
    /// a copy, its table files hard-linked).
    #[arg(long, value_name = "PATH")]
    pub from_db: Option<PathBuf>,
    /// With --from-db: start from its state as of this height (default: its tip).
    #[arg(long, requires = "from_db", value_name = "HEIGHT")]
    pub at: Option<u32>,
    /// With --from-db: the label a metashrew node ran with (`--label`).
    #[arg(long, requires = "from_db")]
    pub db_label: Option<String>,
    /// Continue an interrupted run (the latest under the output directory, or RUN_DIR) with the
    /// same command: profiles that ended are kept, the others go on after their last committed
    /// block.
    #[arg(long, value_name = "RUN_DIR", num_args = 0..=1)]
    pub resume: Option<Option<PathBuf>>,
    /// Run a metashrew-compatible node instead of our runner, under the node profiles of
    /// `[workspace.metadata.repro.node]`: a Docker image on this machine, `host-runner` (ours), or
    /// a path to a node binary (run as a local process).
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["limits", "engine", "height", "resume", "from_db"])]
    pub node: Option<String>,
    /// The node's arguments, with placeholders {rpc} {wasm} {db} {tip} {port} (default:
    /// rockshrew-mono's command line).
    #[arg(long, requires = "node", value_name = "TEMPLATE")]
    pub node_args: Option<String>,
    /// Seconds a run (or a node) may commit no block before it is killed and reported stalled.
    #[arg(long)]
    pub stall_secs: Option<u64>,
    #[command(flatten)]
    pub run: RunFlags,
}

#[derive(Args)]
pub struct Matrix {
    #[command(flatten)]
    pub run: RunFlags,
}

#[derive(Args)]
pub struct Sweep {
    /// The limit (default: `sweep_limit` from the configuration).
    #[arg(long)]
    pub limit: Option<ByteSize>,
    /// The steps, in order (repeatable; default: `sweep_steps`), e.g. `--step 10x10`.
    #[arg(long = "step", value_name = "PAYLOAD")]
    pub steps: Vec<StressPayload>,
    #[command(flatten)]
    pub run: RunFlags,
}

#[derive(Args)]
pub struct Bisect {
    /// Lower and upper bound, e.g. `--between 256m 4g`.
    #[arg(long, num_args = 2, value_names = ["LOWER", "UPPER"], required = true)]
    pub between: Vec<ByteSize>,
    /// Stop when the bounds are this close.
    #[arg(long, default_value = "16m")]
    pub resolution: ByteSize,
    #[command(flatten)]
    pub input: InputFlags,
    #[command(flatten)]
    pub run: RunFlags,
}

#[derive(Subcommand)]
pub enum BlocksCommand {
    /// A chain of N regtest blocks with transactions spending earlier outputs, the same bytes
    /// for the same seed, as one block file.
    Generate(Generate),
}

#[derive(Args)]
pub struct Generate {
    /// How many blocks (heights 0 to N - 1).
    #[arg(long)]
    pub count: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The most ordinary transactions in a block.
    #[arg(long, default_value_t = 200)]
    pub max_transactions: u32,
    /// The block file to write (e.g. blocks/blk00000.dat).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct RpcStandIn {
    /// The blocks to serve (any `--blocks` source).
    #[arg(long)]
    pub blocks: PathBuf,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value = "18332")]
    pub port: u16,
    /// Require these credentials, as `USER:PASSWORD`.
    #[arg(long)]
    pub credentials: Option<String>,
}

#[derive(Args)]
pub struct Compare {
    /// Run directories `cargo xtask repro` wrote (each holds report.json).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the comparison goes (default: target/compare).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct K8s {
    #[command(subcommand)]
    pub command: K8sCommand,
}

#[derive(Args)]
pub struct Diff {
    /// The two dump files.
    #[arg(num_args = 2, value_names = ["OLD", "NEW"], required_unless_present = "dbs", conflicts_with = "dbs")]
    pub dumps: Vec<PathBuf>,
    /// A metashrew node's RocksDB directory (twice: node A, node B).
    #[arg(long = "db", num_args = 1, value_name = "DIR")]
    pub dbs: Vec<PathBuf>,
    /// Both nodes ran with `--label LABEL`.
    #[arg(long, requires = "dbs")]
    pub label: Option<String>,
    /// Where the node diff's state dumps go (default: target/diff).
    #[arg(long, requires = "dbs")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct Bench {
    /// Only these sections (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Section>,
    /// The stress block for the overhead figure.
    #[arg(long, default_value = "50x20:digest")]
    pub payload: StressPayload,
    /// Runs of each side of the overhead figure (the median counts).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Blocks of the per-block figure.
    #[arg(long, default_value_t = 10_000)]
    pub blocks: u32,
    /// Keys of each store in the dump + compare figure (also run at a tenth of it).
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Blocks of the generated chain the streaming figure runs (against its first 1,000).
    #[arg(long, default_value_t = 50_000)]
    pub chain_blocks: u32,
    /// Also time a build from an empty target directory (about 15 minutes on 2 cores).
    #[arg(long)]
    pub cold_build: bool,
    /// Where the figures go (default: target/bench).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// A metashrew-compatible node image (as for `repro --node`) to time against `host-runner
    /// node` on the same guest and blocks (the node lab's `args` template from Cargo.toml).
    #[arg(long)]
    pub node: Option<String>,
}

#[derive(Args)]
pub struct Test {
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

#[derive(Args)]
pub struct K8sRender {
    /// The runner image as the cluster pulls it, e.g. `registry.example/memrepro-runner:<tag>`
    /// (the tag `cargo xtask repro` built, pushed to your registry).
    #[arg(long)]
    pub image: String,
    /// Replace the configured profiles with one per limit (repeatable).
    #[arg(long = "limit", value_name = "LIMIT")]
    pub limits: Vec<ByteSize>,
    /// Give the Jobs their input (the guest, the blocks) on this PersistentVolumeClaim, which you
    /// fill with the rendered `input/` directory, instead of a ConfigMap (which holds 1 MiB).
    #[arg(long, value_name = "CLAIM", conflicts_with = "input_image")]
    pub input_volume: Option<String>,
    /// Give the Jobs their input from this image (built from the rendered `input/Dockerfile` and
    /// pushed by you): an init container copies its `/input` for the runner.
    #[arg(long, value_name = "IMAGE")]
    pub input_image: Option<String>,
    #[command(flatten)]
    pub input: InputFlags,
    #[command(flatten)]
    pub run: RunFlags,
}

#[derive(Args)]
pub struct K8sCollect {
    /// The directory `k8s render` wrote.
    #[arg(long)]
    pub rendered: PathBuf,
    /// Each Job's log, named `<profile>.log` (`kubectl logs job/memrepro-low > low.log`).
    #[arg(required = true)]
    pub logs: Vec<PathBuf>,
    /// Where the run directory goes (default: target/k8s-runs).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// The sections of `cargo xtask bench` (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Build,
    Overhead,
    Blocks,
    Image,
    Repro,
    Dump,
    NodeDiff,
    Adversaries,
    RealBlocks,
    Streaming,
    /// `--node IMAGE` against `host-runner node`.
    Node,
}
