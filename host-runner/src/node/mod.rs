//! `host-runner node`: a metashrew-compatible indexer node with rockshrew-mono's command line. It
//! pulls blocks from Bitcoin Core's JSON-RPC ([`follow`]), commits each in metashrew's layout in
//! one batch, and serves `metashrew_view` and `metashrew_height` over JSON-RPC while it indexes
//! ([`serve`]). It is the runner image's default node, and a lab stand-in a user's own node is
//! compared against: not metashrew's code.

pub mod conduct;
pub mod config;
pub mod follow;
pub mod serve;

use std::sync::Arc;

use anyhow::Result;
use state::{Database, DbLayout};

use crate::engine::{engine, preflight, Guest};
pub use conduct::{Conduct, Honest, ViewCall};
pub use config::NodeConfig;

/// Runs the node with `conduct` until `exit_at` is committed (or for ever).
pub fn run_node(config: &NodeConfig, conduct: Arc<dyn Conduct>) -> Result<()> {
    let settings = config.settings;
    let engine = engine(settings.engine, settings.policy, settings.linear_memory, None)?;
    let guest = Arc::new(Guest::load(&engine, settings.engine, settings.policy, settings.time_limit, &config.indexer)?);
    anyhow::ensure!(guest.has_export("_start"), "{} exports no `_start`", config.indexer.display());
    preflight(settings.policy, guest.code_bytes())?;
    let layout = DbLayout::Metashrew { label: config.label.clone(), version: config.version };
    let db = Database::open(&config.db_path, &layout)?;
    let address = serve::start(config.listen, guest.clone(), db.clone(), conduct.clone())?;
    eprintln!("host-runner node: JSON-RPC at http://{address}; indexing from {}", config.daemon_rpc_url);
    follow::follow(config, &guest, &db, conduct.as_ref())
}
