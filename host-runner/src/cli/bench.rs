//! `host-runner bench …` (hidden): the measurements `cargo xtask bench` drives.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use blocks::text::parse_hex;
use blocks::Block;
use clap::Subcommand;

use super::run::LayoutArg;
use crate::bench::{self as measure, CommitBench};
use crate::run::read_blocks_file;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The runner against a bare wasmtime `_start` of the same guest and block.
    Overhead {
        #[arg(long)]
        wasm: PathBuf,
        /// One block at height 1 with this payload (hex)...
        #[arg(long, default_value = "")]
        payload: String,
        /// ...or these blocks (any block source).
        #[arg(long, conflicts_with = "payload")]
        blocks: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Per-block cost over many small blocks.
    Blocks {
        #[arg(long, default_value_t = 10_000)]
        count: u32,
    },
    /// Each block's flushed pairs committed (`commit_block`) against one plain RocksDB batch of
    /// the same pairs, per block, RUNS times.
    Commit {
        /// The guest; without it an indexer-shaped one (`crate::bench::PAIRS_GUEST`).
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// The blocks timed, as `run --blocks` reads them.
        #[arg(long)]
        blocks: Option<PathBuf>,
        /// Blocks run and committed first, untimed (the state the timed blocks go into).
        #[arg(long)]
        after: Option<PathBuf>,
        /// Synthetic keys committed first, untimed.
        #[arg(long, default_value_t = 0)]
        into_state: u64,
        /// Synthetic keys committed after the blocks, timed, in blocks of 100,000.
        #[arg(long, default_value_t = 0)]
        synthetic: u64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// A new store of KEYS keys, CHANGED of them with other values.
    MakeStore {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        keys: u64,
        #[arg(long, default_value_t = 0)]
        changed: u64,
        /// The store's layout (`metashrew`: a node's database, for `metashrew-diff`).
        #[arg(long, value_enum, default_value = "trie")]
        layout: LayoutArg,
    },
}

pub fn bench(command: BenchCommand) -> Result<ExitCode> {
    let figures = match command {
        BenchCommand::Overhead { wasm, payload, blocks, runs } => {
            let blocks = match blocks {
                Some(path) => read_blocks_file(&path)?,
                None => vec![Block { height: 1, payload: parse_hex(&payload)? }],
            };
            measure::overhead(&wasm, &blocks, runs)?
        }
        BenchCommand::Blocks { count } => measure::blocks(count)?,
        BenchCommand::Commit { wasm, blocks, after, into_state, synthetic, runs } => measure::commit(&CommitBench {
            wasm,
            blocks: blocks.as_deref().map(read_blocks_file).transpose()?.unwrap_or_default(),
            synthetic_keys: synthetic,
            after: after.as_deref().map(read_blocks_file).transpose()?.unwrap_or_default(),
            state_keys: into_state,
            runs,
        })?,
        BenchCommand::MakeStore { db, keys, changed, layout } => {
            measure::make_store(&db, keys, changed, &layout.with_label(None)?)?
        }
    };
    println!("{figures}");
    Ok(ExitCode::SUCCESS)
}
