//! Waiting for one run, whichever backend started it: the one poll-and-kill loop, how the run
//! ended as seen from outside, and what enforced its memory limit.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How a run ended, seen from outside it (a container or a local process); kept as
/// `exit.json` in the run's directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunExit {
    /// The exit code; 128 + N for a process ended by signal N (as Docker reports it).
    pub exit_code: i64,
    /// Docker's `State.OOMKilled`, `None` for a local process (no such record). It can mislead:
    /// it is shown as evidence, never decided on alone.
    pub docker_oom_killed: Option<bool>,
    /// Set when the harness killed the run because it ran past this timeout.
    pub harness_timeout: Option<Duration>,
    pub wall: Duration,
}

/// What enforced a run's memory limit, so what its watcher must have seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// A memory cgroup (Docker, or the local backend's own).
    Cgroup,
    /// RLIMIT_AS (the local backend without a writable cgroup).
    AddressSpace,
}

/// Waits for `child`, calling `kill` once `timeout` has passed; the exit status, whether `kill`
/// was called, and the time from the start.
pub fn wait_or_kill(child: &mut Child, timeout: Duration, kill: impl FnOnce()) -> Result<(ExitStatus, Option<Duration>, Duration)> {
    let started = Instant::now();
    let mut kill = Some(kill);
    let mut killed_at = None;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the run")? {
            return Ok((status, killed_at, started.elapsed()));
        }
        if started.elapsed() > timeout {
            if let Some(kill) = kill.take() {
                killed_at = Some(timeout);
                kill();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A run's log, opened to append: a resumed run's output goes on after the interrupted one's.
pub fn open_log(path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))
}

/// An exit status as one number: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    status.code().map_or_else(|| 128 + i64::from(status.signal().unwrap_or(0)), i64::from)
}
