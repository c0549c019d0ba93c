//! Waiting for one run, whichever backend started it: the one poll-and-kill loop, how the run
//! ended as seen from outside, and what enforced its memory limit.

use std::path::Path;
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
    /// Set when the harness killed the run because it committed no block for this long.
    #[serde(default)]
    pub harness_stall: Option<Duration>,
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

/// When the harness stops a run before it ends: past `timeout`, or when `progress` (the run's
/// block reports, a line per committed block) has not grown for `stall`.
pub struct Deadline<'a> {
    pub timeout: Duration,
    pub stall: Option<(Duration, &'a Path)>,
}

/// How the wait ended: the exit status, why the harness killed the run (if it did), the time
/// from the start.
pub struct Waited {
    pub status: ExitStatus,
    pub harness_timeout: Option<Duration>,
    pub harness_stall: Option<Duration>,
    pub wall: Duration,
}

/// Waits for `child`, calling `kill` once the deadline passes; on Ctrl-C or SIGTERM to the
/// xtask, calls `kill`, waits for the child to end and returns the interruption as the error.
pub fn wait_or_kill(child: &mut Child, deadline: &Deadline, kill: impl FnOnce()) -> Result<Waited> {
    let started = Instant::now();
    let mut kill = Some(kill);
    let (mut harness_timeout, mut harness_stall) = (None, None);
    let mut progress = Progress::new(deadline.stall);
    loop {
        if let Some(status) = child.try_wait().context("waiting for the run")? {
            crate::interrupt::check()?;
            return Ok(Waited { status, harness_timeout, harness_stall, wall: started.elapsed() });
        }
        // Killed once, for the first reason that comes; then waited for.
        let stop = kill.is_some()
            && if crate::interrupt::received().is_some() {
                true
            } else if started.elapsed() > deadline.timeout {
                harness_timeout = Some(deadline.timeout);
                true
            } else if progress.stalled() {
                harness_stall = deadline.stall.map(|(after, _)| after);
                true
            } else {
                false
            };
        if stop {
            (kill.take().expect("not killed yet"))();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// When a run last made progress: its progress file last grew.
struct Progress<'a> {
    stall: Option<(Duration, &'a Path)>,
    len: u64,
    at: Instant,
}

impl<'a> Progress<'a> {
    fn new(stall: Option<(Duration, &'a Path)>) -> Self {
        Self { stall, len: 0, at: Instant::now() }
    }

    /// Whether the file has not grown for the stall time.
    fn stalled(&mut self) -> bool {
        let Some((after, file)) = self.stall else { return false };
        let len = std::fs::metadata(file).map_or(0, |m| m.len());
        if len != self.len {
            (self.len, self.at) = (len, Instant::now());
        }
        self.at.elapsed() > after
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
