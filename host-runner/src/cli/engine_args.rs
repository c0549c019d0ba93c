//! The flags that choose the engine and its memory policy, shared by `run` and `node`.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use schema::{ByteSize, EngineKind, Policy};

use crate::engine::{check_engine_settings, EngineSettings, LinearMemory, MemoryPolicy};

#[derive(Args)]
pub struct EngineArgs {
    /// What the host does when the guest grows its memory.
    #[arg(long, value_enum, default_value = "unbounded")]
    policy: Policy,
    /// The wasmtime configuration and host semantics: ours (memrepro), or metashrew's own
    /// (`Config::default()`; `abort` does not trap; unbounded policy only).
    #[arg(long, value_enum, default_value = "memrepro")]
    engine: EngineKind,
    /// The deterministic policy's fixed budget, e.g. 192MiB.
    #[arg(long)]
    memory_budget: Option<ByteSize>,
    /// The deterministic policy's fuel per block (about one unit per wasm instruction);
    /// running out traps the block the same way on every host.
    #[arg(long)]
    fuel: Option<u64>,
    /// Reserve no address space ahead for linear memory (growth moves it and may fail).
    #[arg(long)]
    small_memories: bool,
    /// Wall-clock limit of one block, in seconds; past it the block traps (nothing committed).
    #[arg(long, default_value_t = 300.0)]
    block_time_limit: f64,
}

impl EngineArgs {
    /// The settings, checked before anything runs (`native_stack`: `run`'s hidden replacement of
    /// the native stack limit).
    pub fn settings(&self, native_stack: Option<usize>) -> Result<EngineSettings> {
        let time_limit = Duration::try_from_secs_f64(self.block_time_limit)
            .ok()
            .filter(|limit| !limit.is_zero())
            .context("--block-time-limit must be a positive number of seconds")?;
        let policy = MemoryPolicy::new(self.policy, self.memory_budget.map(ByteSize::bytes), self.fuel)?;
        let linear_memory = LinearMemory::for_policy(policy, self.small_memories);
        check_engine_settings(self.engine, policy, linear_memory, native_stack)?;
        Ok(EngineSettings { engine: self.engine, policy, linear_memory, time_limit })
    }
}
