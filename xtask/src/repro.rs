//! `cargo xtask repro`: build the guest, build the runner image, run it once per profile under
//! that profile's memory limit, classify each run from its own evidence, compare the committed
//! state and say whether the profiles agree.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::Shell;

use schema::{RunResult, StoredState, WatchReport};

use crate::artifacts::{build_guest, build_guest_package};
use crate::config::{ByteSize, Policy, Profile, ReproConfig};
use crate::diff::{colorize, diff_dump_files, excerpt, first_diverging_height, SHOWN_LINES};
use crate::artifacts::{build_runner, host_triple};
use crate::flags::InputFlags;
use crate::docker::{check_engine, container_user, docker_answers, make_writable_for_container, run_container, ContainerSpec, Mount};
use crate::image::{runner_image, ImageBuild, RunnerImage};
use crate::local::{run_local, LocalLimit};
use crate::outcome::{classify, Enforcement, Evidence, Kind, Outcome};
use crate::report::{markdown, mib, outcome_details, table, Comparison, Machine, ProfileReport, Report};
use crate::supervise::RunExit;
use crate::verdict::decide;

#[derive(Clone)]
pub struct ReproArgs {
    pub config: ReproConfig,
    /// The guest and its blocks (default: the stress guest over the configured stress block).
    pub input: InputFlags,
    pub image_build: ImageBuild,
    pub backend: BackendChoice,
    pub out_dir: Option<PathBuf>,
}

/// The workspace's guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GuestChoice {
    /// The memory-stress indexer (`guest/`).
    Stress,
    /// The Bitcoin chain indexer (`chain-guest/`).
    Chain,
}

impl InputFlags {
    /// Our guest to build, or the file `--wasm` names.
    fn guest(&self) -> Result<PathBuf, GuestChoice> {
        match &self.wasm {
            Some(path) => Ok(path.clone()),
            None => Err(self.guest.unwrap_or(GuestChoice::Stress)),
        }
    }
}

impl InputFlags {
    /// The guest's .wasm: ours built, or the file `--wasm` names.
    pub fn build_guest(&self, sh: &Shell) -> Result<PathBuf> {
        match self.guest() {
            Ok(path) => {
                anyhow::ensure!(path.is_file(), "--wasm {}: no such file", path.display());
                Ok(path)
            }
            Err(GuestChoice::Stress) => build_guest(sh),
            Err(GuestChoice::Chain) => build_guest_package(sh, "chain-guest"),
        }
    }
}

/// The blocks every run of a command is given: checked, in the runner's text form, and what
/// they are in one line.
pub struct Blocks {
    pub text: String,
    pub description: String,
}

impl Blocks {
    /// The blocks the flags name (read and checked now, before anything is built or run), or the
    /// configured stress block for the stress guest.
    pub fn resolve(input: &InputFlags, config: &ReproConfig) -> Result<Self> {
        if let Some((source, blocks)) = input.source.read()? {
            let mut text = Vec::new();
            blocks::text::write(&blocks, &mut text)?;
            let description = Self::describe(&source.describe(), &blocks);
            return Ok(Self { text: String::from_utf8(text).expect("hex text"), description });
        }
        match input.guest() {
            Err(GuestChoice::Stress) => Ok(Self {
                text: format!("{} {}\n", config.height, hex::encode(config.payload.to_bytes())),
                description: format!("one stress block ({}) at height {}", config.payload, config.height),
            }),
            Err(GuestChoice::Chain) => bail!("--guest chain needs blocks: --blocks PATH, or --rpc URL --from H --to H"),
            Ok(path) => bail!("--wasm {} needs blocks: --blocks PATH, or --rpc URL --from H --to H", path.display()),
        }
    }

    /// `source: heights A..=B, N blocks, BYTES bytes`.
    pub fn describe(source: &str, blocks: &[blocks::Block]) -> String {
        let bytes: usize = blocks.iter().map(|b| b.payload.len()).sum();
        match (blocks.first(), blocks.last()) {
            (Some(first), Some(last)) => format!("{source}: heights {}..={}, {} blocks, {bytes} bytes", first.height, last.height, blocks.len()),
            _ => format!("{source}: no blocks"),
        }
    }
}

/// Where the runner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// Docker when a daemon answers, else local (with a note saying so).
    Auto,
    /// One hardened container per run.
    Docker,
    /// A child process under a cgroup (or RLIMIT_AS) this tool sets up.
    Local,
}

enum Backend {
    Docker { image: RunnerImage, user: String },
    Local { runner: PathBuf, limit: LocalLimit },
}

/// Prints one phase's start and end on stderr. Builds show cargo's own progress.
pub fn phase<T>(number: usize, total: usize, what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("==> [{number}/{total}] {what}");
    let started = Instant::now();
    let value = work()?;
    eprintln!("    done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(value)
}

/// A phase that prints nothing of its own while it works (a run): on a terminal a spinner with
/// the elapsed time, elsewhere (CI logs) the same plain lines as [`phase`].
pub fn quiet_phase<T>(number: usize, total: usize, what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    if !std::io::stderr().is_terminal() {
        return phase(number, total, what, work);
    }
    let spinner = indicatif::ProgressBar::new_spinner().with_message(format!("[{number}/{total}] {what}"));
    spinner.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let started = Instant::now();
    let value = work();
    spinner.finish_and_clear();
    eprintln!("==> [{number}/{total}] {what}\n    done in {:.1} s", started.elapsed().as_secs_f64());
    value
}

/// What every run needs: the engine checked, the guest and the runner image built.
pub struct Harness<'a> {
    sh: &'a Shell,
    backend: Backend,
    pub wasm: PathBuf,
    pub wasm_bytes: Vec<u8>,
}

impl<'a> Harness<'a> {
    /// Phases 1 and 2 of `total`: the guest (ours, or `wasm`) and the runner (an image, or a
    /// binary for the local backend).
    pub fn prepare(
        sh: &'a Shell,
        root: &Path,
        input: &InputFlags,
        image_build: ImageBuild,
        backend: BackendChoice,
        total: usize,
    ) -> Result<Self> {
        let docker = match backend {
            BackendChoice::Docker => true,
            BackendChoice::Local => false,
            BackendChoice::Auto if docker_answers(sh) => true,
            BackendChoice::Auto => {
                eprintln!("note: no Docker daemon answers, so the runner runs locally (--backend local): no container isolation; the memory limit is still real");
                false
            }
        };
        if docker {
            check_engine(sh)?;
        }
        // The local limit's mechanism is known (or refused) before anything is built.
        let local_limit = if docker { None } else { Some(LocalLimit::probe()?) };
        let wasm = phase(1, total, "guest", || input.build_guest(sh))?;
        let wasm_bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
        eprintln!("    {} ({} bytes)", wasm.display(), wasm_bytes.len());
        let backend = if docker {
            let image = phase(2, total, "runner image (no registry needed)", || runner_image(sh, root, image_build))?;
            eprintln!(
                "    {} ({}, {})",
                image.tag,
                mib(image.size_bytes),
                if image.built { "built" } else { "unchanged, reused" }
            );
            Backend::Docker { image, user: container_user(sh) }
        } else {
            let runner = phase(2, total, "runner binary (local backend)", || build_runner(sh, &host_triple(sh)?))?;
            let limit = local_limit.expect("probed for the local backend");
            eprintln!("    {}; limits enforced by {}", runner.display(), limit.describe());
            Backend::Local { runner, limit }
        };
        Ok(Self { sh, backend, wasm, wasm_bytes })
    }

    /// What runs the runner, for the report.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Docker { image, .. } => format!("docker image {} ({})", image.tag, mib(image.size_bytes)),
            Backend::Local { limit, .. } => format!("local process under {}", limit.describe()),
        }
    }

    /// Runs `host-runner` with the arguments `args(input, out)` builds from the paths it sees.
    fn run_runner(
        &self,
        name: &str,
        memory: Option<ByteSize>,
        input_dir: Option<&Path>,
        dir: &Path,
        args: impl Fn(&str, &str) -> Vec<String>,
        timeout: Duration,
        log: &Path,
    ) -> Result<RunExit> {
        match &self.backend {
            Backend::Docker { image, user } => {
                make_writable_for_container(dir)?;
                let mut mounts = vec![Mount { host: dir.to_path_buf(), container: "/out", read_only: false }];
                if let Some(input) = input_dir {
                    mounts.push(Mount { host: input.to_path_buf(), container: "/input", read_only: true });
                }
                let spec = ContainerSpec {
                    image: &image.tag,
                    name: name.into(),
                    user,
                    memory,
                    mounts,
                    args: args("/input", "/out"),
                    timeout,
                    log: log.to_path_buf(),
                };
                run_container(self.sh, &spec)
            }
            Backend::Local { runner, limit } => {
                std::fs::create_dir_all(dir)?;
                let input = input_dir.map_or(String::new(), |p| p.display().to_string());
                run_local(runner, name, memory, *limit, args(&input, &dir.display().to_string()), timeout, log)
            }
        }
    }

    fn enforcement(&self) -> Enforcement {
        match &self.backend {
            Backend::Local { limit: LocalLimit::AddressSpace, .. } => Enforcement::AddressSpace,
            _ => Enforcement::Cgroup,
        }
    }

    /// `dir/input/`: the guest and the blocks every profile of a run is given.
    pub fn write_input(&self, dir: &Path, blocks_text: &str) -> Result<PathBuf> {
        let input_dir = dir.join("input");
        std::fs::create_dir_all(&input_dir)?;
        std::fs::copy(&self.wasm, input_dir.join("guest.wasm"))?;
        std::fs::write(input_dir.join("blocks.txt"), blocks_text)?;
        Ok(input_dir)
    }

    /// One profile in one container (or local process), classified, with the state it committed.
    pub fn run_profile(&self, input_dir: &Path, profile: &Profile, config: &ReproConfig) -> Result<ProfileReport> {
        let dir = input_dir.parent().expect("input has a parent").join(&profile.name);
        run_profile(self, input_dir, &dir, profile, config)
    }
}

pub fn repro(sh: &Shell, root: &Path, args: ReproArgs) -> Result<Report> {
    let config = &args.config;
    let blocks = Blocks::resolve(&args.input, config)?;
    let total = 3 + config.profiles.len();
    let harness = Harness::prepare(sh, root, &args.input, args.image_build, args.backend, total)?;

    let run_dir = new_run_dir(args.out_dir.clone().unwrap_or_else(|| root.join("target/repro")))?;
    let input_dir = harness.write_input(&run_dir, &blocks.text)?;
    let mut profiles = Vec::new();
    for (i, profile) in config.profiles.iter().enumerate() {
        let what = format!("profile `{}`: {} ({})", profile.name, profile.limits(), config.describe_run(profile));
        let report = quiet_phase(3 + i, total, &what, || harness.run_profile(&input_dir, profile, config))?;
        eprintln!("    {}", outcome_summary(&report));
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

/// `oom-killed` or `completed, stored SUCCESS:1000MB`.
pub fn outcome_summary(report: &ProfileReport) -> String {
    match &report.stored_result {
        Some(stored) => format!("{}, stored {stored}", report.outcome.label()),
        None => report.outcome.label().to_string(),
    }
}

/// `target/repro/<UTC timestamp>/`, unique even for two runs in the same second.
pub fn new_run_dir(base: PathBuf) -> Result<PathBuf> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(['-', ':'], "");
    for attempt in 0.. {
        let dir = if attempt == 0 { base.join(&stamp) } else { base.join(format!("{stamp}-{attempt}")) };
        if !dir.exists() {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            return Ok(dir);
        }
    }
    unreachable!()
}

fn run_profile(harness: &Harness, input_dir: &Path, dir: &Path, profile: &Profile, config: &ReproConfig) -> Result<ProfileReport> {
    let timeout = Duration::from_secs(config.timeout_secs);
    let run_args = |input: &str, out: &str| {
        let mut args: Vec<String> = vec![
            "watch".into(), "--report".into(), format!("{out}/watch.json"), "--".into(),
            "run".into(), "--wasm".into(), format!("{input}/guest.wasm"), "--blocks".into(), format!("{input}/blocks.txt"),
            "--db".into(), format!("{out}/db"), "--out".into(), format!("{out}/result.json"),
            "--dump".into(), format!("{out}/{DUMP}"),
        ];
        args.extend(config.policy_args());
        args.extend(profile.runner_args());
        args
    };
    let name = unique_container_name(&profile.name);
    let exit = harness.run_runner(&name, Some(profile.memory), Some(input_dir), dir, run_args, timeout, &dir.join("run.log"))?;

    profile_report(profile, dir, &exit, harness.enforcement(), || read_back_state(harness, dir, &name, timeout))
}

/// What one profile's run left in `dir` (watch.json, result.json, run.log, the dump), classified;
/// `read_back` gives the state a run without a result left behind.
pub fn profile_report(
    profile: &Profile,
    dir: &Path,
    exit: &RunExit,
    enforced_by: Enforcement,
    read_back: impl FnOnce() -> Result<StoredState>,
) -> Result<ProfileReport> {
    let watch = read_json(&dir.join("watch.json"), WatchReport::from_json)?;
    let result = read_json(&dir.join("result.json"), RunResult::from_json)?;
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
    let log_tail = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)").to_string();
    let outcome = classify(&Evidence { limit: profile.memory, enforced_by, exit, watch: watch.as_ref(), result: result.as_ref(), log_tail: &log_tail });

    // The committed state: from the result, or read back from what a killed run left behind.
    let (state_root, dump, stored_result) = match &result {
        Some(result) => (Some(result.state_root.clone()), Some(dump_path(&profile.name)), result.stress_result.clone()),
        None if matches!(outcome, Outcome::Refused { .. }) => (None, None, None),
        None => {
            let state = read_back()?;
            let dump = state.tip.map(|_| dump_path(&profile.name));
            (Some(state.state_root), dump, state.stress_result)
        }
    };
    Ok(ProfileReport {
        name: profile.name.clone(),
        limit: profile.limits(),
        limit_bytes: profile.memory.bytes(),
        engine: result.as_ref().map_or(profile.engine, |r| r.policy.engine),
        outcome,
        stored_result,
        state_root,
        peak_memory_bytes: watch
            .as_ref()
            .and_then(|w| w.cgroup_peak_bytes)
            .or(result.as_ref().and_then(|r| r.memory.peak_rss_bytes)),
        wall_secs: exit.wall.as_secs_f64(),
        dump,
        dir: profile.name.clone(),
        blocks: result.map(|r| r.blocks),
    })
}

/// `memrepro-<pid>-<n>-<profile>`: unique among this process's containers and other processes'.
fn unique_container_name(profile: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("memrepro-{}-{n}-{profile}", std::process::id())
}

/// The dump file of each profile, in its directory.
const DUMP: &str = "dump.txt";

fn dump_path(profile: &str) -> String {
    format!("{profile}/{DUMP}")
}

/// Reads the database a run left, with a fresh runner (the runner is the only thing that reads
/// RocksDB). No database at all is an empty state.
fn read_back_state(harness: &Harness, dir: &Path, name: &str, timeout: Duration) -> Result<StoredState> {
    if !dir.join("db/CURRENT").exists() {
        return Ok(StoredState { state_root: hex::encode([0u8; 32]), ..StoredState::default() });
    }
    let args = |_: &str, out: &str| -> Vec<String> {
        let (db, json, dump) = (format!("{out}/db"), format!("{out}/state.json"), format!("{out}/{DUMP}"));
        ["state", "--db", &db, "--out", &json, "--dump", &dump].map(String::from).to_vec()
    };
    let exit = harness.run_runner(&format!("{name}-state"), None, None, dir, args, timeout, &dir.join("state.log"))?;
    match read_json(&dir.join("state.json"), |text| serde_json::from_str::<StoredState>(text))? {
        Some(state) if exit.exit_code == 0 => Ok(state),
        _ => bail!("reading back the state left in {} failed; see {}", dir.join("db").display(), dir.join("state.log").display()),
    }
}

pub fn read_json<T, E: std::error::Error + Send + Sync + 'static>(path: &Path, parse: impl Fn(&str) -> Result<T, E>) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map(Some).with_context(|| format!("{} is not valid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Every compared run (neither refused nor untrusted) against the first one. Dumps are found
/// relative to `run_dir` (or absolute).
pub fn compare_profiles(run_dir: &Path, profiles: &[ProfileReport]) -> Result<Vec<Comparison>> {
    let compared: Vec<&ProfileReport> =
        profiles.iter().filter(|p| matches!(p.outcome.kind(), Kind::Deterministic | Kind::HostEvent)).collect();
    let Some((baseline, others)) = compared.split_first() else { return Ok(Vec::new()) };
    let dump = |profile: &ProfileReport| profile.dump.as_ref().map(|path| run_dir.join(path));
    let mut comparisons = Vec::new();
    for &profile in others {
        let found = diff_dump_files(
            dump(baseline).as_deref(),
            dump(profile).as_deref(),
            &format!("{} ({})", baseline.name, baseline.limit),
            &format!("{} ({})", profile.name, profile.limit),
        )?;
        let height = first_diverging_height(baseline.blocks.as_deref(), profile.blocks.as_deref());
        comparisons.push(Comparison::between(baseline, profile, found, height));
    }
    Ok(comparisons)
}

/// Writes report.json, summary.md and the diffs, and prints the table, details and diffs.
pub fn publish(run_dir: &Path, report: &Report) -> Result<()> {
    std::fs::write(run_dir.join("report.json"), serde_json::to_string_pretty(report)?)?;
    let summary = markdown(report);
    std::fs::write(run_dir.join("summary.md"), &summary)?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).context("opening $GITHUB_STEP_SUMMARY")?;
        writeln!(file, "{summary}")?;
    }
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    println!();
    print!("{}", table(report));
    for detail in outcome_details(report) {
        println!("  {detail}");
    }
    for comparison in report.comparisons.iter().filter(|c| !c.diff.is_empty()) {
        std::fs::write(run_dir.join(format!("diff-{}-{}.diff", comparison.baseline, comparison.profile)), &comparison.diff)?;
        println!();
        if let Some(height) = comparison.divergence.height {
            println!("first diverging height: {height}");
        }
        if let Some(key) = &comparison.divergence.key {
            println!("first diverging key: {key}");
        }
        let shown = excerpt(&comparison.diff, SHOWN_LINES);
        print!("{}", if color { colorize(&shown) } else { shown });
    }
    println!();
    println!("{}", report.decision.line());
    println!("results: {}", run_dir.display());
    Ok(())
}
