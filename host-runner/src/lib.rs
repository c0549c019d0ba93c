//! The host-runner library: everything the `host-runner` binary does, in modules the fuzz targets
//! (and tests) can call directly.

pub mod bench;
pub mod blocks;
pub mod dump;
pub mod fuzzing;
pub mod guest_memory;
pub mod host;
pub mod memory_report;
pub mod metashrew_db;
pub mod metashrew_store;
mod parallel;
pub mod policy;
pub mod runner;
pub mod stack_limit;
pub mod state_root;
pub mod state_store;
pub mod store;
pub mod watch;

/// The wasmtime this crate is built against, for callers that drive the imports directly.
pub use wasmtime;
