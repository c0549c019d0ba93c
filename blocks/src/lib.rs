//! Block sources: what a run indexes, read and checked before anything runs.
//!
//! One `--blocks PATH` recognises what it is given: a text file of `HEIGHT HEX` lines
//! ([`text`]), a directory of `HEIGHT.bin` raw blocks or one such file ([`bin_dir`]), Bitcoin Core block files,
//! a `blk*.dat` file or a `blocks/` directory ([`blk`]). `--rpc URL` asks a Bitcoin Core node
//! ([`rpc`]). `--from`/`--to` choose heights. Every source yields [`Block`]s in ascending height
//! order, each height once; Bitcoin sources also decode every block and check the prev-hash links.
//! A [`BlockIndex`] locates a chain's blocks and reads each when asked, never the whole range;
//! [`stand_in`] serves one over JSON-RPC as Bitcoin Core does; [`generate`] writes chains for
//! scale. A [`map`] lists where a checked chain's blocks are stored, so a run streams them
//! ([`BlockStream`], with a bounded read-ahead) without holding the range.

mod args;
pub mod bin_dir;
pub mod bitcoin;
mod block;
pub mod blk;
pub mod generate;
mod index;
pub mod map;
mod mapping;
pub mod rpc;
mod source;
#[cfg(feature = "stand-in")]
pub mod stand_in;
mod stream;
pub mod text;

pub use args::BlockArgs;
pub use block::{Block, HeightRange};
pub use index::BlockIndex;
pub use mapping::write_map;
pub use source::Source;
pub use stream::{read_ahead, BlockStream};
