//! The block-source flags, declared once for every command that takes blocks.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::block::{Block, HeightRange};
use crate::source::Source;
use crate::{bitcoin, blk, rpc};

/// The block-source flags.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct BlockArgs {
    /// Blocks: a file of `HEIGHT HEX` lines, a `HEIGHT.bin` raw block or a directory of them, or Bitcoin
    /// Core block files (a `blk*.dat` file or a `blocks/` directory; `xor.dat` beside them is applied).
    #[cfg_attr(feature = "clap", arg(long, group = "block_source"))]
    pub blocks: Option<PathBuf>,
    /// Fetch the blocks from a Bitcoin Core node's JSON-RPC, e.g. http://127.0.0.1:8332 (needs --from and --to).
    #[cfg_attr(feature = "clap", arg(long, group = "block_source"))]
    pub rpc: Option<String>,
    /// Bitcoin Core's cookie file (e.g. ~/.bitcoin/.cookie).
    #[cfg_attr(feature = "clap", arg(long, requires = "rpc", conflicts_with = "rpc_user"))]
    pub rpc_cookie: Option<PathBuf>,
    /// RPC user name (with --rpc-password, or the RPC_PASSWORD environment variable).
    #[cfg_attr(feature = "clap", arg(long, requires = "rpc"))]
    pub rpc_user: Option<String>,
    /// RPC password (default: the RPC_PASSWORD environment variable, kept off the command line).
    #[cfg_attr(feature = "clap", arg(long, requires = "rpc_user"))]
    pub rpc_password: Option<String>,
    /// Seconds to keep retrying a node that is starting, busy or not listening (default 120).
    #[cfg_attr(feature = "clap", arg(long, requires = "rpc", value_name = "SECS"))]
    pub rpc_wait: Option<u64>,
    /// First height to index (inclusive).
    #[cfg_attr(feature = "clap", arg(long))]
    pub from: Option<u32>,
    /// Last height to index (inclusive).
    #[cfg_attr(feature = "clap", arg(long))]
    pub to: Option<u32>,
    /// Block files: follow the chain from this block (its height is --from) instead of genesis.
    #[cfg_attr(feature = "clap", arg(long, requires = "from"))]
    pub start_hash: Option<String>,
    /// Block files: follow the chain to this block instead of the one with the most work.
    #[cfg_attr(feature = "clap", arg(long, requires = "blocks"))]
    pub tip_hash: Option<String>,
}

impl BlockArgs {
    /// The source the flags name, if any.
    pub fn source(&self) -> Result<Option<Source>> {
        if let Some(url) = &self.rpc {
            let auth = match (&self.rpc_cookie, &self.rpc_user) {
                (Some(cookie), _) => rpc::Auth::Cookie(cookie.clone()),
                (None, Some(user)) => {
                    let password = self.rpc_password.clone().or_else(|| std::env::var("RPC_PASSWORD").ok()).unwrap_or_default();
                    rpc::Auth::UserPassword(user.clone(), password)
                }
                (None, None) => rpc::Auth::None,
            };
            let patience = self.rpc_wait.map_or(rpc::DEFAULT_PATIENCE, std::time::Duration::from_secs);
            return Ok(Some(Source::Rpc { url: url.clone(), auth, patience }));
        }
        let source = self.blocks.as_deref().map(Source::detect).transpose()?;
        match (source, &self.tip_hash) {
            (Some(Source::BlockFiles(mut files)), Some(tip)) => {
                files.tip = Some(bitcoin::parse_hash(tip)?);
                Ok(Some(Source::BlockFiles(files)))
            }
            (Some(_), Some(_)) => bail!("--tip-hash chooses a chain among block files; --blocks names no block files"),
            (source, _) => Ok(source),
        }
    }

    pub fn range(&self) -> Result<HeightRange> {
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from > to {
                bail!("--from {from} is above --to {to}");
            }
        }
        Ok(HeightRange { from: self.from, to: self.to })
    }

    pub fn start(&self) -> Result<blk::Start> {
        Ok(match (&self.start_hash, self.from) {
            (Some(hash), Some(height)) => blk::Start::Hash { hash: bitcoin::parse_hash(hash)?, height },
            (Some(_), None) => bail!("--start-hash needs --from (the start block's height)"),
            (None, _) => blk::Start::Genesis,
        })
    }

    /// The blocks the flags name, checked; `None` when no source was given.
    pub fn read(&self) -> Result<Option<(Source, Vec<Block>)>> {
        let Some(source) = self.source()? else {
            if self.from.is_some() || self.to.is_some() || self.start_hash.is_some() {
                bail!("--from/--to/--start-hash choose heights of --blocks or --rpc: give one");
            }
            return Ok(None);
        };
        let blocks = source.read(self.range()?, self.start()?)?;
        Ok(Some((source, blocks)))
    }
}
