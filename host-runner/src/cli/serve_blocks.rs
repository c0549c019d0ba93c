//! `host-runner serve-blocks`: a block source served over JSON-RPC as Bitcoin Core serves it,
//! for a node under test to pull its blocks from.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use blocks::stand_in::{Behaviour, StandIn};
use blocks::BlockArgs;
use clap::Args;

#[derive(Args)]
pub struct ServeBlocksArgs {
    #[command(flatten)]
    source: BlockArgs,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8332")]
    listen: SocketAddr,
    /// Require these credentials, USER:PASSWORD (as a node's `--auth` gives them).
    #[arg(long)]
    credentials: Option<String>,
}

/// Indexes the source, reads every block once to check it, then serves until stopped.
pub fn serve_blocks(args: ServeBlocksArgs) -> Result<ExitCode> {
    let source = args.source.source()?.context("no blocks: give --blocks or --rpc")?;
    let index = source.index(args.source.range()?, args.source.start()?)?;
    index.check()?;
    let (first, tip) = (index.first(), index.tip());
    let server = StandIn::start(index, Behaviour { credentials: args.credentials, ..Default::default() }, args.listen)?;
    eprintln!("host-runner serve-blocks: {} heights {first}..={tip} at {} (JSON-RPC like Bitcoin Core's; not Bitcoin Core)", source.describe(), server.url);
    server.wait();
    Ok(ExitCode::SUCCESS)
}
