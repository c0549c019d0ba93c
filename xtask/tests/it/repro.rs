//! `cargo xtask repro` end to end.

use crate::support::*;

#[test]
fn the_seed_experiment_512m_is_oom_killed_and_never_reported_as_a_pass() {
    let _gibs = memory_hungry();
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["repro"], out.path());
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report = report(out.path());
    assert_eq!(report["verdict"], "different");
    let low = &report["profiles"][0];
    assert_eq!((low["name"].as_str(), low["limit"].as_str()), (Some("low"), Some("512m")));
    assert_eq!(low["outcome"], "oom_killed", "{low}");
    let evidence = low["evidence"].as_str().unwrap();
    assert!(evidence.starts_with("SIGKILL; the run's memory cgroup (v") && evidence.contains(", oom_kill +1, and its peak reached its 512 MiB limit"), "{low}");
    let high = &report["profiles"][1];
    assert_eq!(high["outcome"], "completed", "{high}");
    assert_eq!(high["stored_result"], "SUCCESS:1000MB");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("low      512m   oom-killed"), "{stdout}");
    assert!(stdout.contains("--- low (512m)\n+++ high (4g)\n"), "{stdout}");
    assert!(stdout.contains("+\"/memory-stress-result/1\" = \"SUCCESS:1000MB\""), "{stdout}");
    assert!(stdout.contains("VERDICT: DIFFERENT — `low` oom-killed but `high` completed"), "{stdout}");
}

#[test]
fn two_generous_limits_with_a_small_payload_are_identical() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["repro", "--limit", "1g", "--limit", "2g", "--payload", "10x5"], out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = report(out.path());
    assert_eq!(report["verdict"], "identical");
    let profiles = report["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 2);
    for profile in profiles {
        assert_eq!(profile["outcome"], "completed", "{profile}");
        assert_eq!(profile["stored_result"], "SUCCESS:50MB");
        assert_eq!(profile["state_root"], profiles[0]["state_root"]);
    }
    assert_eq!(report["comparisons"][0]["diff"], "");
    let run_dir = std::fs::read_dir(out.path()).unwrap().next().unwrap().unwrap().path();
    for file in ["summary.md", "1g/result.json", "1g/watch.json", "2g/run.log", "input/guest.wasm"] {
        assert!(run_dir.join(file).exists(), "{file} missing");
    }
    // The limit each container really had, read back from its own cgroup.
    let watch: Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("2g/watch.json")).unwrap()).unwrap();
    assert_eq!(watch["memory_at_start"]["cgroup_limit_bytes"], 2u64 << 30);
    // Swap read back inside the run, by the mechanism this host has.
    let swap = &watch["memory_at_start"]["swap"];
    let cgroups = std::path::Path::new("/sys/fs/cgroup");
    let (mechanism, expected) = if cgroups.join("cgroup.controllers").exists() {
        ("cgroup v2", "memory.swap.max = 0")
    } else if cgroups.join("memory/memory.memsw.limit_in_bytes").exists() {
        ("cgroup v1 with swap accounting", "memory.memsw.limit_in_bytes = memory.limit_in_bytes")
    } else {
        ("cgroup v1 without swap accounting", "the host has no swap (SwapTotal 0)")
    };
    assert_eq!(swap["state"], "off", "{mechanism}: {swap}");
    assert!(swap["because"].as_str().unwrap().contains(expected), "{mechanism}: {swap}");
    // The hardening, as the runner saw it from inside the container.
    let sandbox = &watch["sandbox"];
    assert_ne!(sandbox["uid"], 0, "{sandbox}");
    assert_eq!(sandbox["capabilities"], "0000000000000000", "{sandbox}");
    assert_eq!(sandbox["network_interfaces"], serde_json::json!(["lo"]), "{sandbox}");
    assert_eq!(sandbox["root_read_only"], true, "{sandbox}");
    assert_eq!(sandbox["pids_limit"], 64, "{sandbox}");
}

#[test]
fn a_multi_block_run_with_another_guest_reports_the_first_diverging_height() {
    let _gibs = memory_hungry();
    // A guest whose state depends on memory: it stores memory.grow's answer for 40000 pages
    // (2.5 GiB, touched) — the 1g container is killed at block 2, 3g completes.
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("grower.wat");
    std::fs::write(&wasm, r#"
(module
  (import "env" "__flush" (func $flush (param i32)))
  (import "env" "__load_input" (func $load_input (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\06\00\00\00\0a\01k\0a\01v")
  (func (export "_start") (local $p i32)
    (call $load_input (i32.const 1024))
    ;; payload byte 0 = 1: grow 2.5 GiB and touch every page
    (if (i32.eq (i32.load8_u (i32.const 1028)) (i32.const 1))
      (then
        (drop (memory.grow (i32.const 40000)))
        (local.set $p (i32.const 65536))
        (loop $touch
          (i32.store8 (local.get $p) (i32.const 1))
          (local.set $p (i32.add (local.get $p) (i32.const 4096)))
          (br_if $touch (i32.lt_u (local.get $p) (i32.const 0x9c400000))))))
    ;; key = "k", value = the height's low byte
    (i32.store8 (i32.const 25) (i32.load8_u (i32.const 1024)))
    (call $flush (i32.const 20))))
"#).unwrap();
    let blocks = dir.path().join("blocks.txt");
    std::fs::write(&blocks, "1 00\n2 01\n3 00\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = xtask(
        &["repro", "--wasm", wasm.to_str().unwrap(), "--blocks", blocks.to_str().unwrap(), "--limit", "3g", "--limit", "1g"],
        out.path(),
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report = report(out.path());
    assert_eq!(report["profiles"][0]["outcome"], "completed");
    assert_eq!(report["profiles"][1]["outcome"], "oom_killed");
    // The killed run's database holds block 1, read back in a fresh container.
    let dump = run_dir(out.path()).join(report["profiles"][1]["dump"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(dump).unwrap(), "\"k\" = \"\\x01\"\n");
    assert_eq!(report["comparisons"][0]["divergence"]["key"], "\"k\"");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("first diverging key: \"k\""), "{stdout}");
}

#[test]
fn bad_input_is_one_clear_line_and_exit_2_with_nothing_written() {
    let out = tempfile::tempdir().unwrap();
    let a_directory = out.path().to_str().unwrap().to_string();
    let guest = std::env::var("GUEST_WASM").unwrap_or_else(|_| "/nonexistent.wasm".into());
    let inputs = tempfile::tempdir().unwrap();
    let one_block = inputs.path().join("blocks.txt");
    std::fs::write(&one_block, "1\n").unwrap();
    let one_block = one_block.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["repro", "--limit", "512x"], "bad size `512x`"),
        (&["repro", "--profile", "medium"], "unknown profile `medium` (configured: low, high)"),
        (&["repro", "--payload", "50"], "bad payload `50`"),
        (&["repro", "--limit", "1g", "--limit", "1024m"], "profile `1g` is defined twice"),
        (&["repro", "--wasm", "/nonexistent.wasm", "--blocks", "/nonexistent.txt"], "/nonexistent.txt: no such file or directory"),
        (&["repro", "--wasm", &guest, "--blocks", &a_directory], "a block directory holds blk*.dat files (Bitcoin Core) or HEIGHT.bin files"),
        (&["repro", "--wasm", "/nonexistent.wasm", "--blocks", one_block], "--wasm /nonexistent.wasm: no such file"),
    ];
    for (args, expected) in cases {
        let output = xtask(args, out.path());
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{args:?}: one error line: {stderr}");
    }
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn a_missing_docker_daemon_is_exit_2_with_the_fix() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask_command()
        .args(["--backend", "docker", "repro", "--out-dir"])
        .arg(out.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the Docker daemon does not answer: start it"), "{stderr}");
}

#[test]
fn headroom_reproduces_the_silent_divergence_both_complete_with_different_state() {
    let _gibs = memory_hungry();
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["repro", "--policy", "headroom"], out.path());
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report = report(out.path());
    let (low, high) = (&report["profiles"][0], &report["profiles"][1]);
    assert_eq!((&low["outcome"], &high["outcome"]), (&Value::from("completed"), &Value::from("completed")));
    let stored = low["stored_result"].as_str().unwrap();
    assert!(stored.starts_with("ERROR:Failed at allocation ") && stored.ends_with(" of 20: Failed to reserve 50MB"), "{stored}");
    assert_eq!(high["stored_result"], "SUCCESS:1000MB");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("-\"/memory-stress-result/1\" = \"{stored}\"")), "{stdout}");
}

#[test]
fn the_deterministic_policy_commits_identical_state_under_512m_and_4g() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["repro", "--policy", "deterministic"], out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = report(out.path());
    assert_eq!(report["verdict"], "identical");
    assert_eq!(report["memory_budget_bytes"], 192u64 << 20);
    for profile in report["profiles"].as_array().unwrap() {
        assert_eq!(profile["outcome"], "completed", "{profile}");
        assert_eq!(profile["stored_result"], "ERROR:Failed at allocation 3 of 20: Failed to reserve 50MB");
    }
    assert_eq!(report["profiles"][0]["state_root"], report["profiles"][1]["state_root"]);
}
