//! `cargo xtask rpc-stand-in` (hidden): a stand-in for Bitcoin Core's JSON-RPC serving the
//! blocks of a block source until stopped. It is not Bitcoin Core.

use anyhow::Result;

use crate::exit::Exit;
use crate::flags;

pub fn run(flags: flags::RpcStandIn) -> Result<Exit> {
    let source = blocks::Source::detect(&flags.blocks)?;
    let index = source.index(Default::default(), blocks::blk::Start::Genesis)?;
    let behaviour = blocks::stand_in::Behaviour { credentials: flags.credentials, ..Default::default() };
    let node = blocks::stand_in::StandIn::start(index, behaviour, std::net::SocketAddr::from(([127, 0, 0, 1], flags.port)))?;
    println!("serving {} as Bitcoin Core JSON-RPC at {} (a stand-in, not Bitcoin Core)", source.describe(), node.url);
    node.wait();
    Ok(Exit::Success)
}
