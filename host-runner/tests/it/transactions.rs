//! Blocks are committed whole or not at all; the state root covers the whole state.

use crate::support::*;

/// Flushes `"k" = "v"` and then, when `$trap` is 1, hits `unreachable`.
const FLUSH_THEN_MAYBE_TRAP: &str = r#"
(module
  (import "env" "__flush" (func $flush (param i32)))
  (import "env" "__host_len" (func $host_len (result i32)))
  (import "env" "__load_input" (func $load_input (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\06\00\00\00\0a\01k\0a\01v")
  (func (export "_start")
    ;; payload byte 0 (after the 4-byte height) decides whether to trap
    (call $load_input (i32.const 1024))
    (call $flush (i32.const 20))
    (if (i32.eq (i32.load8_u (i32.const 1028)) (i32.const 1)) (then unreachable))))
"#;

#[test]
fn a_trapping_block_commits_nothing_and_keeps_the_previous_root() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    let wasm = wat_guest(dir.path(), "flush-then-trap", FLUSH_THEN_MAYBE_TRAP);
    let good = run_block(guest_wasm(), &db, 1, b"first");
    assert_eq!(good.code(), Some(0));
    let before = good.result().clone();

    let bad = run_block(&wasm, &db, 2, &[1]);
    assert_eq!(bad.code(), Some(1), "a trapped block is exit 1: {}", bad.stderr());
    assert!(bad.trap().contains("unreachable"), "{}", bad.trap());
    assert!(bad.stdout().contains("RESULT: WASM trapped at height 2"), "{}", bad.stdout());
    let result = bad.result();
    assert_eq!(result.blocks[0].flushed_pairs, 1, "the flush happened before the trap");
    assert_eq!(result.dump, before.dump);
    assert_eq!(result.state_root, before.state_root);

    // The same guest, not trapping, commits its pair.
    let ok = run_block(&wasm, &db, 3, &[0]);
    assert_eq!(ok.code(), Some(0), "{}", ok.stderr());
    assert_eq!(ok.result().dump, [r#""/blocks/1" = "first""#, r#""k" = "v""#]);
    assert_ne!(ok.result().state_root, before.state_root);
    Ok(())
}

#[test]
fn a_blocks_file_stops_at_the_first_trapped_block() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wasm = wat_guest(dir.path(), "flush-then-trap", FLUSH_THEN_MAYBE_TRAP);
    let blocks = dir.path().join("blocks.txt");
    std::fs::write(&blocks, "10 00\n11 01\n12 00\n")?;
    let out = dir.path().join("out.json");
    let status = runner().arg("run").arg("--wasm").arg(&wasm).arg("--db").arg(dir.path().join("db"))
        .arg("--blocks").arg(&blocks).arg("--out").arg(&out).status()?;
    assert_eq!(status.code(), Some(1));
    let result = schema::RunResult::from_json(&std::fs::read_to_string(&out)?)?;
    assert_eq!((result.input.blocks, result.input.first_height, result.input.last_height), (3, Some(10), Some(12)));
    assert_eq!(result.totals.run, 2);
    assert_eq!(result.blocks.iter().map(|b| b.height).collect::<Vec<_>>(), [10, 11]);
    assert!(matches!(result.outcome, schema::RunOutcome::Trapped { height: 11, .. }));
    assert_eq!(result.blocks[1].state_root, result.blocks[0].state_root);
    Ok(())
}

#[test]
fn a_later_pair_for_the_same_key_wins_within_a_block() -> TestResult {
    let dir = tempfile::tempdir()?;
    // list = ["k", "1", "k", "2", "odd"]: last value wins, the odd trailing key is ignored.
    let wasm = wat_guest(dir.path(), "last-wins", r#"
(module
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\11\00\00\00\0a\01k\0a\011\0a\01k\0a\012\0a\03odd")
  (func (export "_start") (call $flush (i32.const 20))))
"#);
    let run = run_block(&wasm, &dir.path().join("db"), 1, b"");
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.result().dump, [r#""k" = "2""#]);
    Ok(())
}

/// A guest that reads through `__get_len`/`__get` and flushes: its imports, a page of memory and
/// the key `/blocks/4` (data at 20), then `rest`: more data and `_start`, whose body it closes.
fn reading_guest(rest: &str) -> String {
    format!(
        r#"(module
  (import "env" "__get_len" (func $get_len (param i32) (result i32)))
  (import "env" "__get" (func $get (param i32 i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\09\00\00\00/blocks/4")
{rest}))"#
    )
}

#[test]
fn get_reads_the_committed_state_of_earlier_blocks() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    assert_eq!(run_block(guest_wasm(), &db, 4, b"four").code(), Some(0));
    // Reads /blocks/4 through __get_len/__get and re-stores it under "copy".
    let wasm = wat_guest(dir.path(), "copy", &reading_guest(r#"
  ;; flush message at 100: 0a 04 "copy" 0a <len> <value at 110>
  (data (i32.const 96) "\00\00\00\00\0a\04copy\0a")
  (func (export "_start") (local $len i32)
    (local.set $len (call $get_len (i32.const 20)))
    (i32.store8 (i32.const 107) (local.get $len))
    (call $get (i32.const 20) (i32.const 108))
    (i32.store (i32.const 96) (i32.add (i32.const 8) (local.get $len)))
    (call $flush (i32.const 100))
"#));
    let run = run_block(&wasm, &db, 5, b"");
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.result().dump, [r#""/blocks/4" = "four""#, r#""copy" = "four""#]);
    Ok(())
}

/// `__get_len` keeps the small value it found for the `__get` that follows; a `__get` of another
/// key reads that key.
#[test]
fn get_after_get_len_of_another_key_reads_its_own_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    assert_eq!(run_block(guest_wasm(), &db, 4, b"four").code(), Some(0));
    assert_eq!(run_block(guest_wasm(), &db, 6, b"sixes!").code(), Some(0));
    // The length of /blocks/4, then /blocks/6 read and stored under "copy".
    let wasm = wat_guest(dir.path(), "other-key", &reading_guest(r#"
  (data (i32.const 48) "\09\00\00\00/blocks/6")
  ;; flush message at 100: 0a 04 "copy" 0a 06 <the 6 bytes at 108>
  (data (i32.const 96) "\0e\00\00\00\0a\04copy\0a\06")
  (func (export "_start")
    (drop (call $get_len (i32.const 20)))
    (call $get (i32.const 52) (i32.const 108))
    (call $flush (i32.const 100))
"#));
    let run = run_block(&wasm, &db, 7, b"");
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.result().dump, [r#""/blocks/4" = "four""#, r#""/blocks/6" = "sixes!""#, r#""copy" = "sixes!""#]);
    Ok(())
}

#[test]
fn a_flush_from_above_2_gib_is_committed() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Grows to 2.5 GiB and flushes from 0x9000_0004, an i32 that is negative.
    let wasm = wat_guest(dir.path(), "high-flush", r#"
(module
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (memory.grow (i32.const 40959)))
    (i32.store (i32.const 0x90000000) (i32.const 6))
    (i32.store (i32.const 0x90000004) (i32.const 0x6b01_0a))   ;; 0a 01 'k'
    (i32.store16 (i32.const 0x90000007) (i32.const 0x010a))    ;; 0a 01
    (i32.store8 (i32.const 0x90000009) (i32.const 0x68))       ;; 'h'
    (call $flush (i32.const 0x90000004))))
"#);
    let run = run_block(&wasm, &dir.path().join("db"), 1, b"");
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.result().dump, [r#""k" = "h""#]);
    assert_eq!(run.result().memory.wasm_memory_bytes, 40960 * 65536);
    Ok(())
}
