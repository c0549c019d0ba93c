//! The local backend: the runner as a child process under a cgroup this tool creates (or RLIMIT_AS).

use crate::support::*;

/// Whether this test process can make a memory cgroup, as the local backend will try to.
fn cgroups_writable() -> bool {
    let name = format!("memrepro-it-probe-{}", std::process::id());
    cgroup::CreatedCgroup::create(std::path::Path::new(cgroup::ROOT), &name, 64 << 20).is_ok()
}

/// The seed experiment on the local backend, by the mechanism this machine gives the tests.
#[test]
fn the_local_backend_runs_the_seed_experiment_under_the_mechanism_it_can_use() {
    let _gibs = memory_hungry();
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["--backend", "local", "repro"], out.path());
    let report = report(out.path());
    let backend = report["backend"].as_str().unwrap();
    if cgroups_writable() {
        // A memory cgroup per run (root here): 512m is OOM-killed, as in a container.
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert!(backend.starts_with("local process under a memory cgroup"), "{backend}");
        assert_eq!(report["profiles"][0]["outcome"], "oom_killed");
        let evidence = report["profiles"][0]["evidence"].as_str().unwrap();
        assert!(evidence.starts_with("SIGKILL; the run's memory cgroup (v") && evidence.contains(", oom_kill +1, and its peak reached its 512 MiB limit"), "{evidence}");
        assert_eq!(report["profiles"][1]["stored_result"], "SUCCESS:1000MB");
    } else {
        // RLIMIT_AS (an unprivileged user without a delegated cgroup) limits address space:
        // wasmtime's 4 GiB reservation plus its guard fits neither limit, so both fail the same
        // way at instantiation (with one malloc arena, RocksDB's threads start even in 512 MiB).
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        assert!(backend.contains("RLIMIT_AS"), "{backend}");
        for profile in report["profiles"].as_array().unwrap() {
            assert_eq!(profile["outcome"], "trapped", "{profile}");
            assert!(profile["message"].as_str().unwrap().contains("mmap failed to reserve"), "{profile}");
        }
    }
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
    let tight = &report["profiles"][0];
    assert_eq!(tight["outcome"], "trapped", "{tight}");
    assert!(tight["message"].as_str().unwrap().contains("mmap failed to reserve"), "{tight}");
    assert_eq!(report["profiles"][1]["outcome"], "completed");
}
