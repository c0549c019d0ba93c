//! `cargo xtask …`: the project's automation. Each command is a module with one entry point.
//!
//! Exit codes: 0 success (repro: identical); 1 repro found a difference; 2 the harness itself
//! failed or a run cannot be trusted, with one line saying why and what to do; 3 repro compared
//! nothing (see `verdict.rs`).

mod artifacts;
mod bench;
mod bisect;
mod compare;
mod config;
mod diff;
mod docker;
mod doctor;
mod flags;
mod image;
mod k8s;
mod local;
mod matrix;
mod outcome;
mod plot;
mod repro;
mod report;
mod supervise;
mod sweep;
mod test_suite;
mod verdict;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use xshell::Shell;

use config::{Policy, ReproConfig};
use flags::{Command, Flags, K8sCommand};
use image::ImageBuild;
use repro::{BackendChoice, ReproArgs};

fn main() -> ExitCode {
    let flags = Flags::parse();
    let image_build = flags.image_build.unwrap_or_else(ImageBuild::default_for_this_host);
    match run(flags.command, flags.backend, image_build) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command, backend: BackendChoice, image_build: ImageBuild) -> Result<u8> {
    let sh = Shell::new()?;
    let (root, metadata) = artifacts::workspace()?;
    sh.change_dir(&root);
    let configured = || ReproConfig::from_workspace_metadata(&metadata);
    match command {
        Command::Repro { profiles, limits, engine, height, input, timeout_secs, run } => {
            let mut config = run.apply(configured()?)?;
            config.select_profiles(&profiles)?;
            config.replace_limits(&limits)?;
            if let Some(engine) = engine {
                config.use_engine(engine)?;
            }
            config.height = height.unwrap_or(config.height);
            config.timeout_secs = timeout_secs.unwrap_or(config.timeout_secs);
            let args = ReproArgs { config, input, image_build, backend, out_dir: run.out_dir };
            let report = repro::repro(&sh, &root, args).context("repro")?;
            Ok(report.decision.verdict.exit_code())
        }
        Command::Matrix { run } => {
            let policies = match run.policy {
                Some(policy) => vec![policy],
                None => vec![Policy::Unbounded, Policy::Headroom, Policy::Deterministic],
            };
            let config = run.apply(configured()?)?;
            let args = ReproArgs { config, input: Default::default(), image_build, backend, out_dir: run.out_dir };
            let reports = matrix::matrix(&sh, &root, args, &policies).context("matrix")?;
            Ok(if reports.iter().any(|r| r.decision.verdict == verdict::Verdict::HarnessError) { 2 } else { 0 })
        }
        Command::Sweep { limit, steps, run } => {
            let config = run.apply(configured()?)?;
            let args = sweep::SweepArgs {
                limit: limit.unwrap_or(config.sweep_limit),
                steps: if steps.is_empty() { config.sweep_steps.clone() } else { steps },
                config,
                image_build,
                backend,
                out_dir: run.out_dir,
            };
            let report = sweep::sweep(&sh, &root, args).context("sweep")?;
            Ok(if report.untrusted.is_some() { 2 } else { 0 })
        }
        Command::Bisect { between, resolution, input, run } => {
            let args = bisect::BisectArgs {
                config: run.apply(configured()?)?,
                input,
                lower: between[0],
                upper: between[1],
                resolution,
                image_build,
                backend,
                out_dir: run.out_dir,
            };
            let report = bisect::bisect(&sh, &root, args).context("bisect")?;
            Ok(if report.threshold.is_some() { 0 } else { 1 })
        }
        Command::RpcStandIn { blocks, port, credentials } => {
            let source = blocks::Source::detect(&blocks)?;
            let served = source.read(Default::default(), blocks::blk::Start::Genesis)?;
            let behaviour = blocks::stand_in::Behaviour { credentials, ..Default::default() };
            let node = blocks::stand_in::StandIn::start(served, behaviour, port)?;
            println!("serving {} as Bitcoin Core JSON-RPC at {} (a stand-in, not Bitcoin Core)", source.describe(), node.url);
            node.wait();
            Ok(0)
        }
        Command::Compare { dirs, out_dir } => {
            let report = compare::compare(&root, &dirs, out_dir).context("compare")?;
            Ok(report.decision.verdict.exit_code())
        }
        Command::K8s { command: K8sCommand::Render { image, limits, input, run } } => {
            let mut config = run.apply(configured()?)?;
            config.replace_limits(&limits)?;
            let blocks = repro::Blocks::resolve(&input, &config)?;
            let wasm = input.build_guest(&sh)?;
            let dir = k8s::render(&config, &wasm, &blocks.text, &image, run.out_dir.unwrap_or_else(|| root.join("target/k8s")))?;
            println!("rendered: {}", dir.display());
            println!("  kubectl apply -f {}", dir.display());
            for profile in &config.profiles {
                println!("  kubectl wait --for=condition=complete --timeout={}s job/{} ; kubectl logs job/{} > {}.log", config.timeout_secs, k8s::job_name(&profile.name), k8s::job_name(&profile.name), profile.name);
            }
            println!("  cargo xtask k8s collect --rendered {} {}", dir.display(), config.profiles.iter().map(|p| format!("{}.log", p.name)).collect::<Vec<_>>().join(" "));
            Ok(0)
        }
        Command::K8s { command: K8sCommand::Collect { rendered, logs, out_dir } } => {
            let report = k8s::collect(&rendered, &logs, out_dir.unwrap_or_else(|| root.join("target/k8s-runs"))).context("k8s collect")?;
            Ok(report.decision.verdict.exit_code())
        }
        Command::Diff { dbs, label, out_dir, .. } if !dbs.is_empty() => {
            let [a, b] = <[std::path::PathBuf; 2]>::try_from(dbs).map_err(|dbs| anyhow::anyhow!("--db twice: node A and node B (got {})", dbs.len()))?;
            let runner = artifacts::build_runner(&sh, &artifacts::host_triple(&sh)?)?;
            let out = repro::new_run_dir(out_dir.unwrap_or_else(|| root.join("target/diff")))?;
            diff::diff_nodes(&runner, [&a, &b], label.as_deref(), &out)
        }
        Command::Diff { dumps, .. } => {
            let (old, new) = (&dumps[0], &dumps[1]);
            let found = diff::diff_dump_files(Some(old), Some(new), &old.display().to_string(), &new.display().to_string())?;
            print!("{}", found.diff);
            match &found.first_key {
                Some(key) => eprintln!("{} differing keys; first: {key}", found.differing_keys),
                None => eprintln!("identical"),
            }
            Ok(if found.first_key.is_some() { 1 } else { 0 })
        }
        Command::Bench { only, payload, runs, blocks, keys, cold_build, out_dir } => {
            let args = bench::BenchArgs { only, payload, runs, blocks, keys, cold_build, image_build, out_dir };
            let met = bench::bench(&sh, &root, args).context("bench")?;
            Ok(if met { 0 } else { 1 })
        }
        Command::Doctor => Ok(if doctor::doctor(&sh, &root) { 0 } else { 1 }),
        Command::Test { cargo_test_args } => test_suite::test(&sh, &cargo_test_args).map(|()| 0),
    }
}
