//! A run: what it is asked ([`request`]), the blocks indexed and committed ([`index`]) with
//! progress lines ([`progress`]), what it reports ([`result`]; each block's report held or
//! appended to a file, [`reports`]), and the supervisor that runs it as a child and records how it ended
//! from the same cgroup ([`watch`]).

pub mod index;
mod progress;
mod reports;
pub mod request;
pub mod result;
pub mod watch;

use std::path::Path;

use anyhow::Result;
use blocks::{blk::Start, Block, HeightRange, Source};

pub use index::run;
pub use request::RunRequest;

/// Every block of whatever `path` holds (`HEIGHT HEX` text, a `HEIGHT.bin` directory, Bitcoin
/// Core block files), checked.
pub fn read_blocks_file(path: &Path) -> Result<Vec<Block>> {
    Source::detect(path)?.read(HeightRange::default(), Start::Genesis)
}
