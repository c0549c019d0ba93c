//! `repro --engine metashrew` through Docker: the report says which engine each profile ran, and
//! what metashrew's engine made of a block that called abort().

use crate::support::*;

/// Stores `k{height}` = `v`; at height 2 it calls abort() and returns.
const ABORT_AT_2: &str = r#"
(module
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\07\00\00\00\0a\02k?\0a\01v")
  (func (export "_start")
    (call $load_input (i32.const 1024))
    (i32.store8 (i32.const 23) (i32.add (i32.load8_u (i32.const 1024)) (i32.const 0x30)))
    (call $flush (i32.const 20))
    (if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 2))
      (then (call $abort (i32.const 0) (i32.const 0) (i32.const 12) (i32.const 34))))))
"#;

#[test]
fn the_report_names_the_metashrew_engine_and_its_aborted_block() {
    let dir = tempfile::tempdir().unwrap();
    let (wasm, blocks) = (dir.path().join("abort.wat"), dir.path().join("blocks.txt"));
    std::fs::write(&wasm, ABORT_AT_2).unwrap();
    std::fs::write(&blocks, "1\n2\n3\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let args = ["repro", "--engine", "metashrew", "--wasm", wasm.to_str().unwrap(), "--blocks", blocks.to_str().unwrap(), "--limit", "256m", "--limit", "1g"];
    let output = xtask(&args, out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = report(out.path());
    assert_eq!(report["verdict"], "identical");
    for profile in report["profiles"].as_array().unwrap() {
        assert_eq!((&profile["engine"], &profile["outcome"]), (&Value::from("metashrew"), &Value::from("completed")), "{profile}");
        let dir = run_dir(out.path()).join(profile["dir"].as_str().unwrap());
        let result = read_json(&dir.join("result.json"));
        assert_eq!(result["policy"]["engine"], "metashrew");
        assert_eq!((&result["totals"]["run"], &result["totals"]["aborted"]), (&Value::from(3), &Value::from(1)));
        // Each block's report, a line each in the profile's blocks.jsonl.
        let reports = std::fs::read_to_string(dir.join("blocks.jsonl")).unwrap();
        let second: Value = serde_json::from_str(reports.lines().nth(1).unwrap()).unwrap();
        assert_eq!((&second["height"], &second["outcome"]["status"]), (&Value::from(2), &Value::from("aborted")));
    }
    let dump = run_dir(out.path()).join(report["profiles"][0]["dump"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(dump).unwrap(), "\"k1\" = \"v\"\n\"k3\" = \"v\"\n", "block 2 wrote nothing, block 3 was indexed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("profile  limit  engine     outcome"), "{stdout}");
    assert!(stdout.contains("256m     256m   metashrew  completed"), "{stdout}");
    assert!(
        stdout.contains("  1g: block 2 aborted (metashrew engine: done, nothing written): the guest called abort() at line 12, column 34"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("profile `256m`: 256m (policy unbounded, engine metashrew)"), "{stderr}");
    let summary = std::fs::read_to_string(run_dir(out.path()).join("summary.md")).unwrap();
    assert!(summary.contains("| profile | limit | engine | outcome |") && summary.contains("| 1g | 1g | metashrew | completed |"), "{summary}");
}

#[test]
fn the_metashrew_engine_under_another_policy_is_one_clear_line_and_exit_2_with_nothing_written() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["repro", "--engine", "metashrew", "--policy", "deterministic"], out.path());
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("profile `low`: engine = \"metashrew\" runs only under policy = \"unbounded\" (metashrew's engine has no memory budget and no fuel), not \"deterministic\""),
        "{stderr}"
    );
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "one error line: {stderr}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "nothing written");
}
