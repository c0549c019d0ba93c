//! The local backend, for machines without a Docker engine: host-runner runs as a child process
//! under a real memory limit. A memory cgroup this tool creates and removes when it can write one
//! (v1 memory controller or v2), otherwise RLIMIT_AS on the runner itself.
//!
//! How that differs from a container: no network, filesystem or user isolation; with a cgroup the
//! memory accounting is the same as Docker's; RLIMIT_AS limits address space, not memory, so
//! wasmtime's 4 GiB reservations fail at instantiation long before memory runs out.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use cgroup::CreatedCgroup;

use crate::config::ByteSize;
use crate::supervise::{exit_code, wait_or_kill, RunExit};

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
        match create_cgroup(&format!("memrepro-probe-{}", std::process::id()), "64m".parse().expect("valid")) {
            Ok(created) => Self::Cgroup { version: created.cgroup.version },
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

/// A memory cgroup for one run under the machine's hierarchy, with `limit` and no swap.
fn create_cgroup(name: &str, limit: ByteSize) -> Result<CreatedCgroup> {
    CreatedCgroup::create(Path::new(cgroup::ROOT), name, limit.bytes())
}

/// Runs `runner args` to its end (or kills it at the timeout) under `memory`, enforced by `how`.
/// `args` starts with the runner's subcommand; for RLIMIT_AS the limit goes to `watch`.
pub fn run_local(
    runner: &Path,
    name: &str,
    memory: Option<ByteSize>,
    how: LocalLimit,
    mut args: Vec<String>,
    timeout: Duration,
    log: &Path,
) -> Result<RunExit> {
    let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cgroup = None;
    let mut command = match (memory, how) {
        (Some(limit), LocalLimit::Cgroup { .. }) => {
            let created = create_cgroup(name, limit)?;
            // The shell moves itself into the cgroup, then becomes the runner: nothing runs
            // outside the limit, not even briefly.
            let mut command = Command::new("sh");
            command.arg("-c").arg("echo $$ > \"$MEMREPRO_CGROUP_PROCS\" && exec \"$@\"").arg("sh").arg(runner);
            command.env("MEMREPRO_CGROUP_PROCS", created.procs_file());
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
    let mut child = command
        .args(&args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", runner.display()))?;
    let group = format!("-{}", child.id());
    let (status, harness_timeout, wall) = wait_or_kill(&mut child, timeout, || {
        // The whole process group: the watcher and the run it started.
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    })?;
    drop(cgroup);
    Ok(RunExit { exit_code: exit_code(status), docker_oom_killed: None, harness_timeout, wall })
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

    /// Which mechanism is in use depends on who runs the tests: root (or a user with a delegated
    /// cgroup) gets a memory cgroup per run; anyone else (GitHub's `runner` user, `.ci/run`'s
    /// unprivileged pass) gets RLIMIT_AS. Each is asserted for what it does.
    #[test]
    fn the_local_limit_is_a_cgroup_where_one_can_be_made_and_rlimit_as_elsewhere() {
        match create_cgroup(&format!("memrepro-unit-{}", std::process::id()), "96m".parse().unwrap()) {
            Ok(created) => {
                let dir = created.cgroup.dir.clone();
                assert_eq!(created.cgroup.limit(), Some(96 << 20));
                assert!(matches!(created.cgroup.swap(), schema::SwapState::Off { .. }), "{:?}", created.cgroup.swap());
                assert!(matches!(LocalLimit::probe(), LocalLimit::Cgroup { .. }));
                drop(created);
                assert!(!dir.exists());
            }
            Err(error) => {
                let error = format!("{error:#}");
                assert!(error.contains("Permission denied") || error.contains("Read-only file system"), "an unexpected failure: {error}");
                assert_eq!(LocalLimit::probe(), LocalLimit::AddressSpace, "without a writable cgroup: {error}");
            }
        }
    }

    #[test]
    fn a_run_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let exit = run_local(Path::new("/bin/sleep"), "t", None, LocalLimit::AddressSpace, vec!["30".into()], Duration::from_millis(200), &dir.path().join("log")).unwrap();
        assert!(exit.harness_timeout == Some(Duration::from_millis(200)) && exit.exit_code == 128 + 9, "{exit:?}");
        assert!(exit.wall < Duration::from_secs(5));
    }
}
