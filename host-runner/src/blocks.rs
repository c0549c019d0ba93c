//! Block inputs: the `blocks` crate's sources, as the runner uses them.

use std::path::Path;

use anyhow::Result;

pub use ::blocks::blk::Start;
pub use ::blocks::text::parse_hex;
pub use ::blocks::{Block, BlockArgs, HeightRange, Source};

/// Every block of whatever `path` holds (`HEIGHT HEX` text, a `HEIGHT.bin` directory, Bitcoin
/// Core block files), checked.
pub fn read_blocks_file(path: &Path) -> Result<Vec<Block>> {
    Source::detect(path)?.read(HeightRange::default(), Start::Genesis)
}
