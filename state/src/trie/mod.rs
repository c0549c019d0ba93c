//! Our own layout: the committed state in RocksDB with a real state root. Column families:
//! - `default`: the guest's keys and values, exactly as flushed;
//! - `nodes`: the state trie (see `state_root`), keyed `depth (u16 BE) ++ path prefix`: every
//!   subtree holding two or more leaves as `0x01 ++ hash`, and every leaf, at the top of the
//!   subtree it is alone in, as `0x00 ++ path ++ leaf hash`. A block re-hashes only the paths to
//!   the keys it wrote: it reads the nodes on and beside those paths one depth at a time (each
//!   depth in one batched multi-get, or one iterator where they are dense), then writes the
//!   nodes that change a depth at a time, each in key order ([`TrieUpdate`]);
//! - `meta`: `tip` (last committed height), `root/{height}` (state root after that height) and
//!   `len/` ++ key (the value's length, u32 LE: a read is charged before it is made).
//!
//! A block is committed with one `WriteBatch` holding its pairs, their leaves and trie nodes,
//! its root and the new tip: after a crash the database is at a block boundary, never inside a
//! block. Batches go to the write-ahead log without an fsync each (a killed process loses
//! nothing: the log is in the OS's hands); [`TrieStore::sync`] makes them durable, once per run.
//! A machine crash before that may lose the last blocks, never part of one (RocksDB recovers the
//! log to a consistent point), and `tip` says where to resume. Keys are never deleted (the ABI has no delete), so a subtree never shrinks.

mod hash;
mod node;
mod options;
mod reads;
mod store;
#[cfg(test)]
mod tests;
mod update;

pub use hash::{leaf_hash, path_of, root_of, Hash, Subtree, EMPTY};
pub use node::{node_charge, NodeBudgetExceeded};
pub use options::{memory, open_plain_db};
pub use store::TrieStore;
