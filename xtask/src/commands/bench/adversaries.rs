//! The deterministic policy against the hostile guests of `guest/adversaries/`: each one's peak
//! against what the preflight demanded, and the runner's baseline against its fixed overhead.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use schema::runner_exit::{BLOCK_FAILED, COMPLETED};
use schema::RUNNER_OVERHEAD;

use super::figure::{goal, section, Figure};
use super::measure::runner_bench;
use crate::units::{in_mib, mib};

/// The budget every adversary runs under.
const ADVERSARY_BUDGET: &str = "192MiB";

/// Each adversary (its guest, what it does, its blocks as `HEIGHT PAYLOAD_HEX` lines) under the
/// deterministic policy, run as the pipeline runs the runner (dump streamed): peak RSS against the
/// preflight's requirement, then the requirement against the worst peak (a budget that is not
/// wasteful), then the runner's baseline over a store of `keys` keys against its fixed overhead.
pub(super) fn adversaries(runner: &Path, root: &Path, dir: &Path, keys: u64) -> Result<Vec<Figure>> {
    section("the deterministic policy against the adversaries of guest/adversaries/");
    let words = |words: &[u32]| -> String { words.iter().flat_map(|w| w.to_le_bytes()).map(|b| format!("{b:02x}")).collect() };
    let cases: Vec<(&str, &str, String, &[&str])> = vec![
        ("tiny_pairs", "400,000 tiny pairs", format!("1 {}", words(&[100_000, 4])), &[]),
        ("tiny_pairs", "3,000,000 tiny pairs (over the budget)", format!("1 {}", words(&[100_000, 30])), &[]),
        ("big_value", "one 180 MiB value", format!("1 {}", words(&[180 << 20, 0])), &[]),
        ("big_value", "20 reads of a 90 MiB value", format!("1 {}\n2 {}", words(&[90 << 20, 0]), words(&[0, 20])), &[]),
        ("growth", "growth a page at a time", "1".into(), &[]),
        ("recursion", "recursion, small frames", format!("1 {}", words(&[0, 0])), &[]),
        ("recursion", "recursion, large frames", format!("1 {}", words(&[1, 0])), &[]),
        ("spin", "a guest that runs long (fuel 10^9)", format!("1 {}", words(&[0, 0])), &["--fuel", "1000000000"]),
    ];
    let mut figures = Vec::new();
    let mut peaks = Vec::new();
    let mut required = 0;
    for (i, (guest, what, blocks, extra)) in cases.iter().enumerate() {
        let work = dir.join(format!("adversary-{i}"));
        std::fs::create_dir_all(&work)?;
        std::fs::write(work.join("blocks.txt"), format!("{blocks}\n"))?;
        let result = deterministic_run(runner, &root.join("guest/adversaries").join(format!("{guest}.wat")), &work, extra)?;
        let (peak, needed) = (result["memory"]["peak_rss_bytes"].as_u64().unwrap_or(u64::MAX), result["policy"]["required_bytes"].as_u64().unwrap_or(0));
        let outcome = match result["outcome"]["status"].as_str() {
            Some("completed") => "completed".to_string(),
            _ => format!("trapped: {}", result["outcome"]["message"].as_str().unwrap_or("?").split(':').next().unwrap_or("?")),
        };
        let ratio = peak as f64 / needed as f64;
        eprintln!("    {what}: {outcome}, peak {} of {}", mib(peak), mib(needed));
        figures.push(goal(
            &format!("adversary: {what}"),
            format!("{outcome}; peak {} / required {} = {ratio:.2}", mib(peak), mib(needed)),
            "<= 1.00",
            ratio <= 1.0,
            json!({ "guest": guest, "blocks": blocks, "outcome": result["outcome"], "peak_rss_bytes": peak, "required_bytes": needed }),
        ));
        peaks.push(peak);
        required = required.max(needed);
        let _ = std::fs::remove_dir_all(&work);
    }
    let worst = peaks.iter().copied().max().unwrap_or(1);
    let waste = required as f64 / worst as f64;
    figures.push(goal(
        "requirement vs worst adversary",
        format!("required {} / worst peak {} = {waste:.2}x", mib(required), mib(worst)),
        "<= 1.5x",
        waste <= 1.5,
        json!({ "required_bytes": required, "worst_peak_bytes": worst }),
    ));
    figures.push(baseline(runner, root, dir, keys)?);
    Ok(figures)
}

/// The runner's own memory: one tiny block over a store of `keys` keys, against the fixed
/// overhead the requirement counts (`RUNNER_OVERHEAD`, 64 MiB) plus the compiled guest.
fn baseline(runner: &Path, root: &Path, dir: &Path, keys: u64) -> Result<Figure> {
    let work = dir.join("baseline");
    std::fs::create_dir_all(&work)?;
    runner_bench(runner, &["make-store", "--db", &work.join("db").display().to_string(), "--keys", &keys.to_string()])?;
    std::fs::write(work.join("blocks.txt"), format!("{} 0100000001000000\n", u32::MAX))?;
    let result = deterministic_run(runner, &root.join("guest/adversaries/tiny_pairs.wat"), &work, &[])?;
    let peak = result["memory"]["peak_rss_bytes"].as_u64().unwrap_or(u64::MAX);
    let code = result["policy"]["compiled_guest_bytes"].as_u64().unwrap_or(0);
    let _ = std::fs::remove_dir_all(&work);
    let overhead = mib(RUNNER_OVERHEAD);
    Ok(goal(
        &format!("runner baseline ({keys} keys stored)"),
        format!("peak {} for one tiny block (runner overhead counted: {overhead} + {:.1} MiB of compiled guest)", mib(peak), in_mib(code)),
        &format!("<= {overhead}"),
        peak <= RUNNER_OVERHEAD + code,
        json!({ "keys": keys, "peak_rss_bytes": peak, "compiled_guest_bytes": code }),
    ))
}

/// `host-runner run` of `wasm` over `work/blocks.txt` under the deterministic policy, as the
/// pipeline runs it; its result JSON.
fn deterministic_run(runner: &Path, wasm: &Path, work: &Path, extra: &[&str]) -> Result<Value> {
    let output = Command::new(runner)
        .args(["run", "--policy", "deterministic", "--memory-budget", ADVERSARY_BUDGET, "--wasm"])
        .arg(wasm)
        .arg("--blocks")
        .arg(work.join("blocks.txt"))
        .arg("--db")
        .arg(work.join("db"))
        .arg("--out")
        .arg(work.join("result.json"))
        .arg("--dump")
        .arg(work.join("dump.txt"))
        .args(extra)
        .stdout(Stdio::null())
        .output()
        .context("running host-runner")?;
    let ran = output.status.code().and_then(|code| u8::try_from(code).ok()).is_some_and(|code| [COMPLETED, BLOCK_FAILED].contains(&code));
    anyhow::ensure!(ran, "host-runner failed on {}: {}", wasm.display(), String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(work.join("result.json")).context("reading the adversary's result")?;
    Ok(serde_json::from_str(&text)?)
}
