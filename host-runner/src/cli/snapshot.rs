//! `host-runner snapshot`: a copy of a node's database made ready for a replay: its layout told,
//! its state rolled back to `--at` (metashrew's layouts), what it holds written as JSON. Only ever
//! run on a copy: the rollback writes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use schema::SnapshotReport;
use state::files::write_atomically;
use state::{Database, DbLayout};

#[derive(Args)]
pub struct SnapshotArgs {
    /// The copy (it is written).
    #[arg(long)]
    db: PathBuf,
    /// The height whose state to keep (default: the tip).
    #[arg(long)]
    at: Option<u32>,
    /// A metashrew-layout database's label.
    #[arg(long)]
    label: Option<String>,
    #[arg(long)]
    out: PathBuf,
}

pub fn snapshot(args: SnapshotArgs) -> Result<ExitCode> {
    let (database, rolled) = Database::snapshot_at(&args.db, args.label, args.at)?;
    let height = database.tip()?.expect("a snapshot holds a block");
    let layout = database.layout();
    database.sync()?;
    let label = match &layout {
        DbLayout::Metashrew { label, .. } => label.clone(),
        DbLayout::Trie => None,
    };
    let report = SnapshotReport {
        layout: layout.name().into(),
        label,
        height,
        rolled_back_from: rolled.filter(|r| r.from != height).map(|r| r.from),
        entries_removed: rolled.map_or(0, |r| r.entries),
    };
    write_atomically(&args.out, &serde_json::to_string_pretty(&report)?)?;
    println!("snapshot: the {} state as of height {height}", report.layout);
    Ok(ExitCode::SUCCESS)
}
