//! The node under test as a local process (`--node PATH`, a binary): started under the profile's
//! memory limit by the local backend's mechanism (a cgroup of its own or a systemd scope; or
//! RLIMIT_AS by `ulimit -v`, which limits address space, not memory), its file-descriptor limit
//! set by `ulimit -n` and its CPU set by `taskset` just before it starts; killed and started again
//! as a container is.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::process::{NodeProcess, State};
use crate::backend::local::{LocalLimit, Spawned};
use crate::backend::supervise::exit_code;
use crate::config::node::{Cpus, NodeProfile};

pub struct LocalNode {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    memory: Option<schema::ByteSize>,
    how: LocalLimit,
    log: PathBuf,
    spawned: RefCell<Option<Spawned>>,
    /// How the last start ended, once it has.
    ended: RefCell<Option<i64>>,
}

impl LocalNode {
    /// Starts `program args` under `profile`'s limits; its output appends to `log`.
    pub fn run(name: String, program: &Path, args: Vec<String>, profile: &NodeProfile, how: LocalLimit, log: PathBuf) -> Result<Self> {
        check_local(profile)?;
        let (program, args) = with_limits(program, args, profile, how);
        // Under RLIMIT_AS the limit is the `ulimit -v` above; the others are made at each start.
        let memory = profile.memory.filter(|_| how != LocalLimit::AddressSpace);
        let node = Self { name, program, args, memory, how, log, spawned: RefCell::new(None), ended: RefCell::new(None) };
        node.start()?;
        Ok(node)
    }
}

/// What the local backend cannot limit, said before anything starts.
pub fn check_local(profile: &NodeProfile) -> Result<()> {
    if let Some(Cpus::Quota(quota)) = profile.cpus {
        bail!("node profile `{}`: cpus = {quota} is a CPU quota, which needs Docker; a local node takes a CPU set (cpus = \"0\")", profile.name);
    }
    if profile.pids.is_some() {
        bail!("node profile `{}`: pids needs Docker (a local process has no per-process limit on its threads)", profile.name);
    }
    Ok(())
}

/// `taskset -c SET`, and `sh -c 'ulimit -n N [-v KIB] && exec "$@"'` (files; address space when
/// RLIMIT_AS is the mechanism) around the node, as the profile asks.
fn with_limits(program: &Path, args: Vec<String>, profile: &NodeProfile, how: LocalLimit) -> (PathBuf, Vec<String>) {
    let (mut program, mut args) = (program.to_path_buf(), args);
    if let Some(Cpus::Set(set)) = &profile.cpus {
        args = [vec!["-c".to_string(), set.clone(), program.display().to_string()], args].concat();
        program = PathBuf::from("taskset");
    }
    let mut ulimits = Vec::new();
    if let Some(nofile) = profile.nofile {
        ulimits.push(format!("ulimit -n {nofile}"));
    }
    if let (Some(memory), LocalLimit::AddressSpace) = (profile.memory, how) {
        ulimits.push(format!("ulimit -v {}", memory.bytes() / 1024));
    }
    if !ulimits.is_empty() {
        let script = format!("{} && exec \"$@\"", ulimits.join(" && "));
        args = [vec!["-c".to_string(), script, "sh".into(), program.display().to_string()], args].concat();
        program = PathBuf::from("sh");
    }
    (program, args)
}

impl NodeProcess for LocalNode {
    fn state(&self) -> Result<State> {
        let mut spawned = self.spawned.borrow_mut();
        let spawned = spawned.as_mut().context("the node was never started")?;
        if let Some(status) = spawned.child.try_wait()? {
            self.ended.borrow_mut().get_or_insert(exit_code(status));
        }
        let ended = *self.ended.borrow();
        Ok(State { running: ended.is_none(), exit_code: ended.unwrap_or(0), oom_killed: false, pid: spawned.child.id() })
    }

    fn address(&self) -> Result<String> {
        Ok("127.0.0.1".into())
    }

    fn kill(&self) -> Result<()> {
        if let Some(spawned) = self.spawned.borrow_mut().as_mut() {
            spawned.kill_all();
            let status = spawned.child.wait()?;
            self.ended.borrow_mut().get_or_insert(exit_code(status));
        }
        Ok(())
    }

    fn start(&self) -> Result<()> {
        // The previous start's cgroup goes before the new one of the same name is made.
        drop(self.spawned.borrow_mut().take());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).with_context(|| format!("opening {}", self.log.display()))?;
        let spawned = Spawned::start(&self.program, &self.name, self.memory, self.how, self.args.clone(), log)?;
        *self.spawned.borrow_mut() = Some(spawned);
        *self.ended.borrow_mut() = None;
        Ok(())
    }

    fn stop(&self, grace_secs: u32) -> Result<()> {
        if let Some(spawned) = self.spawned.borrow().as_ref() {
            spawned.terminate();
        }
        let started = Instant::now();
        while self.state()?.running {
            if started.elapsed() > Duration::from_secs(u64::from(grace_secs)) {
                return self.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn memory_cgroup(&self, _pid: u32) -> Option<cgroup::Cgroup> {
        self.spawned.borrow().as_ref().and_then(|s| s.cgroup().cloned())
    }

    fn tail(&self, lines: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
        all[all.len().saturating_sub(lines)..].iter().map(|line| line.to_string()).collect()
    }

    /// The log is already a file: it is where the node wrote.
    fn save_log(&self, file: &Path) -> Result<()> {
        if file != self.log {
            std::fs::copy(&self.log, file).with_context(|| format!("copying {}", self.log.display()))?;
        }
        Ok(())
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_cpu_limits_wrap_the_node_and_what_needs_docker_is_refused() {
        let profile: NodeProfile = serde_json::from_value(serde_json::json!({ "name": "p", "cpus": "0", "nofile": 64, "memory": "512m" })).unwrap();
        let (program, args) = with_limits(Path::new("/n/node"), vec!["--port".into(), "1".into()], &profile, LocalLimit::Cgroup { version: 2 });
        assert_eq!(program, Path::new("sh"));
        assert_eq!(args, ["-c", "ulimit -n 64 && exec \"$@\"", "sh", "taskset", "-c", "0", "/n/node", "--port", "1"]);
        // RLIMIT_AS: the memory limit is the node's address space.
        let (_, args) = with_limits(Path::new("/n/node"), Vec::new(), &profile, LocalLimit::AddressSpace);
        assert_eq!(args[1], "ulimit -n 64 && ulimit -v 524288 && exec \"$@\"");
        let quota: NodeProfile = serde_json::from_value(serde_json::json!({ "name": "q", "cpus": 1.5 })).unwrap();
        assert!(check_local(&quota).unwrap_err().to_string().contains("needs Docker"));
    }
}
