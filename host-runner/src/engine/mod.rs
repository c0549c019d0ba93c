//! The engine: wasmtime and the metashrew ABI. Its settings ([`config`]), the memory policies
//! ([`policy`]), the imports and what they hold and charge ([`imports`], [`host_state`]), guest
//! memory access ([`guest_memory`]), the deterministic policy's logical stack limit
//! ([`stack_limit`]) and a guest called for a block or a view ([`guest`]). It reads the
//! committed state through `state::Database` and never writes it: committing is the run's.

pub mod config;
pub mod flush;
pub mod guest;
pub mod guest_memory;
pub mod host_state;
pub mod imports;
pub mod policy;
pub mod stack_limit;

pub use config::{check_engine_settings, engine, engine_from, EngineSettings};
pub use guest::{Execution, FuelExhausted, Guest, HostLimit, TimeLimitExceeded};
pub use policy::{preflight, LinearMemory, MemoryPolicy, Refusal};
