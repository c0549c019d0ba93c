//! A compiled guest, and one call of it: `_start` for a block or a view, each in a fresh
//! instance, with what it flushed, used and why it stopped.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use state::Database;
use wasmtime::{Engine, Instance, InstancePre, Linker, Memory, Module, Store};

use super::config::epoch_ticks;
use super::guest_memory;
use super::host_state::HostState;
use super::imports::define_imports;
use super::policy::MemoryPolicy;
use super::stack_limit::{self, StackLimitExceeded};
use crate::process::elapsed_ms;
use schema::EngineKind;

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
        let mut store = self.new_store(HostState::new(height, input, state.clone(), block, self.policy));
        let started = Instant::now();
        let instance = self.pre.instantiate(&mut store).map_err(name_host_limit);
        let instantiate_ms = elapsed_ms(started);
        let started = Instant::now();
        let mut seen = Seen::default();
        let result = instance.and_then(|instance| call_export(&mut store, instance, name, read, &mut seen));
        let execute_ms = elapsed_ms(started);
        self.execution(store, result, seen, [instantiate_ms, execute_ms])
    }

    /// A store for one call: the policy's limiter, the time limit, the fuel.
    fn new_store(&self, host: HostState) -> Store<HostState> {
        let mut store = Store::new(&self.engine, host);
        store.limiter(|host| &mut host.limiter);
        store.set_epoch_deadline(epoch_ticks(self.time_limit));
        if let Some(fuel) = self.policy.fuel() {
            store.set_fuel(fuel).expect("fuel is enabled under the deterministic policy");
        }
        store
    }

    /// What the call left in `store`, with a trap named by its cause: the time limit, fuel or
    /// the logical stack limit, each a typed error the runner reports as such.
    fn execution<T>(&self, mut store: Store<HostState>, result: wasmtime::Result<T>, seen: Seen, [instantiate_ms, execute_ms]: [f64; 2]) -> Execution<T> {
        let wasm_memory_bytes = seen.memory.map_or(0, |m| m.data_size(&store) as u64);
        let fuel = self.policy.fuel();
        let fuel_consumed = fuel.map(|fuel| fuel - store.get_fuel().unwrap_or(0));
        // Our counter past the limit means the trap was the logical stack limit's.
        let over_stack_limit = seen
            .stack_counter
            .and_then(|counter| counter.get(&mut store).i32())
            .is_some_and(|slots| slots as u32 > stack_limit::LIMIT_SLOTS);
        let result = result.map_err(|error| match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => anyhow::Error::new(TimeLimitExceeded(self.time_limit)),
            Some(wasmtime::Trap::OutOfFuel) => anyhow::Error::new(FuelExhausted(fuel.unwrap_or(0))),
            Some(wasmtime::Trap::UnreachableCodeReached) if over_stack_limit => anyhow::Error::new(StackLimitExceeded),
            _ => anyhow::Error::from(error),
        });
        let host = store.into_data();
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

/// What a call noted of its instance on the way, for the report after it.
#[derive(Default)]
struct Seen {
    memory: Option<Memory>,
    stack_counter: Option<wasmtime::Global>,
}

/// Calls the export `name` of `instance` and reads its result out of guest memory.
fn call_export<R: wasmtime::WasmResults, T>(
    store: &mut Store<HostState>,
    instance: Instance,
    name: &str,
    read: impl FnOnce(&[u8], R) -> wasmtime::Result<T>,
    seen: &mut Seen,
) -> wasmtime::Result<T> {
    let memory = instance.get_memory(&mut *store, "memory").expect("checked at load");
    seen.memory = Some(memory);
    seen.stack_counter = instance.get_global(&mut *store, stack_limit::COUNTER_EXPORT);
    let func = instance.get_typed_func::<(), R>(&mut *store, name).map_err(|e| e.context(format!("export `{name}`")))?;
    let returned = func.call(&mut *store, ())?;
    read(memory.data(&*store), returned)
}

/// An instantiation the host could not map memory for (wasmtime's `mmap failed to reserve` or
/// `to allocate`: RLIMIT_AS, or the kernel's overcommit) is a [`HostLimit`]; any other failure
/// to instantiate is the guest's.
fn name_host_limit(error: wasmtime::Error) -> wasmtime::Error {
    match error.chain().any(|cause| cause.to_string().starts_with("mmap failed to ")) {
        true => wasmtime::Error::new(HostLimit(format!("{error:#}"))),
        false => error,
    }
}

/// The host could not instantiate the guest: a limit of the host, not the guest's outcome.
#[derive(Debug)]
pub struct HostLimit(pub String);

impl std::fmt::Display for HostLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let limit = crate::process::address_space_limit().map_or(String::new(), |bytes| format!(" (RLIMIT_AS {} MiB)", bytes >> 20));
        write!(f, "the host could not map the instance's memory{limit}: {}", self.0)
    }
}

impl std::error::Error for HostLimit {}

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
