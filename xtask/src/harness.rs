//! What every command that runs profiles needs: the backend chosen and the runner built, the
//! guest built, and one profile run, classified, with the state it committed. `repro`, `sweep`
//! and `bisect` all run through [`Harness`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xshell::Shell;

use schema::StoredState;

use crate::backend::image::ImageBuild;
use crate::backend::docker::unique_name;
use crate::backend::{Backend, BackendChoice, Chosen, RunnerCall};
use crate::config::{Profile, ReproConfig};
use crate::input::Guest;
use crate::judge::profile::{ProfileReport, DUMP};
use crate::progress::phase;
use crate::run_dir::read_json;

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
        let timeout = Duration::from_secs(config.timeout_secs);
        let name = unique_name(&profile.name);
        let log = dir.join("run.log");
        let call = RunnerCall { name: &name, memory: Some(profile.memory), input_dir: Some(input_dir), dir: &dir, timeout, log: &log };
        let exit = self.backend.run(self.sh, &call, |input, out| run_args(input, out, profile, config))?;
        ProfileReport::read(profile, &dir, &exit, self.backend.enforcement(), || self.read_back_state(&dir, &name, timeout))
    }

    /// Reads the database a run left, with a fresh runner (the runner is the only thing that
    /// reads RocksDB). No database at all is an empty state.
    fn read_back_state(&self, dir: &Path, name: &str, timeout: Duration) -> Result<StoredState> {
        if !dir.join("db/CURRENT").exists() {
            return Ok(StoredState { state_root: hex::encode([0u8; 32]), ..StoredState::default() });
        }
        let args = |_: &str, out: &str| -> Vec<String> {
            let (db, json, dump) = (format!("{out}/db"), format!("{out}/state.json"), format!("{out}/{DUMP}"));
            ["state", "--db", &db, "--out", &json, "--dump", &dump].map(String::from).to_vec()
        };
        let (name, log) = (format!("{name}-state"), dir.join("state.log"));
        let call = RunnerCall { name: &name, memory: None, input_dir: None, dir, timeout, log: &log };
        let exit = self.backend.run(self.sh, &call, args)?;
        match read_json(&dir.join("state.json"), |text| serde_json::from_str::<StoredState>(text))? {
            Some(state) if exit.exit_code == i64::from(schema::runner_exit::COMPLETED) => Ok(state),
            _ => bail!("reading back the state left in {} failed; see {}", dir.join("db").display(), dir.join("state.log").display()),
        }
    }
}

/// The runner's arguments for one profile's run, with the paths it sees.
fn run_args(input: &str, out: &str, profile: &Profile, config: &ReproConfig) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "watch".into(), "--report".into(), format!("{out}/watch.json"), "--".into(),
        "run".into(), "--wasm".into(), format!("{input}/guest.wasm"), "--blocks".into(), format!("{input}/blocks.txt"),
        "--db".into(), format!("{out}/db"), "--out".into(), format!("{out}/result.json"),
        "--dump".into(), format!("{out}/{DUMP}"),
    ];
    args.extend(config.policy_args());
    args.extend(profile.runner_args());
    args
}
