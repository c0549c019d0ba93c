//! Every wasmtime setting that affects what a guest observes, in one place, each with the reason
//! it is set: ours (the same on every CPU) or metashrew's own (`Config::default()`, to show what
//! its nodes do); and the epoch clock behind the wall-clock limit.

use std::time::Duration;

use anyhow::Result;
use wasmtime::{Config, Engine};

use super::policy::{LinearMemory, MemoryPolicy};
use super::stack_limit;
use schema::EngineKind;

/// Every engine setting that affects what a guest observes, in one place: ours ([`config`]),
/// the same for every policy except the linear memory layout and, under the deterministic policy,
/// fuel and the stack; or metashrew's own.
pub fn engine(kind: EngineKind, policy: MemoryPolicy, memory: LinearMemory, native_stack: Option<usize>) -> Result<Engine> {
    engine_from(config(kind, policy, memory, native_stack))
}

/// The settings of [`engine`], each with the reason it is set. `native_stack` replaces the
/// native stack limit (for checking that the deterministic policy's trap depth ignores it).
pub fn config(kind: EngineKind, policy: MemoryPolicy, memory: LinearMemory, native_stack: Option<usize>) -> Config {
    match kind {
        EngineKind::Memrepro => our_config(policy, memory, native_stack),
        EngineKind::Metashrew => metashrew_config(),
    }
}

/// metashrew's block engine as it runs in production: `Config::default()`, so no NaN
/// canonicalization (a NaN's bits are the CPU's), relaxed SIMD as the CPU answers, wasmtime's
/// default stack and memory layout, no fuel. [`check_engine_settings`] refuses anything that
/// would change it.
fn metashrew_config() -> Config {
    let mut config = Config::default();
    // Ours, not metashrew's, and invisible to the guest: the wall-clock limit that reports a
    // block that never returns (a check per loop and call; nothing else changes).
    config.epoch_interruption(true);
    // metashrew also turns on async support: it changes how the host calls in, not what the
    // guest computes, and our imports are synchronous, so it is left out.
    config
}

/// Our settings: what a guest observes is the same on every CPU.
fn our_config(policy: MemoryPolicy, memory: LinearMemory, native_stack: Option<usize>) -> Config {
    let deterministic = policy.fuel().is_some();
    let mut config = Config::new();
    // NaN bit patterns differ between CPUs; canonical NaNs make float results identical everywhere.
    config.cranelift_nan_canonicalization(true);
    // Relaxed SIMD lets each CPU pick its own answer for some lanes; the deterministic variant
    // gives every CPU the same one.
    config.relaxed_simd_deterministic(true);
    // No threads: wasmtime is built without the `threads` feature, so a block is one
    // sequential execution (shared memories cannot even be declared).
    // A wall-clock limit per call (a guest that never returns is a classified outcome, not a
    // hang): epoch interruption costs a load and compare per loop. Under the deterministic policy
    // it stays as the safety net behind fuel.
    config.epoch_interruption(true);
    if deterministic {
        // Time: a fixed amount of fuel per call runs out at the same instruction everywhere.
        config.consume_fuel(true);
        // Stack: the guest is instrumented with a logical limit (stack_limit.rs), which it
        // reaches long before this native one, whatever the CPU or wasmtime version.
        config.max_wasm_stack(native_stack.unwrap_or(stack_limit::NATIVE_STACK_BYTES));
        // Calls that leave a frame without returning would unbalance the logical stack count
        // (exceptions and typed function references need wasmtime's `gc` feature, left out).
        config.wasm_tail_call(false);
    } else {
        // Stack depth decides where deep recursion traps: fixed explicitly, not left to defaults
        // (in native bytes: the depth still varies with the CPU and the compiler).
        config.max_wasm_stack(native_stack.unwrap_or(1 << 20));
    }
    match memory {
        // wasmtime's defaults, as metashrew runs: a 4 GiB reservation (+ guard) per memory, pages
        // committed when first touched, so growth itself never fails.
        LinearMemory::Reserved => {}
        // Reserve exactly the budget: growth inside it never moves, growth past it is refused by
        // the limiter, and the address space needed is known before the first block.
        LinearMemory::Budget(budget) => {
            config.memory_reservation(budget.next_multiple_of(1 << 16));
            config.memory_may_move(false);
        }
        // Map only what is used; growth remaps (and may fail: memory.grow returns -1).
        LinearMemory::Small => {
            config.memory_reservation(0);
            config.memory_reservation_for_growth(0);
            config.memory_guard_size(0);
            config.memory_may_move(true);
        }
    }
    config
}

/// The metashrew engine is metashrew's configuration as it is, so it refuses, before anything
/// runs, the settings that would change it: a policy other than unbounded (metashrew has no
/// budget and no fuel), small memories, another native stack.
pub fn check_engine_settings(kind: EngineKind, policy: MemoryPolicy, memory: LinearMemory, native_stack: Option<usize>) -> Result<()> {
    if kind != EngineKind::Metashrew {
        return Ok(());
    }
    anyhow::ensure!(
        kind.allows(policy.policy()),
        "--engine metashrew runs only under --policy unbounded (metashrew's engine has no memory budget and no fuel), not --policy {}",
        policy.name()
    );
    anyhow::ensure!(
        memory == LinearMemory::Reserved,
        "--engine metashrew keeps wasmtime's default memory layout, as metashrew does: --small-memories would change it"
    );
    anyhow::ensure!(native_stack.is_none(), "--engine metashrew keeps wasmtime's default stack, as metashrew does: --native-stack would change it");
    Ok(())
}

/// An engine with `config` and the thread that advances its epoch (the time limit's clock).
pub fn engine_from(config: Config) -> Result<Engine> {
    let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
    let ticker = engine.weak();
    std::thread::spawn(move || {
        while let Some(engine) = ticker.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    });
    Ok(engine)
}

/// The epoch deadline for a time limit, capped far below where wasmtime's `current + delta`
/// could overflow (2^40 ticks of 100 ms is about 3,500 years).
pub fn epoch_ticks(time_limit: std::time::Duration) -> u64 {
    let ticks = time_limit.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX).min(1 << 40)
}

/// How often the epoch advances: the resolution of the time limit.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// An engine and its memory policy, as a run or a node asks for them.
#[derive(Debug, Clone, Copy)]
pub struct EngineSettings {
    pub engine: EngineKind,
    pub policy: MemoryPolicy,
    pub linear_memory: LinearMemory,
    pub time_limit: Duration,
}
