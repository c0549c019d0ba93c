//! `cargo xtask diff` on dump files and `cargo xtask bench` at small sizes, end to end.

use crate::support::*;

fn diff(dir: &std::path::Path, old: &str, new: &str) -> std::process::Output {
    std::fs::write(dir.join("old.txt"), old).unwrap();
    std::fs::write(dir.join("new.txt"), new).unwrap();
    xtask_command().arg("diff").arg(dir.join("old.txt")).arg(dir.join("new.txt")).output().unwrap()
}

#[test]
fn diff_prints_the_hunks_and_exits_1_only_when_the_dumps_differ() {
    let dir = tempfile::tempdir().unwrap();
    let same = diff(dir.path(), "\"a\" = \"1\"\n", "\"a\" = \"1\"\n");
    assert_eq!(same.status.code(), Some(0), "{}", describe(&same));
    assert!(same.stdout.is_empty());

    let differ = diff(dir.path(), "\"a\" = \"1\"\n\"b\" = \"2\"\n", "\"a\" = \"1\"\n\"b\" = \"3\"\n\"c\" = \"4\"\n");
    assert_eq!(differ.status.code(), Some(1), "{}", describe(&differ));
    let stdout = String::from_utf8_lossy(&differ.stdout);
    assert!(stdout.contains("@@ -1,2 +1,3 @@\n \"a\" = \"1\"\n-\"b\" = \"2\"\n+\"b\" = \"3\"\n+\"c\" = \"4\"\n"), "{stdout}");
    assert!(String::from_utf8_lossy(&differ.stderr).contains("2 differing keys; first: \"b\""), "{}", describe(&differ));

    let missing = xtask_command().args(["diff", "/nonexistent/a", "/nonexistent/b"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("opening dump /nonexistent/a"), "{}", describe(&missing));
}

/// The figures of three sections at small sizes: each measured, each in bench.json.
#[test]
fn bench_measures_overhead_blocks_and_dump_compare_side_by_side() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask(
        &["bench", "--only", "overhead,blocks,dump", "--payload", "2x2:digest", "--runs", "1", "--blocks", "200", "--keys", "20000"],
        out.path(),
    );
    // At these sizes a goal may be missed (RocksDB's open and fsync outweigh a 4 MB guest): 0 or 1.
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", describe(&output));
    let figures = read_json(&run_dir(out.path()).join("bench.json"));
    let names: Vec<&str> = figures.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["runner overhead (2x2:digest)", "per block (200 blocks)", "instance creation", "dump + compare (20000 keys, 10 differ)"]);
    assert_eq!(figures[0]["details"]["stored"], "SUCCESS:4MB");
    assert_eq!(figures[1]["details"]["blocks"], 200);
    let sizes: Vec<u64> = figures[3]["details"].as_array().unwrap().iter().map(|s| s["keys"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [2000, 20000]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("benchmark") && stdout.contains("<= 1.10x") && stdout.contains("<= 2 s"), "{stdout}");
}

/// The deterministic policy's adversaries: every peak within its requirement, the requirement
/// not wasteful, the runner's baseline within its overhead.
#[test]
fn bench_measures_each_adversary_against_the_preflight_requirement() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["bench", "--only", "adversaries", "--keys", "20000"], out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let figures = read_json(&run_dir(out.path()).join("bench.json"));
    let figures = figures.as_array().unwrap();
    assert_eq!(figures.len(), 10, "8 adversaries, the requirement, the baseline");
    for figure in figures {
        assert_eq!(figure["met"], true, "{figure}");
    }
    assert_eq!(figures[2]["name"], "adversary: one 180 MiB value");
    assert_eq!(figures[2]["details"]["outcome"]["status"], "completed");
    assert!(figures[1]["details"]["outcome"]["message"].as_str().unwrap().starts_with("__flush: this block's flushes would hold"));
    assert_eq!(figures[8]["name"], "requirement vs worst adversary");
}

/// The real-block figures: each large block's commit against its floor, 1,000,000 synthetic keys
/// likewise, the runner against bare wasmtime and against its floor over the large blocks and
/// the real chain, blocks/s.
#[test]
fn bench_measures_the_chain_guest_over_the_real_blocks() {
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["bench", "--only", "real-blocks", "--runs", "1"], out.path());
    // The figures decide the verdicts: 0 or 1.
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", describe(&output));
    let figures = read_json(&run_dir(out.path()).join("bench.json"));
    let names: Vec<&str> = figures.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "commit vs its floor (real blocks)",
            "commit vs its floor (1M keys, 100k a block)",
            "runner overhead (chain guest, the large blocks)",
            "runner vs its floor (chain guest, the large blocks)",
            "runner overhead (chain guest, mainnet 0..589)",
            "runner vs its floor (chain guest, mainnet 0..589)",
            "blocks/s (chain guest, mainnet 0..589)"
        ]
    );
    let blocks = figures[0]["details"]["blocks"].as_array().unwrap();
    let shapes: Vec<(u64, u64)> = blocks.iter().map(|b| (b["height"].as_u64().unwrap(), b["keys"].as_u64().unwrap())).collect();
    assert_eq!(shapes, [(574200, 18601), (702861, 14601)]);
    assert!(blocks.iter().all(|b| b["commit_ms"].as_f64().unwrap() > 0.0 && b["plain_ms"].as_f64().unwrap() > 0.0));
    let synthetic = figures[1]["details"]["blocks"].as_array().unwrap();
    assert_eq!(synthetic.len(), 10);
    assert!(synthetic.iter().all(|b| b["keys"] == 100_000 && b["commit_ms"].as_f64().unwrap() > 0.0 && b["hash_ms"].as_f64().unwrap() > 0.0 && b["lookup_ms"].as_f64().unwrap() > 0.0));
    for (figure, blocks) in [(2, 2), (3, 2), (4, 590), (5, 590)] {
        assert_eq!(figures[figure]["details"]["blocks"], blocks);
    }
    // The floor is bare wasmtime that also reads and writes a plain RocksDB (here 1.3x the bare
    // run): never clearly faster than bare wasmtime alone. The floor on the runner's engine
    // settings is timed too (a single run here: too noisy to order against the plain floor).
    let secs = |field: &str| figures[3]["details"][field][0].as_f64().unwrap();
    assert!(secs("bare_secs") > 0.0 && secs("floor_secs") > 0.9 * secs("bare_secs"), "{}", figures[3]["details"]);
    assert!(secs("runner_engine_floor_secs") > 0.0 && secs("floor_compile_secs") > 0.0, "{}", figures[3]["details"]);
    let floor = figures[3]["figure"].as_str().unwrap();
    assert!(floor.contains("the floor on the runner's engine settings") && floor.contains("its floor: compile"), "{floor}");
    let phases = figures[3]["details"]["runner_phases"][0].clone();
    for phase in ["compile_ms", "open_ms", "blocks_ms", "finish_ms"] {
        assert!(phases[phase].as_f64().unwrap() > 0.0, "{phases}");
    }
}
