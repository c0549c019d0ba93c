//! Writing a block map ([`crate::map`]) while its source is checked: every block read once,
//! decoded, its hash and parent checked, handed to the caller, none kept.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::blk::{self, Start};
use crate::block::{Block, HeightRange};
use crate::map::{write_entry, write_header, Entry, Extent};
use crate::source::Source;
use crate::bin_dir;

/// Writes the map of `source`'s blocks in `range` to `out`, reading each block once (decoded,
/// its hash and its parent checked) and giving it to `each`; nothing is kept. Block files and
/// `HEIGHT.bin` files can be mapped; text and RPC cannot (the caller writes those elsewhere).
pub fn write_map(source: &Source, range: HeightRange, start: Start, out: &mut impl Write, mut each: impl FnMut(&Block)) -> Result<Extent> {
    let mut extent = Extent::default();
    let mut line = |entry: Entry, out: &mut dyn Write| -> Result<()> {
        extent.add(entry.height, u64::from(entry.size));
        write_entry(out, &entry)
    };
    match source {
        Source::BlockFiles(files) => {
            write_header(out, &common_dir(&files.files)?, files.xor_key, &files.files)?;
            let mut reader = blk::Reader::new(files);
            for located in blk::locate(files, start, range)? {
                each(&reader.read(&located)?);
                line(Entry { height: located.height, hash: located.hash, file: located.file, offset: located.offset, size: located.size }, out)?;
            }
        }
        Source::BinDir(path) => {
            ensure!(matches!(start, Start::Genesis), "--start-hash applies to Bitcoin Core block files only");
            let located = bin_dir::locate(path, range)?;
            let paths: Vec<PathBuf> = located.iter().map(|(_, p)| p.clone()).collect();
            write_header(out, &common_dir(&paths)?, [0; 8], &paths)?;
            let mut links = bin_dir::Links::default();
            for (file, (height, path)) in located.iter().enumerate() {
                let (block, hash) = bin_dir::read_one(*height, path, &mut links)?;
                each(&block);
                line(Entry { height: *height, hash, file, offset: 0, size: block.payload.len() as u32 }, out)?;
            }
        }
        Source::Map(map) => bail!("{} is already a block map", map.path.display()),
        Source::Text(_) | Source::Rpc { .. } => bail!("{}: only block files and HEIGHT.bin files are mapped", source.describe()),
    }
    out.flush()?;
    ensure!(extent.count > 0, "{}: no block in {range}", source.describe());
    Ok(extent)
}

/// The one directory every file is in.
fn common_dir(paths: &[PathBuf]) -> Result<PathBuf> {
    let dir = |p: &PathBuf| std::path::absolute(p.parent().unwrap_or(Path::new("."))).with_context(|| format!("the directory of {}", p.display()));
    let first = dir(&paths[0])?;
    for path in &paths[1..] {
        ensure!(dir(path)? == first, "{} is not in {} with the other block files", path.display(), first.display());
    }
    Ok(first)
}
