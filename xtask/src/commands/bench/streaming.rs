//! The runner's memory over a long chain: the chain guest over a generated chain's first 1,000
//! blocks, a fifth of it and all of it, each streamed from a block map. The runner's peak
//! (VmHWM, sampled from outside) must not grow with the chain: within 16 MiB from 1,000 blocks
//! on. The fifth shows where the bounded caches have filled.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use blocks::blk::Start;
use blocks::generate::{write_chain, Recipe};
use blocks::{HeightRange, Source};
use serde_json::json;
use xshell::Shell;

use super::figure::{goal, section, Figure};
use super::measure::{measure, Measured};
use crate::artifacts::build_guest_package;
use crate::units::mib;

/// The short run's length.
const SHORT: u32 = 1_000;
/// The most the long run's peak may exceed the short one's.
const FLAT: u64 = 16 << 20;

pub(super) fn streaming(sh: &Shell, runner: &Path, dir: &Path, blocks: u32) -> Result<Figure> {
    ensure!(blocks > SHORT, "--chain-blocks {blocks}: the streaming figure compares {SHORT} blocks with more");
    let chain_guest = build_guest_package(sh, "chain-guest")?;
    section(&format!("streaming: a generated chain of {blocks} blocks (seed 7, up to 10 transactions a block)"));
    let chain = dir.join("chain.blk");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&chain)?);
    write_chain(Recipe { blocks, seed: 7, max_transactions: 10 }, &mut out)?;
    drop(out);
    let source = Source::detect(&chain)?;
    let run = |count: u32| run_first(runner, &chain_guest, &source, dir, count);
    let (short, short_result) = run(SHORT)?;
    // Where the bounded caches (block cache, memtables) have filled: growth from here on would be
    // growth with the chain.
    let middle_blocks = (blocks / 5).max(SHORT + 1);
    let (middle, _) = run(middle_blocks)?;
    let (long, long_result) = run(blocks)?;
    let grew = long.max_rss_bytes.saturating_sub(short.max_rss_bytes);
    let grew_after_middle = long.max_rss_bytes.saturating_sub(middle.max_rss_bytes);
    let own = |r: &serde_json::Value| r["memory"]["runner_rss_bytes"].as_u64().unwrap_or(0);
    let guest = |r: &serde_json::Value| r["totals"]["max_wasm_memory_bytes"].as_u64().unwrap_or(0);
    let figure = format!(
        "peak RSS {} over {SHORT} blocks, {} over {middle_blocks}, {} over {blocks} ({:.0} s, {:.0} blocks/s): +{} from {SHORT}, +{} from {middle_blocks}; the runner's own between blocks {} and {}, the guest's linear memory {} and {}",
        mib(short.max_rss_bytes),
        mib(middle.max_rss_bytes),
        mib(long.max_rss_bytes),
        long.secs,
        f64::from(blocks) / long.secs,
        mib(grew),
        mib(grew_after_middle),
        mib(own(&short_result)),
        mib(own(&long_result)),
        mib(guest(&short_result)),
        mib(guest(&long_result)),
    );
    let details = json!({
        "blocks": [SHORT, middle_blocks, blocks],
        "peak_rss_bytes": [short.max_rss_bytes, middle.max_rss_bytes, long.max_rss_bytes],
        "secs": [short.secs, middle.secs, long.secs],
        "memory": [short_result["memory"], long_result["memory"]],
        "chain_bytes": std::fs::metadata(&chain)?.len(),
    });
    std::fs::remove_file(&chain)?;
    Ok(goal(&format!("runner memory, {SHORT} vs {blocks} blocks streamed"), figure, "flat: <= +16 MiB", grew <= FLAT, details))
}

/// The chain guest over the first `count` blocks of `source`, streamed from a map: how long it
/// took, its peak RSS, and its result.
fn run_first(runner: &Path, chain_guest: &Path, source: &Source, dir: &Path, count: u32) -> Result<(Measured, serde_json::Value)> {
    section(&format!("streaming: the chain guest over its first {count} blocks"));
    let map = dir.join(format!("first-{count}.map"));
    let range = HeightRange { from: Some(0), to: Some(count - 1) };
    blocks::write_map(source, range, Start::Genesis, &mut std::fs::File::create(&map)?, |_| {})?;
    let out = dir.join(format!("first-{count}"));
    std::fs::create_dir_all(&out)?;
    let mut command = Command::new(runner);
    command.arg("run").arg("--wasm").arg(chain_guest).arg("--blocks").arg(&map);
    command.arg("--db").arg(out.join("db")).arg("--out").arg(out.join("result.json"));
    command.arg("--dump").arg(out.join("dump.txt")).arg("--block-reports").arg(out.join("blocks.jsonl"));
    let measured = measure(&mut command, &out.join("run.log"))?;
    ensure!(measured.exit_code == Some(0), "the run over {count} blocks failed; see {}", out.join("run.err").display());
    let result: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("result.json"))?).context("its result.json")?;
    // The state is measured, not kept: a long chain's is gigabytes.
    std::fs::remove_dir_all(out.join("db"))?;
    Ok((measured, result))
}
