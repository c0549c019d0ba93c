//! `cargo xtask …`: the project's automation. Each command is a module with one entry point.
//!
//! Exit codes: 0 success (repro: every profile committed identical state); 1 repro found a
//! difference; 2 the harness itself failed, with one line saying why and what to do.

mod artifacts;
mod bisect;
mod config;
mod diff;
mod docker;
mod doctor;
mod image;
mod local;
mod matrix;
mod outcome;
mod plot;
mod repro;
mod report;
mod sweep;
mod test_suite;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use xshell::Shell;

use config::{MemoryLimit, Policy, ReproConfig, StressPayload};
use image::ImageBuild;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Reproduce (and measure) memory-dependent state divergence of a WASM indexer")]
struct Flags {
    #[command(subcommand)]
    command: Command,
    /// Where runs happen: Docker when a daemon answers, else a local process.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    backend: repro::BackendChoice,
    /// How to build the runner image (default: host on Linux, dockerfile elsewhere).
    #[arg(long, global = true, value_enum)]
    image_build: Option<ImageBuild>,
}

#[derive(Subcommand)]
enum Command {
    /// Build the guest and the runner image, run one container per memory profile, compare.
    Repro {
        /// Run only this configured profile (repeatable), e.g. `--profile low`.
        #[arg(long = "profile", value_name = "NAME")]
        profiles: Vec<String>,
        /// Replace the configured profiles with one per limit (repeatable), e.g. `--limit 1g`.
        #[arg(long = "limit", value_name = "LIMIT")]
        limits: Vec<MemoryLimit>,
        /// Stress payload `MBxCOUNT[:digest][:release]`, e.g. `10x5`.
        #[arg(long)]
        payload: Option<StressPayload>,
        /// The runner's memory policy for every profile of this run.
        #[arg(long, value_enum)]
        policy: Option<Policy>,
        /// The deterministic policy's budget, e.g. `192m`.
        #[arg(long)]
        memory_budget: Option<MemoryLimit>,
        /// Block height given to the stress block.
        #[arg(long)]
        height: Option<u32>,
        /// Run this metashrew-ABI guest instead of building ours.
        #[arg(long, requires = "blocks")]
        wasm: Option<PathBuf>,
        /// Blocks for --wasm: lines of `HEIGHT [PAYLOAD_HEX]`.
        #[arg(long)]
        blocks: Option<PathBuf>,
        /// Seconds one container may run before it is killed.
        #[arg(long)]
        timeout_secs: Option<u64>,
        /// Where run directories go (default: target/repro).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Run `repro` under every policy over the `matrix_profiles` and print policy x profile.
    Matrix {
        /// Only these policies (repeatable; default: all three).
        #[arg(long = "policy", value_enum)]
        policies: Vec<Policy>,
        /// Stress payload `MBxCOUNT[:digest][:release]`.
        #[arg(long)]
        payload: Option<StressPayload>,
        /// Where run directories go (default: target/repro).
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// The seed's gradual-increase test: growing payloads under one limit until one fails.
    Sweep {
        /// The container limit (default: `sweep_limit` from the configuration).
        #[arg(long)]
        limit: Option<MemoryLimit>,
        /// The steps, in order (repeatable; default: `sweep_steps`), e.g. `--step 10x10`.
        #[arg(long = "step", value_name = "PAYLOAD")]
        steps: Vec<StressPayload>,
        #[arg(long, value_enum)]
        policy: Option<Policy>,
        #[arg(long)]
        memory_budget: Option<MemoryLimit>,
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Binary search over the container limit for where the outcome starts matching the upper bound.
    Bisect {
        /// Lower and upper bound, e.g. `--between 256m 4g`.
        #[arg(long, num_args = 2, value_names = ["LOWER", "UPPER"], required = true)]
        between: Vec<MemoryLimit>,
        /// Stop when the bounds are this close.
        #[arg(long, default_value = "16m")]
        resolution: MemoryLimit,
        #[arg(long)]
        payload: Option<StressPayload>,
        #[arg(long, value_enum)]
        policy: Option<Policy>,
        #[arg(long)]
        memory_budget: Option<MemoryLimit>,
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Check this machine: Docker, memory limits, cgroups, libclang, the wasm32 target, disk.
    Doctor,
    /// Build the guest and the runner, then run every test (Docker tests included).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
}

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

fn run(command: Command, backend: repro::BackendChoice, image_build: ImageBuild) -> Result<u8> {
    let sh = Shell::new()?;
    let (root, metadata) = artifacts::workspace()?;
    sh.change_dir(&root);
    match command {
        Command::Repro {
            profiles,
            limits,
            payload,
            policy,
            memory_budget,
            height,
            wasm,
            blocks,
            timeout_secs,
            out_dir,
        } => {
            let mut config = ReproConfig::from_workspace_metadata(&metadata)?;
            config.select_profiles(&profiles)?;
            config.replace_limits(&limits)?;
            if let Some(payload) = payload {
                config.payload = payload;
            }
            config.height = height.unwrap_or(config.height);
            config.policy = policy.unwrap_or(config.policy);
            config.memory_budget = memory_budget.unwrap_or(config.memory_budget);
            config.timeout_secs = timeout_secs.unwrap_or(config.timeout_secs);
            let args = repro::ReproArgs {
                config,
                wasm,
                blocks,
                image_build,
                backend,
                out_dir,
            };
            let report = repro::repro(&sh, &root, args).context("repro")?;
            Ok(report.verdict.exit_code())
        }
        Command::Matrix { policies, payload, out_dir } => {
            let mut config = ReproConfig::from_workspace_metadata(&metadata)?;
            config.payload = payload.unwrap_or(config.payload);
            let args = repro::ReproArgs {
                config,
                wasm: None,
                blocks: None,
                image_build,
                backend,
                out_dir,
            };
            let policies = if policies.is_empty() { vec![Policy::Unbounded, Policy::Headroom, Policy::Deterministic] } else { policies };
            matrix::matrix(&sh, &root, args, &policies).context("matrix")?;
            Ok(0)
        }
        Command::Sweep { limit, steps, policy, memory_budget, out_dir } => {
            let mut config = ReproConfig::from_workspace_metadata(&metadata)?;
            config.policy = policy.unwrap_or(config.policy);
            config.memory_budget = memory_budget.unwrap_or(config.memory_budget);
            let args = sweep::SweepArgs {
                limit: limit.unwrap_or(config.sweep_limit),
                steps: if steps.is_empty() { config.sweep_steps.clone() } else { steps },
                config,
                image_build,
                backend,
                out_dir,
            };
            sweep::sweep(&sh, &root, args).context("sweep")?;
            Ok(0)
        }
        Command::Bisect { between, resolution, payload, policy, memory_budget, out_dir } => {
            let mut config = ReproConfig::from_workspace_metadata(&metadata)?;
            config.payload = payload.unwrap_or(config.payload);
            config.policy = policy.unwrap_or(config.policy);
            config.memory_budget = memory_budget.unwrap_or(config.memory_budget);
            let args = bisect::BisectArgs {
                config,
                lower: between[0],
                upper: between[1],
                resolution,
                image_build,
                backend,
                out_dir,
            };
            let report = bisect::bisect(&sh, &root, args).context("bisect")?;
            Ok(if report.threshold.is_some() { 0 } else { 1 })
        }
        Command::Doctor => Ok(if doctor::doctor(&sh, &root) { 0 } else { 1 }),
        Command::Test { cargo_test_args } => test_suite::test(&sh, &cargo_test_args).map(|()| 0),
    }
}
