//! Block sources: what a run indexes, read and checked before anything runs.
//!
//! One `--blocks PATH` recognises what it is given: a text file of `HEIGHT HEX` lines
//! ([`text`]), a directory of `HEIGHT.bin` raw blocks or one such file ([`bin_dir`]), Bitcoin Core block files,
//! a `blk*.dat` file or a `blocks/` directory ([`blk`]). `--rpc URL` asks a Bitcoin Core node
//! ([`rpc`]). `--from`/`--to` choose heights. Every source yields [`Block`]s in ascending height
//! order, each height once; Bitcoin sources also decode every block and check the prev-hash links.

pub mod bin_dir;
pub mod bitcoin;
mod block;
pub mod blk;
pub mod rpc;
#[cfg(feature = "stand-in")]
pub mod stand_in;
pub mod text;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use block::{Block, HeightRange};

/// Where blocks come from.
#[derive(Debug, Clone)]
pub enum Source {
    Text(PathBuf),
    BinDir(PathBuf),
    BlockFiles(blk::BlockFiles),
    Rpc { url: String, auth: rpc::Auth, patience: std::time::Duration },
}

impl Source {
    /// What `path` holds: a directory of `blk*.dat` or of `HEIGHT.bin` files, a block file
    /// (a known network magic at its start, after `xor.dat`'s key), or text.
    pub fn detect(path: &Path) -> Result<Self> {
        if path.is_dir() {
            let names: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            if names.iter().any(|n| blk::is_block_file_name(n)) {
                return Ok(Self::BlockFiles(blk::BlockFiles::open(path)?));
            }
            if names.iter().any(|n| n.extension().is_some_and(|e| e == "bin")) {
                return Ok(Self::BinDir(path.to_path_buf()));
            }
            bail!("{}: a block directory holds blk*.dat files (Bitcoin Core) or HEIGHT.bin files", path.display());
        }
        if !path.exists() {
            bail!("{}: no such file or directory", path.display());
        }
        if blk::BlockFiles::looks_like(path) {
            return Ok(Self::BlockFiles(blk::BlockFiles::open(path)?));
        }
        if bin_dir::height_of(path).is_some() {
            return Ok(Self::BinDir(path.to_path_buf()));
        }
        Ok(Self::Text(path.to_path_buf()))
    }

    /// The blocks of `range`, checked. `start` applies to block files only. An explicit bound
    /// must be a block that is there, for every source.
    pub fn read(&self, range: HeightRange, start: blk::Start) -> Result<Vec<Block>> {
        let blocks = self.read_unchecked(range, start)?;
        let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
            bail!("{}: no block in {range}", self.describe());
        };
        for (bound, found) in [(range.from, first.height), (range.to, last.height)] {
            if let Some(bound) = bound.filter(|&b| b != found) {
                bail!("{}: no block at height {bound} ({range}; the nearest is {found})", self.describe());
            }
        }
        Ok(blocks)
    }

    fn read_unchecked(&self, range: HeightRange, start: blk::Start) -> Result<Vec<Block>> {
        if !matches!(self, Self::BlockFiles(_)) && matches!(start, blk::Start::Hash { .. }) {
            bail!("--start-hash applies to Bitcoin Core block files only");
        }
        match self {
            Self::Text(path) => Ok(text::read_file(path)?.into_iter().filter(|b| range.contains(b.height)).collect()),
            Self::BinDir(dir) => bin_dir::read(dir, range),
            Self::BlockFiles(files) => blk::read(files, start, range),
            Self::Rpc { url, auth, patience } => rpc::read(&rpc::Client::new(url, auth, *patience)?, range),
        }
    }

    /// One line for reports: the kind and where.
    pub fn describe(&self) -> String {
        match self {
            Self::Text(path) => format!("HEIGHT HEX text {}", path.display()),
            Self::BinDir(path) if path.is_file() => format!("raw block {}", path.display()),
            Self::BinDir(dir) => format!("HEIGHT.bin directory {}", dir.display()),
            Self::BlockFiles(files) => {
                let xor = if files.xor_key == [0; 8] { "" } else { ", XOR-obfuscated" };
                match files.files.as_slice() {
                    [one] => format!("Bitcoin Core block file {}{xor}", one.display()),
                    many => format!("{} Bitcoin Core block files in {}{xor}", many.len(), many[0].parent().unwrap_or(Path::new(".")).display()),
                }
            }
            Self::Rpc { url, .. } => format!("Bitcoin Core RPC {url}"),
        }
    }
}

/// The block-source flags, declared once for every command that takes blocks.
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
        self.blocks.as_deref().map(Source::detect).transpose()
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
