//! Talking to the Docker engine: is it there, does it enforce memory limits, and one hardened
//! `docker run` with the evidence Docker keeps about how it ended.

use std::path::{Path, PathBuf};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::supervise::{open_log, wait_or_kill, Deadline, RunExit};
use crate::config::ByteSize;

/// Whether a Docker daemon answers at all.
pub fn docker_answers(sh: &Shell) -> bool {
    cmd!(sh, "docker info").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// Fails with the fix when the CLI is missing, the daemon does not answer, or it cannot limit memory.
pub fn check_engine(sh: &Shell) -> Result<()> {
    if cmd!(sh, "docker --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        bail!("the docker CLI was not found: install Docker Engine (https://docs.docker.com/engine/install/)");
    }
    let format = "{{.MemoryLimit}}";
    let memory_limit = cmd!(sh, "docker info --format {format}").quiet().ignore_stderr().read();
    match memory_limit {
        Err(_) => bail!(
            "the Docker daemon does not answer: start it (`sudo systemctl start docker`, or `dockerd &`) and check `docker info`"
        ),
        Ok(answer) if answer.trim() != "true" => bail!(
            "this Docker engine does not support memory limits (`docker info` MemoryLimit={}): enable the memory cgroup controller (cgroup_enable=memory on the kernel command line)",
            answer.trim()
        ),
        Ok(_) => Ok(()),
    }
}

/// The user containers run as when this tool runs as root.
pub const NOBODY: &str = "65534:65534";

/// The uid:gid containers run as: never root. The invoking user when not root, so the files a
/// run leaves are theirs; `nobody` otherwise.
pub fn container_user(sh: &Shell) -> String {
    let uid = cmd!(sh, "id -u").quiet().read().unwrap_or_default();
    let gid = cmd!(sh, "id -g").quiet().read().unwrap_or_default();
    match (uid.trim(), gid.trim()) {
        ("0", _) | ("", _) | (_, "") => NOBODY.into(),
        (uid, gid) => format!("{uid}:{gid}"),
    }
}

/// `memrepro-<pid>-<n>-<what>`: unique among this process's containers and networks and other
/// processes'.
pub fn unique_name(what: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("memrepro-{}-{n}-{what}", std::process::id())
}

pub struct Mount {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

pub struct ContainerSpec<'a> {
    pub image: &'a str,
    pub name: String,
    pub user: &'a str,
    pub memory: Option<ByteSize>,
    pub mounts: Vec<Mount>,
    pub args: Vec<String>,
    pub timeout: Duration,
    /// Killed when this file (its block reports) has not grown for this long.
    pub stall: Option<(Duration, PathBuf)>,
    /// Where the container's stdout and stderr go.
    pub log: PathBuf,
}

/// The `docker run` arguments: no network, read-only root, non-root, no capabilities, few pids,
/// and swap equal to memory so the limit is the whole budget.
pub fn run_args(spec: &ContainerSpec) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--pull=never", "--network=none", "--read-only", "--cap-drop=ALL"]
        .map(String::from)
        .into();
    args.extend([
        "--security-opt=no-new-privileges".into(),
        "--pids-limit=64".into(),
        format!("--user={}", spec.user),
        format!("--name={}", spec.name),
    ]);
    if let Some(limit) = spec.memory {
        args.push(format!("--memory={}", limit.docker_arg()));
        args.push(format!("--memory-swap={}", limit.docker_arg()));
    }
    for mount in &spec.mounts {
        let mode = if mount.read_only { ",readonly" } else { "" };
        args.push(format!("--mount=type=bind,source={},target={}{mode}", mount.host.display(), mount.container));
    }
    args.push(spec.image.into());
    args.extend(spec.args.iter().cloned());
    args
}

/// Runs the container to its end (or kills it at the deadline, or on Ctrl-C), then reads
/// Docker's record of it and removes it, whichever way the wait ended.
pub fn run_container(sh: &Shell, spec: &ContainerSpec) -> Result<RunExit> {
    let name = &spec.name;
    let _ = cmd!(sh, "docker rm -f {name}").quiet().ignore_stdout().ignore_stderr().run();
    let log = open_log(&spec.log)?;
    // Its own process group: a Ctrl-C at the terminal reaches the xtask alone, which stops the
    // container itself.
    let mut child = Command::new("docker")
        .args(run_args(spec))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting docker run")?;
    let deadline = Deadline { timeout: spec.timeout, stall: spec.stall.as_ref().map(|(after, file)| (*after, file.as_path())) };
    let waited = wait_or_kill(&mut child, &deadline, || {
        let _ = cmd!(sh, "docker kill {name}").quiet().ignore_stdout().ignore_stderr().run();
    });
    let format = "{{.State.ExitCode}} {{.State.OOMKilled}}";
    let state = waited.is_ok().then(|| cmd!(sh, "docker inspect --format {format} {name}").quiet().read());
    let _ = cmd!(sh, "docker rm -f {name}").quiet().ignore_stdout().ignore_stderr().run();
    let waited = waited?;
    let client_exit = super::supervise::exit_code(waited.status);
    let Ok(state) = state.expect("inspected after a wait that ended") else {
        bail!("{}", lost_run(name, client_exit, &spec.log, "it has no record of the container"));
    };
    let (code, oom) = state.trim().split_once(' ').context("unexpected docker inspect output")?;
    let exit_code: i64 = code.parse()?;
    // `docker run` exits with its container's code; anything else is the client's own error.
    if client_exit != exit_code {
        bail!("{}", lost_run(name, client_exit, &spec.log, &format!("its record says the container exited {exit_code}")));
    }
    Ok(RunExit {
        exit_code,
        docker_oom_killed: Some(oom == "true"),
        harness_timeout: waited.harness_timeout,
        harness_stall: waited.harness_stall,
        wall: waited.wall,
    })
}

/// Why a run whose `docker run` client and Docker's record disagree is no evidence, from what
/// can be seen: a full disk under its log, the daemon gone under it (the client's own error
/// code, 125, or no record), or the client failing otherwise.
fn lost_run(name: &str, client_exit: i64, log: &Path, record: &str) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let said = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(nothing)").trim();
    let dir = log.parent().unwrap_or(Path::new("."));
    let next = "Nothing of this run is evidence: run it again (`--resume` goes on from its last committed block)";
    if disk_is_full(dir) {
        return format!("`docker run` of container {name} exited {client_exit} and {record}: the disk under {} is full (No space left on device). {next}", dir.display());
    }
    match client_exit == 125 || record.starts_with("it has no record") {
        true => format!("the Docker daemon lost the run of container {name}: `docker run` exited {client_exit} (it said: {said}) and {record}; was the daemon restarted or stopped? {next}"),
        false => format!("`docker run` of container {name} failed on its own: it exited {client_exit} (it said: {said}) and {record}. {next}"),
    }
}

/// Whether `dir`'s filesystem refuses 64 KiB more (ENOSPC).
fn disk_is_full(dir: &Path) -> bool {
    let probe = dir.join(".space-probe");
    let written = std::fs::write(&probe, vec![0u8; 64 << 10]);
    let _ = std::fs::remove_file(&probe);
    matches!(written, Err(e) if e.raw_os_error() == Some(28))
}

/// Lets the container's non-root user write `dir`.
pub fn make_writable_for_container(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .with_context(|| format!("making {} writable for the container", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_args_harden_the_container_and_pin_swap_to_memory() {
        let spec = ContainerSpec {
            image: "img:1",
            name: "c".into(),
            user: "65534:65534",
            memory: Some("512m".parse().unwrap()),
            mounts: vec![Mount { host: "/w/g.wasm".into(), container: "/guest/guest.wasm".into(), read_only: true }],
            args: vec!["--version".into()],
            timeout: Duration::from_secs(1),
            stall: None,
            log: "/dev/null".into(),
        };
        let args = run_args(&spec).join(" ");
        for expected in [
            "--pull=never", "--network=none", "--read-only", "--cap-drop=ALL", "--user=65534:65534",
            "--memory=536870912b --memory-swap=536870912b",
            "--mount=type=bind,source=/w/g.wasm,target=/guest/guest.wasm,readonly img:1 --version",
        ] {
            assert!(args.contains(expected), "`{expected}` missing from `{args}`");
        }
    }
}
