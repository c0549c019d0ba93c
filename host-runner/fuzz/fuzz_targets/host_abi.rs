//! Random guest memory and random import calls with random arguments, through the real host
//! functions (wasmtime + RocksDB): every call returns or traps; the host never panics.
//!
//! Input: the first 4096 bytes fill guest memory (one 64 KiB page) from offset 0; the rest is a
//! list of calls, 9 bytes each: import (u8), then two i32 arguments (LE).
#![no_main]

use std::sync::OnceLock;

use host_runner::host::{define_imports, engine, HostState};
use host_runner::policy::{MemoryLayout, MemoryPolicy};
use host_runner::state_store::StateStore;
use host_runner::wasmtime::{Engine, InstancePre, Linker, Module, Store};
use libfuzzer_sys::fuzz_target;

const GUEST: &str = r#"
(module
  (import "env" "__host_len" (func $host_len (result i32)))
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__log" (func $log (param i32)))
  (import "env" "__get_len" (func $get_len (param i32) (result i32)))
  (import "env" "__get" (func $get (param i32 i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "call") (param $which i32) (param $a i32) (param $b i32)
    (block $done
      (br_if $done (i32.eq (local.get $which) (i32.const 0)) (drop (call $host_len)))
      (if (i32.eq (local.get $which) (i32.const 1)) (then (call $load_input (local.get $a)) (br $done)))
      (if (i32.eq (local.get $which) (i32.const 2)) (then (call $log (local.get $a)) (br $done)))
      (if (i32.eq (local.get $which) (i32.const 3)) (then (drop (call $get_len (local.get $a))) (br $done)))
      (if (i32.eq (local.get $which) (i32.const 4)) (then (call $get (local.get $a) (local.get $b)) (br $done)))
      (if (i32.eq (local.get $which) (i32.const 5)) (then (call $flush (local.get $a)) (br $done)))
      (call $abort (local.get $a) (local.get $b) (i32.const 0) (i32.const 0)))))
"#;

struct Harness {
    engine: Engine,
    pre: InstancePre<HostState>,
    store: StateStore,
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let engine = engine(MemoryLayout::Reserved).unwrap();
        let module = Module::new(&engine, GUEST).unwrap();
        let mut linker = Linker::new(&engine);
        define_imports(&mut linker).unwrap();
        let pre = linker.instantiate_pre(&module).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("db")).unwrap();
        // Something for __get to find.
        store.commit_block(1, vec![(b"abcd".to_vec().into(), b"value".to_vec().into())]).unwrap();
        Harness { engine, pre, store, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let harness = harness();
    let (image, calls) = data.split_at(data.len().min(4096));
    let host = HostState::new(7, b"input bytes", harness.store.clone(), MemoryPolicy::Unbounded);
    let mut store = Store::new(&harness.engine, host);
    store.set_epoch_deadline(u64::MAX);
    let instance = harness.pre.instantiate(&mut store).unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    memory.data_mut(&mut store)[..image.len()].copy_from_slice(image);
    let call = instance.get_typed_func::<(i32, i32, i32), ()>(&mut store, "call").unwrap();
    for op in calls.chunks_exact(9) {
        let which = i32::from(op[0] % 7);
        let a = i32::from_le_bytes(op[1..5].try_into().unwrap());
        let b = i32::from_le_bytes(op[5..9].try_into().unwrap());
        // A trap is a correct answer to a bad call; only a panic or a crash is a bug.
        if call.call(&mut store, (which, a, b)).is_err() {
            break;
        }
    }
});
