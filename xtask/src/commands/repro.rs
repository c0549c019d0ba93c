//! `cargo xtask repro`: build the guest, build the runner image, run it once per profile under
//! that profile's memory limit, classify each run from its own evidence, compare the committed
//! state and say whether the profiles agree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use xshell::Shell;

use schema::RunResult;

use crate::backend::image::ImageBuild;
use crate::backend::BackendChoice;
use crate::config::{Policy, ReproConfig};
use crate::exit::Exit;
use crate::flags::{self, InputFlags};
use crate::harness::Harness;
use crate::input::Blocks;
use crate::judge::comparison::compare_profiles;
use crate::judge::profile::ProfileReport;
use crate::judge::report::{publish, Machine, Report};
use crate::judge::verdict::decide;
use crate::lab::{run_lab, LabArgs};
use crate::progress::{phase, quiet_phase};
use crate::run_dir::new_run_dir;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, flags: flags::Repro) -> Result<Exit> {
    if flags.node.is_some() {
        return run_node_lab(ws, flags);
    }
    let mut config = flags.run.apply(ws.config()?)?;
    config.select_profiles(&flags.profiles)?;
    config.replace_limits(&flags.limits)?;
    if let Some(engine) = flags.engine {
        config.use_engine(engine)?;
    }
    config.height = flags.height.unwrap_or(config.height);
    config.timeout_secs = flags.timeout_secs.unwrap_or(config.timeout_secs);
    let args = ReproArgs { config, input: flags.input, image_build: ws.image_build, backend: ws.backend, out_dir: flags.run.out_dir };
    let report = repro(&ws.sh, &ws.root, args).context("repro")?;
    Ok(report.decision.verdict.exit())
}

/// `repro --node IMAGE`: the node lab over the configured node profiles.
fn run_node_lab(ws: &Workspace, flags: flags::Repro) -> Result<Exit> {
    let config = ws.config()?;
    let mut lab = config.node.clone().context("Cargo.toml has no [workspace.metadata.repro.node] section: the node lab's profiles")?;
    lab.select_profiles(&flags.profiles)?;
    lab.args = flags.node_args.unwrap_or(lab.args);
    lab.stall_secs = flags.stall_secs.unwrap_or(lab.stall_secs);
    lab.check()?;
    let args = LabArgs {
        node: flags.node.expect("--node"),
        lab,
        input: flags.input,
        timeout: std::time::Duration::from_secs(flags.timeout_secs.unwrap_or(config.timeout_secs)),
        image_build: ws.image_build,
        out_dir: flags.run.out_dir.unwrap_or_else(|| ws.root.join("target/repro")),
    };
    let report = run_lab(&ws.sh, &ws.root, args).context("repro --node")?;
    Ok(report.decision.verdict.exit())
}

#[derive(Clone)]
pub struct ReproArgs {
    pub config: ReproConfig,
    /// The guest and its blocks (default: the stress guest over the configured stress block).
    pub input: InputFlags,
    pub image_build: ImageBuild,
    pub backend: BackendChoice,
    pub out_dir: Option<PathBuf>,
}

pub fn repro(sh: &Shell, root: &Path, args: ReproArgs) -> Result<Report> {
    let config = &args.config;
    let guest = args.input.guest();
    let blocks = Blocks::resolve(&guest, &args.input.source, config)?;
    let total = 3 + config.profiles.len();
    let harness = Harness::prepare(sh, root, &guest, args.image_build, args.backend, total)?;

    let run_dir = new_run_dir(args.out_dir.clone().unwrap_or_else(|| root.join("target/repro")))?;
    let input_dir = harness.write_input(&run_dir, &blocks.text)?;
    let mut profiles = Vec::new();
    for (i, profile) in config.profiles.iter().enumerate() {
        let what = format!("profile `{}`: {} ({})", profile.name, profile.limits(), config.describe_run(profile));
        let report = quiet_phase(3 + i, total, &what, || harness.run_profile(&input_dir, profile, config))?;
        eprintln!("    {}", report.summary());
        profiles.push(report);
    }

    let report = phase(total, total, "compare", || {
        let comparisons = compare_profiles(&run_dir, &profiles)?;
        Ok(Report {
            started_at: run_dir.file_name().unwrap_or_default().to_string_lossy().into_owned(),
            backend: harness.describe(),
            machine: Machine::this_one(),
            runner: runner_identity(&run_dir, &profiles),
            policy: config.policy.name().into(),
            memory_budget_bytes: (config.policy == Policy::Deterministic).then(|| config.memory_budget.bytes()),
            wasm: harness.wasm.display().to_string(),
            wasm_sha256: hex::encode(Sha256::digest(&harness.wasm_bytes)),
            blocks: blocks.description.clone(),
            blocks_sha256: hex::encode(Sha256::digest(blocks.text.as_bytes())),
            decision: decide(&profiles, &comparisons),
            profiles: profiles.clone(),
            comparisons,
        })
    })?;
    publish(&run_dir, &report)?;
    Ok(report)
}

/// The runner as the first profile's result describes it.
fn runner_identity(run_dir: &Path, profiles: &[ProfileReport]) -> Option<schema::RunnerIdentity> {
    profiles.iter().find_map(|p| {
        let text = std::fs::read_to_string(run_dir.join(&p.dir).join("result.json")).ok()?;
        Some(RunResult::from_json(&text).ok()?.runner)
    })
}
