//! The deterministic policy against hostile in-budget guests (`guest/adversaries/`), under real
//! Docker limits: at 512m and at 4g every one ends the same way with the same state, none is
//! OOM-killed, and no runner uses more than its preflight demanded.

use std::path::{Path, PathBuf};

use crate::support::*;

fn adversary(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest/adversaries").join(format!("{name}.wat"))
}

fn payload(words: &[u32]) -> String {
    words.iter().flat_map(|w| w.to_le_bytes()).map(|b| format!("{b:02x}")).collect()
}

/// `repro` of `name` over `blocks` under the deterministic policy (512m and 4g); the report.
fn deterministic_repro(name: &str, blocks: &str, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let blocks_file = dir.path().join("blocks.txt");
    std::fs::write(&blocks_file, blocks).unwrap();
    let out = tempfile::tempdir().unwrap();
    let wasm = adversary(name);
    let mut args = vec!["repro", "--policy", "deterministic", "--wasm", wasm.to_str().unwrap(), "--blocks", blocks_file.to_str().unwrap()];
    args.extend(extra);
    let output = xtask(&args, out.path());
    assert_eq!(output.status.code(), Some(0), "{name}: {}", describe(&output));
    let report = report(out.path());
    assert_eq!(report["verdict"], "identical", "{name}");
    for profile in report["profiles"].as_array().unwrap() {
        let result = read_json(&run_dir(out.path()).join(profile["dir"].as_str().unwrap()).join("result.json"));
        let (peak, required) = (result["memory"]["peak_rss_bytes"].as_u64().unwrap(), result["policy"]["required_bytes"].as_u64().unwrap());
        assert!(peak <= required, "{name} under {}: peak {} MiB over the {} MiB required", profile["limit"], peak >> 20, required >> 20);
    }
    report
}

fn outcomes(report: &Value) -> Vec<String> {
    report["profiles"].as_array().unwrap().iter().map(|p| format!("{} {}", p["outcome"], p["height"])).collect()
}

#[test]
fn many_tiny_pairs_commit_or_fail_alike_under_512m_and_4g() {
    // Block 1: 400,000 pairs commit. Block 2: 3,000,000 pairs (51 MB encoded) trap at __flush.
    let blocks = format!("1 {}\n2 {}\n", payload(&[100_000, 4]), payload(&[100_000, 30]));
    let report = deterministic_repro("tiny_pairs", &blocks, &[]);
    assert_eq!(outcomes(&report), ["\"trapped\" 2", "\"trapped\" 2"]);
    assert!(report["profiles"][0]["message"].as_str().unwrap().starts_with("__flush: this block's flushes would hold"));
}

#[test]
fn a_value_near_the_budget_and_its_reads_behave_alike_under_512m_and_4g() {
    // Block 1 stores 180 MiB; block 2 reads it back, which would hold it twice more: refused,
    // from its stored length, before it is read.
    let blocks = format!("1 {}\n2 {}\n", payload(&[180 << 20, 0]), payload(&[0, 3]));
    let report = deterministic_repro("big_value", &blocks, &[]);
    assert_eq!(outcomes(&report), ["\"trapped\" 2", "\"trapped\" 2"]);
    assert!(report["profiles"][1]["message"].as_str().unwrap().starts_with("__get_len: reading the value would hold"));
}

#[test]
fn page_by_page_growth_stops_at_the_budget_under_512m_and_4g() {
    let report = deterministic_repro("growth", "1\n", &[]);
    assert_eq!(outcomes(&report), ["\"completed\" null", "\"completed\" null"]);
}

#[test]
fn deep_recursion_traps_on_the_logical_limit_under_512m_and_4g() {
    let blocks = format!("1 {}\n2 {}\n", payload(&[0, 1000]), payload(&[1, 0]));
    let report = deterministic_repro("recursion", &blocks, &[]);
    assert_eq!(outcomes(&report), ["\"trapped\" 2", "\"trapped\" 2"]);
    assert!(report["profiles"][0]["message"].as_str().unwrap().starts_with("stack: the guest's calls went past"));
}

#[test]
fn a_guest_that_runs_long_runs_out_of_fuel_alike_under_512m_and_4g() {
    let blocks = format!("1 {}\n", payload(&[0, 0]));
    let report = deterministic_repro("spin", &blocks, &["--fuel", "200000000"]);
    assert_eq!(outcomes(&report), ["\"trapped\" 1", "\"trapped\" 1"]);
    assert!(report["profiles"][0]["message"].as_str().unwrap().starts_with("fuel: the call used all of its 200000000 units"));
}
