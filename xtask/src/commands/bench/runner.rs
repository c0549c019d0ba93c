//! The runner's own measurements (`host-runner bench …`): its overhead against bare wasmtime and
//! against its floor, the per-block cost, and the chain guest over real blocks.

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
/// in one run: commits against their floor, the runner against bare wasmtime and against its
/// floor, blocks/s.
pub(super) fn real_blocks(sh: &Shell, runner: &Path, root: &Path, runs: usize) -> Result<Vec<Figure>> {
    let chain_guest = build_guest_package(sh, "chain-guest")?.display().to_string();
    let large = root.join("testdata/blocks/mainnet").display().to_string();
    let chain = root.join("testdata/blocks/mainnet-0-589.blk").display().to_string();

    section("real blocks: each large block's commit against a plain WriteBatch of its pairs");
    let commit_runs = (runs * 5).to_string();
    let commits = runner_bench(runner, &["commit", "--wasm", &chain_guest, "--blocks", &large, "--runs", &commit_runs])?;
    let commit = commit_against_its_floor(&commits)?;
    section("1,000,000 synthetic keys committed in blocks of 100,000, each against a plain WriteBatch of its pairs");
    let synthetic = runner_bench(runner, &["commit", "--synthetic", "1000000", "--runs", "3"])?;
    let synthetic = synthetic_against_their_floor(&synthetic)?;

    let ([large_overhead, large_floor], _) = runner_against_its_floors(runner, &chain_guest, "the large blocks", &large, runs)?;
    let ([chain_overhead, chain_floor], chain_secs) = runner_against_its_floors(runner, &chain_guest, "mainnet 0..589", &chain, runs)?;
    let per_second = info(
        "blocks/s (chain guest, mainnet 0..589)",
        format!("{:.0} blocks/s: 590 blocks in {:.0} ms, compile, RocksDB open, commits and dump included", 590.0 / chain_secs, chain_secs * 1e3),
        json!({ "blocks": 590, "secs": chain_secs }),
    );
    Ok(vec![commit, synthetic, large_overhead, large_floor, chain_overhead, chain_floor, per_second])
}

/// The chain guest over `blocks` (`what`): the runner against bare wasmtime and against its
/// floors, with the runner's phases; and the runner's median seconds.
fn runner_against_its_floors(runner: &Path, chain_guest: &str, what: &str, blocks: &str, runs: usize) -> Result<([Figure; 2], f64)> {
    let runs = runs.to_string();
    section(&format!("real blocks: runner against bare wasmtime and against its floor, chain guest over {what}, {runs} runs each"));
    let figures = runner_bench(runner, &["overhead", "--wasm", &chain_guest, "--blocks", blocks, "--runs", &runs])?;
    let (runner_secs, bare_secs, floor_secs) = (median(&figures["runner_secs"])?, median(&figures["bare_secs"])?, median(&figures["floor_secs"])?);
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
    let overhead = goal(&format!("runner overhead (chain guest, {what})"), figure, "<= 1.10x", ratio <= 1.10, figures.clone());
    let floor_ratio = runner_secs / floor_secs;
    let engine_floor_secs = median(&figures["runner_engine_floor_secs"])?;
    let phase = |name: &str| -> Result<f64> {
        let runs: Vec<serde_json::Value> = figures["runner_phases"].as_array().context("no runner phases")?.iter().map(|p| p[name].clone()).collect();
        median(&serde_json::Value::Array(runs))
    };
    let floor_compile_ms = median(&figures["floor_compile_secs"])? * 1e3;
    let figure = format!(
        "runner {:.0} ms / its floor {:.0} ms = {floor_ratio:.2}x; / the floor on the runner's engine settings (the time limit's epoch checks, canonical NaNs) {:.0} ms = {:.2}x (medians; the floor: bare wasmtime reading a plain RocksDB, each block's pairs in one plain WriteBatch); the runner: compile {:.0} ms, store creation {:.1}, blocks {:.0} (execute {:.0}, commit {:.0}), durable store, dump and result {:.1}; its floor: compile {floor_compile_ms:.0} ms, the rest {:.0}",
        runner_secs * 1e3,
        floor_secs * 1e3,
        engine_floor_secs * 1e3,
        runner_secs / engine_floor_secs,
        phase("compile_ms")?,
        phase("open_ms")?,
        phase("blocks_ms")?,
        ms("execute"),
        ms("commit"),
        phase("finish_ms")?,
        floor_secs * 1e3 - floor_compile_ms,
    );
    let floor = goal(&format!("runner vs its floor (chain guest, {what})"), figure, "<= 1.2x", floor_ratio <= 1.2, figures);
    Ok(([overhead, floor], runner_secs))
}

/// The cores of this machine, over which a commit's floor spreads its hashing.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// A timed block's floor (issue 27): the plain batch of its pairs, plus the root's hashing of
/// them spread over every core of this machine.
fn floor_ms(block: &serde_json::Value) -> f64 {
    let number = |field: &str| block[field].as_f64().unwrap_or(f64::NAN);
    number("plain_ms") + number("hash_ms") / cores()
}

fn floor_ratio(block: &serde_json::Value) -> f64 {
    block["commit_ms"].as_f64().unwrap_or(f64::NAN) / floor_ms(block)
}

/// [`floor_ms`] plus what any commit that updates a root incrementally must also do, spread the
/// same way: look up the value each key held before (once, in one family).
fn floor_with_lookup_ms(block: &serde_json::Value) -> f64 {
    floor_ms(block) + block["lookup_ms"].as_f64().unwrap_or(f64::NAN) / cores()
}

fn floor_with_lookup_ratio(block: &serde_json::Value) -> f64 {
    block["commit_ms"].as_f64().unwrap_or(f64::NAN) / floor_with_lookup_ms(block)
}

/// The synthetic blocks' commits against their floors: in all, and the worst block.
fn synthetic_against_their_floor(commits: &serde_json::Value) -> Result<Figure> {
    let blocks = commits["blocks"].as_array().context("bench commit: no blocks")?;
    let total = |field: &str| blocks.iter().map(|b| b[field].as_f64().unwrap_or(f64::NAN)).sum::<f64>();
    let floor: f64 = blocks.iter().map(floor_ms).sum();
    let worst = blocks.iter().map(floor_ratio).fold(0.0, f64::max);
    let last = blocks.last().map_or(f64::NAN, floor_ratio);
    let worst_with_lookup = blocks.iter().map(floor_with_lookup_ratio).fold(0.0, f64::max);
    let figure = format!(
        "{} blocks: commits {:.0} ms in all = {:.2}x their floor {:.0} ms (plain batches {:.0} ms + the root's hashing {:.0} ms on one core / {}); worst block {worst:.2}x, the last (into {} keys) {last:.2}x; with the lookup of each key's former value ({:.0} ms on one core / {}) in the floor, worst block {worst_with_lookup:.2}x",
        blocks.len(),
        total("commit_ms"),
        total("commit_ms") / floor,
        floor,
        total("plain_ms"),
        total("hash_ms"),
        cores(),
        blocks.len().saturating_sub(1) * 100_000,
        total("lookup_ms"),
        cores(),
    );
    Ok(goal("commit vs its floor (1M keys, 100k a block)", figure, "<= 1.5x each", worst <= 1.5, commits.clone()))
}

/// Each large block's commit against its floor.
fn commit_against_its_floor(commits: &serde_json::Value) -> Result<Figure> {
    let blocks = commits["blocks"].as_array().context("bench commit: no blocks")?;
    let cores = cores();
    let per_block: Vec<String> = blocks
        .iter()
        .map(|b| {
            let number = |field: &str| b[field].as_f64().unwrap_or(f64::NAN);
            format!(
                "{} ({} keys) {:.1} ms = {:.2}x its floor {:.1} ms (plain batch {:.1} ms + the root's hashing {:.1} ms on one core / {cores}), {:.2}x with the lookup of each key's former value ({:.1} ms on one core / {cores})",
                b["height"],
                b["keys"],
                number("commit_ms"),
                floor_ratio(b),
                floor_ms(b),
                number("plain_ms"),
                number("hash_ms"),
                floor_with_lookup_ratio(b),
                number("lookup_ms"),
            )
        })
        .collect();
    let worst = blocks.iter().map(floor_ratio).fold(0.0, f64::max);
    Ok(goal("commit vs its floor (real blocks)", per_block.join("; "), "<= 1.5x each", worst <= 1.5, commits.clone()))
}
