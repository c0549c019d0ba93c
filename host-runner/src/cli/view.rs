//! `host-runner view`: a view function called against the committed state.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use blocks::text::parse_hex;
use clap::Args;
use schema::EngineKind;
use state::Database;

use crate::engine::{engine, Guest, LinearMemory, MemoryPolicy};
use crate::run::result::trap_message;

#[derive(Args)]
pub struct ViewArgs {
    #[arg(long)]
    wasm: PathBuf,
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    name: String,
    /// The view's input as hex (the host prepends the height).
    #[arg(long, default_value = "")]
    input: String,
    /// The height given to the view; defaults to the last committed height.
    #[arg(long)]
    height: Option<u32>,
    /// A metashrew-layout database's label.
    #[arg(long)]
    label: Option<String>,
}

pub fn view(args: ViewArgs) -> Result<ExitCode> {
    let store = Database::open_read_only(&args.db, args.label)?;
    let (policy, kind) = (MemoryPolicy::Unbounded, EngineKind::Memrepro);
    let guest = Guest::load(&engine(kind, policy, LinearMemory::Reserved, None)?, kind, policy, Duration::from_secs(60), &args.wasm)?;
    let name = &args.name;
    anyhow::ensure!(guest.has_export(name), "{} exports no view `{name}`", args.wasm.display());
    let height = args.height.or(store.tip()?).unwrap_or(0);
    let execution = guest.run_view(&store, height, &parse_hex(&args.input).context("--input")?, name);
    let bytes = execution.result.map_err(|e| anyhow::anyhow!(trap_message(&e))).with_context(|| format!("view `{name}` trapped"))?;
    match std::str::from_utf8(&bytes) {
        Ok(text) if !text.chars().any(char::is_control) => println!("{text}"),
        _ => println!("0x{}", hex::encode(&bytes)),
    }
    Ok(ExitCode::SUCCESS)
}
