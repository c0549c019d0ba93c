//! `cargo xtask bench`: how fast, how small and how it scales, measured side by side in one run
//! on this machine. Prints one row per figure with its goal, writes `bench.json`, and exits 1
//! when a goal is missed.
//!
//! - build: warm (nothing changed) rebuild of the guest, the runner and its image; `--cold-build`
//!   also times them from an empty target directory (~15 min on 2 cores);
//! - overhead: the runner against a bare wasmtime `_start` of the stress guest (`host-runner bench overhead`);
//! - blocks: per-block cost over many small blocks (`host-runner bench blocks`);
//! - image: the runner image against a Debian-slim one holding the same runner;
//! - repro: a warm `cargo xtask repro` against the time its containers ran;
//! - dump: dumping and comparing two stores that differ in 10 keys, at two sizes, with the peak
//!   memory of each process (so memory that grows with the store shows);
//! - node-diff: `host-runner metashrew-diff` over two metashrew-layout databases that differ in 10
//!   keys, at two sizes, with its peak memory (the `cargo xtask diff --db A --db B` pass);
//! - adversaries: the deterministic policy against each hostile guest of `guest/adversaries/`:
//!   the runner's peak against what its preflight demanded, and its baseline over a large store;
//! - real-blocks: the chain guest over `testdata/blocks`: each large block's commit against its
//!   floor, a plain `WriteBatch` of the same pairs plus the root's hashing of them spread over the
//!   cores (`host-runner bench commit`), the same for 1,000,000 synthetic keys in blocks of
//!   100,000, the runner against bare wasmtime and against its floor (bare wasmtime reading and
//!   writing a plain RocksDB) over the large blocks and over mainnet 0..589, and that chain's
//!   blocks per second;
//! - streaming: the runner's peak memory over the first 1,000 blocks of a generated chain and over
//!   all of it (50,000 by default), streamed from a block map: flat when the two are within 16 MiB;
//! - node: with `--node IMAGE`, that node against `host-runner node`, the chain guest over a
//!   generated chain of 5,000 blocks run by the node lab: blocks/s and peak memory of each.

mod adversaries;
mod containers;
mod figure;
mod measure;
mod node;
mod runner;
mod stores;
mod streaming;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::Value;
use xshell::Shell;

use crate::artifacts::{build_guest, build_runner, host_triple};
use crate::backend::docker::docker_answers;
use crate::backend::image::ImageBuild;
use crate::config::StressPayload;
use crate::exit::Exit;
use crate::flags::{self, Section};
use crate::run_dir::new_run_dir;
use crate::workspace::Workspace;
use adversaries::adversaries;
use containers::{build_times, image, warm_repro};
use figure::{info, table};
use node::node_against_ours;
use runner::{blocks, overhead, real_blocks};
use stores::{dump_and_compare, node_diff};
use streaming::streaming;

pub fn run(ws: &Workspace, flags: flags::Bench) -> Result<Exit> {
    let args = BenchArgs {
        only: flags.only,
        payload: flags.payload,
        runs: flags.runs,
        blocks: flags.blocks,
        keys: flags.keys,
        chain_blocks: flags.chain_blocks,
        cold_build: flags.cold_build,
        image_build: ws.image_build,
        out_dir: flags.out_dir,
        // The node lab's template, read only when a node is given.
        node_args: flags.node.as_ref().map(|_| ws.config()).transpose()?.and_then(|config| config.node.map(|lab| lab.args)),
        node: flags.node,
    };
    let met = bench(&ws.sh, &ws.root, args).context("bench")?;
    Ok(Exit::passed(met))
}

pub struct BenchArgs {
    /// Sections to run (all when empty).
    pub only: Vec<Section>,
    pub payload: StressPayload,
    pub runs: usize,
    pub blocks: u32,
    pub keys: u64,
    pub chain_blocks: u32,
    pub cold_build: bool,
    pub image_build: ImageBuild,
    pub out_dir: Option<PathBuf>,
    /// `--node IMAGE`, and the node lab's argument template.
    pub node: Option<String>,
    pub node_args: Option<String>,
}

pub fn bench(sh: &Shell, root: &Path, args: BenchArgs) -> Result<bool> {
    let wants = |section| args.only.is_empty() || args.only.contains(&section);
    let dir = new_run_dir(args.out_dir.clone().unwrap_or_else(|| root.join("target/bench")))?;
    let mut figures = Vec::new();

    let started = Instant::now();
    let guest = build_guest(sh)?;
    let runner = build_runner(sh, &host_triple(sh)?)?;
    eprintln!("    guest and runner built in {:.1} s", started.elapsed().as_secs_f64());

    // Without Docker the container figures are listed as skipped, never left out silently.
    let docker = docker_answers(sh);
    let skipped = |name: &str| info(name, "skipped: no Docker daemon answers (`cargo xtask doctor`)".into(), Value::Null);
    if wants(Section::Build) {
        figures.push(build_times(sh, root, args.image_build, args.cold_build, docker)?);
    }
    if wants(Section::Overhead) {
        figures.push(overhead(&runner, &guest, args.payload, args.runs)?);
    }
    if wants(Section::Blocks) {
        figures.extend(blocks(&runner, args.blocks)?);
    }
    if wants(Section::Image) {
        figures.push(if docker { image(sh, root, &runner, &dir, args.image_build)? } else { skipped("runner image size") });
    }
    if wants(Section::Repro) {
        figures.push(if docker { warm_repro(sh, &dir)? } else { skipped("warm repro vs its container runs") });
    }
    if wants(Section::Dump) {
        figures.push(dump_and_compare(&runner, &dir, args.keys)?);
    }
    if wants(Section::NodeDiff) {
        figures.push(node_diff(&runner, &dir, args.keys)?);
    }
    if wants(Section::Adversaries) {
        figures.extend(adversaries(&runner, root, &dir, args.keys)?);
    }
    if wants(Section::RealBlocks) {
        figures.extend(real_blocks(sh, &runner, root, args.runs)?);
    }
    if wants(Section::Streaming) {
        figures.push(streaming(sh, &runner, &dir, args.chain_blocks)?);
    }
    if wants(Section::Node) {
        figures.push(match (&args.node, docker) {
            (Some(image), true) => node_against_ours(sh, root, &dir, image, args.node_args.clone(), args.image_build)?,
            (Some(_), false) => skipped("node mode: the given node vs host-runner node"),
            (None, _) => info("node mode: the given node vs host-runner node", "skipped: no --node IMAGE given".into(), Value::Null),
        });
    }

    std::fs::write(dir.join("bench.json"), serde_json::to_string_pretty(&figures)?)?;
    println!();
    print!("{}", table(&figures));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("measured on {cores} cores; figures: {}", dir.join("bench.json").display());
    Ok(figures.iter().all(|f| f.met != Some(false)))
}
