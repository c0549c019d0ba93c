//! `host-runner node`: a metashrew-compatible node, with rockshrew-mono's command line.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use state::metashrew::Version;

use super::engine_args::EngineArgs;
use crate::node::{run_node, Honest, NodeConfig};

#[derive(Args)]
pub struct NodeArgs {
    /// Bitcoin Core's JSON-RPC, e.g. http://127.0.0.1:8332.
    #[arg(long)]
    daemon_rpc_url: String,
    /// The indexer: a .wasm (or .wat) module speaking the metashrew ABI.
    #[arg(long)]
    indexer: PathBuf,
    /// The node's RocksDB directory (created if missing; indexing resumes from its tip).
    #[arg(long)]
    db_path: PathBuf,
    /// Bitcoin Core's credentials, USER:PASSWORD.
    #[arg(long)]
    auth: Option<String>,
    /// Write every key under `LABEL://`.
    #[arg(long)]
    label: Option<String>,
    /// The first height of a new database (default 0).
    #[arg(long)]
    start_block: Option<u32>,
    /// Exit once this height is indexed.
    #[arg(long)]
    exit_at: Option<u32>,
    /// Where the JSON-RPC listens.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// metashrew's database layout: v10 (what production nodes run) or v9.
    #[arg(long, value_enum, default_value = "metashrew-v10")]
    layout: NodeLayout,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum NodeLayout {
    /// metashrew's v9: histories as text.
    #[value(name = "metashrew", alias = "metashrew-v9")]
    Metashrew,
    /// metashrew's v10: histories in binary.
    #[value(name = "metashrew-v10")]
    MetashrewV10,
}

pub fn node(args: NodeArgs) -> Result<ExitCode> {
    run_node(&args.config()?, Arc::new(Honest))?;
    Ok(ExitCode::SUCCESS)
}

impl NodeArgs {
    /// What the flags ask the node to do.
    pub fn config(self) -> Result<NodeConfig> {
        let args = self;
        Ok(NodeConfig {
            daemon_rpc_url: args.daemon_rpc_url,
            auth: args.auth,
            indexer: args.indexer,
            db_path: args.db_path,
            version: match args.layout {
                NodeLayout::Metashrew => Version::V9,
                NodeLayout::MetashrewV10 => Version::V10,
            },
            label: args.label,
            start_block: args.start_block,
            exit_at: args.exit_at,
            listen: SocketAddr::new(args.host, args.port),
            settings: args.engine.settings(None)?,
        })
    }
}
