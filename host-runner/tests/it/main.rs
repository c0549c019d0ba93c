//! The real guest and hand-written WAT guests through the real host-runner binary, each against
//! its own RocksDB in a temporary directory.

mod abi_bounds;
mod adversaries;
mod big_state;
mod chain_guest;
mod crash_safety;
mod engines;
mod file_limits;
mod fuzz_corpus;
mod hostile;
mod metashrew_db;
mod metashrew_layout;
mod node;
mod policies;
mod rocksdb8;
mod streaming;
mod stress_guest;
mod support;
mod transactions;
