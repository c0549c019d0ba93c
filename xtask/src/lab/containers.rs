//! Detached containers on one internal network, each removed when its handle is dropped (so an
//! error or a panic leaves none behind): the block server and the node under test.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::process::{NodeProcess, State};
pub use crate::backend::docker::unique_name;

/// `docker ARGS…`; its stdout, or an error with what it printed.
pub fn docker<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new("docker");
    command.args(args);
    let output = command.output().context("running docker")?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// An internal network: its containers reach each other by name and nothing outside it (the
/// host still reaches them by address, to watch and stop them).
pub struct Network {
    pub name: String,
}

impl Network {
    pub fn create() -> Result<Self> {
        let name = unique_name("lab");
        docker(["network", "create", "--internal", &name]).context("creating the lab's internal Docker network")?;
        Ok(Self { name })
    }
}

impl Drop for Network {
    /// Removes whatever is still on it first (after an error or a panic), since Docker removes a
    /// network only once nothing is on it.
    fn drop(&mut self) {
        let format = "{{range .Containers}}{{.Name}} {{end}}";
        if let Ok(names) = docker(["network", "inspect", "--format", format, &self.name]) {
            for name in names.split_whitespace() {
                let _ = docker(["rm", "-f", name]);
            }
        }
        let _ = docker(["network", "rm", &self.name]);
    }
}

/// A container started with `docker run -d`, removed (with its logs) on drop.
pub struct Container {
    pub name: String,
    network: String,
}

impl Container {
    /// `docker run -d --name NAME --network NETWORK ARGS…` (ARGS: options, the image, its arguments).
    pub fn run(name: String, network: &Network, args: &[String]) -> Result<Self> {
        Self::run_also_on(name, network, None, args)
    }

    /// [`Container::run`], also attached to the network `also` (Docker's default `bridge`, say)
    /// before it starts.
    pub fn run_also_on(name: String, network: &Network, also: Option<&str>, args: &[String]) -> Result<Self> {
        let mut all = vec!["create".to_string(), "--pull=never".into(), format!("--name={name}"), format!("--network={}", network.name)];
        all.extend(args.iter().cloned());
        docker(&all).with_context(|| format!("creating container {name}"))?;
        let container = Self { name, network: network.name.clone() };
        if let Some(also) = also {
            docker(["network", "connect", also, &container.name]).with_context(|| format!("attaching {} to network {also}", container.name))?;
        }
        container.start().with_context(|| format!("starting container {}", container.name))?;
        Ok(container)
    }

    pub fn state(&self) -> Result<State> {
        let format = "{{.State.Running}} {{.State.ExitCode}} {{.State.OOMKilled}} {{.State.Pid}}";
        let text = docker(["inspect", "--format", format, &self.name])?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [running, code, oom, pid] = fields[..] else { bail!("docker inspect printed `{text}`") };
        Ok(State { running: running == "true", exit_code: code.parse()?, oom_killed: oom == "true", pid: pid.parse()? })
    }

    /// Its address on the lab's network (it changes when the container is started again).
    pub fn address(&self) -> Result<String> {
        let format = format!("{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}", self.network);
        let address = docker(["inspect", "--format", &format, &self.name])?;
        anyhow::ensure!(!address.is_empty(), "container {} has no address on network {}", self.name, self.network);
        Ok(address)
    }

    /// SIGKILL, as a crash.
    pub fn kill(&self) -> Result<()> {
        docker(["kill", "--signal=KILL", &self.name]).map(drop)
    }

    /// Starts it again, same arguments, same mounts.
    pub fn start(&self) -> Result<()> {
        docker(["start", &self.name]).map(drop)
    }

    /// SIGTERM, then SIGKILL after `grace_secs`.
    pub fn stop(&self, grace_secs: u32) -> Result<()> {
        docker(["stop", &format!("--time={grace_secs}"), &self.name]).map(drop)
    }

    /// Its last `lines` lines of output (stdout's, then stderr's).
    pub fn tail(&self, lines: usize) -> Vec<String> {
        let Ok(output) = Command::new("docker").args(["logs", &format!("--tail={lines}"), &self.name]).output() else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        text.lines().filter(|line| !line.trim().is_empty()).map(String::from).collect()
    }

    /// Everything it printed, stdout and stderr, into `file`.
    pub fn save_log(&self, file: &Path) -> Result<()> {
        let log = std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
        let status = Command::new("docker").args(["logs", &self.name]).stdout(log.try_clone()?).stderr(log).status().context("running docker logs")?;
        anyhow::ensure!(status.success(), "docker logs {} failed", self.name);
        Ok(())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(["rm", "-f", &self.name]);
    }
}

impl NodeProcess for Container {
    fn state(&self) -> Result<State> {
        Container::state(self)
    }

    fn address(&self) -> Result<String> {
        Container::address(self)
    }

    fn kill(&self) -> Result<()> {
        Container::kill(self)
    }

    fn start(&self) -> Result<()> {
        Container::start(self)
    }

    fn stop(&self, grace_secs: u32) -> Result<()> {
        Container::stop(self, grace_secs)
    }

    /// The container's cgroup, as the host sees its process.
    fn memory_cgroup(&self, pid: u32) -> Option<cgroup::Cgroup> {
        cgroup::Cgroup::of_process(pid)
    }

    fn tail(&self, lines: usize) -> Vec<String> {
        Container::tail(self, lines)
    }

    fn save_log(&self, file: &Path) -> Result<()> {
        Container::save_log(self, file)
    }
}
