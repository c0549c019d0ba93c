//! Where blocks come from: what a path holds, told apart, and read whole and checked, or
//! streamed ([`Source::stream`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::block::{Block, HeightRange};
use crate::map::BlockMap;
use crate::{bin_dir, blk, rpc, text};

/// Where blocks come from.
#[derive(Debug, Clone)]
pub enum Source {
    Text(PathBuf),
    BinDir(PathBuf),
    BlockFiles(blk::BlockFiles),
    /// A block map the xtask wrote ([`crate::map`]).
    Map(BlockMap),
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
        if BlockMap::looks_like(path) {
            return Ok(Self::Map(BlockMap::open(path)?));
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
            Self::Map(map) => map.blocks(None)?.filter(|b| b.as_ref().map_or(true, |b| range.contains(b.height))).collect(),
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
            Self::Map(map) => map.describe(),
            Self::Rpc { url, .. } => format!("Bitcoin Core RPC {url}"),
        }
    }
}
