//! What every run of a command is given: the guest (one of ours, built, or a `.wasm` file) and
//! its blocks, read and checked before anything is built or run.

use std::path::PathBuf;

use anyhow::{bail, ensure, Result};
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

/// The blocks every run of a command is given: checked, in the runner's text form, and what
/// they are in one line.
pub struct Blocks {
    pub text: String,
    pub description: String,
}

impl Blocks {
    /// The blocks `source` names (read and checked now, before anything is built or run), or the
    /// configured stress block for the stress guest.
    pub fn resolve(guest: &Guest, source: &blocks::BlockArgs, config: &ReproConfig) -> Result<Self> {
        if let Some((source, blocks)) = source.read()? {
            let mut text = Vec::new();
            blocks::text::write(&blocks, &mut text)?;
            let description = Self::describe(&source.describe(), &blocks);
            return Ok(Self { text: String::from_utf8(text).expect("hex text"), description });
        }
        match guest {
            Guest::Ours(GuestChoice::Stress) => Ok(Self {
                text: format!("{} {}\n", config.height, hex::encode(config.payload.to_bytes())),
                description: format!("one stress block ({}) at height {}", config.payload, config.height),
            }),
            Guest::Ours(GuestChoice::Chain) => bail!("--guest chain needs blocks: --blocks PATH, or --rpc URL --from H --to H"),
            Guest::File(path) => bail!("--wasm {} needs blocks: --blocks PATH, or --rpc URL --from H --to H", path.display()),
        }
    }

    /// `source: heights A..=B, N blocks, BYTES bytes`.
    pub fn describe(source: &str, blocks: &[blocks::Block]) -> String {
        let bytes: usize = blocks.iter().map(|b| b.payload.len()).sum();
        match (blocks.first(), blocks.last()) {
            (Some(first), Some(last)) => format!("{source}: heights {}..={}, {} blocks, {bytes} bytes", first.height, last.height, blocks.len()),
            _ => format!("{source}: no blocks"),
        }
    }
}
