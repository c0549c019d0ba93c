//! The field-to-lab path, end to end: two node databases that diverged (made here by our
//! metashrew-compatible host under 512m and 4g with the headroom policy, in metashrew's v10
//! layout) -> `cargo xtask diff --db A --db B` names the first diverging height h -> `repro
//! --from-db A --at h-1` replays block h under 512m and 4g and reproduces the divergence, the
//! source database unchanged (its files' checksum before and after) -> with `--policy
//! deterministic` the replay is identical.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::support::*;

/// Stress blocks: heights 1..=3 allocate 1 MB once, height 4 allocates 50 MB 20 times.
fn blocks(dir: &Path) -> PathBuf {
    let stress = |mb: u32, count: u32| hex::encode([mb.to_le_bytes(), count.to_le_bytes()].concat());
    let text = format!("1 {}\n2 {}\n3 {}\n4 {}\n", stress(1, 1), stress(1, 1), stress(1, 1), stress(50, 20));
    let path = dir.join("blocks.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// SHA-256 over every file of `db`, by name.
fn checksum(db: &Path) -> String {
    let mut names: Vec<PathBuf> = std::fs::read_dir(db).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let mut hasher = Sha256::new();
    for name in names {
        hasher.update(name.file_name().unwrap().as_encoded_bytes());
        hasher.update(std::fs::read(&name).unwrap());
    }
    hex::encode(hasher.finalize())
}

fn run(args: &[&str], out: &Path) -> (std::process::Output, Value) {
    let output = xtask(args, out);
    let runs: Vec<PathBuf> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()).collect();
    let latest = runs.iter().max().unwrap().clone();
    (output, read_json(&latest.join("report.json")))
}

#[test]
fn a_field_divergence_is_found_replayed_from_a_snapshot_and_fixed_by_the_deterministic_policy() {
    let _gibs = memory_hungry();
    let temp = tempfile::tempdir().unwrap();
    let blocks = blocks(temp.path());
    let blocks = blocks.to_str().unwrap();
    let limits = ["--limit", "512m", "--limit", "4g"];

    // The field: two nodes, the same blocks, different memory.
    let field = temp.path().join("field");
    let (output, report) = run(&[&["repro", "--policy", "headroom", "--layout", "metashrew-v10", "--blocks", blocks][..], &limits].concat(), &field);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(report["verdict"], "different");
    let run_dir = run_dir(&field);
    let (small, big) = (run_dir.join("512m/db"), run_dir.join("4g/db"));

    // Where they diverge.
    let diffs = temp.path().join("diff");
    let output = xtask_command().args(["diff", "--db"]).arg(&big).arg("--db").arg(&small).arg("--out-dir").arg(&diffs).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("DIFFERENT — first at height 4 (tips 4 and 4)"), "{stdout}");

    // The lab: the 4g node's state as of height 3, block 4 replayed under both limits.
    let before = checksum(&big);
    let lab = temp.path().join("lab");
    let from = ["--from-db", big.to_str().unwrap(), "--at", "3", "--blocks", blocks];
    let (output, report) = run(&[&["repro", "--policy", "headroom"][..], &from, &limits].concat(), &lab);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(report["verdict"], "different", "{report}");
    assert!(report["blocks"].as_str().unwrap().ends_with(&format!("replayed from the metashrew-v10 state of {} as of height 3", big.display())), "{}", report["blocks"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("table files hard-linked"), "{stderr}");
    let replayed = |profile: &str| read_json(&report_dir(&lab).join(profile).join("result.json"));
    for profile in ["512m", "4g"] {
        let result = replayed(profile);
        assert_eq!(result["resumed_after"], 3, "{profile} started after the snapshot's height");
        assert_eq!(result["totals"]["run"], 1, "{profile} replayed block 4 alone");
        assert_eq!(result["db_layout"], "metashrew-v10");
    }
    assert!(replayed("512m")["stress_result"].as_str().unwrap().starts_with("ERROR:Failed at allocation"));
    assert_eq!(replayed("4g")["stress_result"], "SUCCESS:1000MB");
    assert_eq!(checksum(&big), before, "the source database was not written");

    // A height the snapshot does not hold: one line, exit 2, no run directory left.
    let above = temp.path().join("above");
    let output = xtask(&[&["repro", "--from-db", big.to_str().unwrap(), "--at", "9", "--blocks", blocks][..], &limits].concat(), &above);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the database's tip is height 4: it holds no state as of 9"), "{}", describe(&output));
    assert_eq!(std::fs::read_dir(&above).unwrap().count(), 0, "nothing left");

    // The fix.
    let fixed = temp.path().join("fixed");
    let (output, report) = run(&[&["repro", "--policy", "deterministic"][..], &from, &limits].concat(), &fixed);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(report["verdict"], "identical");
    assert_eq!(checksum(&big), before);
}

/// The latest run directory under `out`.
fn report_dir(out: &Path) -> PathBuf {
    std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()).max().unwrap()
}

#[test]
fn bad_snapshots_are_refused_before_anything_runs() {
    let temp = tempfile::tempdir().unwrap();
    let blocks = blocks(temp.path());
    let out = temp.path().join("out");
    let refused = |args: &[&str]| {
        let output = xtask(&[&["repro", "--blocks", blocks.to_str().unwrap()][..], args].concat(), &out);
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(), "nothing written for {args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let not_a_db = temp.path().join("empty");
    std::fs::create_dir(&not_a_db).unwrap();
    let err = refused(&["--from-db", not_a_db.to_str().unwrap()]);
    assert!(err.contains("not a RocksDB database (no CURRENT file)"), "{err}");
    let err = refused(&["--from-db", "/nonexistent/db"]);
    assert!(err.contains("/nonexistent/db: not a RocksDB database"), "{err}");
    // A database a process holds open (this test, as a node would).
    let live = temp.path().join("live");
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    let db = rocksdb::DB::open(&options, &live).unwrap();
    let err = refused(&["--from-db", live.to_str().unwrap()]);
    assert!(err.contains(&format!("the database is open in process {} (its LOCK is held)", std::process::id())), "{err}");
    drop(db);
}
