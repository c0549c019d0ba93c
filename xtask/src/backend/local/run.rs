//! Running the runner as a local child process under its limit, and killing it (and whatever
//! it started) at the timeout.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use cgroup::CreatedCgroup;

use super::limit::{create_cgroup, unit_name, LocalLimit};
use crate::backend::supervise::{exit_code, open_log, wait_or_kill, Deadline, RunExit};
use crate::config::ByteSize;

/// Runs `runner args` to its end (or kills it at the timeout) under `memory`, enforced by `how`.
/// `args` starts with the runner's subcommand; for RLIMIT_AS the limit goes to `watch`.
pub fn run_local(
    runner: &Path,
    name: &str,
    memory: Option<ByteSize>,
    how: LocalLimit,
    args: Vec<String>,
    deadline: &Deadline,
    log: &Path,
) -> Result<RunExit> {
    let log_file = open_log(log)?;
    let mut spawned = Spawned::start(runner, name, memory, how, args, log_file)?;
    let killer = spawned.killer();
    let waited = wait_or_kill(&mut spawned.child, deadline, || killer.kill());
    drop(spawned);
    let waited = waited?;
    Ok(RunExit { exit_code: exit_code(waited.status), docker_oom_killed: None, harness_timeout: waited.harness_timeout, harness_stall: waited.harness_stall, wall: waited.wall })
}

/// A program started as a local child under its limit, in its own process group.
pub struct Spawned {
    pub child: std::process::Child,
    limited: Limited,
}

impl Spawned {
    /// Starts `program args` under `memory`, enforced by `how`, its output to `log`.
    pub fn start(program: &Path, name: &str, memory: Option<ByteSize>, how: LocalLimit, args: Vec<String>, log: std::fs::File) -> Result<Self> {
        let mut limited = Limited::new(program, name, memory, how, args)?;
        let child = limited
            .command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self { child, limited })
    }

    /// The memory cgroup made for it, when the limit is one this tool created.
    pub fn cgroup(&self) -> Option<&cgroup::Cgroup> {
        self.limited.cgroup.as_ref().map(|created| &created.cgroup)
    }

    /// SIGKILL to everything it started.
    pub fn kill_all(&self) {
        self.killer().kill();
    }

    fn killer(&self) -> Killer {
        Killer { scope_kill: self.limited.scope_kill.clone(), group: self.child.id() }
    }

    /// SIGTERM to its process group.
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.child.id())]).status();
    }
}

/// What kills a spawned program and everything it started: a scope's processes, then its
/// process group.
struct Killer {
    scope_kill: Option<Vec<String>>,
    group: u32,
}

impl Killer {
    fn kill(&self) {
        // A scope's processes first: through sudo they are not all in our process group.
        if let Some(kill) = &self.scope_kill {
            let _ = Command::new(&kill[0]).args(&kill[1..]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.group)]).status();
    }
}

/// The command that starts the runner under its limit, and what must outlive it.
struct Limited {
    command: Command,
    /// The run's own cgroup, removed when dropped (after the run).
    cgroup: Option<CreatedCgroup>,
    /// The command that kills a systemd scope's processes.
    scope_kill: Option<Vec<String>>,
}

impl Limited {
    fn new(runner: &Path, name: &str, memory: Option<ByteSize>, how: LocalLimit, mut args: Vec<String>) -> Result<Self> {
        let plain = |args: &[String]| {
            let mut command = Command::new(runner);
            command.args(args);
            Self { command, cgroup: None, scope_kill: None }
        };
        Ok(match (memory, how) {
            (Some(limit), LocalLimit::Cgroup { .. }) => {
                let created = create_cgroup(name, limit)?;
                // The shell moves itself into the cgroup, then becomes the runner: nothing runs
                // outside the limit, not even briefly.
                let mut command = Command::new("sh");
                command.arg("-c").arg("echo $$ > \"$MEMREPRO_CGROUP_PROCS\" && exec \"$@\"").arg("sh").arg(runner);
                command.env("MEMREPRO_CGROUP_PROCS", created.procs_file());
                command.args(&args);
                Self { command, cgroup: Some(created), scope_kill: None }
            }
            (Some(limit), LocalLimit::Scope(systemd)) => {
                let unit = unit_name(name);
                let argv = systemd.command(&unit, limit, runner, &args);
                let mut command = Command::new(&argv[0]);
                command.args(&argv[1..]);
                Self { command, cgroup: None, scope_kill: Some(systemd.kill_command(&unit)) }
            }
            (Some(limit), LocalLimit::AddressSpace) => {
                if args.first().map(String::as_str) == Some("watch") {
                    args.splice(1..1, ["--address-space-limit".to_string(), limit.bytes().to_string()]);
                }
                plain(&args)
            }
            (None, _) => plain(&args),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_address_space_limit_goes_to_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        // `echo` stands in for the runner: it prints the arguments it was given.
        let args = ["watch", "--report", "r.json", "--", "run"].map(String::from).to_vec();
        let exit = run_local(Path::new("/bin/echo"), "t", Some("512m".parse().unwrap()), LocalLimit::AddressSpace, args, &Deadline { timeout: Duration::from_secs(5), stall: None }, &log).unwrap();
        assert_eq!(exit.exit_code, 0);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "watch --address-space-limit 536870912 --report r.json -- run\n");
    }

    #[test]
    fn a_run_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let deadline = Deadline { timeout: Duration::from_millis(200), stall: None };
        let exit = run_local(Path::new("/bin/sleep"), "t", None, LocalLimit::AddressSpace, vec!["30".into()], &deadline, &dir.path().join("log")).unwrap();
        assert!(exit.harness_timeout == Some(Duration::from_millis(200)) && exit.exit_code == 128 + 9, "{exit:?}");
        assert!(exit.wall < Duration::from_secs(5));
    }

    #[test]
    fn a_run_whose_progress_file_stops_growing_is_killed_as_stalled() {
        let dir = tempfile::tempdir().unwrap();
        let progress = dir.path().join("blocks.jsonl");
        // Three lines 100 ms apart, then silence: killed 500 ms after the last line, not before.
        let script = format!("for i in 1 2 3; do echo $i >> {}; sleep 0.1; done; sleep 30", progress.display());
        let deadline = Deadline { timeout: Duration::from_secs(20), stall: Some((Duration::from_millis(500), &progress)) };
        let exit = run_local(Path::new("/bin/sh"), "t", None, LocalLimit::AddressSpace, vec!["-c".into(), script], &deadline, &dir.path().join("log")).unwrap();
        assert_eq!((exit.harness_stall, exit.harness_timeout, exit.exit_code), (Some(Duration::from_millis(500)), None, 128 + 9), "{exit:?}");
        assert_eq!(std::fs::read_to_string(&progress).unwrap(), "1\n2\n3\n");
        assert!(exit.wall >= Duration::from_millis(800) && exit.wall < Duration::from_secs(5), "{exit:?}");
    }
}
