//! `--engine metashrew` against ours, through the real runner, wasmtime and RocksDB: metashrew's
//! `abort()` does not trap (the block is done with nothing written, the run moves on), a trap
//! stops the run where a metashrew node would retry for ever, and NaN bits are the CPU's.

use std::path::Path;

use schema::{BlockOutcome, EngineKind, RunOutcome};

use crate::support::*;

/// Stores `k{height}` = `v`, then does `at_2` at height 2.
fn guest_doing_at_height_2(at_2: &str) -> String {
    format!(
        r#"(module
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\07\00\00\00\0a\02k?\0a\01v")
  (func (export "_start")
    (call $load_input (i32.const 1024))
    (i32.store8 (i32.const 23) (i32.add (i32.load8_u (i32.const 1024)) (i32.const 0x30)))
    (call $flush (i32.const 20))
    (if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 2)) (then {at_2}))))"#
    )
}

const ABORT: &str = "(call $abort (i32.const 0) (i32.const 0) (i32.const 12) (i32.const 34))";

/// `host-runner run --engine ENGINE` over blocks at heights 1..=`last` (empty payloads).
fn run_engine(engine: &str, wasm: &Path, dir: &Path, last: u32) -> Run {
    let blocks = dir.join(format!("blocks-{last}.txt"));
    std::fs::write(&blocks, (1..=last).map(|h| format!("{h}\n")).collect::<String>()).unwrap();
    let (db, out) = (dir.join(format!("db-{engine}-{last}")), dir.join(format!("{engine}-{last}.json")));
    let output = runner()
        .args(["run", "--engine", engine, "--blocks"])
        .arg(&blocks)
        .arg("--wasm")
        .arg(wasm)
        .arg("--db")
        .arg(&db)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let result = std::fs::read_to_string(&out).ok().map(|text| schema::RunResult::from_json(&text).unwrap());
    Run { output, result }
}

#[test]
fn under_our_engine_abort_traps_the_block_and_nothing_of_it_is_committed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wasm = wat_guest(dir.path(), "abort", &guest_doing_at_height_2(ABORT));
    let run = run_engine("memrepro", &wasm, dir.path(), 3);
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    let result = run.result();
    assert_eq!(result.policy.engine, EngineKind::Memrepro);
    assert_eq!(
        result.outcome,
        RunOutcome::Trapped { height: 2, message: "the guest called abort() at line 12, column 34".into(), node: None }
    );
    assert_eq!(result.blocks.len(), 2, "block 3 never runs");
    assert_eq!(result.dump, [r#""k1" = "v""#]);
    Ok(())
}

#[test]
fn under_the_metashrew_engine_an_aborted_block_is_done_with_nothing_written_and_the_next_block_is_committed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wasm = wat_guest(dir.path(), "abort", &guest_doing_at_height_2(ABORT));
    let run = run_engine("metashrew", &wasm, dir.path(), 3);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let result = run.result();
    assert_eq!(result.policy.engine, EngineKind::Metashrew);
    assert_eq!(result.outcome, RunOutcome::Completed);
    let outcomes: Vec<&BlockOutcome> = result.blocks.iter().map(|b| &b.outcome).collect();
    let aborted = BlockOutcome::Aborted { message: "the guest called abort() at line 12, column 34".into() };
    assert_eq!(outcomes, [&BlockOutcome::Completed, &aborted, &BlockOutcome::Completed]);
    // Block 2 flushed `k2`, and none of it was written: the state is as block 1 left it.
    assert_eq!(result.blocks[1].flushed_pairs, 1);
    assert_eq!(result.blocks[1].state_root, result.blocks[0].state_root);
    assert_ne!(result.blocks[2].state_root, result.blocks[1].state_root);
    assert_eq!(result.dump, [r#""k1" = "v""#, r#""k3" = "v""#]);
    assert!(run.stdout().contains("RESULT: WASM completed, 1 of 3 blocks aborted (done, nothing of them written)"), "{}", run.stdout());

    // Done: the tip moves past the aborted block, with nothing of it in the state.
    let two = run_engine("metashrew", &wasm, dir.path(), 2);
    assert_eq!(two.code(), Some(0), "{}", two.stderr());
    let state_json = dir.path().join("state.json");
    let state = runner().arg("state").arg("--db").arg(dir.path().join("db-metashrew-2")).arg("--out").arg(&state_json).status()?;
    assert!(state.success());
    let state: schema::StoredState = serde_json::from_str(&std::fs::read_to_string(&state_json)?)?;
    assert_eq!((state.tip, state.dump), (Some(2), vec![r#""k1" = "v""#.to_string()]));
    Ok(())
}

#[test]
fn under_the_metashrew_engine_a_flush_that_does_not_decode_fails_the_block_without_a_trap() -> TestResult {
    let dir = tempfile::tempdir()?;
    // A length-delimited field whose length runs past the message.
    let garbage = r#"(i32.store (i32.const 200) (i32.const 2)) (i32.store16 (i32.const 204) (i32.const 0x050a)) (call $flush (i32.const 204))"#;
    let wasm = wat_guest(dir.path(), "garbage-flush", &guest_doing_at_height_2(garbage));
    let ours = run_engine("memrepro", &wasm, dir.path(), 3);
    assert_eq!(ours.code(), Some(1), "{}", ours.stderr());
    assert!(ours.trap().contains("__flush: not a KeyValueFlush protobuf"), "{}", ours.trap());
    let theirs = run_engine("metashrew", &wasm, dir.path(), 3);
    assert_eq!(theirs.code(), Some(0), "{}", theirs.stderr());
    let BlockOutcome::Aborted { message } = &theirs.result().blocks[1].outcome else {
        panic!("block 2: {:?}", theirs.result().blocks[1].outcome)
    };
    assert!(message.starts_with("__flush: not a KeyValueFlush protobuf"), "{message}");
    assert_eq!(theirs.result().dump, [r#""k1" = "v""#, r#""k3" = "v""#]);
    Ok(())
}

#[test]
fn under_the_metashrew_engine_a_trap_stops_the_run_where_a_metashrew_node_would_retry_for_ever() -> TestResult {
    let dir = tempfile::tempdir()?;
    // `unreachable` alone, and after abort() as AssemblyScript compiles a failed assertion: the
    // trap decides.
    for (name, at_2) in [("trap", "unreachable".to_string()), ("abort-then-trap", format!("{ABORT} unreachable"))] {
        let wasm = wat_guest(dir.path(), name, &guest_doing_at_height_2(&at_2));
        let run = run_engine("metashrew", &wasm, dir.path(), 3);
        assert_eq!(run.code(), Some(1), "{name}: {}", run.stderr());
        let node = "a metashrew node would retry this block for ever: it never moves past height 2";
        assert_eq!(
            run.result().outcome,
            RunOutcome::Trapped { height: 2, message: "wasm trap: wasm `unreachable` instruction executed".into(), node: Some(node.into()) },
            "{name}"
        );
        assert_eq!(run.result().blocks.len(), 2, "{name}: block 3 never runs");
        assert_eq!(run.result().dump, [r#""k1" = "v""#], "{name}");
        assert!(run.stdout().contains(&format!("(nothing of that block committed; {node}; stored:")), "{name}: {}", run.stdout());
        std::fs::remove_dir_all(dir.path().join("db-metashrew-3"))?;
    }
    Ok(())
}

/// Stores `nan` = the bits of 0.0 / 0.0, computed at run time (the zeros are loaded from memory).
const NAN_GUEST: &str = r#"(module
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\0b\00\00\00\0a\03nan\0a\04")
  (func (export "_start")
    (f32.store (i32.const 27) (f32.div (f32.load (i32.const 64)) (f32.load (i32.const 64))))
    (call $flush (i32.const 20))))"#;

/// The dump line of `nan` = `bits` (stored little-endian).
fn nan_line(bits: u32) -> String {
    let escaped: String = bits.to_le_bytes().iter().map(|b| format!("\\x{b:02x}")).collect();
    format!(r#""nan" = "{escaped}""#)
}

#[test]
fn our_engine_stores_the_canonical_nan_and_metashrew_s_stores_the_cpu_s() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wasm = wat_guest(dir.path(), "nan", NAN_GUEST);
    let ours = run_engine("memrepro", &wasm, dir.path(), 1);
    assert_eq!(ours.code(), Some(0), "{}", ours.stderr());
    assert_eq!(ours.result().dump, [nan_line(0x7fc0_0000)], "canonical NaN on {}", std::env::consts::ARCH);
    let theirs = run_engine("metashrew", &wasm, dir.path(), 1);
    assert_eq!(theirs.code(), Some(0), "{}", theirs.stderr());
    if cfg!(target_arch = "x86_64") {
        // SSE's "default NaN" has the sign bit set; nothing canonicalizes it under Config::default().
        assert_eq!(theirs.result().dump, [nan_line(0xffc0_0000)], "x86_64's NaN");
        assert_ne!(ours.result().state_root, theirs.result().state_root);
    }
    Ok(())
}

#[test]
fn the_result_names_the_engine_and_ours_is_the_default() -> TestResult {
    let dir = tempfile::tempdir()?;
    let run = run_block(guest_wasm(), &dir.path().join("db"), 1, b"x");
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.result().policy.engine, EngineKind::Memrepro);
    let json: serde_json::Value = serde_json::from_str(&run.result().to_json())?;
    assert_eq!(json["policy"]["engine"], "memrepro");

    // Through the watcher too, as the pipeline runs it.
    let (db, out, report) = (dir.path().join("watched"), dir.path().join("watched.json"), dir.path().join("watch.json"));
    let output = runner()
        .arg("watch")
        .arg("--report")
        .arg(&report)
        .args(["--", "run", "--engine", "metashrew", "--height", "1", "--payload", "78", "--wasm"])
        .arg(guest_wasm())
        .arg("--db")
        .arg(&db)
        .arg("--out")
        .arg(&out)
        .output()?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result = schema::RunResult::from_json(&std::fs::read_to_string(&out)?)?;
    assert_eq!(result.policy.engine, EngineKind::Metashrew);
    assert_eq!(result.dump, [r#""/blocks/1" = "x""#]);
    Ok(())
}

#[test]
fn the_metashrew_engine_refuses_other_policies_and_settings_before_anything_runs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cases: [(&[&str], &str); 4] = [
        (&["--policy", "deterministic", "--memory-budget", "192MiB"], "--engine metashrew runs only under --policy unbounded (metashrew's engine has no memory budget and no fuel), not --policy deterministic"),
        (&["--policy", "headroom"], "not --policy headroom"),
        (&["--small-memories"], "--small-memories would change it"),
        (&["--native-stack", "65536"], "--native-stack would change it"),
    ];
    for (flags, expected) in cases {
        let db = dir.path().join("db");
        let out = dir.path().join("out.json");
        let output = runner()
            .args(["run", "--engine", "metashrew", "--height", "1", "--wasm"])
            .arg(guest_wasm())
            .arg("--db")
            .arg(&db)
            .arg("--out")
            .arg(&out)
            .args(flags)
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(!db.exists() && !out.exists(), "{flags:?}: nothing written");
    }
    Ok(())
}
