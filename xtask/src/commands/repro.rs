//! `cargo xtask repro`: build the guest, build the runner image, run it once per profile under
//! that profile's memory limit, classify each run from its own evidence, compare the committed
//! state and say whether the profiles agree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};
use xshell::Shell;

use schema::RunResult;

use crate::backend::image::ImageBuild;
use crate::backend::BackendChoice;
use crate::config::{Policy, ReproConfig};
use crate::exit::Exit;
use crate::flags::{self, InputFlags};
use crate::harness::{Harness, Input};
use crate::input::Blocks;
use crate::judge::comparison::compare_profiles;
use crate::judge::outcome::Kind;
use crate::judge::profile::ProfileReport;
use crate::judge::report::{publish, Machine, Report};
use crate::judge::verdict::decide;
use crate::lab::{run_lab, LabArgs};
use crate::progress::{following, phase};
use crate::run_dir::{new_run_dir, read_json, write_atomically};
use crate::snapshot::Snapshot;
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
    config.stall_secs = flags.stall_secs.unwrap_or(config.stall_secs);
    config.check()?;
    config.layout = flags.layout.or(config.layout);
    let from_db = flags.from_db.map(|path| Snapshot::check(&path, flags.at, flags.db_label)).transpose()?;
    let args = ReproArgs { config, input: flags.input, image_build: ws.image_build, backend: ws.backend, out_dir: flags.run.out_dir, resume: flags.resume.map(Option::unwrap_or_default), from_db };
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
    /// Continue this run directory (empty: the latest under `out_dir`).
    pub resume: Option<PathBuf>,
    /// `--from-db PATH [--at H] [--db-label L]`, checked.
    pub from_db: Option<Snapshot>,
}

pub fn repro(sh: &Shell, root: &Path, args: ReproArgs) -> Result<Report> {
    let config = &args.config;
    let guest = args.input.guest();
    let mut blocks = Blocks::resolve(&guest, &args.input.source, config)?;
    let total = 3 + config.profiles.len();
    let harness = Harness::prepare(sh, root, &guest, args.image_build, args.backend, total)?;
    harness.check_blocks(&blocks)?;

    let base = args.out_dir.clone().unwrap_or_else(|| root.join("target/repro"));
    let (run_dir, input) = run_dir_and_input(&harness, &args, &base, &blocks)?;
    if let Some(prepared) = &input.snapshot {
        let source = args.from_db.as_ref().map_or(String::new(), |s| s.source.display().to_string());
        blocks.description += &format!(", replayed from the {} state of {source} as of height {}", prepared.report.layout, prepared.report.height);
    }
    let profiles = run_profiles(&harness, &input, config, args.resume.is_some(), total).inspect_err(|_| note_interruption(&run_dir))?;
    // No verdict after Ctrl-C, even one the runs would allow.
    crate::interrupt::check().inspect_err(|_| note_interruption(&run_dir))?;

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
            blocks_sha256: blocks.sha256.clone(),
            decision: decide(&profiles, &comparisons),
            profiles: profiles.clone(),
            comparisons,
        })
    })?;
    publish(&run_dir, &report)?;
    Ok(report)
}

/// The file that says a run directory's run was interrupted, and how to continue it.
const INTERRUPTED: &str = "interrupted";

/// When a signal stopped the run: says so in `run_dir`, and how to go on.
fn note_interruption(run_dir: &Path) {
    let Some(interrupted) = crate::interrupt::received() else { return };
    let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let next = format!("cargo xtask repro --resume {} (with the same flags) continues it", run_dir.display());
    let _ = std::fs::write(run_dir.join(INTERRUPTED), format!("{interrupted} at {at}; {next}\n"));
    eprintln!("    {interrupted}: no verdict; {next}");
}

/// The run directory and what its profiles are given: a new one (with a snapshot made ready
/// for `--from-db`), or the one `--resume` continues.
fn run_dir_and_input(harness: &Harness, args: &ReproArgs, base: &Path, blocks: &Blocks) -> Result<(PathBuf, Input)> {
    let record = RunRecord::of(&args.config, blocks, harness, args.from_db.as_ref());
    if let Some(dir) = &args.resume {
        let run_dir = resumed_dir(base, dir)?;
        record.check_resumable(&run_dir)?;
        let _ = std::fs::remove_file(run_dir.join(INTERRUPTED));
        let input = harness.input_written(&run_dir, blocks)?;
        ensure!(
            args.from_db.is_none() || input.snapshot.is_some(),
            "{}: its snapshot was not made ready before the interruption: start the run again, without --resume",
            run_dir.display()
        );
        return Ok((run_dir, input));
    }
    let run_dir = new_run_dir(base.to_path_buf())?;
    // The record last: a directory `--resume` accepts has its whole input.
    let mut input = harness.write_input(&run_dir, blocks)?;
    record.write(&run_dir)?;
    if let Some(snapshot) = &args.from_db {
        let prepared = harness.prepare_snapshot(&run_dir, snapshot, blocks, Duration::from_secs(args.config.timeout_secs));
        // A snapshot that cannot be replayed leaves nothing behind.
        input.snapshot = Some(prepared.inspect_err(|_| drop(std::fs::remove_dir_all(&run_dir)))?);
    }
    Ok((run_dir, input))
}

/// Each profile run (phases 3.. of `total`); under `resume`, those that ended kept as they were
/// (but for a run the harness failed, e.g. on a full disk: it goes on after its last block).
fn run_profiles(harness: &Harness, input: &Input, config: &ReproConfig, resume: bool, total: usize) -> Result<Vec<ProfileReport>> {
    let mut profiles = Vec::new();
    for (i, profile) in config.profiles.iter().enumerate() {
        let what = format!("profile `{}`: {} ({})", profile.name, profile.limits(), config.describe_run(profile));
        let ended = match resume {
            true => harness.ended_profile(input, profile, config)?.filter(|report| report.outcome.kind() != Kind::HarnessError),
            false => None,
        };
        let report = match ended {
            Some(report) => {
                eprintln!("==> [{}/{total}] {what}\n    ended before the interruption: kept", 3 + i);
                report
            }
            None => {
                let log = input.profile_dir(profile).join("run.log");
                following(3 + i, total, &what, Some(&log), || harness.run_profile(input, profile, config, resume))?
            }
        };
        eprintln!("    {}", report.summary());
        profiles.push(report);
    }
    Ok(profiles)
}

/// What a run directory was made for, kept as `run.json`: a resumed run must be the same run.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct RunRecord {
    blocks_sha256: String,
    wasm_sha256: String,
    /// Each profile's name and settings.
    profiles: Vec<String>,
    policy: String,
    /// What each profile starts from and commits in: an empty database or a snapshot, the layout.
    #[serde(default)]
    start: String,
}

const RUN_RECORD: &str = "run.json";

impl RunRecord {
    fn of(config: &ReproConfig, blocks: &Blocks, harness: &Harness, from_db: Option<&Snapshot>) -> Self {
        let start = match from_db {
            Some(snapshot) => format!("the state of {} as of {:?}, label {:?}", snapshot.source.display(), snapshot.at, snapshot.label),
            None => format!("an empty database, layout {:?}", config.layout),
        };
        Self {
            start,
            blocks_sha256: blocks.sha256.clone(),
            wasm_sha256: hex::encode(Sha256::digest(&harness.wasm_bytes)),
            profiles: config.profiles.iter().map(|p| format!("{}: {} ({})", p.name, p.limits(), config.describe_run(p))).collect(),
            policy: config.policy.name().into(),
        }
    }

    fn write(&self, run_dir: &Path) -> Result<()> {
        write_atomically(&run_dir.join(RUN_RECORD), serde_json::to_string_pretty(self)?)
    }

    /// Whether `run_dir` was made for this same run and has no verdict yet.
    fn check_resumable(&self, run_dir: &Path) -> Result<()> {
        let recorded: Option<RunRecord> = read_json(&run_dir.join(RUN_RECORD), |t| serde_json::from_str(t))?;
        let recorded = recorded.with_context(|| format!("{} has no {RUN_RECORD}: not a run `--resume` can continue", run_dir.display()))?;
        ensure!(!run_dir.join("report.json").exists(), "{} is finished (it has its report.json): nothing to resume", run_dir.display());
        for (what, then, now) in [
            ("blocks", &recorded.blocks_sha256, &self.blocks_sha256),
            ("guest", &recorded.wasm_sha256, &self.wasm_sha256),
            ("policy", &recorded.policy, &self.policy),
            ("start", &recorded.start, &self.start),
        ] {
            ensure!(then == now, "{} ran other {what} ({then}, now {now}): resume it with the command that started it", run_dir.display());
        }
        ensure!(recorded.profiles == self.profiles, "{} ran other profiles ({:?}, now {:?}): resume it with the command that started it", run_dir.display(), recorded.profiles, self.profiles);
        Ok(())
    }
}

/// `dir`, or the latest run directory under `base` when `dir` is empty.
fn resumed_dir(base: &Path, dir: &Path) -> Result<PathBuf> {
    if !dir.as_os_str().is_empty() {
        return Ok(dir.to_path_buf());
    }
    let mut runs: Vec<PathBuf> = std::fs::read_dir(base)
        .with_context(|| format!("--resume: no runs in {}", base.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join(RUN_RECORD).is_file())
        .collect();
    runs.sort();
    runs.pop().with_context(|| format!("--resume: no run to resume in {}", base.display()))
}

/// The runner as the first profile's result describes it.
fn runner_identity(run_dir: &Path, profiles: &[ProfileReport]) -> Option<schema::RunnerIdentity> {
    profiles.iter().find_map(|p| {
        let text = std::fs::read_to_string(run_dir.join(&p.dir).join("result.json")).ok()?;
        Some(RunResult::from_json(&text).ok()?.runner)
    })
}
