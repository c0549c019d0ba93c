//! Where the runner runs: in a hardened Docker container ([`docker`], from the image [`image`]
//! builds), or as a local process under a limit of its own ([`local`]); both waited for by the
//! one loop in [`supervise`]. [`Backend`] hides which from the rest of the xtask.

pub mod docker;
pub mod image;
pub mod local;
pub mod supervise;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use xshell::Shell;

use crate::artifacts::{build_runner, host_triple};
use crate::config::ByteSize;
use crate::progress::phase;
use crate::units::mib;
use docker::{check_engine, container_user, docker_answers, make_writable_for_container, run_container, ContainerSpec, Mount};
use image::{runner_image, ImageBuild, RunnerImage};
use local::{run_local, LocalLimit};
use supervise::{Deadline, Enforcement, RunExit};

/// Where the runner runs (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// Docker when a daemon answers, else local (with a note saying so).
    Auto,
    /// One hardened container per run.
    Docker,
    /// A child process under a cgroup (or RLIMIT_AS) this tool sets up.
    Local,
}

/// The backend decided on this machine, before anything is built: the engine checked, or the
/// local limit's mechanism probed (or refused).
pub enum Chosen {
    Docker,
    Local(LocalLimit),
}

impl Chosen {
    pub fn on_this_machine(sh: &Shell, choice: BackendChoice) -> Result<Self> {
        let docker = match choice {
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
            return Ok(Self::Docker);
        }
        Ok(Self::Local(LocalLimit::probe()?))
    }

    /// Phase `2/total`: the runner built, as an image or as a binary for the local backend.
    pub fn build(self, sh: &Shell, root: &Path, image_build: ImageBuild, total: usize) -> Result<Backend> {
        match self {
            Self::Docker => {
                let image = phase(2, total, "runner image (no registry needed)", || runner_image(sh, root, image_build))?;
                eprintln!("    {} ({}, {})", image.tag, mib(image.size_bytes), if image.built { "built" } else { "unchanged, reused" });
                Ok(Backend::Docker { image, user: container_user(sh) })
            }
            Self::Local(limit) => {
                let runner = phase(2, total, "runner binary (local backend)", || build_runner(sh, &host_triple(sh)?))?;
                eprintln!("    {}; limits enforced by {}", runner.display(), limit.describe());
                Ok(Backend::Local { runner, limit })
            }
        }
    }
}

/// The runner, ready to run.
pub enum Backend {
    Docker { image: RunnerImage, user: String },
    Local { runner: PathBuf, limit: LocalLimit },
}

/// One run of the runner: where its files go and how long it may take.
pub struct RunnerCall<'a> {
    pub name: &'a str,
    pub memory: Option<ByteSize>,
    /// Mounted read-only (as `/input` in a container).
    pub input_dir: Option<&'a Path>,
    /// Block files a block map names, mounted read-only (a directory as `/blocks`, one file as
    /// `/blocks/NAME`).
    pub blocks: Option<&'a Path>,
    /// The run's own directory (`/out` in a container).
    pub dir: &'a Path,
    pub timeout: Duration,
    /// Killed when this file (its block reports) has not grown for this long.
    pub stall: Option<(Duration, &'a Path)>,
    /// Where its stdout and stderr go.
    pub log: &'a Path,
}

/// Where the runner sees a call's directories: its input, its own directory, the directory of
/// the block files (empty when none).
pub struct Paths {
    pub input: String,
    pub out: String,
    pub blocks: String,
}

impl Backend {
    /// What runs the runner, for the report.
    pub fn describe(&self) -> String {
        match self {
            Self::Docker { image, .. } => format!("docker image {} ({})", image.tag, mib(image.size_bytes)),
            Self::Local { limit, .. } => format!("local process under {}", limit.describe()),
        }
    }

    /// What enforces a run's memory limit, so what its watcher must have seen.
    pub fn enforcement(&self) -> Enforcement {
        match self {
            Self::Local { limit: LocalLimit::AddressSpace, .. } => Enforcement::AddressSpace,
            _ => Enforcement::Cgroup,
        }
    }

    /// Refuses, before anything runs, block files a container's user cannot read: run as root,
    /// containers run as `nobody`, which reads only what anyone may (`mounted` is the file or
    /// directory mounted, `read` the files in it the runner opens).
    pub fn check_readable(&self, mounted: &Path, read: &[PathBuf]) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let Self::Docker { user, .. } = self else { return Ok(()) };
        if user != docker::NOBODY {
            return Ok(());
        }
        let mode = |path: &Path| std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
        if mounted.is_dir() && mode(mounted) & 0o005 != 0o005 {
            anyhow::bail!("{}: the containers run as nobody ({}), who cannot list this directory: `chmod o+rx` it", mounted.display(), docker::NOBODY);
        }
        if let Some(unreadable) = read.iter().find(|file| mode(file) & 0o004 == 0) {
            anyhow::bail!("{}: the containers run as nobody ({}), who cannot read this block file: `chmod o+r` it", unreadable.display(), docker::NOBODY);
        }
        Ok(())
    }

    /// Removes what an interrupted run named `name` may have left running: its container (a
    /// local process group ends with the xtask that started it only on a signal it forwards;
    /// the database's lock refuses a second runner either way).
    pub fn remove_leftover(&self, sh: &Shell, name: &str) {
        if let Self::Docker { .. } = self {
            let _ = xshell::cmd!(sh, "docker rm -f {name}").quiet().ignore_stdout().ignore_stderr().run();
        }
    }

    /// Runs `host-runner` with the arguments `args(paths)` builds from the paths it sees.
    pub fn run(&self, sh: &Shell, call: &RunnerCall, args: impl Fn(&Paths) -> Vec<String>) -> Result<RunExit> {
        match self {
            Self::Docker { image, user } => {
                make_writable_for_container(call.dir)?;
                let mut mounts = vec![Mount { host: call.dir.to_path_buf(), container: "/out".into(), read_only: false }];
                if let Some(input) = call.input_dir {
                    mounts.push(Mount { host: input.to_path_buf(), container: "/input".into(), read_only: true });
                }
                let mut blocks = String::new();
                if let Some(files) = call.blocks {
                    let container = match files.is_dir() {
                        true => "/blocks".to_string(),
                        false => format!("/blocks/{}", files.file_name().unwrap_or_default().to_string_lossy()),
                    };
                    mounts.push(Mount { host: files.to_path_buf(), container, read_only: true });
                    blocks = "/blocks".into();
                }
                let paths = Paths { input: "/input".into(), out: "/out".into(), blocks };
                let spec = ContainerSpec {
                    image: &image.tag,
                    name: call.name.into(),
                    user,
                    memory: call.memory,
                    mounts,
                    args: args(&paths),
                    timeout: call.timeout,
                    stall: call.stall.map(|(after, file)| (after, file.to_path_buf())),
                    log: call.log.to_path_buf(),
                };
                run_container(sh, &spec)
            }
            Self::Local { runner, limit } => {
                std::fs::create_dir_all(call.dir)?;
                let shown = |path: Option<&Path>| path.map_or(String::new(), |p| p.display().to_string());
                let blocks = call.blocks.map(|files| if files.is_dir() { files } else { files.parent().unwrap_or(Path::new(".")) });
                let paths = Paths { input: shown(call.input_dir), out: shown(Some(call.dir)), blocks: shown(blocks) };
                run_local(runner, call.name, call.memory, *limit, args(&paths), &Deadline { timeout: call.timeout, stall: call.stall }, call.log)
            }
        }
    }
}
