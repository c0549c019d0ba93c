//! What a node is asked to do: rockshrew-mono's flags, parsed.

use std::net::SocketAddr;
use std::path::PathBuf;

use state::metashrew::Version;

use crate::engine::EngineSettings;

/// What a node is asked to do.
pub struct NodeConfig {
    /// Bitcoin Core's JSON-RPC (`--daemon-rpc-url`), and `user:password` for it (`--auth`).
    pub daemon_rpc_url: String,
    pub auth: Option<String>,
    /// The indexer (`--indexer`).
    pub indexer: PathBuf,
    /// The database (`--db-path`), in metashrew's layout of `version`, under `label`.
    pub db_path: PathBuf,
    pub version: Version,
    pub label: Option<String>,
    /// The first height of a new database (`--start-block`, default 0).
    pub start_block: Option<u32>,
    /// Exit once this height is committed (`--exit-at`).
    pub exit_at: Option<u32>,
    /// Where the JSON-RPC server listens (`--host`, `--port`).
    pub listen: SocketAddr,
    pub settings: EngineSettings,
}
