//! What every command that runs profiles needs: the backend chosen and the runner built, the
//! guest built, and one profile run, classified, with the state it committed. `repro`, `sweep`
//! and `bisect` all run through [`Harness`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use xshell::Shell;

use schema::StoredState;

use crate::backend::image::ImageBuild;
use crate::backend::docker::unique_name;
use crate::backend::supervise::RunExit;
use crate::backend::{Backend, BackendChoice, Chosen, Paths, RunnerCall};
use crate::config::{Profile, ReproConfig};
use crate::input::{Blocks, Feed, Guest};
use crate::snapshot::{link_copy, Snapshot};
use crate::judge::profile::{ProfileReport, BLOCK_REPORTS, DUMP};
use crate::progress::phase;
use crate::run_dir::{read_json, write_atomically};

/// What every run needs: the engine checked, the guest and the runner built.
pub struct Harness<'a> {
    sh: &'a Shell,
    backend: Backend,
    pub wasm: PathBuf,
    pub wasm_bytes: Vec<u8>,
}

impl<'a> Harness<'a> {
    /// Phases 1 and 2 of `total`: the guest and the runner (an image, or a binary for the local
    /// backend).
    pub fn prepare(sh: &'a Shell, root: &Path, guest: &Guest, image_build: ImageBuild, backend: BackendChoice, total: usize) -> Result<Self> {
        // The backend is known (or refused) before anything is built.
        let chosen = Chosen::on_this_machine(sh, backend)?;
        let wasm = phase(1, total, "guest", || guest.build(sh))?;
        let wasm_bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
        eprintln!("    {} ({} bytes)", wasm.display(), wasm_bytes.len());
        let backend = chosen.build(sh, root, image_build, total)?;
        Ok(Self { sh, backend, wasm, wasm_bytes })
    }

    /// What runs the runner, for the report.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Refuses block files the runs could not read, before any run directory is made.
    pub fn check_blocks(&self, blocks: &Blocks) -> Result<()> {
        blocks.mounted().map_or(Ok(()), |(files, read)| self.backend.check_readable(files, read))
    }

    /// `dir/input/`: the guest and the blocks every profile of a run is given (their text, or
    /// the map of the files the runs will mount).
    pub fn write_input(&self, dir: &Path, blocks: &Blocks) -> Result<Input> {
        let input_dir = dir.join("input");
        std::fs::create_dir_all(&input_dir)?;
        write_atomically(&input_dir.join("guest.wasm"), &self.wasm_bytes)?;
        match &blocks.feed {
            Feed::Text(text) => write_atomically(&input_dir.join(BLOCKS_TEXT), text)?,
            Feed::Map { map, .. } => write_atomically(&input_dir.join(BLOCKS_MAP), map)?,
        }
        Ok(Input { dir: input_dir, files: blocks.mounted().map(|(files, _)| files.clone()), snapshot: None })
    }

    /// `dir/snapshot/db`: a copy of `snapshot`'s database holding its state as of its height
    /// (rolled back there by the runner), checked to be where `blocks` can go on from.
    pub fn prepare_snapshot(&self, dir: &Path, snapshot: &Snapshot, blocks: &Blocks, timeout: Duration) -> Result<Prepared> {
        let base = dir.join("snapshot");
        let cost = link_copy(&snapshot.source, &base.join("db"))?;
        eprintln!("    copied {}: {cost}", snapshot.source.display());
        let args = |paths: &Paths| -> Vec<String> {
            let out = &paths.out;
            let mut args = vec!["snapshot".to_string(), "--db".into(), format!("{out}/db"), "--out".into(), format!("{out}/snapshot.json")];
            args.extend(snapshot.at.map(|at| ["--at".to_string(), at.to_string()]).into_iter().flatten());
            args.extend(snapshot.label.iter().flat_map(|label| ["--label".to_string(), label.clone()]));
            args
        };
        let (name, log) = (unique_name("snapshot"), base.join("snapshot.log"));
        let call = RunnerCall { name: &name, memory: None, input_dir: None, blocks: None, dir: &base, timeout, stall: None, log: &log };
        let exit = self.backend.run(self.sh, &call, args)?;
        let prepared = match Prepared::read(dir)? {
            Some(prepared) if exit.exit_code == 0 => prepared,
            _ => bail!("--from-db {}: {}", snapshot.source.display(), last_line(&log)),
        };
        let report = &prepared.report;
        let (first, last) = blocks.heights;
        let next = report.height + 1;
        ensure!(
            (first..=last).contains(&next),
            "--from-db {}: its state is as of height {}, so the replay starts at block {next}, but the blocks are heights {first}..={last}",
            snapshot.source.display(),
            report.height
        );
        Ok(prepared)
    }

    /// The input an earlier run wrote to `dir/input/` (a resumed run's).
    pub fn input_written(&self, dir: &Path, blocks: &Blocks) -> Result<Input> {
        Ok(Input { dir: dir.join("input"), files: blocks.mounted().map(|(files, _)| files.clone()), snapshot: Prepared::read(dir)? })
    }

    /// One profile in one container (or local process), classified, with the state it committed.
    /// Under `resume`, after the last block an interrupted run of it committed (its container,
    /// if one outlived the interruption, removed first).
    pub fn run_profile(&self, input: &Input, profile: &Profile, config: &ReproConfig, resume: bool) -> Result<ProfileReport> {
        let dir = input.profile_dir(profile);
        let timeout = Duration::from_secs(config.timeout_secs);
        if resume {
            if let Ok(leftover) = std::fs::read_to_string(dir.join(CONTAINER)) {
                self.backend.remove_leftover(self.sh, leftover.trim());
            }
        }
        let name = unique_name(&profile.name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(CONTAINER), &name)?;
        if let Some(snapshot) = input.snapshot.as_ref().filter(|_| !dir.join("db").exists()) {
            link_copy(&snapshot.db, &dir.join("db"))?;
        }
        let after_a_state = resume || input.snapshot.is_some();
        let (log, reports) = (dir.join("run.log"), dir.join(BLOCK_REPORTS));
        let stall = Some((Duration::from_secs(config.stall_secs), reports.as_path()));
        let call = RunnerCall { name: &name, memory: Some(profile.memory), input_dir: Some(&input.dir), blocks: input.files.as_deref(), dir: &dir, timeout, stall, log: &log };
        let exit = self.backend.run(self.sh, &call, |paths| {
            let mut args = run_args(paths, input.files.is_some(), profile, config);
            args.extend(after_a_state.then(|| "--resume".to_string()));
            match &input.snapshot {
                Some(snapshot) => args.extend(snapshot.run_args()),
                None => args.extend(config.layout_args()),
            }
            args
        })?;
        write_atomically(&dir.join(EXIT), serde_json::to_string_pretty(&exit)?)?;
        self.report(&dir, profile, &exit, &name, timeout)
    }

    /// The report of a profile whose run ended before (its `exit.json` is there), read again;
    /// `None` when it has not ended.
    pub fn ended_profile(&self, input: &Input, profile: &Profile, config: &ReproConfig) -> Result<Option<ProfileReport>> {
        let dir = input.profile_dir(profile);
        let Some(exit) = read_json(&dir.join(EXIT), |text| serde_json::from_str::<RunExit>(text))? else { return Ok(None) };
        let name = std::fs::read_to_string(dir.join(CONTAINER)).unwrap_or_else(|_| unique_name(&profile.name));
        self.report(&dir, profile, &exit, name.trim(), Duration::from_secs(config.timeout_secs)).map(Some)
    }

    fn report(&self, dir: &Path, profile: &Profile, exit: &RunExit, name: &str, timeout: Duration) -> Result<ProfileReport> {
        ProfileReport::read(profile, dir, exit, self.backend.enforcement(), || self.read_back_state(dir, name, timeout))
    }

    /// Reads the database a run left, with a fresh runner (the runner is the only thing that
    /// reads RocksDB). No database at all is an empty state.
    fn read_back_state(&self, dir: &Path, name: &str, timeout: Duration) -> Result<StoredState> {
        if !dir.join("db/CURRENT").exists() {
            return Ok(StoredState { state_root: hex::encode([0u8; 32]), db_layout: "trie".into(), ..StoredState::default() });
        }
        let args = |paths: &Paths| -> Vec<String> {
            let out = &paths.out;
            let (db, json, dump) = (format!("{out}/db"), format!("{out}/state.json"), format!("{out}/{DUMP}"));
            ["state", "--db", &db, "--out", &json, "--dump", &dump].map(String::from).to_vec()
        };
        let (name, log) = (format!("{name}-state"), dir.join("state.log"));
        let call = RunnerCall { name: &name, memory: None, input_dir: None, blocks: None, dir, timeout, stall: None, log: &log };
        let exit = self.backend.run(self.sh, &call, args)?;
        match read_json(&dir.join("state.json"), |text| serde_json::from_str::<StoredState>(text))? {
            Some(state) if exit.exit_code == i64::from(schema::runner_exit::COMPLETED) => Ok(state),
            _ => bail!("reading back the state left in {} failed: {} (see {})", dir.join("db").display(), last_line(&log), log.display()),
        }
    }
}

/// What every profile of a run is given: `input/` (the guest, the blocks' text or map), and the
/// block files a map names.
pub struct Input {
    pub dir: PathBuf,
    pub files: Option<PathBuf>,
    /// The database every profile starts from (`--from-db`), made ready.
    pub snapshot: Option<Prepared>,
}

/// A snapshot's copy made ready (`host-runner snapshot`): each profile starts from a copy of it.
pub struct Prepared {
    pub db: PathBuf,
    pub report: schema::SnapshotReport,
}

impl Prepared {
    /// The snapshot made ready in run directory `dir` (`snapshot/`), if it was.
    fn read(dir: &Path) -> Result<Option<Self>> {
        let base = dir.join("snapshot");
        let report = read_json(&base.join("snapshot.json"), |text| serde_json::from_str::<schema::SnapshotReport>(text))?;
        Ok(report.map(|report| Prepared { db: base.join("db"), report }))
    }

    /// The runner's arguments that commit in the snapshot's layout, after its height.
    fn run_args(&self) -> Vec<String> {
        let mut args = vec!["--layout".to_string(), self.report.layout.clone()];
        if let Some(label) = &self.report.label {
            args.extend(["--label".to_string(), label.clone()]);
        }
        args
    }
}

impl Input {
    /// Where `profile`'s run leaves its files (run.log, result.json, db/), beside `input/`.
    pub fn profile_dir(&self, profile: &Profile) -> PathBuf {
        self.dir.parent().expect("input has a parent").join(&profile.name)
    }
}

const BLOCKS_TEXT: &str = "blocks.txt";
/// The name of the profile's last container (or local process), to remove it on `--resume`.
const CONTAINER: &str = "container";
/// How the profile's run ended (`RunExit`), once it has.
const EXIT: &str = "exit.json";
const BLOCKS_MAP: &str = "blocks.map";

/// The last line of `log` that says something.
fn last_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)").trim_start_matches("host-runner: error: ").to_string()
}

/// The runner's arguments for one profile's run, with the paths it sees.
fn run_args(paths: &Paths, mapped: bool, profile: &Profile, config: &ReproConfig) -> Vec<String> {
    let (input, out) = (&paths.input, &paths.out);
    let mut args: Vec<String> = vec![
        "watch".into(), "--report".into(), format!("{out}/watch.json"), "--".into(),
        "run".into(), "--wasm".into(), format!("{input}/guest.wasm"),
        "--db".into(), format!("{out}/db"), "--out".into(), format!("{out}/result.json"),
        "--dump".into(), format!("{out}/{DUMP}"), "--block-reports".into(), format!("{out}/{BLOCK_REPORTS}"),
    ];
    match mapped {
        true => args.extend(["--blocks".into(), format!("{input}/{BLOCKS_MAP}"), "--block-dir".into(), paths.blocks.clone()]),
        false => args.extend(["--blocks".into(), format!("{input}/{BLOCKS_TEXT}")]),
    }
    args.extend(config.policy_args());
    args.extend(profile.runner_args());
    args
}
