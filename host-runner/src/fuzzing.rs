//! Entry points shared by the fuzz targets (host-runner/fuzz) and the test that replays their
//! committed corpus, so every corpus file is re-checked by the ordinary test suite.

use std::sync::OnceLock;

use wasmtime::{Engine, InstancePre, Linker, Module, Store};

use state::trie::TrieStore;
use state::Database;

use crate::engine::config::{engine, epoch_ticks};
use crate::engine::flush::decode_flush;
use crate::engine::host_state::HostState;
use crate::engine::imports::define_imports;
use crate::engine::{LinearMemory, MemoryPolicy};

/// Any bytes given to `__flush`: decoded or refused, never a panic, and the decoded pairs are
/// made of bytes of the input.
pub fn flush_decoder(data: &[u8]) {
    if let Ok(pairs) = decode_flush(data) {
        let total: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total <= data.len(), "decoded more bytes than were given");
    }
}

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

struct AbiHarness {
    engine: Engine,
    pre: InstancePre<HostState>,
    store: TrieStore,
    _dir: tempfile::TempDir,
}

fn abi_harness() -> &'static AbiHarness {
    static HARNESS: OnceLock<AbiHarness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let engine = engine(schema::EngineKind::Memrepro, MemoryPolicy::Unbounded, LinearMemory::Reserved, None).expect("engine");
        let module = Module::new(&engine, GUEST).expect("the fuzz guest compiles");
        let mut linker = Linker::new(&engine);
        define_imports(&mut linker, schema::EngineKind::Memrepro).expect("imports");
        let pre = linker.instantiate_pre(&module).expect("links");
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = TrieStore::open(&dir.path().join("db")).expect("database");
        // Something for __get to find.
        store.commit_block(1, vec![(b"abcd".to_vec().into(), b"value".to_vec().into())]).expect("commit");
        AbiHarness { engine, pre, store, _dir: dir }
    })
}

/// Random guest memory and random import calls with random arguments, through the real host
/// functions: every call returns or traps; the host never panics.
///
/// `data`: the first 4096 bytes fill guest memory from offset 0; the rest is a list of calls,
/// 9 bytes each: import (u8), then two i32 arguments (LE). Returns how many calls returned
/// (the rest of the list is skipped after the first trap).
pub fn host_abi(data: &[u8]) -> usize {
    let harness = abi_harness();
    let (image, calls) = data.split_at(data.len().min(4096));
    let host = HostState::new(7, b"input bytes", Database::Trie(harness.store.clone()), true, MemoryPolicy::Unbounded);
    let mut store = Store::new(&harness.engine, host);
    store.set_epoch_deadline(epoch_ticks(std::time::Duration::from_secs(60)));
    let instance = harness.pre.instantiate(&mut store).expect("instantiates");
    let memory = instance.get_memory(&mut store, "memory").expect("memory");
    memory.data_mut(&mut store)[..image.len()].copy_from_slice(image);
    let call = instance.get_typed_func::<(i32, i32, i32), ()>(&mut store, "call").expect("call export");
    let mut returned = 0;
    for op in calls.chunks_exact(9) {
        let which = i32::from(op[0] % 7);
        let a = i32::from_le_bytes(op[1..5].try_into().expect("4 bytes"));
        let b = i32::from_le_bytes(op[5..9].try_into().expect("4 bytes"));
        // A trap is a correct answer to a bad call; only a panic or a crash is a bug.
        if call.call(&mut store, (which, a, b)).is_err() {
            break;
        }
        returned += 1;
    }
    returned
}

#[cfg(test)]
mod tests {
    /// Memory with the key "abcd" at 16 and a flush of "k" = "v" at 100, then one call of each
    /// import with good arguments and a last one with a bad pointer.
    fn every_import_once() -> Vec<u8> {
        let mut data = vec![0u8; 4096];
        data[12..16].copy_from_slice(&4u32.to_le_bytes());
        data[16..20].copy_from_slice(b"abcd");
        data[96..100].copy_from_slice(&6u32.to_le_bytes());
        data[100..106].copy_from_slice(b"\x0a\x01k\x0a\x01v");
        for (which, a, b) in [(0u8, 0i32, 0i32), (1, 200, 0), (2, 16, 0), (3, 16, 0), (4, 16, 300), (5, 100, 0), (2, -1, 0), (0, 0, 0)] {
            data.push(which);
            data.extend_from_slice(&a.to_le_bytes());
            data.extend_from_slice(&b.to_le_bytes());
        }
        data
    }

    #[test]
    fn good_calls_reach_the_imports_and_the_first_bad_one_traps() {
        assert_eq!(super::host_abi(&every_import_once()), 6);
    }
}
