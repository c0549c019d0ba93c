//! The verdict model against real Docker runs: each case the issue found wrong, as a user would
//! meet it. Exit codes: 0 identical, 1 different, 2 harness error, 3 not compared.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_single_run_is_not_compared_exit_3() {
    for args in [&["repro", "--profile", "high", "--payload", "1x3"][..], &["repro", "--limit", "4g", "--payload", "1x3"][..]] {
        let out = tempfile::tempdir().unwrap();
        let output = xtask(args, out.path());
        assert_eq!(output.status.code(), Some(3), "{args:?}: {}", describe(&output));
        let report = report(out.path());
        assert_eq!(report["verdict"], "not_compared");
        assert_eq!(report["comparisons"], Value::Array(vec![]));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("VERDICT: NOT COMPARED — only `"), "{stdout}");
        assert!(stdout.contains("ran (completed): add a profile (`--limit`) to compare"), "{stdout}");
    }
}

/// Traps at height 2 (`unreachable`); other blocks store `k` = the height's low byte.
const TRAP_AT_2: &str = r#"
(module
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\06\00\00\00\0a\01k\0a\01v")
  (func (export "_start")
    (call $load_input (i32.const 1024))
    (if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 2)) (then unreachable))
    (i32.store8 (i32.const 25) (i32.load8_u (i32.const 1024)))
    (call $flush (i32.const 20))))
"#;

#[test]
fn the_same_trap_in_two_profiles_is_identical_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let (wasm, blocks) = (dir.path().join("trap.wat"), dir.path().join("blocks.txt"));
    std::fs::write(&wasm, TRAP_AT_2).unwrap();
    std::fs::write(&blocks, "1\n2\n3\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let args = ["repro", "--wasm", wasm.to_str().unwrap(), "--blocks", blocks.to_str().unwrap(), "--limit", "256m", "--limit", "1g"];
    let output = xtask(&args, out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = report(out.path());
    assert_eq!(report["verdict"], "identical");
    for profile in report["profiles"].as_array().unwrap() {
        assert_eq!((&profile["outcome"], &profile["height"]), (&Value::from("trapped"), &Value::from(2)), "{profile}");
        assert_eq!(profile["message"], "wasm trap: wasm `unreachable` instruction executed", "{profile}");
    }
    assert_eq!(report["comparisons"][0]["same_ending"], true);
    assert_eq!(report["comparisons"][0]["same_root"], true);
    // Block 1 stands in both.
    let dump = run_dir(out.path()).join(report["profiles"][1]["dump"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(dump).unwrap(), "\"k\" = \"\\x01\"\n");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("VERDICT: identical — 2 runs compared (`256m`, `1g`): all trapped at height 2: wasm trap: wasm `unreachable` instruction executed, byte-identical dumps and equal state roots"),
        "{stdout}"
    );
}

#[test]
fn every_profile_oom_killed_is_not_compared_exit_3() {
    // 50 MB x 20 needs 2 GiB of guest memory: killed under both limits.
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["repro", "--limit", "256m", "--limit", "384m"], out.path());
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let report = report(out.path());
    assert_eq!(report["verdict"], "not_compared");
    for profile in report["profiles"].as_array().unwrap() {
        assert_eq!(profile["outcome"], "oom_killed", "{profile}");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("VERDICT: NOT COMPARED — every run ended by a host event (`256m` oom-killed, `384m` oom-killed)"), "{stdout}");
    assert!(stdout.contains("raise the limits or lower the payload"), "{stdout}");
}

#[test]
fn a_refused_profile_beside_one_that_ran_is_not_compared_exit_3() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["repro", "--policy", "deterministic", "--limit", "256m", "--limit", "512m", "--payload", "10x5"], out.path());
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let report = report(out.path());
    let refused = &report["profiles"][0];
    assert_eq!(refused["outcome"], "refused", "{refused}");
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("needs 448 MiB (2 x the 192 MiB budget + 64 MiB runner overhead + "), "{refused}");
    assert!(reason.contains(" MiB of compiled guest) but this host can back 256 MiB (the cgroup memory limit)"), "{refused}");
    assert_eq!(refused["dump"], Value::Null, "a refused run committed nothing");
    assert_eq!(report["profiles"][1]["stored_result"], "SUCCESS:50MB");
    assert_eq!(report["comparisons"], Value::Array(vec![]), "a refused profile is not compared");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("256m     256m   refused"), "{stdout}");
    assert!(stdout.contains("(safe: this node would not start)"), "{stdout}");
    assert!(stdout.contains("VERDICT: NOT COMPARED — only `512m` ran (completed); `256m` was refused by the deterministic preflight"), "{stdout}");
}

/// Runs forever: only a kill ends it.
const LOOP_FOREVER: &str = r#"(module (memory (export "memory") 1) (func (export "_start") (loop $forever (br $forever))))"#;

/// `docker kill` from outside, as an operator (or another tool) would: the container's init (the
/// watcher) and the run die together, so no report says why.
#[test]
fn a_container_killed_from_outside_is_killed_not_oom_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (wasm, blocks) = (dir.path().join("loop.wat"), dir.path().join("blocks.txt"));
    std::fs::write(&wasm, LOOP_FOREVER).unwrap();
    std::fs::write(&blocks, "1\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut child = xtask_command()
        .args(["repro", "--wasm", wasm.to_str().unwrap(), "--blocks", blocks.to_str().unwrap(), "--limit", "256m", "--limit", "512m", "--out-dir"])
        .arg(out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The run containers are `memrepro-<xtask pid>-<n>-<profile>`; the read-back ones end in -state.
    let prefix = format!("memrepro-{}-", child.id());
    let (mut seen, mut killed) = (HashSet::new(), HashSet::new());
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(300), "repro did not finish");
        let format = "{{.Names}}";
        let names = Command::new("docker").args(["ps", "--filter", &format!("name={prefix}"), "--format", format]).output().unwrap();
        for name in String::from_utf8_lossy(&names.stdout).lines().filter(|n| !n.ends_with("-state")) {
            // Killed on the second sighting, so the watcher has started.
            if !seen.insert(name.to_string()) && killed.insert(name.to_string()) {
                let kill = Command::new("docker").args(["kill", name]).output().unwrap();
                assert!(kill.status.success(), "docker kill {name}: {}", String::from_utf8_lossy(&kill.stderr));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(killed.len(), 2, "{killed:?}: {}", describe(&output));
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let report = report(out.path());
    for profile in report["profiles"].as_array().unwrap() {
        assert_eq!(profile["outcome"], "killed", "{profile}");
        let reason = profile["reason"].as_str().unwrap();
        assert_eq!(
            reason,
            "signal 9 (exit 137, Docker State.OOMKilled=false) and no watcher report: the run's cgroup counters were never read, so the cause is unknown"
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("VERDICT: NOT COMPARED — every run ended by a host event (`256m` killed, `512m` killed)"), "{stdout}");
}
