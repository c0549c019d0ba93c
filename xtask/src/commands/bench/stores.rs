//! Whole stores compared: two dumps by `xtask diff`, two metashrew nodes by the runner's
//! `metashrew-diff`, each at two sizes, so memory that grows with the store shows.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::figure::{goal, section, Figure};
use super::measure::{measure, runner_bench};
use crate::exit::Exit;
use crate::units::mib;

/// Two stores of `keys` keys differing in 10, dumped by the runner and compared by `xtask diff`,
/// at `keys / 10` and at `keys`: flat peak memory across the two sizes is the point.
pub(super) fn dump_and_compare(runner: &Path, dir: &Path, keys: u64) -> Result<Figure> {
    const CHANGED: u64 = 10;
    let xtask = std::env::current_exe().context("finding the xtask executable")?;
    let mut sizes = Vec::new();
    for keys in [keys / 10, keys] {
        section(&format!("dump + compare, two stores of {keys} keys differing in {CHANGED}"));
        let work = dir.join(format!("dump-{keys}"));
        std::fs::create_dir_all(&work)?;
        for (name, changed) in [("a", 0), ("b", CHANGED)] {
            let made = runner_bench(runner, &["make-store", "--db", &work.join(name).display().to_string(), "--keys", &keys.to_string(), "--changed", &changed.to_string()])?;
            eprintln!("    store {name}: {keys} keys committed in {:.1} s", made["secs"].as_f64().unwrap_or(f64::NAN));
        }
        let dump = |name: &str| measure(Command::new(runner).args(["dump", "--db"]).arg(work.join(name)), &work.join(format!("{name}.txt")));
        let (dump_a, dump_b) = (dump("a")?, dump("b")?);
        anyhow::ensure!(dump_a.exit_code == Some(0) && dump_b.exit_code == Some(0), "host-runner dump failed; see {}", work.display());
        let compare = measure(Command::new(&xtask).arg("diff").arg(work.join("a.txt")).arg(work.join("b.txt")), &work.join("diff.txt"))?;
        anyhow::ensure!(compare.exit_code.and_then(Exit::from_code) == Some(Exit::Different), "xtask diff should find the stores different (exit 1), got {:?}", compare.exit_code);
        let diff = std::fs::read_to_string(work.join("diff.txt"))?;
        let changed_lines = diff.lines().filter(|l| l.starts_with('+') && !l.starts_with("+++")).count() as u64;
        anyhow::ensure!(changed_lines == CHANGED, "the diff shows {changed_lines} changed keys, not {CHANGED}");
        sizes.push((keys, dump_a, dump_b, compare));
        let _ = std::fs::remove_dir_all(&work);
    }
    let (keys, dump_a, dump_b, compare) = sizes.last().expect("two sizes");
    let (small_keys, small_a, _, small_compare) = &sizes[0];
    let total = dump_a.secs + dump_b.secs + compare.secs;
    let figure = format!(
        "{keys} keys: dump {:.2} + {:.2} s, compare {:.2} s = {total:.2} s; peak RSS dump {}, compare {} ({small_keys} keys: {}, {})",
        dump_a.secs,
        dump_b.secs,
        compare.secs,
        mib(dump_a.max_rss_bytes),
        mib(compare.max_rss_bytes),
        mib(small_a.max_rss_bytes),
        mib(small_compare.max_rss_bytes),
    );
    let details: Vec<Value> = sizes
        .iter()
        .map(|(keys, a, b, c)| json!({ "keys": keys, "dump_secs": [a.secs, b.secs], "compare_secs": c.secs, "dump_max_rss": [a.max_rss_bytes, b.max_rss_bytes], "compare_max_rss": c.max_rss_bytes }))
        .collect();
    // Memory that does not grow with the store: 10x the keys may cost at most a little more.
    let flat = compare.max_rss_bytes <= small_compare.max_rss_bytes + (16 << 20) && dump_a.max_rss_bytes <= small_a.max_rss_bytes + (64 << 20);
    Ok(goal(&format!("dump + compare ({keys} keys, {CHANGED} differ)"), figure, "<= 2 s", total <= 2.0 && flat, json!(details)))
}

/// Two metashrew-layout databases of `keys` keys differing in 10 (one history entry each),
/// compared by `host-runner metashrew-diff` (block hashes, then every key's history in one
/// merged pass) at `keys / 10` and at `keys`: under 5 s, in memory that does not grow.
pub(super) fn node_diff(runner: &Path, dir: &Path, keys: u64) -> Result<Figure> {
    const CHANGED: u64 = 10;
    let mut sizes = Vec::new();
    for keys in [keys / 10, keys] {
        section(&format!("node diff, two metashrew databases of {keys} keys differing in {CHANGED}"));
        let work = dir.join(format!("node-diff-{keys}"));
        std::fs::create_dir_all(&work)?;
        for (name, changed) in [("a", 0), ("b", CHANGED)] {
            let db = work.join(name).display().to_string();
            let made = runner_bench(runner, &["make-store", "--layout", "metashrew", "--db", &db, "--keys", &keys.to_string(), "--changed", &changed.to_string()])?;
            eprintln!("    node {name}: {keys} keys committed in {:.1} s", made["secs"].as_f64().unwrap_or(f64::NAN));
        }
        let output = work.join("diff.json");
        let compare = measure(Command::new(runner).arg("metashrew-diff").arg("--db").arg(work.join("a")).arg("--db").arg(work.join("b")), &output)?;
        anyhow::ensure!(compare.exit_code == Some(1), "metashrew-diff should find the nodes different (exit 1), got {:?}; see {}", compare.exit_code, work.display());
        let answer: Value = serde_json::from_str(&std::fs::read_to_string(&output)?)?;
        // The first changed key is in the first block (height 0), and every key was read.
        anyhow::ensure!(answer["height"] == 0 && answer["keys_compared"] == keys, "metashrew-diff answered {answer}");
        eprintln!("    {:.2} s, peak RSS {}", compare.secs, mib(compare.max_rss_bytes));
        sizes.push((keys, compare));
        let _ = std::fs::remove_dir_all(&work);
    }
    let ((small_keys, small), (keys, large)) = (&sizes[0], &sizes[1]);
    let figure = format!(
        "{keys} keys: {:.2} s, peak RSS {} ({small_keys} keys: {:.2} s, {})",
        large.secs,
        mib(large.max_rss_bytes),
        small.secs,
        mib(small.max_rss_bytes)
    );
    let flat = large.max_rss_bytes <= small.max_rss_bytes + (32 << 20);
    let details: Vec<Value> = sizes.iter().map(|(keys, m)| json!({ "keys": keys, "secs": m.secs, "max_rss": m.max_rss_bytes })).collect();
    Ok(goal(&format!("node diff ({keys} keys, {CHANGED} differ)"), figure, "< 5 s, flat memory", large.secs < 5.0 && flat, json!(details)))
}
