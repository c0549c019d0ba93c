//! The runner's own measurements (`host-runner bench …`): its overhead against bare wasmtime,
//! the per-block cost, and the chain guest over real blocks.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use xshell::Shell;

use super::figure::{goal, info, section, Figure};
use super::measure::{median, runner_bench};
use crate::artifacts::build_guest_package;
use crate::config::StressPayload;

pub(super) fn overhead(runner: &Path, guest: &Path, payload: StressPayload, runs: usize) -> Result<Figure> {
    section(&format!("runner overhead, stress guest {payload}, {runs} runs each"));
    let payload_hex = hex::encode(payload.to_bytes());
    let runs = runs.to_string();
    let figures = runner_bench(runner, &["overhead", "--wasm", &guest.display().to_string(), "--payload", &payload_hex, "--runs", &runs])?;
    let (runner_secs, bare_secs) = (median(&figures["runner_secs"])?, median(&figures["bare_secs"])?);
    let ratio = runner_secs / bare_secs;
    let figure = format!("runner {runner_secs:.2} s / bare wasmtime {bare_secs:.2} s = {ratio:.3}x (medians; stored {})", figures["stored"].as_str().unwrap_or("?"));
    Ok(goal(&format!("runner overhead ({payload})"), figure, "<= 1.10x", ratio <= 1.10, figures))
}

pub(super) fn blocks(runner: &Path, count: u32) -> Result<[Figure; 2]> {
    section(&format!("per-block cost, {count} counter blocks"));
    let figures = runner_bench(runner, &["blocks", "--count", &count.to_string()])?;
    let secs = figures["runner_secs"].as_f64().context("runner_secs")?;
    let ms = |field: &str| figures["mean_ms"][field].as_f64().unwrap_or(f64::NAN);
    let per_block = format!(
        "{:.0} blocks/s ({:.3} ms/block: instantiate {:.3}, execute {:.3}, commit {:.3}); commit first/last tenth {:.3}/{:.3} ms",
        f64::from(count) / secs,
        secs * 1000.0 / f64::from(count),
        ms("instantiate"),
        ms("execute"),
        ms("commit"),
        figures["commit_ms_first_tenth"].as_f64().unwrap_or(f64::NAN),
        figures["commit_ms_last_tenth"].as_f64().unwrap_or(f64::NAN),
    );
    let us = |name: &str| figures["instantiate_and_run_us"][name].as_f64().unwrap_or(f64::NAN);
    let strategies = format!("on demand {:.1} us/block, pooling allocator {:.1} us/block (instantiate + _start, no commit)", us("on_demand"), us("pooling"));
    Ok([
        info(&format!("per block ({count} blocks)"), per_block, figures.clone()),
        info("instance creation", strategies, figures["instantiate_and_run_us"].clone()),
    ])
}

/// The chain guest over the real blocks in `testdata/blocks`, every figure from the same runner
/// in one run: commits against plain batches, the runner against bare wasmtime, blocks/s.
pub(super) fn real_blocks(sh: &Shell, runner: &Path, root: &Path, runs: usize) -> Result<Vec<Figure>> {
    let chain_guest = build_guest_package(sh, "chain-guest")?.display().to_string();
    let large = root.join("testdata/blocks/mainnet").display().to_string();
    let chain = root.join("testdata/blocks/mainnet-0-589.blk").display().to_string();

    section("real blocks: each large block's commit against a plain WriteBatch of its pairs");
    let commit_runs = (runs * 5).to_string();
    let commits = runner_bench(runner, &["commit", "--wasm", &chain_guest, "--blocks", &large, "--runs", &commit_runs])?;
    let commit = commit_against_its_floor(&commits)?;

    let runs = runs.to_string();
    let overhead_over = |what: &str, blocks: &str| -> Result<(Figure, f64)> {
        section(&format!("real blocks: runner against bare wasmtime, chain guest over {what}, {runs} runs each"));
        let figures = runner_bench(runner, &["overhead", "--wasm", &chain_guest, "--blocks", blocks, "--runs", &runs])?;
        let (runner_secs, bare_secs) = (median(&figures["runner_secs"])?, median(&figures["bare_secs"])?);
        let ratio = runner_secs / bare_secs;
        let ms = |field: &str| figures["last_run_ms"][field].as_f64().unwrap_or(f64::NAN);
        let figure = format!(
            "runner {:.0} ms / bare wasmtime {:.0} ms = {ratio:.2}x (medians; runner's execute alone {:.0} ms = {:.2}x the whole bare run, commit {:.0} ms)",
            runner_secs * 1e3,
            bare_secs * 1e3,
            ms("execute"),
            ms("execute") / (bare_secs * 1e3),
            ms("commit")
        );
        Ok((goal(&format!("runner overhead (chain guest, {what})"), figure, "<= 1.10x", ratio <= 1.10, figures), runner_secs))
    };
    let (large_overhead, _) = overhead_over("the large blocks", &large)?;
    let (chain_overhead, chain_secs) = overhead_over("mainnet 0..589", &chain)?;
    let per_second = info(
        "blocks/s (chain guest, mainnet 0..589)",
        format!("{:.0} blocks/s: 590 blocks in {:.0} ms, compile, RocksDB open, commits and dump included", 590.0 / chain_secs, chain_secs * 1e3),
        json!({ "blocks": 590, "secs": chain_secs }),
    );
    Ok(vec![commit, large_overhead, chain_overhead, per_second])
}

/// Each large block's commit against its floor (issue 27): the plain batch of the same pairs,
/// plus the root's hashing spread over every core of this machine.
fn commit_against_its_floor(commits: &serde_json::Value) -> Result<Figure> {
    let blocks = commits["blocks"].as_array().context("bench commit: no blocks")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let floor_ratio = |b: &serde_json::Value| {
        let number = |field: &str| b[field].as_f64().unwrap_or(f64::NAN);
        number("commit_ms") / (number("plain_ms") + number("hash_ms") / cores)
    };
    let per_block: Vec<String> = blocks
        .iter()
        .map(|b| {
            let number = |field: &str| b[field].as_f64().unwrap_or(f64::NAN);
            format!(
                "{} ({} keys) {:.1} ms = {:.1}x its floor {:.1} ms (plain batch {:.1} ms + the root's hashing {:.1} ms on one core / {cores})",
                b["height"],
                b["keys"],
                number("commit_ms"),
                floor_ratio(b),
                number("plain_ms") + number("hash_ms") / cores,
                number("plain_ms"),
                number("hash_ms"),
            )
        })
        .collect();
    let worst = blocks.iter().map(floor_ratio).fold(0.0, f64::max);
    Ok(goal("commit vs its floor (real blocks)", per_block.join("; "), "<= 1.5x each", worst <= 1.5, commits.clone()))
}
