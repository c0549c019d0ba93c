//! The memory policies, outside containers (their Docker behaviour is tested by xtask).

use crate::support::*;

fn run_with(args: &[&str], payload: &[u8], db: &std::path::Path) -> Run {
    let out = db.with_extension("json");
    let output = runner()
        .args(["run", "--height", "1", "--payload", &hex_of(payload)])
        .arg("--wasm")
        .arg(guest_wasm())
        .arg("--db")
        .arg(db)
        .arg("--out")
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    let result = std::fs::read_to_string(&out).ok().map(|t| schema::RunResult::from_json(&t).unwrap());
    Run { output, result }
}

#[test]
fn the_deterministic_budget_fails_the_same_allocation_and_stays_within_what_preflight_demands() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut roots = Vec::new();
    for name in ["a", "b"] {
        let run = run_with(&["--policy", "deterministic", "--memory-budget", "192MiB"], &stress_payload(50, 20, &[]), &dir.path().join(name));
        assert_eq!(run.code(), Some(0), "{}", run.stderr());
        let result = run.result();
        assert_eq!(result.stress_result.as_deref(), Some("ERROR:Failed at allocation 3 of 20: Failed to reserve 50MB"));
        assert_eq!(result.blocks[0].refused_growths, 1);
        assert!(result.memory.wasm_memory_bytes <= 192 << 20);
        let required = result.policy.required_bytes.unwrap();
        assert!(result.policy.compiled_guest_bytes > 0);
        assert_eq!(required, ((2 * 192 + 64) << 20) + result.policy.compiled_guest_bytes);
        let peak = result.memory.peak_rss_bytes.unwrap();
        assert!(peak < required, "peak RSS {peak} over the {required} the preflight demanded");
        roots.push(result.state_root.clone());
    }
    assert_eq!(roots[0], roots[1]);
    Ok(())
}

#[test]
fn flushes_over_the_budget_trap_on_the_host_side_too() -> TestResult {
    let dir = tempfile::tempdir()?;
    // 1 MiB allocations stored in full and released, so each is flushed at once: the guest's
    // memory stays small, while the host accumulates every flush of the block until it commits.
    let run = run_with(&["--policy", "deterministic", "--memory-budget", "8MiB"], &stress_payload(1, 3, &[0, 1]), &dir.path().join("db"));
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.result().stress_result.as_deref(), Some("SUCCESS:3MB"));
    // 9 x 1 MiB flushed in one block would exceed the 8 MiB the host may hold.
    let run = run_with(&["--policy", "deterministic", "--memory-budget", "8MiB"], &stress_payload(1, 9, &[0, 1]), &dir.path().join("db2"));
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(run.trap().contains("__flush: this block's flushes would hold"), "{}", run.trap());
    assert!(run.trap().contains("over the 8388608 byte memory budget"), "{}", run.trap());
    Ok(())
}

#[test]
fn a_budget_this_host_cannot_back_is_refused_with_exit_3_and_nothing_written() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    let run = run_with(&["--policy", "deterministic", "--memory-budget", "100000g"], &stress_payload(1, 1, &[]), &db);
    assert_eq!(run.code(), Some(3), "{}", run.stderr());
    // The compiled guest's size depends on the compiler; the rest of the requirement does not.
    let stderr = run.stderr();
    assert!(stderr.contains("refused: the deterministic policy needs 204800064 MiB (2 x the 102400000 MiB budget + 64 MiB runner overhead + "), "{stderr}");
    assert!(stderr.contains(" MiB of compiled guest) but this host can back"), "{stderr}");
    assert!(!db.exists() && run.result.is_none(), "nothing written");
    Ok(())
}

#[test]
fn unbounded_and_headroom_complete_where_memory_is_plentiful() -> TestResult {
    let dir = tempfile::tempdir()?;
    for policy in ["unbounded", "headroom"] {
        let run = run_with(&["--policy", policy], &stress_payload(10, 3, &[]), &dir.path().join(policy));
        assert_eq!(run.code(), Some(0), "{}", run.stderr());
        assert_eq!(run.result().stress_result.as_deref(), Some("SUCCESS:30MB"));
        assert_eq!(run.result().policy.name, policy);
        assert_eq!(run.result().blocks[0].refused_growths, 0);
    }
    Ok(())
}

#[test]
fn policy_flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (&["--policy", "deterministic"][..], "needs --memory-budget"),
        (&["--policy", "headroom", "--memory-budget", "1g"][..], "only applies to --policy deterministic"),
        (&["--policy", "deterministic", "--memory-budget", "12x"][..], "bad size `12x`"),
        (&["--policy", "unbounded", "--fuel", "1000"][..], "--fuel only applies to --policy deterministic"),
        (&["--policy", "lenient"][..], "invalid value 'lenient'"),
        (&["--block-time-limit", "0"][..], "--block-time-limit must be a positive number of seconds"),
        (&["--block-time-limit", "1e300"][..], "--block-time-limit must be a positive number of seconds"),
    ] {
        let run = run_with(args, b"", &dir.path().join("db"));
        assert_eq!(run.code(), Some(2), "{args:?}");
        assert!(run.stderr().contains(expected), "{args:?}: {}", run.stderr());
    }
}

#[test]
fn an_address_space_limit_fails_instantiation_with_default_reservations_and_growth_with_small_memories() -> TestResult {
    let dir = tempfile::tempdir()?;
    let payload = stress_payload(50, 20, &[]);
    // wasmtime's default reservation (4 GiB + guard) does not fit 3 GiB of address space: a limit
    // of the host, reported as one (never as the guest's trap).
    let reserved = run_with(&["--address-space-limit", "3g"], &payload, &dir.path().join("a"));
    assert_eq!(reserved.code(), Some(1), "{}", reserved.stderr());
    let schema::RunOutcome::HostLimit { height, message } = &reserved.result().outcome else { panic!("{:?}", reserved.result().outcome) };
    assert_eq!(*height, 1);
    assert!(message.starts_with("the host could not map the instance's memory (RLIMIT_AS 3072 MiB): ") && message.contains("mmap failed to reserve"), "{message}");
    assert!(reserved.stdout().contains("RESULT: host limit at height 1: "), "{}", reserved.stdout());
    assert!(reserved.result().dump.is_empty());
    // Small movable memories: instantiation succeeds and growth past the address space left
    // returns -1 inside the guest, at a point that depends on the host's own use of address
    // space: the guest stores an ERROR when its `try_reserve` meets it, and traps (its
    // allocator's abort) when an infallible allocation does. Never SUCCESS.
    let small = run_with(&["--address-space-limit", "2g", "--small-memories"], &payload, &dir.path().join("b"));
    assert_eq!(small.result().policy.memory_layout, "small-movable");
    match small.code() {
        Some(0) => assert!(small.result().stress_result.as_deref().unwrap().starts_with("ERROR:Failed at allocation "), "{:?}", small.result().stress_result),
        Some(1) => assert_eq!(small.trap(), "wasm trap: wasm `unreachable` instruction executed"),
        other => panic!("exit {other:?}: {}", small.stderr()),
    }
    assert!(small.result().blocks[0].wasm_memory_bytes > 64 << 10, "it grew before it failed");
    // The deterministic budget is reached first: the same result as without the limit.
    let budget = run_with(&["--address-space-limit", "3g", "--policy", "deterministic", "--memory-budget", "192MiB"], &payload, &dir.path().join("c"));
    assert_eq!(budget.code(), Some(0), "{}", budget.stderr());
    assert_eq!(budget.result().stress_result.as_deref(), Some("ERROR:Failed at allocation 3 of 20: Failed to reserve 50MB"));
    assert_eq!(budget.result().policy.address_space_limit_bytes, Some(3 << 30));
    Ok(())
}
