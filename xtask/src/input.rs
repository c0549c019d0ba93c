//! What every run of a command is given: the guest (one of ours, built, or a `.wasm` file) and
//! its blocks, read and checked before anything is built or run.

use std::path::PathBuf;

use anyhow::{bail, ensure, Result};
use blocks::Source;
use sha2::{Digest, Sha256};
use xshell::Shell;

use crate::artifacts::{build_guest, build_guest_package};
use crate::config::ReproConfig;

/// The workspace's guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GuestChoice {
    /// The memory-stress indexer (`guest/`).
    Stress,
    /// The Bitcoin chain indexer (`chain-guest/`).
    Chain,
}

/// The guest a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guest {
    /// One of ours, built from the workspace.
    Ours(GuestChoice),
    /// A metashrew-ABI guest the user gave (`--wasm`).
    File(PathBuf),
}

impl Guest {
    /// The guest's .wasm: ours built, or the file given.
    pub fn build(&self, sh: &Shell) -> Result<PathBuf> {
        match self {
            Self::File(path) => {
                ensure!(path.is_file(), "--wasm {}: no such file", path.display());
                Ok(path.clone())
            }
            Self::Ours(GuestChoice::Stress) => build_guest(sh),
            Self::Ours(GuestChoice::Chain) => build_guest_package(sh, "chain-guest"),
        }
    }
}

/// The blocks every run of a command is given, checked, and how the runner gets them.
pub struct Blocks {
    pub feed: Feed,
    /// `source: heights A..=B, N blocks, BYTES bytes`.
    pub description: String,
    /// SHA-256 over every block's height and bytes, in order: the runs' input, fingerprinted.
    pub sha256: String,
    /// The first and last heights.
    pub heights: (u32, u32),
}

/// How the runner gets its blocks.
pub enum Feed {
    /// Small inputs (a stress block, a text file, an RPC range), as `HEIGHT HEX` text.
    Text(String),
    /// Block files or `HEIGHT.bin` files on this machine: a block map the runner streams, the
    /// files mounted read-only (a directory, or the one file); `read` are those it reads.
    Map { map: String, files: PathBuf, read: Vec<PathBuf> },
}

impl Blocks {
    /// The blocks `source` names (read and checked now, before anything is built or run, one
    /// block at a time), or the configured stress block for the stress guest.
    pub fn resolve(guest: &Guest, source: &blocks::BlockArgs, config: &ReproConfig) -> Result<Self> {
        Self::resolve_as(guest, source, config, true)
    }

    /// As [`Blocks::resolve`], always as text (for a rendered manifest, which carries them).
    pub fn resolve_as_text(guest: &Guest, source: &blocks::BlockArgs, config: &ReproConfig) -> Result<Self> {
        Self::resolve_as(guest, source, config, false)
    }

    fn resolve_as(guest: &Guest, source: &blocks::BlockArgs, config: &ReproConfig, map: bool) -> Result<Self> {
        if let Some(found) = source.source()? {
            return match found {
                Source::BlockFiles(_) | Source::BinDir(_) if map => Self::mapped(&found, source),
                _ => Self::held(&found, source),
            };
        }
        ensure!(
            source.from.is_none() && source.to.is_none() && source.start_hash.is_none(),
            "--from/--to/--start-hash choose heights of --blocks or --rpc: give one"
        );
        match guest {
            Guest::Ours(GuestChoice::Stress) => Ok(Self::stress(config.height, &config.payload)),
            Guest::Ours(GuestChoice::Chain) => bail!("--guest chain needs blocks: --blocks PATH, or --rpc URL --from H --to H"),
            Guest::File(path) => bail!("--wasm {} needs blocks: --blocks PATH, or --rpc URL --from H --to H", path.display()),
        }
    }

    /// One stress block.
    pub fn stress(height: u32, payload: &crate::config::StressPayload) -> Self {
        let block = blocks::Block { height, payload: payload.to_bytes() };
        let blocks = Self::held_blocks("", &[block]);
        Self { description: format!("one stress block ({payload}) at height {height}"), ..blocks }
    }

    /// Block files or `HEIGHT.bin` files, mapped: every block read, checked and fingerprinted,
    /// none kept.
    fn mapped(found: &Source, flags: &blocks::BlockArgs) -> Result<Self> {
        let mut map = Vec::new();
        let mut hasher = Fingerprint::default();
        let extent = blocks::write_map(found, flags.range()?, flags.start()?, &mut map, |block| hasher.add(block))?;
        let map = String::from_utf8(map)?;
        let dir = map.lines().find_map(|l| l.strip_prefix("dir ")).map(PathBuf::from).unwrap_or_default();
        let read: Vec<PathBuf> = map.lines().filter_map(|l| l.strip_prefix("file ")).map(|name| dir.join(name)).collect();
        let files = match found {
            Source::BlockFiles(files) if files.files.len() == 1 => files.files[0].clone(),
            Source::BinDir(path) if path.is_file() => path.clone(),
            _ => dir,
        };
        let files = std::path::absolute(&files)?;
        let description = describe(&found.describe(), extent.first, extent.last, extent.count, extent.bytes);
        let heights = (extent.first.unwrap_or(0), extent.last.unwrap_or(0));
        Ok(Self { feed: Feed::Map { map, files, read }, description, sha256: hasher.finish(), heights })
    }

    /// Text or an RPC range: read whole (they are small), as the runner's text.
    fn held(found: &Source, flags: &blocks::BlockArgs) -> Result<Self> {
        Ok(Self::held_blocks(&found.describe(), &found.read(flags.range()?, flags.start()?)?))
    }

    /// `blocks` from `source`, as the runner's text.
    pub fn held_blocks(source: &str, blocks: &[blocks::Block]) -> Self {
        let mut text = Vec::new();
        blocks::text::write(blocks, &mut text).expect("writing to memory");
        let mut hasher = Fingerprint::default();
        blocks.iter().for_each(|b| hasher.add(b));
        let bytes = blocks.iter().map(|b| b.payload.len() as u64).sum();
        let description = describe(source, blocks.first().map(|b| b.height), blocks.last().map(|b| b.height), blocks.len() as u64, bytes);
        let heights = (blocks.first().map_or(0, |b| b.height), blocks.last().map_or(0, |b| b.height));
        Self { feed: Feed::Text(String::from_utf8(text).expect("hex text")), description, sha256: hasher.finish(), heights }
    }

    /// The text, for a feed that is text.
    pub fn text(&self) -> Option<&str> {
        match &self.feed {
            Feed::Text(text) => Some(text),
            Feed::Map { .. } => None,
        }
    }

    /// For a mapped feed: what the runs mount (a directory or the one file), and the files in
    /// it they read.
    pub fn mounted(&self) -> Option<(&PathBuf, &[PathBuf])> {
        match &self.feed {
            Feed::Map { files, read, .. } => Some((files, read)),
            Feed::Text(_) => None,
        }
    }
}

/// `source: heights A..=B, N blocks, BYTES bytes`.
pub fn describe(source: &str, first: Option<u32>, last: Option<u32>, count: u64, bytes: u64) -> String {
    match (first, last) {
        (Some(first), Some(last)) => format!("{source}: heights {first}..={last}, {count} blocks, {bytes} bytes"),
        _ => format!("{source}: no blocks"),
    }
}

/// SHA-256 over each block's height, length and bytes.
#[derive(Default)]
struct Fingerprint(Sha256);

impl Fingerprint {
    fn add(&mut self, block: &blocks::Block) {
        self.0.update(block.height.to_le_bytes());
        self.0.update((block.payload.len() as u64).to_le_bytes());
        self.0.update(&block.payload);
    }

    fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}
