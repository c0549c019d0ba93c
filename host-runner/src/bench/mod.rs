//! `host-runner bench …` (hidden): the measurements `cargo xtask bench` drives, made by the same
//! binary the image ships. Each prints one JSON object; `xtask` lays the figures side by side.
//!
//! - [`overhead`]: the runner against bare wasmtime `_start`s of the same guest and blocks;
//! - [`per_block`]: the fixed cost of a block, with a tiny counter guest;
//! - [`commit`]: a block's commit against a plain RocksDB batch of the same pairs;
//! - [`store`]: stores of N synthetic keys, for the dump and node-diff figures.

mod commit;
mod guests;
mod overhead;
mod per_block;
mod store;
mod timing;

pub use commit::{commit, CommitBench};
pub use guests::{COUNTER_GUEST, PAIRS_GUEST};
pub use overhead::overhead;
pub use per_block::blocks;
pub use store::make_store;
