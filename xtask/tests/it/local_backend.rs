//! The local backend: the runner as a child process under a cgroup this tool creates, a systemd
//! scope, or RLIMIT_AS, whichever this machine gives the tests (see `xtask/src/local.rs`).

use std::process::{Command, Stdio};

use crate::support::*;

/// Whether this test process can make a memory cgroup, as the local backend will try to.
fn cgroups_writable() -> bool {
    let name = format!("memrepro-it-probe-{}", std::process::id());
    cgroup::CreatedCgroup::create(std::path::Path::new(cgroup::ROOT), &name, 64 << 20).is_ok()
}

/// Whether `systemd-run` started by `prefix` starts a plain scope here.
fn a_plain_scope_starts(prefix: &[&str]) -> bool {
    Command::new(prefix[0])
        .args(&prefix[1..])
        .args(["--scope", "--quiet", "--collect", "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The mechanism the local backend must take here, found without it: the start of its
/// description (after `local process under `).
fn expected_mechanism() -> &'static str {
    if cgroups_writable() {
        "a memory cgroup"
    } else if a_plain_scope_starts(&["systemd-run", "--user"]) {
        "a systemd user scope"
    } else if a_plain_scope_starts(&["sudo", "-n", "systemd-run"]) {
        "a systemd system scope"
    } else {
        "RLIMIT_AS"
    }
}

/// The seed experiment on the local backend, by the mechanism this machine gives the tests.
#[test]
fn the_local_backend_runs_the_seed_experiment_under_the_mechanism_it_can_use() {
    let _gibs = memory_hungry();
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["--backend", "local", "repro"], out.path());
    let report = report(out.path());
    let backend = report["backend"].as_str().unwrap();
    let expected = expected_mechanism();
    assert!(backend.starts_with(&format!("local process under {expected}")), "{expected}: {backend}");
    if expected != "RLIMIT_AS" {
        // A memory cgroup per run, of our own (root here) or a systemd scope (GitHub's runners):
        // 512m is OOM-killed, as in a container, and the evidence comes from the run's cgroup.
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert_eq!(report["profiles"][0]["outcome"], "oom_killed");
        let evidence = report["profiles"][0]["evidence"].as_str().unwrap();
        assert!(evidence.starts_with("SIGKILL; the run's memory cgroup (v") && evidence.contains(", oom_kill +1, and its peak reached its 512 MiB limit"), "{evidence}");
        assert_eq!(report["profiles"][1]["stored_result"], "SUCCESS:1000MB");
    } else {
        // RLIMIT_AS (an unprivileged user without a cgroup or a systemd scope) limits address
        // space: wasmtime's 4 GiB reservation plus its guard fits neither limit, so both fail at
        // instantiation (with one malloc arena, RocksDB's threads start even in 512 MiB). A limit
        // of the host on both sides proves nothing about the guest: not compared.
        assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
        for profile in report["profiles"].as_array().unwrap() {
            assert_eq!(profile["outcome"], "host_limit", "{profile}");
            assert!(profile["message"].as_str().unwrap().contains("mmap failed to reserve"), "{profile}");
        }
    }
}

/// A forced mechanism is used, or the run stops before anything is built with one line saying
/// why; here (no systemd) the user scope is not available.
#[test]
fn forcing_a_systemd_user_scope_uses_it_or_fails_with_one_line_saying_why() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask_command()
        .args(["--backend", "local", "repro", "--policy", "deterministic", "--limit", "1g", "--limit", "2g", "--payload", "1x1", "--out-dir"])
        .arg(out.path())
        .env("MEMREPRO_LOCAL_LIMIT", "systemd-user")
        .output()
        .unwrap();
    if a_plain_scope_starts(&["systemd-run", "--user"]) {
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        assert!(report(out.path())["backend"].as_str().unwrap().starts_with("local process under a systemd user scope"));
    } else {
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("");
        assert!(last.starts_with("error: repro: MEMREPRO_LOCAL_LIMIT=systemd-user: a systemd user scope cannot be used here: `systemd-run"), "{}", describe(&output));
        assert!(!stderr.contains("==> [1/"), "refused before anything is built: {stderr}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "no run directory");
    }
}

/// `doctor` names the mechanism the local backend would use, and a forced one it cannot.
#[test]
fn doctor_names_the_local_limit() {
    let output = xtask_command().arg("doctor").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = format!("ok       local limit     {}", expected_mechanism());
    assert!(stdout.contains(&line), "`{line}` missing from:\n{stdout}");

    let output = xtask_command().arg("doctor").env("MEMREPRO_LOCAL_LIMIT", "address-spaces").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("MISSING  local limit     MEMREPRO_LOCAL_LIMIT=address-spaces: `address-spaces` is no mechanism (one of cgroup, systemd-user, systemd-sudo, address-space)\n         fix: unset MEMREPRO_LOCAL_LIMIT"), "{stdout}");
}

#[test]
fn without_a_docker_daemon_the_local_backend_is_chosen_with_a_note() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask_command()
        .args(["repro", "--policy", "deterministic", "--limit", "1g", "--limit", "2g", "--payload", "10x5", "--out-dir"])
        .arg(out.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("note: no Docker daemon answers, so the runner runs locally (--backend local)"));
    let report = report(out.path());
    assert_eq!(report["verdict"], "identical");
    assert_eq!(report["profiles"][1]["stored_result"], "SUCCESS:50MB");
}

#[test]
fn under_rlimit_as_default_reservations_fail_instantiation() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask_command()
        .args(["--backend", "local", "repro", "--limit", "1g", "--limit", "16g", "--payload", "10x2", "--out-dir"])
        .arg(out.path())
        .env("MEMREPRO_LOCAL_LIMIT", "address-space")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report = report(out.path());
    assert!(report["backend"].as_str().unwrap().contains("RLIMIT_AS"), "{}", report["backend"]);
    // A limit of the host, not the guest's trap: beside a run that completed it is a difference
    // (that node cannot index the block), never a deterministic ending.
    let tight = &report["profiles"][0];
    assert_eq!(tight["outcome"], "host_limit", "{tight}");
    let message = tight["message"].as_str().unwrap();
    assert!(message.starts_with("the host could not map the instance's memory (RLIMIT_AS 1024 MiB): ") && message.contains("mmap failed to reserve"), "{tight}");
    assert_eq!(report["profiles"][1]["outcome"], "completed");
    assert!(report["verdict_reason"].as_str().unwrap().contains("host limit at height 1"), "{}", report["verdict_reason"]);
}
