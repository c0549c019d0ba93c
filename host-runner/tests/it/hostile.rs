//! Guests that try to hang, overflow or exhaust the host: each ends in an exact, classified
//! outcome, never a hang or a crash of the runner.

use std::time::{Duration, Instant};

use crate::support::*;

fn run_wat(wat: &str, extra: &[&str]) -> (Run, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat_guest(dir.path(), "hostile", wat);
    let out = dir.path().join("out.json");
    let started = Instant::now();
    let output = runner()
        .args(["run", "--height", "1"])
        .arg("--wasm")
        .arg(&wasm)
        .arg("--db")
        .arg(dir.path().join("db"))
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let result = std::fs::read_to_string(&out).ok().map(|t| schema::RunResult::from_json(&t).unwrap());
    (Run { output, result }, elapsed)
}

#[test]
fn an_infinite_loop_is_interrupted_at_the_time_limit_recorded_in_the_result() {
    let (run, elapsed) = run_wat(
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop $forever (br $forever))))"#,
        &["--block-time-limit", "0.5"],
    );
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let schema::RunOutcome::TimedOut { height: 1, message } = &run.result().outcome else {
        panic!("expected a timeout, got {:?}", run.result().outcome)
    };
    assert_eq!(message, "time limit: the call ran past its 0.5 s limit and was interrupted");
    assert!(run.stdout().contains("RESULT: WASM timed out at height 1"), "{}", run.stdout());
    assert_eq!(run.result().policy.block_time_limit_secs, 0.5);
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn unbounded_recursion_traps_with_stack_exhaustion() {
    let (run, _) = run_wat(
        r#"(module (memory (export "memory") 1)
             (func $deeper (param i64) (result i64) (i64.add (call $deeper (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
             (func (export "_start") (drop (call $deeper (i64.const 0)))))"#,
        &[],
    );
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(run.trap().contains("call stack exhausted"), "{}", run.trap());
}

#[test]
fn a_guest_may_grow_to_exactly_4_gib_and_no_further() {
    // Grows to 65536 pages, writes the last byte, then asks for one more page (must get -1)
    // and flushes that answer: "g" = "\xff\xff\xff\xff".
    let (run, _) = run_wat(
        r#"(module
             (import "env" "__flush" (func $flush (param i32)))
             (memory (export "memory") 1)
             (func (export "_start")
               (if (i32.eq (memory.grow (i32.const 65535)) (i32.const -1)) (then unreachable))
               (i32.store8 (i32.const -1) (i32.const 7))
               (i32.store (i32.const 16) (i32.const 9))
               (i32.store (i32.const 20) (i32.const 0x0a_67_01_0a))
               (i32.store8 (i32.const 24) (i32.const 4))
               (i32.store (i32.const 25) (memory.grow (i32.const 1)))
               (call $flush (i32.const 20))))"#,
        &[],
    );
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.result().memory.wasm_memory_bytes, 4 << 30);
    assert_eq!(run.result().dump, [r#""g" = "\xff\xff\xff\xff""#]);
}

#[test]
fn a_view_returning_a_garbage_pointer_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    assert_eq!(run_block(guest_wasm(), &db, 1, b"x").code(), Some(0));
    let wasm = wat_guest(dir.path(), "garbage-view", r#"(module (memory (export "memory") 1)
        (func (export "_start")) (func (export "garbage") (result i32) (i32.const 0x7ffffff0)))"#);
    let output = runner().arg("view").arg("--wasm").arg(&wasm).arg("--db").arg(&db).args(["--name", "garbage"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("view `garbage` trapped: view result: 4 bytes at 0x7fffffec run past the end of guest memory"), "{stderr}");
}
