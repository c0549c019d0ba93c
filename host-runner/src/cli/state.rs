//! `host-runner dump` and `host-runner state`: what a database holds, without running anything.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use state::files::write_atomically;
use state::trie::TrieStore;
use state::Database;

use crate::run::result::stress_result;

#[derive(Args)]
pub struct DumpArgs {
    #[arg(long)]
    db: PathBuf,
}

pub fn dump(args: DumpArgs) -> Result<ExitCode> {
    let store = TrieStore::open_read_only(&args.db)?;
    state::dump::write_entries(store.entries(), std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct StateArgs {
    /// A database of either layout (told by its column families).
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Stream the storage dump to this file instead of into the JSON.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// A metashrew-layout database's label.
    #[arg(long)]
    label: Option<String>,
}

/// What the database holds: its tip, root, stress result and dump.
pub fn state(args: StateArgs) -> Result<ExitCode> {
    let store = Database::open_read_only(&args.db, args.label)?;
    let tip = store.tip()?;
    let state_root = hex::encode(store.state_root()?);
    let db_layout = store.layout().name().to_string();
    let stress_result = stress_result(&store, tip)?;
    let (dump, dump_file) = store.dump_inline_or_to(args.dump.as_deref())?;
    let stored = schema::StoredState { tip, state_root, db_layout, stress_result, dump, dump_file };
    write_atomically(&args.out, &serde_json::to_string_pretty(&stored)?)?;
    Ok(ExitCode::SUCCESS)
}
