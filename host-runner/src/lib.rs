//! host-runner: a metashrew-compatible host. It runs a metashrew-ABI WASM indexer over blocks
//! with wasmtime, commits each block atomically through the `state` crate (RocksDB) and reports
//! what happened as JSON (the `schema` crate).
//!
//! Layers, lowest first (each imports only from those below it):
//! - [`process`]: this process's limits and what it has used, read from the kernel;
//! - [`engine`]: wasmtime, the ABI imports, the memory policies;
//! - [`run`]: blocks indexed and committed, the result, the supervising watcher;
//! - [`node`]: a metashrew-compatible node (rockshrew-mono's command line) on the engine and the run;
//! - [`bench`], [`fuzzing`]: measurements and fuzz entry points over the engine and the run;
//! - [`cli`]: the command line, one module per subcommand.

pub mod bench;
pub mod cli;
pub mod engine;
pub mod fuzzing;
pub mod node;
pub mod process;
pub mod run;

/// The wasmtime this crate is built against, for callers that drive the imports directly.
pub use wasmtime;
