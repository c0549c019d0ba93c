//! A directory of raw blocks, one consensus-serialized Bitcoin block per `HEIGHT.bin` file (or
//! one such file).
//! Heights may have gaps (single blocks need not form a chain), unless a range asks for them;
//! where two consecutive heights are both present, the second must be the first's child.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::bitcoin::{decode_block, display, BlockHash};
use crate::block::{Block, HeightRange};

/// The height a `HEIGHT.bin` file name gives.
pub fn height_of(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".bin").filter(|stem| !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()
}

/// `HEIGHT.bin` files by height (a directory of them, or one); any other file in the directory
/// is an error (a typo in a height must not silently drop a block).
fn list(dir: &Path) -> Result<BTreeMap<u32, PathBuf>> {
    if dir.is_file() {
        let height = height_of(dir).with_context(|| format!("{}: not a HEIGHT.bin file", dir.display()))?;
        return Ok(BTreeMap::from([(height, dir.to_path_buf())]));
    }
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading block directory {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let height = height_of(&path).with_context(|| format!("{}: expected only HEIGHT.bin files, found `{name}`", dir.display()))?;
        if let Some(other) = files.insert(height, path.clone()) {
            bail!("height {height} given twice: {} and {}", other.display(), path.display());
        }
    }
    if files.is_empty() {
        bail!("{}: no HEIGHT.bin files", dir.display());
    }
    Ok(files)
}

pub fn read(dir: &Path, range: HeightRange) -> Result<Vec<Block>> {
    let mut links = Links::default();
    locate(dir, range)?.into_iter().map(|(height, path)| Ok(read_one(height, &path, &mut links)?.0)).collect()
}

/// The `HEIGHT.bin` files of `range`, by height; a range asks for every height in it.
pub fn locate(dir: &Path, range: HeightRange) -> Result<Vec<(u32, PathBuf)>> {
    let files = list(dir)?;
    let wanted: Vec<(u32, PathBuf)> = files.iter().filter(|(h, _)| range.contains(**h)).map(|(h, p)| (*h, p.clone())).collect();
    if wanted.is_empty() {
        bail!("{}: no block in {range} (heights {}..={})", dir.display(), files.keys().next().unwrap(), files.keys().last().unwrap());
    }
    // A range asks for a stretch of chain: every height in it (single blocks need none).
    if range.from.is_some() || range.to.is_some() {
        let (from, to) = (range.from.unwrap_or(wanted[0].0), range.to.unwrap_or(wanted[wanted.len() - 1].0));
        if let Some(missing) = (from..=to).find(|h| !files.contains_key(h)) {
            bail!("gap in the chain: {range} asks for height {missing} but {} has no {missing}.bin", dir.display());
        }
    }
    Ok(wanted)
}

/// The last block read, to check that the next height is its child.
#[derive(Default)]
pub struct Links(Option<(u32, BlockHash)>);

/// Block `height` from `path`, decoded and checked against the block read before it.
pub fn read_one(height: u32, path: &Path, links: &mut Links) -> Result<(Block, BlockHash)> {
    let payload = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let header = decode_block(&payload).with_context(|| format!("block {height} ({})", path.display()))?;
    if let Some((prev_height, prev_hash)) = links.0 {
        if prev_height.checked_add(1) == Some(height) && header.prev != prev_hash {
            bail!(
                "block {height} ({}) does not follow block {prev_height}: its parent is {}, block {prev_height} is {}",
                path.display(),
                display(&header.prev),
                display(&prev_hash)
            );
        }
    }
    links.0 = Some((height, header.hash));
    Ok((Block { height, payload }, header.hash))
}
