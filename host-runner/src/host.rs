//! The wasmtime side: engine settings, the `env` imports of the metashrew ABI, and running one
//! block or one view in a fresh instance.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use prost::bytes::Bytes;
use prost::Message;
use wasmtime::{bail, Caller, Config, Engine, Extern, InstancePre, Linker, Module, Store};

use crate::guest_memory::{self, address};
use crate::policy::{MemoryLayout, MemoryLimiter, MemoryPolicy};
use crate::stack_limit::{self, StackLimitExceeded};
use crate::store::Database;
use schema::EngineKind;

/// `message KeyValueFlush { repeated bytes list = 1; }`: alternating key, value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueFlush {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub list: Vec<Bytes>,
}

/// The key-value pairs of an encoded `KeyValueFlush`. One copy out of guest memory; the keys and
/// values are slices of it. `list` alternates key, value; an odd trailing key is ignored, as
/// metashrew does.
pub fn decode_flush(encoded: &[u8]) -> Result<Vec<(Bytes, Bytes)>, prost::DecodeError> {
    let message = KeyValueFlush::decode(Bytes::copy_from_slice(encoded))?;
    let mut items = message.list.into_iter();
    let mut pairs = Vec::new();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Every engine setting that affects what a guest observes, in one place: ours ([`config`]),
/// the same for every policy except the linear memory layout and, under the deterministic policy,
/// fuel and the stack; or metashrew's own.
pub fn engine(kind: EngineKind, policy: MemoryPolicy, layout: MemoryLayout, native_stack: Option<usize>) -> Result<Engine> {
    engine_from(config(kind, policy, layout, native_stack))
}

/// The settings of [`engine`], each with the reason it is set. `native_stack` replaces the
/// native stack limit (for checking that the deterministic policy's trap depth ignores it).
pub fn config(kind: EngineKind, policy: MemoryPolicy, layout: MemoryLayout, native_stack: Option<usize>) -> Config {
    match kind {
        EngineKind::Memrepro => memrepro_config(policy, layout, native_stack),
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
fn memrepro_config(policy: MemoryPolicy, layout: MemoryLayout, native_stack: Option<usize>) -> Config {
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
    match layout {
        // wasmtime's defaults, as metashrew runs: a 4 GiB reservation (+ guard) per memory, pages
        // committed when first touched, so growth itself never fails.
        MemoryLayout::Reserved => {}
        // Reserve exactly the budget: growth inside it never moves, growth past it is refused by
        // the limiter, and the address space needed is known before the first block.
        MemoryLayout::Budget(budget) => {
            config.memory_reservation(budget.next_multiple_of(1 << 16));
            config.memory_may_move(false);
        }
        // Map only what is used; growth remaps (and may fail: memory.grow returns -1).
        MemoryLayout::Small => {
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
pub fn check_engine_settings(kind: EngineKind, policy: MemoryPolicy, layout: MemoryLayout, native_stack: Option<usize>) -> Result<()> {
    if kind != EngineKind::Metashrew {
        return Ok(());
    }
    anyhow::ensure!(
        kind.allows(policy.policy()),
        "--engine metashrew runs only under --policy unbounded (metashrew's engine has no memory budget and no fuel), not --policy {}",
        policy.name()
    );
    anyhow::ensure!(
        layout == MemoryLayout::Reserved,
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

/// A call ran past its wall-clock limit (epoch interruption).
#[derive(Debug)]
pub struct TimeLimitExceeded(pub std::time::Duration);

impl std::fmt::Display for TimeLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "time limit: the call ran past its {} s limit and was interrupted", self.0.as_secs_f64())
    }
}

impl std::error::Error for TimeLimitExceeded {}

/// A call used all of the deterministic policy's fuel.
#[derive(Debug)]
pub struct FuelExhausted(pub u64);

impl std::fmt::Display for FuelExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fuel: the call used all of its {} units of fuel (the deterministic policy's time limit, the same on every host)", self.0)
    }
}

impl std::error::Error for FuelExhausted {}

/// How often the epoch advances: the resolution of the time limit.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(100);

impl HostState {
    /// The state of one call: `height ++ input` for `__load_input`, the committed `store` for
    /// `__get` (as a block at `height` sees it, or a view), and the policy's limiter.
    pub fn new(height: u32, input: &[u8], store: Database, block: bool, policy: MemoryPolicy) -> Self {
        let mut full_input = Vec::with_capacity(4 + input.len());
        full_input.extend_from_slice(&height.to_le_bytes());
        full_input.extend_from_slice(input);
        Self {
            input: full_input,
            height,
            block,
            store,
            limiter: MemoryLimiter::new(policy),
            host_budget: policy.budget(),
            pairs: Vec::new(),
            flushed_bytes: 0,
            charged_bytes: 0,
            failed: None,
        }
    }
}

/// What the imports see while one block or view runs.
pub struct HostState {
    /// `height (u32 LE) ++ input`, as `__load_input` writes it.
    input: Vec<u8>,
    height: u32,
    /// A block's `_start` (it sees the state before it), not a view.
    block: bool,
    store: Database,
    limiter: MemoryLimiter,
    /// Under the deterministic policy, the most the host may hold for the guest by the charge
    /// rule ([`pair_charge`]).
    host_budget: Option<u64>,
    /// Flushed pairs, committed by the caller only if `_start` returns.
    pub pairs: Vec<(Bytes, Bytes)>,
    pub flushed_bytes: u64,
    /// What this block's flushed pairs are charged ([`pair_charge`]), under every policy.
    pub charged_bytes: u64,
    /// Metashrew engine: why the guest marked the block failed without trapping (the first
    /// `abort()`, or a flush that did not decode). The block is then done with nothing written.
    pub failed: Option<String>,
}

/// What the host is charged for one flushed pair beside its key and value: its entry in the
/// host's list of pairs (64 bytes, twice while the list grows), the commit's sort buffer (32) and
/// leaf (64), and the batch's and memtable's bookkeeping for its entry (about 60). Fixed, so the
/// charge depends on the guest and the blocks alone, never on the host. The trie nodes a block
/// rewrites depend on the state too: the commit charges them as it writes them
/// (`state_store::node_charge`). `cargo xtask bench` checks the bound with adversarial guests.
pub const PAIR_OVERHEAD: u64 = 256;

/// The charge of one flushed pair: its key twice (the key itself, and its value-length record),
/// its value, plus [`PAIR_OVERHEAD`]. While the guest runs, the host holds one copy of them; the
/// commit, which runs after the guest's memory is freed, holds at most two (the batch, then
/// RocksDB's memtable copy), within twice the charge.
pub fn pair_charge(key: usize, value: usize) -> u64 {
    (2 * key + value) as u64 + PAIR_OVERHEAD
}

/// A compiled guest with its imports resolved, ready for one fresh instance per block or view.
pub struct Guest {
    pre: InstancePre<HostState>,
    engine: Engine,
    policy: MemoryPolicy,
    /// Wall-clock limit of one `_start` or view call.
    time_limit: std::time::Duration,
}

/// What one call of an export left behind.
pub struct Execution<T> {
    pub result: Result<T>,
    pub pairs: Vec<(Bytes, Bytes)>,
    pub flushed_bytes: u64,
    pub charged_bytes: u64,
    /// Metashrew engine: the guest marked the block failed without trapping ([`HostState::failed`]).
    pub failed: Option<String>,
    /// Fuel the call used (deterministic policy only).
    pub fuel_consumed: Option<u64>,
    pub wasm_memory_bytes: u64,
    /// `memory.grow` requests the policy refused.
    pub refused_growths: u64,
    pub instantiate_ms: f64,
    pub execute_ms: f64,
}

impl Guest {
    /// Compiles the guest at `wasm` (binary or text) for `engine`, built for `kind`, whose host
    /// semantics the imports follow; under the deterministic policy with its calls counted
    /// against the logical stack limit.
    pub fn load(engine: &Engine, kind: EngineKind, policy: MemoryPolicy, time_limit: std::time::Duration, wasm: &Path) -> Result<Self> {
        let bytes = std::fs::read(wasm).with_context(|| format!("reading guest {}", wasm.display()))?;
        Self::from_bytes(engine, kind, policy, time_limit, wasm, &bytes)
    }

    /// [`Guest::load`] of `bytes` already read from `wasm` (named in errors).
    pub fn from_bytes(engine: &Engine, kind: EngineKind, policy: MemoryPolicy, time_limit: std::time::Duration, wasm: &Path, bytes: &[u8]) -> Result<Self> {
        let not_wasm = || format!("{} is not a valid wasm module", wasm.display());
        let binary = wat::parse_bytes(bytes).with_context(not_wasm)?;
        let binary = match policy.fuel() {
            Some(_) => std::borrow::Cow::Owned(stack_limit::instrument(&binary).with_context(|| format!("loading {}", wasm.display()))?),
            None => binary,
        };
        let module = Module::new(engine, &binary).map_err(anyhow::Error::from).with_context(not_wasm)?;
        anyhow::ensure!(
            matches!(module.get_export("memory"), Some(wasmtime::ExternType::Memory(_))),
            "{} exports no `memory`: not a metashrew guest",
            wasm.display()
        );
        let mut linker = Linker::new(engine);
        define_imports(&mut linker, kind)?;
        // Like metashrew: other function imports link, and trap if they are ever called.
        linker.define_unknown_imports_as_traps(&module)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("linking {}", wasm.display()))?;
        Ok(Self { pre, engine: engine.clone(), policy, time_limit })
    }

    /// The size of the guest's compiled machine code (and its metadata), as loaded in memory.
    pub fn code_bytes(&self) -> u64 {
        let image = self.pre.module().image_range();
        (image.end as usize - image.start as usize) as u64
    }

    pub fn has_export(&self, name: &str) -> bool {
        self.pre.module().get_export(name).is_some()
    }

    /// Runs `_start` for one block in a fresh instance.
    pub fn run_block(&self, store: &Database, height: u32, payload: &[u8]) -> Execution<()> {
        self.call(store, height, true, payload, "_start", |_, _: ()| Ok(()))
    }

    /// Calls the view `name` (`() -> i32`) in a fresh instance and returns the buffer it points at.
    pub fn run_view(&self, store: &Database, height: u32, input: &[u8], name: &str) -> Execution<Vec<u8>> {
        self.call(store, height, false, input, name, |memory, ptr: i32| {
            Ok(guest_memory::arraybuffer(memory, ptr, "view result")?.to_vec())
        })
    }

    fn call<R: wasmtime::WasmResults, T>(
        &self,
        state: &Database,
        height: u32,
        block: bool,
        input: &[u8],
        name: &str,
        read: impl FnOnce(&[u8], R) -> wasmtime::Result<T>,
    ) -> Execution<T> {
        let host = HostState::new(height, input, state.clone(), block, self.policy);
        let mut store = Store::new(&self.engine, host);
        store.limiter(|host| &mut host.limiter);
        store.set_epoch_deadline(epoch_ticks(self.time_limit));
        let fuel = self.policy.fuel();
        if let Some(fuel) = fuel {
            store.set_fuel(fuel).expect("fuel is enabled under the deterministic policy");
        }

        let started = Instant::now();
        let instance = self.pre.instantiate(&mut store);
        let instantiate_ms = elapsed_ms(started);
        let started = Instant::now();
        let mut memory = None;
        let mut stack_counter = None;
        let result = instance.and_then(|instance| {
            let guest_memory = instance.get_memory(&mut store, "memory").expect("checked at load");
            memory = Some(guest_memory);
            stack_counter = instance.get_global(&mut store, stack_limit::COUNTER_EXPORT);
            let func = instance
                .get_typed_func::<(), R>(&mut store, name)
                .map_err(|e| e.context(format!("export `{name}`")))?;
            let returned = func.call(&mut store, ())?;
            read(guest_memory.data(&store), returned)
        });
        let execute_ms = elapsed_ms(started);
        let wasm_memory_bytes = memory.map_or(0, |m| m.data_size(&store) as u64);
        let fuel_consumed = fuel.map(|fuel| fuel - store.get_fuel().unwrap_or(0));
        // Our counter past the limit means the trap was the logical stack limit's.
        let over_stack_limit = stack_counter
            .and_then(|counter| counter.get(&mut store).i32())
            .is_some_and(|slots| slots as u32 > stack_limit::LIMIT_SLOTS);
        let host = store.into_data();
        let time_limit = self.time_limit;
        let result = result.map_err(|error| match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => anyhow::Error::new(TimeLimitExceeded(time_limit)),
            Some(wasmtime::Trap::OutOfFuel) => anyhow::Error::new(FuelExhausted(fuel.unwrap_or(0))),
            Some(wasmtime::Trap::UnreachableCodeReached) if over_stack_limit => anyhow::Error::new(StackLimitExceeded),
            _ => anyhow::Error::from(error),
        });
        Execution {
            result,
            pairs: host.pairs,
            flushed_bytes: host.flushed_bytes,
            charged_bytes: host.charged_bytes,
            failed: host.failed,
            fuel_consumed,
            wasm_memory_bytes,
            refused_growths: host.limiter.refused_growths,
            instantiate_ms,
            execute_ms,
        }
    }
}

pub fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// Under a deterministic budget, the host holds no more than the budget for the guest (by the
/// charge rule); going over traps the same way on every host.
fn within_budget(budget: Option<u64>, bytes: u64, what: &str) -> wasmtime::Result<()> {
    match budget {
        Some(budget) if bytes > budget => bail!("{what} would hold {bytes} bytes on the host, over the {budget} byte memory budget"),
        _ => Ok(()),
    }
}

/// A value read back for the guest is held twice for a moment (RocksDB's read of it, then the
/// pinned copy handed over: measured, a 180 MiB value read back peaked 2 × its size above the
/// guest's memory), on top of what the block's flushes are charged. Its length comes from the
/// store (`StateStore::value_len`), so the charge is checked before anything is read.
fn value_read_charge(host: &HostState, len: u64) -> u64 {
    host.charged_bytes + 2 * len
}

fn guest_memory_of<'c>(caller: &mut Caller<'c, HostState>) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => bail!("the guest exports no `memory`"),
    }
}

/// The six metashrew imports plus AssemblyScript's `abort`. Each validates the guest's pointers
/// and lengths before touching memory; a bad one returns an error, which traps the guest. Under
/// the metashrew engine `abort()` and a flush that does not decode mark the block failed and
/// return instead, as metashrew's host does.
pub fn define_imports(linker: &mut Linker<HostState>, kind: EngineKind) -> Result<()> {
    linker.func_wrap("env", "__host_len", |caller: Caller<'_, HostState>| -> wasmtime::Result<i32> {
        i32::try_from(caller.data().input.len()).or_else(|_| bail!("__host_len: input over 2 GiB"))
    })?;

    linker.func_wrap("env", "__load_input", |mut caller: Caller<'_, HostState>, ptr: i32| {
        let memory = guest_memory_of(&mut caller)?;
        let (data, host) = memory.data_and_store_mut(&mut caller);
        let len = host.input.len() as u64;
        guest_memory::span_mut(data, address(ptr), len, "__load_input")?.copy_from_slice(&host.input);
        Ok(())
    })?;

    linker.func_wrap("env", "__log", |mut caller: Caller<'_, HostState>, ptr: i32| {
        let memory = guest_memory_of(&mut caller)?;
        let bytes = guest_memory::arraybuffer(memory.data(&caller), ptr, "__log")?;
        const MAX_LOG: usize = 16 * 1024;
        let shown = &bytes[..bytes.len().min(MAX_LOG)];
        match std::str::from_utf8(shown) {
            Ok(text) if bytes.len() <= MAX_LOG => eprintln!("[guest] {text}"),
            Ok(text) => eprintln!("[guest] {text}… ({} bytes in all)", bytes.len()),
            Err(_) => eprintln!("[guest] <{} bytes, not UTF-8>", bytes.len()),
        }
        Ok(())
    })?;

    linker.func_wrap("env", "__get_len", |mut caller: Caller<'_, HostState>, key_ptr: i32| {
        let memory = guest_memory_of(&mut caller)?;
        let key = guest_memory::arraybuffer(memory.data(&caller), key_ptr, "__get_len key")?;
        let host = caller.data();
        // The stored length: the value itself is not loaded.
        let len = host.store.value_len(key, host.height, host.block).map_err(wasmtime::Error::from_anyhow)?.unwrap_or(0);
        within_budget(host.host_budget, value_read_charge(host, len), "__get_len: reading the value")?;
        i32::try_from(len).or_else(|_| bail!("__get_len: value of {len} bytes does not fit an i32"))
    })?;

    linker.func_wrap("env", "__get", |mut caller: Caller<'_, HostState>, key_ptr: i32, value_ptr: i32| {
        let memory = guest_memory_of(&mut caller)?;
        let (data, host) = memory.data_and_store_mut(&mut caller);
        let store = host.store.clone();
        let key = guest_memory::arraybuffer(data, key_ptr, "__get key")?;
        // Charged from the stored length before the value is read; then copied from RocksDB's
        // pinned slice straight into guest memory.
        let len = store.value_len(key, host.height, host.block).map_err(wasmtime::Error::from_anyhow)?.unwrap_or(0);
        within_budget(host.host_budget, value_read_charge(host, len), "__get: reading the value")?;
        let value = store.value(key, host.height, host.block).map_err(wasmtime::Error::from_anyhow)?;
        let value: &[u8] = value.as_deref().unwrap_or_default();
        let target = guest_memory::span_mut(data, address(value_ptr), value.len() as u64, "__get value")?;
        target.copy_from_slice(value);
        Ok(())
    })?;

    linker.func_wrap("env", "__flush", move |mut caller: Caller<'_, HostState>, ptr: i32| {
        let memory = guest_memory_of(&mut caller)?;
        let (data, host) = memory.data_and_store_mut(&mut caller);
        let encoded = guest_memory::arraybuffer(data, ptr, "__flush")?;
        // The decoded pairs are charged at least their encoded length: refuse before copying.
        within_budget(host.host_budget, host.charged_bytes + encoded.len() as u64, "__flush: this block's flushes")?;
        let pairs = match decode_flush(encoded) {
            Ok(pairs) => pairs,
            Err(error) => return fail_block(host, kind, format!("__flush: not a KeyValueFlush protobuf: {error}")),
        };
        // The pairs are slices of one copy of the whole message, which lives as long as any of
        // them: what the message carries beside them (unknown fields, an odd trailing key) is
        // held too, so the charge is never less than the message.
        let charge = pairs.iter().map(|(k, v)| pair_charge(k.len(), v.len())).sum::<u64>().max(encoded.len() as u64);
        within_budget(host.host_budget, host.charged_bytes + charge, "__flush: this block's flushes")?;
        host.flushed_bytes += encoded.len() as u64;
        host.charged_bytes += charge;
        host.pairs.extend(pairs);
        Ok(())
    })?;

    linker.func_wrap(
        "env",
        "abort",
        move |mut caller: Caller<'_, HostState>, _msg: i32, _file: i32, line: i32, column: i32| -> wasmtime::Result<()> {
            fail_block(caller.data_mut(), kind, format!("the guest called abort() at line {line}, column {column}"))
        },
    )?;
    Ok(())
}

/// The guest failed the block: ours traps with `why`; metashrew's notes the failure (the first
/// one) and lets the guest go on, and the block ends done with nothing written.
fn fail_block(host: &mut HostState, kind: EngineKind, why: String) -> wasmtime::Result<()> {
    match kind {
        EngineKind::Memrepro => bail!("{why}"),
        EngineKind::Metashrew => {
            host.failed.get_or_insert(why);
            Ok(())
        }
    }
}
