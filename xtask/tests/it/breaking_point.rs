//! `cargo xtask sweep` and `cargo xtask bisect` under the deterministic policy, where the guest's
//! arithmetic and the preflight formula predict the answer exactly.

use crate::support::*;

const MIB: u64 = 1 << 20;

#[test]
fn a_deterministic_sweep_breaks_exactly_where_the_budget_runs_out() {
    // 192 MiB budget, 10 MiB allocations kept (digests stored): 1.06 MiB of initial memory plus
    // 10 MiB + one 64 KiB page per allocation, so 18 fit and the 19th (index 18) is refused.
    let out = tempfile::tempdir().unwrap();
    let steps = ["10x10:digest", "10x18:digest", "10x19:digest", "10x30:digest"];
    let mut args = vec!["sweep", "--limit", "512m", "--policy", "deterministic", "--memory-budget", "192m"];
    for step in &steps {
        args.extend(["--step", step]);
    }
    let output = xtask(&args, out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let dir = run_dir(out.path());
    let sweep = read_json(&dir.join("sweep.json"));
    assert_eq!(sweep["breaking_point"], "10x19:digest");
    let ran = sweep["steps"].as_array().unwrap();
    assert_eq!(ran.len(), 3, "the sweep stops at the first failure");
    assert_eq!(ran[1]["run"]["stored_result"], "SUCCESS:180MB");
    assert_eq!(ran[2]["run"]["stored_result"], "ERROR:Failed at allocation 18 of 19: Failed to reserve 10MB");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("BREAKING POINT under 512m: 10x19:digest (190 MB) completed, stored ERROR:Failed at allocation 18 of 19"), "{stdout}");
    assert!(std::fs::read_to_string(dir.join("sweep.svg")).unwrap().contains("10x19:digest"));
}

#[test]
fn a_deterministic_bisect_finds_the_budget_plus_the_runner_overhead() {
    // 64 MiB budget: the preflight needs 2 x 64 + 64 = 192 MiB; below it the run is refused.
    let out = tempfile::tempdir().unwrap();
    let args = ["bisect", "--between", "128m", "512m", "--resolution", "16m", "--policy", "deterministic", "--memory-budget", "64m", "--payload", "1x1"];
    let output = xtask(&args, out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let bisect = read_json(&run_dir(out.path()).join("bisect.json"));
    let threshold = bisect["threshold_bytes"].as_u64().unwrap();
    assert!((192 * MIB..=(192 + 16) * MIB).contains(&threshold), "threshold {threshold}");
    assert_eq!(bisect["contradictions"], Value::Array(vec![]));
    for probe in bisect["probes"].as_array().unwrap() {
        let below = probe["limit_bytes"].as_u64().unwrap() < 192 * MIB;
        let expected = if below { "refused" } else { "completed" };
        assert_eq!(probe["run"]["outcome"], expected, "{probe}");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("THRESHOLD: "), "{stdout}");
}

#[test]
fn bisect_bounds_must_be_ordered() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["bisect", "--between", "4g", "256m"], out.path());
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the lower bound must be below the upper bound"));
}
