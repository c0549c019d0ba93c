//! `host-runner run`: index blocks and report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use blocks::text::parse_hex;
use blocks::{Block, BlockArgs};
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
        RunOutcome::Trapped { .. } | RunOutcome::TimedOut { .. } => runner_exit::BLOCK_FAILED,
    }))
}

/// The run the flags ask for, checked before any block is read.
fn request(args: RunArgs) -> Result<RunRequest> {
    // Before any block is read (`run` checks again, for callers of the library).
    let settings = args.engine.settings(args.native_stack)?;
    let blocks = match args.height {
        Some(height) => vec![Block { height, payload: parse_hex(&args.payload).context("--payload")? }],
        None => args.source.read()?.context("no blocks: give --height, --blocks or --rpc")?.1,
    };
    let db_layout = args.layout.with_label(args.label)?;
    Ok(RunRequest {
        wasm: args.wasm,
        db: args.db,
        blocks,
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
