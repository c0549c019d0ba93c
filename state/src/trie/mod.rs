//! Our own layout: the committed state in RocksDB with a real state root. Column families:
//! - `default`: the guest's keys and values, exactly as flushed;
//! - `records`: per key whose value has 256 bytes or more, the value's length (u32 LE: a read is
//!   charged before it is made) and its leaf (see [`root`](self::root)); a smaller value is read
//!   instead, to learn either;
//! - `meta`: `tip` (last committed height), `lattice` (the state's lattice, whose SHA-256 is the
//!   root) and `root/{height}` (state root after that height).
//!
//! A block is committed with one `WriteBatch` holding its pairs, the records of their large
//! values, the new lattice, its root and the new tip: after a crash the database is at a block
//! boundary, never inside a block. A commit reads only what the keys it writes held before
//! (batched multi-gets a chunk of keys at a time, through Bloom filters for new keys) and nothing
//! that grows with the state. Batches go to the write-ahead log without an fsync each (a killed
//! process loses nothing: the log is in the OS's hands); [`TrieStore::sync`] makes them
//! durable, once per run. A machine crash before that may lose the last blocks, never part of
//! one (RocksDB recovers the log to a consistent point), and `tip` says where to resume. Keys are
//! never deleted (the ABI has no delete).

mod options;
mod root;
mod store;
#[cfg(test)]
mod tests;

pub use options::{memory, open_plain_db};
pub use root::{leaf_hash, root_of, Hash, Lattice, EMPTY};
pub use store::{TrieStore, CREATING};
