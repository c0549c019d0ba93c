//! The node under test as the lab drives it, wherever it runs: a container ([`Container`]) or a
//! local process ([`super::local_node::LocalNode`]).

use std::path::Path;

use anyhow::Result;

/// How the node is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub running: bool,
    pub exit_code: i64,
    /// Docker's `State.OOMKilled` (false for a local process: there is no such record).
    pub oom_killed: bool,
    pub pid: u32,
}

pub trait NodeProcess {
    fn state(&self) -> Result<State>;
    /// Where its JSON-RPC is reached from this machine (it may change at each start).
    fn address(&self) -> Result<String>;
    /// SIGKILL, as a crash.
    fn kill(&self) -> Result<()>;
    /// Starts it again: same command line, same database.
    fn start(&self) -> Result<()>;
    /// SIGTERM, then SIGKILL after `grace_secs`.
    fn stop(&self, grace_secs: u32) -> Result<()>;
    /// Its memory cgroup, read while it runs (its own, never one it shares).
    fn memory_cgroup(&self, pid: u32) -> Option<cgroup::Cgroup>;
    /// Its last `lines` lines of output.
    fn tail(&self, lines: usize) -> Vec<String>;
    /// Everything it printed, into `file`.
    fn save_log(&self, file: &Path) -> Result<()>;
}
