//! `host-runner metashrew-state` and `metashrew-diff`: a metashrew node's database read, and two
//! compared, without writing to them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use state::files::{directory_of, write_atomically_with};
use state::metashrew::{compare, MetashrewDb};

#[derive(Args)]
pub struct StateArgs {
    /// The node's RocksDB directory.
    #[arg(long)]
    db: PathBuf,
    /// The state as of this height (default: the database's tip height).
    #[arg(long)]
    height: Option<u32>,
    /// The node ran with `--label LABEL`: its keys are under `LABEL://`.
    #[arg(long)]
    label: Option<String>,
    /// Open as a RocksDB secondary instance, for a database a running node is writing; this
    /// directory holds the instance's own files.
    #[arg(long)]
    secondary: Option<PathBuf>,
    /// Where the dump goes (written atomically).
    #[arg(long)]
    dump: PathBuf,
}

pub fn state(args: StateArgs) -> Result<ExitCode> {
    let node = MetashrewDb::open(&args.db, args.label.as_deref(), args.secondary.as_deref())?;
    let tip = node.tip_height()?;
    let height = args.height.or(tip).context("the database has no /__INTERNAL/tip-height: give --height")?;
    let scratch = tempfile::tempdir_in(directory_of(&args.dump)).context("a scratch directory beside the dump")?;
    let written = write_atomically_with(&args.dump, |file| node.write_state(height, scratch.path(), file))?;
    let tip = tip.map_or("none".into(), |t| t.to_string());
    println!("{} keys as of height {height} (tip {tip}) written to {} (sha256 {})", written.lines, args.dump.display(), written.sha256);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct DiffArgs {
    /// Node A's and node B's RocksDB directories.
    #[arg(long = "db", required = true, num_args = 1, value_name = "DIR")]
    dbs: Vec<PathBuf>,
    /// Both nodes ran with `--label LABEL`.
    #[arg(long)]
    label: Option<String>,
}

pub fn diff(args: DiffArgs) -> Result<ExitCode> {
    let [a, b] = <[PathBuf; 2]>::try_from(args.dbs).map_err(|dbs| anyhow::anyhow!("--db twice: node A and node B (got {})", dbs.len()))?;
    let open = |db: &PathBuf| MetashrewDb::open(db, args.label.as_deref(), None);
    let comparison = compare(&open(&a)?, &open(&b)?)?;
    println!("{}", serde_json::to_string_pretty(&comparison)?);
    Ok(ExitCode::from(comparison.verdict.exit_code()))
}
