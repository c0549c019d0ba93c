//! The state layer: what a run commits and how it is read back, in RocksDB, without wasmtime.
//!
//! - [`trie`]: our layout: the pairs as flushed and a lattice hash of them, so every block ends
//!   with a real state root;
//! - [`metashrew`]: metashrew's layouts (append-only histories, v9 in text and v10 in binary),
//!   read from a node's database whatever its tables' compression, written by a run that asks
//!   for it, and two nodes compared;
//! - [`Database`]: any layout behind one type, which the host reads and the runner commits
//!   through; [`DbLayout`] names the layouts;
//! - [`Value`] and [`Found`]: what a read hands the host;
//! - [`dump`]: the state as the dump text (`schema::dump`), streamed; [`files`]: writing a file
//!   atomically; [`parallel`]: a commit's hashing and reads spread over the cores; [`rocks`]: what
//!   every RocksDB open asks of a directory and of the process's file limit.

mod database;
pub mod dump;
pub mod files;
mod layout;
pub mod metashrew;
pub mod parallel;
pub mod rocks;
pub mod trie;
mod value;

pub use database::Database;
pub use value::{Found, Value};
pub use layout::DbLayout;
pub use rocksdb;
