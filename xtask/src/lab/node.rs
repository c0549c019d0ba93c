//! The node under test: a container image the user built, or ours (`--node host-runner`: the
//! runner image's `host-runner node`), and the `docker run` arguments of one profile's run.

use std::path::Path;

use anyhow::{bail, Result};

use super::containers::docker;
use crate::config::node::{Cpus, NodeLab, NodeProfile, Template};

/// `--node host-runner`: our own node, from the runner image.
pub const OURS: &str = "host-runner";
/// Where the node finds what the lab gives it, inside its container.
pub const INDEXER: &str = "/input/indexer.wasm";
pub const DB: &str = "/data/db";
pub const PORT: u16 = 8080;

pub struct NodeUnderTest {
    pub image: String,
    /// Ours: the runner image, whose entry point needs the `node` subcommand first.
    pub ours: bool,
    template: Template,
    label: Option<String>,
    auth: Option<String>,
}

impl NodeUnderTest {
    /// The node `--node` names, checked before anything is built: a user's image must be on
    /// this machine (the lab never pulls).
    pub fn named(node: &str, lab: &NodeLab) -> Result<Self> {
        let ours = node == OURS;
        if !ours && docker(["image", "inspect", "--format", "{{.Id}}", node]).is_err() {
            bail!("node image `{node}` is not on this machine: the lab runs images with --pull=never, so build it or `docker load` it first (`docker image ls` lists what is here)");
        }
        Ok(Self { image: node.into(), ours, template: Template::parse(&lab.args)?, label: lab.label.clone(), auth: lab.auth.clone() })
    }

    /// Ours, once the runner image is built.
    pub fn with_runner_image(mut self, tag: &str) -> Self {
        if self.ours {
            self.image = tag.into();
        }
        self
    }

    /// `host-runner node` or the image's name.
    pub fn describe(&self) -> String {
        if self.ours {
            format!("host-runner node ({})", self.image)
        } else {
            format!("image {}", self.image)
        }
    }

    /// The node's command line: the template filled in, then `--label`, `--start-block` and
    /// `--auth` when configured.
    pub fn command_line(&self, rpc: &str, first: u32, tip: u32) -> Vec<String> {
        let mut args: Vec<String> = if self.ours { vec!["node".into()] } else { Vec::new() };
        args.extend(self.template.render(|name| match name {
            "rpc" => rpc.to_string(),
            "wasm" => INDEXER.to_string(),
            "db" => DB.to_string(),
            "tip" => tip.to_string(),
            _ => PORT.to_string(),
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

    /// `docker run` options for one profile: hardened, the profile's limits, the indexer
    /// read-only at /input, the database directory at /data; then the image and its command line.
    pub fn container_args(&self, profile: &NodeProfile, user: &str, input: &Path, data: &Path, command_line: Vec<String>) -> Vec<String> {
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
        args.push(self.image.clone());
        args.extend(command_line);
        args
    }
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
            node.command_line("http://bitcoind:8332", 100, 589).join(" "),
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
