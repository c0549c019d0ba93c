//! Hostile pointers and lengths in every import trap the guest with a clear message; the runner
//! itself never crashes (exit 1 with a result, never a panic or a signal).

use crate::support::*;

/// A one-page guest (64 KiB) whose `_start` is `body`. At 16: a 4-byte buffer "abcd".
fn guest_with_start(body: &str) -> String {
    format!(r#"
(module
  (import "env" "__host_len" (func $host_len (result i32)))
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__log" (func $log (param i32)))
  (import "env" "__get_len" (func $get_len (param i32) (result i32)))
  (import "env" "__get" (func $get (param i32 i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 12) "\04\00\00\00abcd")
  (func (export "_start") {body}))
"#)
}

/// `import(ptr)` as a statement (`__get_len`'s result dropped).
fn call(import: &str, ptr: &str) -> String {
    let call = format!("(call ${import} (i32.const {ptr}))");
    if import == "get_len" { format!("(drop {call})") } else { call }
}

/// Sets the length prefix at `ptr - 4` to `len`, then calls `import(ptr)`.
fn with_length(import: &str, ptr: u32, len: u32) -> String {
    format!("(i32.store (i32.const {}) (i32.const {len})) {}", ptr - 4, call(import, &ptr.to_string()))
}

fn assert_traps(body: &str, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat_guest(dir.path(), "hostile", &guest_with_start(body));
    let run = run_block(&wasm, &dir.path().join("db"), 1, b"payload");
    assert_eq!(run.code(), Some(1), "`{body}` must trap, not crash: {}", run.stderr());
    let trap = run.trap();
    assert!(trap.contains(expected), "`{body}`: expected `{expected}` in `{trap}`");
    assert!(run.result().dump.is_empty(), "a trapped block commits nothing");
}

const LAST_BYTE: u32 = 65535;

#[test]
fn pointers_below_four_trap_in_every_buffer_import() {
    for import in ["log", "get_len", "flush"] {
        for ptr in [0, 3] {
            assert_traps(&call(import, &ptr.to_string()), "leaves no room for its 4-byte length prefix");
        }
    }
    assert_traps("(call $get (i32.const 2) (i32.const 100))", "__get key: pointer 0x2");
}

#[test]
fn lengths_past_the_end_and_near_i32_max_trap() {
    for import in ["log", "get_len", "flush"] {
        assert_traps(&with_length(import, 100, LAST_BYTE), "run past the end of guest memory");
        assert_traps(&with_length(import, 100, i32::MAX as u32), "2147483647 bytes at 0x64 run past the end");
        assert_traps(&with_length(import, 100, u32::MAX), "4294967295 bytes at 0x64");
    }
}

#[test]
fn pointers_past_the_end_and_negative_pointers_trap() {
    // (65536 itself is a valid empty buffer: its length prefix is the last 4 bytes of memory.)
    for ptr in ["65537", "0x7fffffff", "-1", "-2147483648"] {
        for import in ["log", "get_len", "flush", "load_input"] {
            assert_traps(&call(import, ptr), "past the end of guest memory");
        }
    }
}

#[test]
fn writes_that_do_not_fit_trap_instead_of_writing() {
    // Input is 4 + 7 bytes; at LAST_BYTE - 5 only 6 fit.
    assert_traps(&format!("(call $load_input (i32.const {}))", LAST_BYTE - 5), "__load_input: 11 bytes at 0xfffa");
    // __get of a missing key writes nothing, so any in-bounds pointer is fine; a stored value
    // that does not fit at the end of memory traps (the key "abcd" is stored by a first block).
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let setter = wat_guest(dir.path(), "set", r#"
(module (import "env" "__flush" (func $flush (param i32))) (memory (export "memory") 1)
  (data (i32.const 16) "\0c\00\00\00\0a\04abcd\0a\04wxyz")
  (func (export "_start") (call $flush (i32.const 20))))"#);
    assert_eq!(run_block(&setter, &db, 1, b"").code(), Some(0));
    let getter = wat_guest(dir.path(), "get", &guest_with_start(&format!("(call $get (i32.const 16) (i32.const {}))", LAST_BYTE - 2)));
    let run = run_block(&getter, &db, 2, b"");
    assert_eq!(run.code(), Some(1));
    assert!(run.trap().contains("__get value: 4 bytes at 0xfffd run past the end"), "{}", run.trap());
}

#[test]
fn a_flush_that_is_not_protobuf_traps() {
    // 0x0a 0x7f: a length-delimited field claiming 127 bytes with 2 present.
    assert_traps(
        "(i32.store (i32.const 100) (i32.const 2)) (i32.store16 (i32.const 104) (i32.const 0x7f0a)) (call $flush (i32.const 104))",
        "__flush: not a KeyValueFlush protobuf",
    );
}

#[test]
fn an_unknown_import_links_and_traps_only_when_called() {
    let dir = tempfile::tempdir().unwrap();
    let module = |call: &str| format!(r#"
(module
  (import "env" "mystery" (func $mystery))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") {call}))"#);
    let quiet = wat_guest(dir.path(), "quiet", &module(""));
    assert_eq!(run_block(&quiet, &dir.path().join("a"), 1, b"").code(), Some(0));
    let loud = wat_guest(dir.path(), "loud", &module("(call $mystery)"));
    let run = run_block(&loud, &dir.path().join("b"), 1, b"");
    assert_eq!(run.code(), Some(1));
    assert!(run.trap().contains("mystery"), "{}", run.trap());
}

#[test]
fn abort_traps_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat_guest(dir.path(), "abort", r#"
(module
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $abort (i32.const 0) (i32.const 0) (i32.const 12) (i32.const 34))))"#);
    let run = run_block(&wasm, &dir.path().join("db"), 1, b"");
    assert_eq!(run.code(), Some(1));
    assert!(run.trap().contains("abort() at line 12, column 34"), "{}", run.trap());
}

#[test]
fn guests_that_are_not_metashrew_guests_are_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("no-memory", "(module (func (export \"_start\")))", "exports no `memory`"),
        ("no-start", "(module (memory (export \"memory\") 1))", "exports no `_start`"),
        ("garbage", "this is not wasm", "is not a valid wasm module"),
    ];
    for (name, wat, expected) in cases {
        let wasm = wat_guest(dir.path(), name, wat);
        let db = dir.path().join(name);
        let run = run_block(&wasm, &db, 1, b"");
        assert_eq!(run.code(), Some(2), "{name}");
        assert!(run.stderr().contains(expected), "{name}: {}", run.stderr());
        assert!(run.result.is_none() && !db.exists(), "{name}: nothing written");
    }
    let run = run_block(&dir.path().join("missing.wasm"), &dir.path().join("db"), 1, b"");
    assert_eq!(run.code(), Some(2));
    assert!(run.stderr().contains("missing.wasm"), "{}", run.stderr());
}
