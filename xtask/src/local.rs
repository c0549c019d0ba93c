//! The local backend, for machines without a Docker engine: host-runner runs as a child process
//! under a real memory limit. A memory cgroup this tool creates and removes when it can write one
//! (v1 memory controller or v2), otherwise RLIMIT_AS on the runner itself.
//!
//! How that differs from a container: no network, filesystem or user isolation; with a cgroup the
//! memory accounting is the same as Docker's; RLIMIT_AS limits address space, not memory, so
//! wasmtime's 4 GiB reservations fail at instantiation long before memory runs out.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::config::MemoryLimit;
use crate::docker::ContainerExit;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How the local backend enforces a limit on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalLimit {
    Cgroup { version: u8 },
    AddressSpace,
}

impl LocalLimit {
    /// Tries to create (and remove) a memory cgroup; RLIMIT_AS when that is not possible, or when
    /// `MEMREPRO_LOCAL_LIMIT=address-space` asks for it.
    pub fn probe() -> Self {
        if std::env::var("MEMREPRO_LOCAL_LIMIT").as_deref() == Ok("address-space") {
            return Self::AddressSpace;
        }
        match LocalCgroup::create(&format!("memrepro-probe-{}", std::process::id()), "64m".parse().expect("valid")) {
            Ok(cgroup) => Self::Cgroup { version: cgroup.version },
            Err(_) => Self::AddressSpace,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Self::Cgroup { version: 1 } => "a memory cgroup (v1 memory controller) created per run".into(),
            Self::Cgroup { .. } => "a memory cgroup (v2) created per run".into(),
            Self::AddressSpace => "RLIMIT_AS on the runner (no writable memory cgroup here): limits address space, not memory".into(),
        }
    }
}

/// A memory cgroup with a limit, removed when dropped.
pub struct LocalCgroup {
    dir: PathBuf,
    version: u8,
}

impl LocalCgroup {
    pub fn create(name: &str, limit: MemoryLimit) -> Result<Self> {
        let root = Path::new(CGROUP_ROOT);
        let bytes = limit.bytes().to_string();
        let (version, dir) = if root.join("cgroup.controllers").exists() {
            // v2: the memory controller must be enabled for the root's children.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
            (2, root.join(name))
        } else if root.join("memory").is_dir() {
            (1, root.join("memory").join(name))
        } else {
            bail!("no memory cgroup controller is mounted under {CGROUP_ROOT}");
        };
        std::fs::create_dir(&dir).with_context(|| format!("creating cgroup {}", dir.display()))?;
        let cgroup = Self { dir, version };
        let writes: &[(&str, &str)] = match version {
            2 => &[("memory.max", &bytes), ("memory.swap.max", "0")],
            _ => &[("memory.limit_in_bytes", &bytes), ("memory.memsw.limit_in_bytes", &bytes)],
        };
        for (i, (file, value)) in writes.iter().enumerate() {
            let written = std::fs::write(cgroup.dir.join(file), value);
            // The swap file is absent when swap accounting is off: nothing to limit then.
            if written.is_err() && i == 0 {
                written.with_context(|| format!("writing {file} of {}", cgroup.dir.display()))?;
            }
        }
        Ok(cgroup)
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for LocalCgroup {
    fn drop(&mut self) {
        // The last process may take a moment to leave after it exited.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not remove cgroup {}", self.dir.display());
    }
}

/// Runs `runner args` to its end (or kills it at the timeout) under `memory`, enforced by `how`.
/// `args` starts with the runner's subcommand; for RLIMIT_AS the limit goes to `watch`.
pub fn run_local(
    runner: &Path,
    name: &str,
    memory: Option<MemoryLimit>,
    how: LocalLimit,
    mut args: Vec<String>,
    timeout: Duration,
    log: &Path,
) -> Result<ContainerExit> {
    let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cgroup = None;
    let mut command = match (memory, how) {
        (Some(limit), LocalLimit::Cgroup { .. }) => {
            let created = LocalCgroup::create(name, limit)?;
            // The shell moves itself into the cgroup, then becomes the runner: nothing runs
            // outside the limit, not even briefly.
            let mut command = Command::new("sh");
            command.arg("-c").arg("echo $$ > \"$MEMREPRO_CGROUP_PROCS\" && exec \"$@\"").arg("sh").arg(runner);
            command.env("MEMREPRO_CGROUP_PROCS", created.procs());
            cgroup = Some(created);
            command
        }
        (Some(limit), LocalLimit::AddressSpace) => {
            if args.first().map(String::as_str) == Some("watch") {
                args.splice(1..1, ["--address-space-limit".to_string(), limit.bytes().to_string()]);
            }
            Command::new(runner)
        }
        (None, _) => Command::new(runner),
    };
    use std::os::unix::process::CommandExt;
    let started = Instant::now();
    let mut child = command
        .args(&args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", runner.display()))?;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout && !timed_out {
            timed_out = true;
            // The whole process group: the watcher and the run it started.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(cgroup);
    use std::os::unix::process::ExitStatusExt;
    let exit_code = status.code().map_or_else(|| 128 + i64::from(status.signal().unwrap_or(0)), i64::from);
    Ok(ContainerExit { exit_code, oom_killed: false, timed_out, wall: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_space_limit_goes_to_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        // `echo` stands in for the runner: it prints the arguments it was given.
        let args = ["watch", "--report", "r.json", "--", "run"].map(String::from).to_vec();
        let exit = run_local(Path::new("/bin/echo"), "t", Some("512m".parse().unwrap()), LocalLimit::AddressSpace, args, Duration::from_secs(5), &log).unwrap();
        assert_eq!(exit.exit_code, 0);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "watch --address-space-limit 536870912 --report r.json -- run\n");
    }

    /// Needs a writable memory cgroup hierarchy (root on this machine kind; CI runs as root).
    #[test]
    fn a_cgroup_has_the_limit_and_is_removed_when_dropped() {
        let cgroup = LocalCgroup::create(&format!("memrepro-unit-{}", std::process::id()), "96m".parse().unwrap()).unwrap();
        let dir = cgroup.dir.clone();
        let limit_file = if cgroup.version == 2 { "memory.max" } else { "memory.limit_in_bytes" };
        assert_eq!(std::fs::read_to_string(dir.join(limit_file)).unwrap().trim(), (96u64 << 20).to_string());
        drop(cgroup);
        assert!(!dir.exists());
    }

    #[test]
    fn a_run_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let exit = run_local(Path::new("/bin/sleep"), "t", None, LocalLimit::AddressSpace, vec!["30".into()], Duration::from_millis(200), &dir.path().join("log")).unwrap();
        assert!(exit.timed_out && exit.exit_code == 128 + 9, "{exit:?}");
        assert!(exit.wall < Duration::from_secs(5));
    }
}
