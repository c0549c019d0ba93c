//! The node under test: a container image the user built, ours (`--node host-runner`: the runner
//! image's `host-runner node`) or a binary run locally; its command line, and the `docker run`
//! arguments of one profile's run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::containers::docker;
use crate::config::node::{Cpus, NodeLab, NodeProfile, Template};

/// `--node host-runner`: our own node, from the runner image.
pub const OURS: &str = "host-runner";
/// Where the node finds what the lab gives it, inside its container.
pub const INDEXER: &str = "/input/indexer.wasm";
pub const DB: &str = "/data/db";
pub const PORT: u16 = 8080;

/// What runs as the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `host-runner node`, from the runner image (its tag once built).
    Ours(String),
    /// A user's image on this machine.
    Image(String),
    /// A binary, run as a local process (`--node ./rockshrew-mono`).
    Binary(PathBuf),
}

pub struct NodeUnderTest {
    pub program: Program,
    template: Template,
    label: Option<String>,
    auth: Option<String>,
}

/// Where the node finds what the lab gives it, as it sees them.
pub struct Places {
    pub rpc: String,
    pub wasm: String,
    pub db: String,
    pub port: u16,
}

impl NodeUnderTest {
    /// The node `--node` names, checked before anything is built: `host-runner`, a path to an
    /// executable (it has a `/`), or an image on this machine (the lab never pulls).
    pub fn named(node: &str, lab: &NodeLab) -> Result<Self> {
        let program = if node == OURS {
            Program::Ours(String::new())
        } else if node.contains('/') {
            Program::Binary(executable(Path::new(node))?)
        } else if docker(["image", "inspect", "--format", "{{.Id}}", node]).is_ok() {
            Program::Image(node.into())
        } else {
            bail!("node image `{node}` is not on this machine: the lab runs images with --pull=never, so build it or `docker load` it first (`docker image ls` lists what is here); a binary is named by a path (./node)");
        };
        Ok(Self { program, template: Template::parse(&lab.args)?, label: lab.label.clone(), auth: lab.auth.clone() })
    }

    /// Ours, once the runner image is built.
    pub fn with_runner_image(mut self, tag: &str) -> Self {
        if let Program::Ours(image) = &mut self.program {
            *image = tag.into();
        }
        self
    }

    /// `host-runner node`, the image's name or the binary's path.
    pub fn describe(&self) -> String {
        match &self.program {
            Program::Ours(image) => format!("host-runner node ({image})"),
            Program::Image(image) => format!("image {image}"),
            Program::Binary(path) => format!("binary {} (a local process)", path.display()),
        }
    }

    /// The node's command line: the template filled in, then `--label`, `--start-block` and
    /// `--auth` when configured.
    pub fn command_line(&self, places: &Places, first: u32, tip: u32) -> Vec<String> {
        let mut args: Vec<String> = if matches!(self.program, Program::Ours(_)) { vec!["node".into()] } else { Vec::new() };
        args.extend(self.template.render(|name| match name {
            "rpc" => places.rpc.clone(),
            "wasm" => places.wasm.clone(),
            "db" => places.db.clone(),
            "tip" => tip.to_string(),
            _ => places.port.to_string(),
        }));
        if let Some(label) = &self.label {
            args.extend(["--label".into(), label.clone()]);
        }
        if first > 0 {
            args.extend(["--start-block".into(), first.to_string()]);
        }
        if let Some(auth) = &self.auth {
            args.extend(["--auth".into(), auth.clone()]);
        }
        args
    }
}

/// The node's JSON-RPC at `address:port`, giving up on a call after `timeout`.
pub fn rpc(address: &str, port: u16, timeout: std::time::Duration) -> Option<blocks::rpc::Client> {
    let url = format!("http://{address}:{port}");
    Some(blocks::rpc::Client::new(&url, &blocks::rpc::Auth::None, std::time::Duration::ZERO).ok()?.answering_within(timeout))
}

/// The last height the node says it has indexed (`metashrew_height`), `None` while it does not answer.
pub fn height(node: &blocks::rpc::Client) -> Option<u32> {
    node.call("metashrew_height", serde_json::json!([])).ok()?.as_str()?.parse().ok()
}

/// Where the node finds what the lab gives it in its container.
pub fn in_container(rpc: String) -> Places {
    Places { rpc, wasm: INDEXER.into(), db: DB.into(), port: PORT }
}

/// `path`, when it is an executable file.
fn executable(path: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).with_context(|| format!("node binary {}", path.display()))?;
    anyhow::ensure!(metadata.is_file() && metadata.permissions().mode() & 0o111 != 0, "node binary {} is not an executable file", path.display());
    Ok(path.canonicalize()?)
}

/// `docker run` options for one profile: hardened, the profile's limits, the indexer read-only
/// at /input, the database directory at /data; then the image and the node's command line.
pub fn container_args(image: &str, profile: &NodeProfile, user: &str, input: &Path, data: &Path, command_line: Vec<String>) -> Vec<String> {
    let mut args = vec![
        "--read-only".to_string(),
        "--tmpfs=/tmp".into(),
        "--cap-drop=ALL".into(),
        "--security-opt=no-new-privileges".into(),
        format!("--user={user}"),
        format!("--mount=type=bind,source={},target=/input,readonly", input.display()),
        format!("--mount=type=bind,source={},target=/data", data.display()),
    ];
    args.extend(limit_args(profile));
    args.push(image.into());
    args.extend(command_line);
    args
}

/// The profile's limits as `docker run` options.
pub fn limit_args(profile: &NodeProfile) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(memory) = profile.memory {
        args.push(format!("--memory={}", memory.docker_arg()));
        args.push(format!("--memory-swap={}", memory.docker_arg()));
    }
    match &profile.cpus {
        Some(Cpus::Quota(quota)) => args.push(format!("--cpus={quota}")),
        Some(Cpus::Set(set)) => args.push(format!("--cpuset-cpus={set}")),
        None => {}
    }
    if let Some(nofile) = profile.nofile {
        args.push(format!("--ulimit=nofile={nofile}:{nofile}"));
    }
    if let Some(pids) = profile.pids {
        args.push(format!("--pids-limit={pids}"));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::DEFAULT_ARGS;

    #[test]
    fn our_node_gets_rockshrew_mono_s_command_line_after_its_subcommand() {
        let lab = NodeLab { args: DEFAULT_ARGS.into(), label: Some("alkanes".into()), auth: Some("u:p".into()), stall_secs: 60, profiles: Vec::new() };
        let node = NodeUnderTest::named(OURS, &lab).unwrap().with_runner_image("memrepro-runner:abc");
        assert_eq!(
            node.command_line(&in_container("http://bitcoind:8332".into()), 100, 589).join(" "),
            "node --daemon-rpc-url http://bitcoind:8332 --indexer /input/indexer.wasm --db-path /data/db --exit-at 589 --host 0.0.0.0 --port 8080 --label alkanes --start-block 100 --auth u:p"
        );
    }

    #[test]
    fn a_profile_s_limits_become_docker_options() {
        let profile: NodeProfile = serde_json::from_value(serde_json::json!({ "name": "p", "memory": "512m", "cpus": "0", "nofile": 64, "pids": 32 })).unwrap();
        assert_eq!(limit_args(&profile), ["--memory=536870912b", "--memory-swap=536870912b", "--cpuset-cpus=0", "--ulimit=nofile=64:64", "--pids-limit=32"]);
        let quota: NodeProfile = serde_json::from_value(serde_json::json!({ "name": "p", "cpus": 1.5 })).unwrap();
        assert_eq!(limit_args(&quota), ["--cpus=1.5"]);
    }
}
