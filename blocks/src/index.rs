//! A chain's blocks located, each read when it is asked for: a range is never held in memory
//! (but for the text form, which is for small hand-made inputs). What a server of blocks, and a
//! run that streams them, read through.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::bitcoin::{decode_block, display, parse_hash, BlockHash};
use crate::blk::{self, BlockFiles, Start};
use crate::block::{Block, HeightRange};
use crate::source::Source;
use crate::{bin_dir, rpc};

/// The blocks of a range of consecutive heights: where each is and its hash.
pub struct BlockIndex {
    first: u32,
    hashes: Vec<BlockHash>,
    heights: HashMap<BlockHash, u32>,
    store: Store,
    description: String,
}

enum Store {
    BlockFiles(BlockFiles, Vec<blk::Located>),
    BinFiles(Vec<PathBuf>),
    Memory(Vec<Block>),
    Rpc(rpc::Client),
}

impl Source {
    /// The blocks of `range` located, the chain checked by its headers: consecutive heights,
    /// each block the child of the one before. Every block must be a Bitcoin block (its hash
    /// is what it is asked for by). An RPC source needs both ends of the range.
    pub fn index(&self, range: HeightRange, start: Start) -> Result<BlockIndex> {
        let (first, hashes, store) = match self {
            Source::BlockFiles(files) => {
                let located = blk::locate(files, start, range)?;
                (located[0].height, located.iter().map(|l| l.hash).collect(), Store::BlockFiles(files.clone(), located))
            }
            Source::BinDir(dir) => index_bin_files(dir, range)?,
            Source::Text(_) | Source::Map(_) => index_in_memory(self.read(range, start)?)?,
            Source::Rpc { url, auth, patience } => index_rpc(rpc::Client::new(url, auth, *patience)?, range)?,
        };
        let heights = hashes.iter().enumerate().map(|(i, hash)| (*hash, first + i as u32)).collect();
        Ok(BlockIndex { first, hashes, heights, store, description: self.describe() })
    }
}

fn index_bin_files(dir: &std::path::Path, range: HeightRange) -> Result<(u32, Vec<BlockHash>, Store)> {
    let located = bin_dir::locate(dir, range)?;
    let first = located[0].0;
    if let Some(gap) = located.iter().enumerate().find(|(i, (height, _))| *height != first + *i as u32) {
        bail!("{}: height {} is missing (a served chain has every height)", dir.display(), first + gap.0 as u32);
    }
    let mut links = bin_dir::Links::default();
    let mut hashes = Vec::with_capacity(located.len());
    for (height, path) in &located {
        hashes.push(bin_dir::read_one(*height, path, &mut links)?.1);
    }
    Ok((first, hashes, Store::BinFiles(located.into_iter().map(|(_, path)| path).collect())))
}

fn index_in_memory(blocks: Vec<Block>) -> Result<(u32, Vec<BlockHash>, Store)> {
    let first = blocks[0].height;
    let mut hashes: Vec<BlockHash> = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        anyhow::ensure!(block.height == first + i as u32, "height {} is missing (a served chain has every height)", first + i as u32);
        let header = decode_block(&block.payload).with_context(|| format!("block {}", block.height))?;
        if let Some(prev) = hashes.last().filter(|prev| **prev != header.prev) {
            bail!("block {} does not follow block {}: its parent is {}, not {}", block.height, block.height - 1, display(&header.prev), display(prev));
        }
        hashes.push(header.hash);
    }
    Ok((first, hashes, Store::Memory(blocks)))
}

fn index_rpc(client: rpc::Client, range: HeightRange) -> Result<(u32, Vec<BlockHash>, Store)> {
    let (Some(from), Some(to)) = (range.from, range.to) else {
        bail!("--rpc needs --from and --to: which heights to serve");
    };
    let hashes = (from..=to)
        .map(|height| {
            let hash = client.call("getblockhash", json!([height])).with_context(|| format!("height {height}"))?;
            parse_hash(hash.as_str().context("getblockhash did not return a string")?)
        })
        .collect::<Result<_>>()?;
    Ok((from, hashes, Store::Rpc(client)))
}

impl std::fmt::Debug for BlockIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockIndex({}, heights {}..={})", self.description, self.first, self.tip())
    }
}

impl BlockIndex {
    pub fn first(&self) -> u32 {
        self.first
    }

    /// The last height.
    pub fn tip(&self) -> u32 {
        self.first + self.hashes.len() as u32 - 1
    }

    /// The hash of the block at `height`, if the index has that height.
    pub fn hash(&self, height: u32) -> Option<BlockHash> {
        self.hashes.get(height.checked_sub(self.first)? as usize).copied()
    }

    /// The height of the block whose hash is `hash`.
    pub fn height_of(&self, hash: &BlockHash) -> Option<u32> {
        self.heights.get(hash).copied()
    }

    /// Where the blocks come from, for reports.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The block at `height`, read now, decoded and checked against its hash.
    pub fn read(&self, height: u32) -> Result<Block> {
        let hash = self.hash(height).with_context(|| format!("no block at height {height} (the index has {}..={})", self.first, self.tip()))?;
        let i = (height - self.first) as usize;
        let block = match &self.store {
            Store::BlockFiles(files, located) => return blk::Reader::new(files).read(&located[i]),
            Store::BinFiles(paths) => Block { height, payload: std::fs::read(&paths[i]).with_context(|| format!("reading {}", paths[i].display()))? },
            Store::Memory(blocks) => blocks[i].clone(),
            Store::Rpc(client) => {
                let hex_block = client.call("getblock", json!([display(&hash), 0])).with_context(|| format!("block {height}"))?;
                Block { height, payload: hex::decode(hex_block.as_str().context("getblock … 0 did not return a string")?).context("getblock … 0 is not hex")? }
            }
        };
        let header = decode_block(&block.payload).with_context(|| format!("block {height} ({})", self.description))?;
        anyhow::ensure!(header.hash == hash, "block {height} ({}) hashes to {}, not {}: it changed since it was indexed", self.description, display(&header.hash), display(&hash));
        Ok(block)
    }

    /// Reads every block once, in order, each decoded and checked, none kept.
    pub fn check(&self) -> Result<()> {
        (self.first..=self.tip()).try_for_each(|height| self.read(height).map(drop))
    }
}
