//! `host-runner run`: index blocks and report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use blocks::text::parse_hex;
use blocks::{Block, BlockArgs, BlockStream, Source};
use clap::Args;
use schema::{runner_exit, ByteSize, RunOutcome};
use state::files::write_atomically;
use state::metashrew::Version;
use state::DbLayout;

use super::engine_args::EngineArgs;
use crate::engine::Refusal;
use crate::run::result::summary_line;
use crate::run::{run as run_blocks, RunRequest};

#[derive(Args)]
pub struct RunArgs {
    /// The guest: a .wasm (or .wat) module speaking the metashrew ABI.
    #[arg(long)]
    wasm: PathBuf,
    /// RocksDB directory (created if missing).
    #[arg(long)]
    db: PathBuf,
    /// Height of the single block to run.
    #[arg(long, conflicts_with_all = ["block_source", "from", "to", "start_hash", "tip_hash"], required_unless_present = "block_source")]
    height: Option<u32>,
    /// That block's bytes as hex, without the height (the host prepends it). May be empty.
    #[arg(long, requires = "height", default_value = "")]
    payload: String,
    #[command(flatten)]
    source: BlockArgs,
    /// A block map's files are here, not in the directory it names (where a container mounts them).
    #[arg(long, requires = "blocks")]
    block_dir: Option<PathBuf>,
    /// Continue after the height the database holds (an interrupted run's), not from the first block.
    #[arg(long)]
    resume: bool,
    /// Append each block's report to this file as a JSON line instead of holding them in the result (long runs).
    #[arg(long)]
    block_reports: Option<PathBuf>,
    /// Where to write the result JSON (atomically).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stream the storage dump to this file instead of into the result JSON (big states).
    #[arg(long)]
    dump: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Limit the runner's own address space (RLIMIT_AS), e.g. 3g.
    #[arg(long)]
    address_space_limit: Option<ByteSize>,
    /// Replace wasmtime's native stack limit, in bytes (to check that the deterministic
    /// policy's trap depth does not depend on it).
    #[arg(long, hide = true)]
    native_stack: Option<usize>,
    /// The database layout: ours (`trie`: the pairs and a real state root) or metashrew's, v9
    /// or v10 (append-only histories, tip and block hash keys), to compare a run with a
    /// production node's database.
    #[arg(long, value_enum, default_value = "trie")]
    layout: LayoutArg,
    /// Under a metashrew layout: write every key under `LABEL://`, as a node run with
    /// `--label LABEL` does.
    #[arg(long)]
    label: Option<String>,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let out = args.out.clone();
    let request = request(args)?;
    let result = match run_blocks(&request) {
        Err(error) if error.is::<Refusal>() => {
            eprintln!("host-runner: {error}");
            return Ok(ExitCode::from(runner_exit::REFUSED));
        }
        other => other?,
    };
    if let Some(out) = out {
        write_atomically(&out, &result.to_json())?;
    }
    println!("{}", summary_line(&result));
    println!("STATE ROOT: {}", result.state_root);
    Ok(ExitCode::from(match result.outcome {
        RunOutcome::Completed => runner_exit::COMPLETED,
        RunOutcome::Trapped { .. } | RunOutcome::TimedOut { .. } | RunOutcome::HostLimit { .. } => runner_exit::BLOCK_FAILED,
    }))
}

/// The run the flags ask for, checked before any block is read.
fn request(args: RunArgs) -> Result<RunRequest> {
    // Before any block is read (`run` checks again, for callers of the library).
    let settings = args.engine.settings(args.native_stack)?;
    let (blocks, source) = match args.height {
        Some(height) => (BlockStream::Held(vec![Block { height, payload: parse_hex(&args.payload).context("--payload")? }]), "--payload".to_string()),
        None => stream(&args.source, args.block_dir)?,
    };
    let db_layout = args.layout.with_label(args.label)?;
    Ok(RunRequest {
        wasm: args.wasm,
        db: args.db,
        blocks,
        source,
        resume: args.resume,
        block_reports: args.block_reports,
        engine: settings.engine,
        policy: settings.policy,
        linear_memory: settings.linear_memory,
        address_space_limit: args.address_space_limit.map(ByteSize::bytes),
        time_limit: settings.time_limit,
        dump_file: args.dump,
        native_stack: args.native_stack,
        db_layout,
    })
}

/// The blocks the flags name: a block map streamed (its files looked for in `block_dir` when
/// given), any other source read and held; and where they come from.
fn stream(args: &BlockArgs, block_dir: Option<PathBuf>) -> Result<(BlockStream, String)> {
    match (args.source()?, block_dir) {
        (Some(Source::Map(map)), dir) if args.from.is_none() && args.to.is_none() => {
            let map = match dir {
                Some(dir) => map.with_dir(dir),
                None => map,
            };
            Ok((BlockStream::Mapped(map.clone()), map.describe()))
        }
        (Some(Source::Map(_)), _) => bail!("a block map holds the heights to run: --from/--to do not apply"),
        (_, Some(_)) => bail!("--block-dir is for a block map's files"),
        _ => {
            let (source, blocks) = args.read()?.context("no blocks: give --height, --blocks or --rpc")?;
            Ok((BlockStream::Held(blocks), source.describe()))
        }
    }
}

/// `--layout`: the database layout a run commits in.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum LayoutArg {
    /// Ours: the pairs and a real state root.
    #[value(alias = "memrepro")]
    Trie,
    /// metashrew's v9: append-only histories as text, `smt:root`, tip and block hash keys.
    #[value(alias = "metashrew-v9")]
    Metashrew,
    /// metashrew's v10, what production nodes run: histories in binary, a manifest of the keys
    /// each block wrote, no root.
    #[value(name = "metashrew-v10")]
    MetashrewV10,
}

impl LayoutArg {
    /// The layout, with the label a metashrew layout's keys go under.
    pub(super) fn with_label(self, label: Option<String>) -> anyhow::Result<DbLayout> {
        let version = match self {
            LayoutArg::Trie => {
                anyhow::ensure!(label.is_none(), "--label is for --layout metashrew or metashrew-v10");
                return Ok(DbLayout::Trie);
            }
            LayoutArg::Metashrew => Version::V9,
            LayoutArg::MetashrewV10 => Version::V10,
        };
        Ok(DbLayout::Metashrew { label, version })
    }
}
