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
//! - real-blocks: the chain guest over `testdata/blocks`: each large block's commit against a
//!   plain `WriteBatch` of the same pairs (`host-runner bench commit`), the runner against bare
//!   wasmtime over the large blocks and over mainnet 0..589, and that chain's blocks per second.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use crate::artifacts::{build_guest, build_guest_package, build_runner, cargo, host_triple};
use crate::config::StressPayload;
use crate::image::{image_exists, runner_image, ImageBuild};
use crate::report::mib;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Build,
    Overhead,
    Blocks,
    Image,
    Repro,
    Dump,
    NodeDiff,
    Adversaries,
    RealBlocks,
}

pub struct BenchArgs {
    /// Sections to run (all when empty).
    pub only: Vec<Section>,
    pub payload: StressPayload,
    pub runs: usize,
    pub blocks: u32,
    pub keys: u64,
    pub cold_build: bool,
    pub image_build: ImageBuild,
    pub out_dir: Option<PathBuf>,
}

/// One line of the results table.
#[derive(Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub figure: String,
    pub goal: Option<String>,
    /// `None` when the figure has no goal.
    pub met: Option<bool>,
    pub details: Value,
}

/// The Debian-slim base a conventional runner image would start from.
const DEBIAN_SLIM: &str = "debian:bookworm-slim";

pub fn bench(sh: &Shell, root: &Path, args: BenchArgs) -> Result<bool> {
    let wants = |section| args.only.is_empty() || args.only.contains(&section);
    let dir = crate::repro::new_run_dir(args.out_dir.clone().unwrap_or_else(|| root.join("target/bench")))?;
    let mut figures = Vec::new();

    let started = Instant::now();
    let guest = build_guest(sh)?;
    let runner = build_runner(sh, &host_triple(sh)?)?;
    eprintln!("    guest and runner built in {:.1} s", started.elapsed().as_secs_f64());

    // Without Docker the container figures are listed as skipped, never left out silently.
    let docker = crate::docker::docker_answers(sh);
    let skipped = |name: &str| info(name, "skipped: no Docker daemon answers (`cargo xtask doctor`)".into(), Value::Null);
    if wants(Section::Build) {
        figures.push(build_times(sh, root, &args, docker)?);
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

    std::fs::write(dir.join("bench.json"), serde_json::to_string_pretty(&figures)?)?;
    println!();
    print!("{}", table(&figures));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("measured on {cores} cores; figures: {}", dir.join("bench.json").display());
    Ok(figures.iter().all(|f| f.met != Some(false)))
}

fn table(figures: &[Figure]) -> String {
    let verdict = |f: &Figure| match f.met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "-",
    };
    let width = |header: &str, cell: &dyn Fn(&Figure) -> String| {
        figures.iter().map(|f| cell(f).chars().count()).max().unwrap_or(0).max(header.len())
    };
    let name_width = width("benchmark", &|f| f.name.clone());
    let goal_width = width("goal", &|f| f.goal.clone().unwrap_or_default());
    let mut text = format!("{:name_width$}  {:goal_width$}  {:7}  figure\n", "benchmark", "goal", "verdict");
    for f in figures {
        text += &format!("{:name_width$}  {:goal_width$}  {:7}  {}\n", f.name, f.goal.as_deref().unwrap_or("-"), verdict(f), f.figure);
    }
    text
}

fn goal(name: &str, figure: String, goal: &str, met: bool, details: Value) -> Figure {
    Figure { name: name.into(), figure, goal: Some(goal.into()), met: Some(met), details }
}

fn info(name: &str, figure: String, details: Value) -> Figure {
    Figure { name: name.into(), figure, goal: None, met: None, details }
}

fn section(what: &str) {
    eprintln!("==> bench: {what}");
}

/// Warm: everything rebuilt with nothing changed. Cold (`--cold-build`): the same from an empty
/// target directory. The image only where Docker answers (its time is 0 otherwise).
fn build_times(sh: &Shell, root: &Path, args: &BenchArgs, docker: bool) -> Result<Figure> {
    section("build times");
    let timed = |sh: &Shell| -> Result<[f64; 3]> {
        let started = Instant::now();
        build_guest(sh)?;
        let guest = started.elapsed().as_secs_f64();
        let started = Instant::now();
        build_runner(sh, &host_triple(sh)?)?;
        let runner_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        if docker {
            runner_image(sh, root, args.image_build)?;
        }
        Ok([guest, runner_secs, started.elapsed().as_secs_f64()])
    };
    let warm = timed(sh)?;
    let mut details = json!({ "warm_secs": { "guest": warm[0], "runner": warm[1], "image": warm[2] } });
    let mut figure = format!("warm {:.1} s (guest {:.1}, runner {:.1}, image {:.1})", warm.iter().sum::<f64>(), warm[0], warm[1], warm[2]);
    if args.cold_build {
        let target = tempfile::tempdir().context("creating an empty target directory")?;
        eprintln!("    cold build in {} (about 15 minutes on 2 cores)", target.path().display());
        let _empty = sh.push_env("CARGO_TARGET_DIR", target.path());
        let cold = timed(sh)?;
        details["cold_secs"] = json!({ "guest": cold[0], "runner": cold[1], "image": cold[2] });
        figure += &format!("; cold {:.0} s (guest {:.0}, runner {:.0}, image {:.0})", cold.iter().sum::<f64>(), cold[0], cold[1], cold[2]);
    } else {
        figure += "; cold: --cold-build";
    }
    Ok(info("build (guest + runner + image)", figure, details))
}

/// Runs `runner bench ARGS` and parses the JSON it prints.
fn runner_bench(runner: &Path, args: &[&str]) -> Result<Value> {
    let output = Command::new(runner).arg("bench").args(args).stderr(Stdio::inherit()).output()
        .with_context(|| format!("running {}", runner.display()))?;
    anyhow::ensure!(output.status.success(), "`host-runner bench {}` failed ({})", args.join(" "), output.status);
    serde_json::from_slice(&output.stdout).context("host-runner bench printed no JSON")
}

fn median(values: &Value) -> Result<f64> {
    let mut values: Vec<f64> = values.as_array().context("not a list")?.iter().filter_map(Value::as_f64).collect();
    anyhow::ensure!(!values.is_empty(), "no measurements");
    values.sort_by(f64::total_cmp);
    Ok(values[values.len() / 2])
}

fn overhead(runner: &Path, guest: &Path, payload: StressPayload, runs: usize) -> Result<Figure> {
    section(&format!("runner overhead, stress guest {payload}, {runs} runs each"));
    let payload_hex = hex::encode(payload.to_bytes());
    let runs = runs.to_string();
    let figures = runner_bench(runner, &["overhead", "--wasm", &guest.display().to_string(), "--payload", &payload_hex, "--runs", &runs])?;
    let (runner_secs, bare_secs) = (median(&figures["runner_secs"])?, median(&figures["bare_secs"])?);
    let ratio = runner_secs / bare_secs;
    let figure = format!("runner {runner_secs:.2} s / bare wasmtime {bare_secs:.2} s = {ratio:.3}x (medians; stored {})", figures["stored"].as_str().unwrap_or("?"));
    Ok(goal(&format!("runner overhead ({payload})"), figure, "<= 1.10x", ratio <= 1.10, figures))
}

fn blocks(runner: &Path, count: u32) -> Result<[Figure; 2]> {
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
fn real_blocks(sh: &Shell, runner: &Path, root: &Path, runs: usize) -> Result<Vec<Figure>> {
    let chain_guest = build_guest_package(sh, "chain-guest")?.display().to_string();
    let large = root.join("testdata/blocks/mainnet").display().to_string();
    let chain = root.join("testdata/blocks/mainnet-0-589.blk").display().to_string();

    section("real blocks: each large block's commit against a plain WriteBatch of its pairs");
    let commit_runs = (runs * 5).to_string();
    let commits = runner_bench(runner, &["commit", "--wasm", &chain_guest, "--blocks", &large, "--runs", &commit_runs])?;
    let blocks = commits["blocks"].as_array().context("bench commit: no blocks")?;
    let per_block: Vec<String> = blocks
        .iter()
        .map(|b| {
            let number = |field: &str| b[field].as_f64().unwrap_or(f64::NAN);
            format!(
                "{} ({} keys) {:.1}/{:.1} ms = {:.1}x (the root's hashing alone, on one core: {:.1} ms = {:.1}x)",
                b["height"],
                b["keys"],
                number("commit_ms"),
                number("plain_ms"),
                number("ratio"),
                number("hash_ms"),
                number("hash_ms") / number("plain_ms")
            )
        })
        .collect();
    let worst = blocks.iter().filter_map(|b| b["ratio"].as_f64()).fold(0.0, f64::max);
    let commit = goal("commit vs plain WriteBatch (real blocks)", per_block.join("; "), "<= 2x each", worst <= 2.0, commits.clone());

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

fn image(sh: &Shell, root: &Path, runner: &Path, dir: &Path, how: ImageBuild) -> Result<Figure> {
    section("image size");
    let ours = runner_image(sh, root, how)?;
    let slim = debian_slim_image(sh, runner, dir)?;
    let ours_mb = ours.size_bytes as f64 / 1e6;
    let comparison = match &slim {
        Some((base, with_runner)) => format!("{DEBIAN_SLIM} + the same runner: {:.1} MB (base {:.1} MB)", *with_runner as f64 / 1e6, *base as f64 / 1e6),
        None => format!("{DEBIAN_SLIM} not available here (no registry), so not built; Docker Hub lists it at about 75 MB unpacked"),
    };
    let figure = format!("{:.1} MB ({}, FROM scratch); {comparison}", ours_mb, mib(ours.size_bytes));
    let details = json!({ "image": ours.tag, "bytes": ours.size_bytes, "debian_slim": slim.map(|(base, image)| json!({ "base_bytes": base, "image_bytes": image })) });
    Ok(goal("runner image size", figure, "< 40 MB", ours_mb < 40.0, details))
}

/// The base's size and that of the same static runner on it, where the base can be had.
fn debian_slim_image(sh: &Shell, runner: &Path, dir: &Path) -> Result<Option<(u64, u64)>> {
    if !image_exists(sh, DEBIAN_SLIM) && cmd!(sh, "docker pull --quiet {DEBIAN_SLIM}").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        return Ok(None);
    }
    let context = dir.join("debian-slim");
    std::fs::create_dir_all(&context)?;
    std::fs::copy(runner, context.join("host-runner"))?;
    std::fs::write(context.join("Dockerfile"), format!("FROM {DEBIAN_SLIM}\nCOPY host-runner /usr/local/bin/host-runner\nENTRYPOINT [\"/usr/local/bin/host-runner\"]\n"))?;
    let tag = "memrepro-runner-debian-slim:bench";
    cmd!(sh, "docker build --quiet -t {tag} {context}").quiet().ignore_stdout().run().context("building the Debian-slim comparison image")?;
    let _ = std::fs::remove_dir_all(&context);
    let size = |image: &str| -> Result<u64> {
        let format = "{{.Size}}";
        Ok(cmd!(sh, "docker image inspect --format {format} {image}").read()?.trim().parse()?)
    };
    Ok(Some((size(DEBIAN_SLIM)?, size(tag)?)))
}

/// `cargo xtask repro` with everything built, against the sum of its profiles' container runs.
fn warm_repro(sh: &Shell, dir: &Path) -> Result<Figure> {
    section("warm cargo xtask repro");
    let out = dir.join("repro");
    let cargo = cargo();
    let started = Instant::now();
    let output = cmd!(sh, "{cargo} xtask repro --out-dir {out}").quiet().ignore_status().output()?;
    let total = started.elapsed().as_secs_f64();
    if !matches!(output.status.code(), Some(0 | 1)) {
        bail!("cargo xtask repro failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let run_dir = std::fs::read_dir(&out)?.next().context("repro wrote no run directory")??.path();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json"))?)?;
    let profiles = report["profiles"].as_array().context("report.json has no profiles")?;
    let in_containers: f64 = profiles.iter().filter_map(|p| p["wall_secs"].as_f64()).sum();
    let ratio = total / in_containers;
    let figure = format!("{total:.1} s in all / {in_containers:.1} s in its {} containers = {ratio:.2}x", profiles.len());
    Ok(goal("warm repro vs its container runs", figure, "<= 1.5x", ratio <= 1.5, json!({ "total_secs": total, "container_secs": in_containers, "report": run_dir })))
}

/// Time and peak memory of one child process.
struct Measured {
    secs: f64,
    /// The child's VmHWM, sampled every 2 ms until it exits. (Not `wait4`'s `ru_maxrss`: a
    /// child started with vfork/posix_spawn inherits this process's peak as its floor.)
    max_rss_bytes: u64,
    exit_code: Option<i32>,
}

/// Its stdout goes to `stdout`, its stderr beside it (`.err`).
fn measure(command: &mut Command, stdout: &Path) -> Result<Measured> {
    let stderr = std::fs::File::create(stdout.with_extension("err"))?;
    let stdout = std::fs::File::create(stdout)?;
    let started = Instant::now();
    let mut child = command.stdout(stdout).stderr(stderr).spawn().with_context(|| format!("starting {command:?}"))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut max_rss_bytes = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let high_water = std::fs::read_to_string(&status_file).ok().and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
        max_rss_bytes = max_rss_bytes.max(high_water.unwrap_or(0) * 1024);
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    Ok(Measured { secs: started.elapsed().as_secs_f64(), max_rss_bytes, exit_code: status.code() })
}

/// Two stores of `keys` keys differing in 10, dumped by the runner and compared by `xtask diff`,
/// at `keys / 10` and at `keys`: flat peak memory across the two sizes is the point.
fn dump_and_compare(runner: &Path, dir: &Path, keys: u64) -> Result<Figure> {
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
        anyhow::ensure!(compare.exit_code == Some(1), "xtask diff should find the stores different (exit 1), got {:?}", compare.exit_code);
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
fn node_diff(runner: &Path, dir: &Path, keys: u64) -> Result<Figure> {
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

/// The budget every adversary runs under.
const ADVERSARY_BUDGET: &str = "192MiB";

/// Each adversary (its guest, what it does, its blocks as `HEIGHT PAYLOAD_HEX` lines) under the
/// deterministic policy, run as the pipeline runs the runner (dump streamed): peak RSS against the
/// preflight's requirement, then the requirement against the worst peak (a budget that is not
/// wasteful), then the runner's baseline over a store of `keys` keys against its fixed overhead.
fn adversaries(runner: &Path, root: &Path, dir: &Path, keys: u64) -> Result<Vec<Figure>> {
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
    const OVERHEAD: u64 = 64 << 20;
    let _ = std::fs::remove_dir_all(&work);
    Ok(goal(
        &format!("runner baseline ({keys} keys stored)"),
        format!("peak {} for one tiny block (runner overhead counted: 64 MiB + {:.1} MiB of compiled guest)", mib(peak), code as f64 / (1 << 20) as f64),
        "<= 64 MiB",
        peak <= OVERHEAD + code,
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
    anyhow::ensure!(matches!(output.status.code(), Some(0 | 1)), "host-runner failed on {}: {}", wasm.display(), String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(work.join("result.json")).context("reading the adversary's result")?;
    Ok(serde_json::from_str(&text)?)
}
