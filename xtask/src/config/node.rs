//! `[workspace.metadata.repro.node]`: the node lab. Which node runs (`cargo xtask repro --node
//! IMAGE`), its command line as a template, and the profiles it runs under: memory, CPUs, file
//! descriptors, processes, view load, crashes. The first profile is the quiet run every other is
//! compared against.

use std::collections::BTreeSet;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use schema::ByteSize;

use crate::units::MIN_DOCKER_LIMIT;

/// rockshrew-mono's command line; `--label`, `--start-block` and `--auth` are added when configured.
pub const DEFAULT_ARGS: &str = "--daemon-rpc-url {rpc} --indexer {wasm} --db-path {db} --exit-at {tip} --host 0.0.0.0 --port {port}";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLab {
    /// The node's arguments, with placeholders ([`Template`]).
    #[serde(default = "default_args")]
    pub args: String,
    /// The node writes every key under `LABEL://` (`--label`).
    #[serde(default)]
    pub label: Option<String>,
    /// `USER:PASSWORD` the block server asks for and the node is given (`--auth`).
    #[serde(default)]
    pub auth: Option<String>,
    /// A node whose height does not move for this long is stopped and reported stalled.
    pub stall_secs: u64,
    pub profiles: Vec<NodeProfile>,
}

fn default_args() -> String {
    DEFAULT_ARGS.into()
}

/// What one run of the node is given. Every field but the name is optional: a profile without
/// limits is the quiet run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeProfile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// A CPU quota (`1.5`: `docker run --cpus`) or a set (`"0"`, `"0-1"`: `--cpuset-cpus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    /// The file-descriptor limit (soft and hard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    /// The most processes and threads the node may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<ViewLoad>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash: Option<CrashPlan>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cpus {
    Quota(f64),
    Set(String),
}

/// `metashrew_view` calls sent while the node indexes: `concurrency` callers, `rate` calls per
/// second in all, each asking a seeded sequence of questions (one of `calls` at a height of the
/// run), each once the node has indexed its height.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewLoad {
    pub calls: Vec<ViewCall>,
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    #[serde(default = "default_rate")]
    pub rate: f64,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewCall {
    pub name: String,
    /// The view's input, hex.
    #[serde(default)]
    pub input: String,
}

fn default_concurrency() -> u32 {
    4
}

fn default_rate() -> f64 {
    50.0
}

/// SIGKILLs: once the node has indexed each of `at_heights`, and `random` more at seeded
/// moments (0.05 to 0.5 s after a start); after each the node is started again on its database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashPlan {
    #[serde(default)]
    pub at_heights: Vec<u32>,
    #[serde(default)]
    pub random: u32,
    #[serde(default)]
    pub seed: u64,
}

impl NodeProfile {
    /// A profile with no limits, crashes or views: the quiet run.
    pub fn quiet(name: &str) -> Self {
        Self { name: name.into(), memory: None, cpus: None, nofile: None, pids: None, views: None, crash: None }
    }

    /// `memory 512m, cpus 0, nofile 64, pids 64, views 2 x 4 at 50/s, crash at 100 300 + 2 random (seed 7)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(memory) = self.memory {
            parts.push(format!("memory {memory}"));
        }
        match &self.cpus {
            Some(Cpus::Quota(quota)) => parts.push(format!("cpus {quota}")),
            Some(Cpus::Set(set)) => parts.push(format!("cpuset {set}")),
            None => {}
        }
        if let Some(nofile) = self.nofile {
            parts.push(format!("nofile {nofile}"));
        }
        if let Some(pids) = self.pids {
            parts.push(format!("pids {pids}"));
        }
        if let Some(views) = &self.views {
            parts.push(format!("views {} x {} at {}/s", views.calls.len(), views.concurrency, views.rate));
        }
        if let Some(crash) = &self.crash {
            let heights: Vec<String> = crash.at_heights.iter().map(u32::to_string).collect();
            parts.push(format!("crash at [{}] + {} random (seed {})", heights.join(" "), crash.random, crash.seed));
        }
        if parts.is_empty() {
            "no limits".into()
        } else {
            parts.join(", ")
        }
    }

    fn check(&self) -> Result<()> {
        let name = &self.name;
        ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "node profile name `{name}` must be letters, digits, - or _"
        );
        if let Some(memory) = self.memory {
            ensure!(memory.bytes() >= MIN_DOCKER_LIMIT, "node profile `{name}`: memory limit {memory} is below Docker's minimum of 6m");
        }
        match &self.cpus {
            Some(Cpus::Quota(quota)) => ensure!(*quota > 0.0, "node profile `{name}`: cpus must be positive"),
            Some(Cpus::Set(set)) => ensure!(
                !set.is_empty() && set.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '-'),
                "node profile `{name}`: cpus = \"{set}\" is not a CPU set like \"0\" or \"0-1,3\""
            ),
            None => {}
        }
        ensure!(self.nofile.is_none_or(|n| n >= 16), "node profile `{name}`: nofile below 16 leaves no room for the standard streams and a database");
        ensure!(self.pids.is_none_or(|n| n >= 4), "node profile `{name}`: pids below 4");
        if let Some(views) = &self.views {
            ensure!(!views.calls.is_empty(), "node profile `{name}`: views.calls is empty");
            ensure!(views.concurrency >= 1 && views.rate > 0.0, "node profile `{name}`: views need concurrency >= 1 and rate > 0");
            for call in &views.calls {
                hex::decode(&call.input).with_context(|| format!("node profile `{name}`: view `{}` input `{}` is not hex", call.name, call.input))?;
            }
        }
        Ok(())
    }
}

impl NodeLab {
    pub fn check(&self) -> Result<()> {
        Template::parse(&self.args)?;
        ensure!(!self.profiles.is_empty(), "[workspace.metadata.repro.node] profiles lists none");
        ensure!(self.stall_secs > 0, "[workspace.metadata.repro.node] stall_secs must be positive");
        if let Some(auth) = &self.auth {
            ensure!(auth.contains(':'), "[workspace.metadata.repro.node] auth is USER:PASSWORD");
        }
        let mut names = BTreeSet::new();
        for profile in &self.profiles {
            profile.check()?;
            ensure!(names.insert(&profile.name), "node profile `{}` is defined twice", profile.name);
        }
        Ok(())
    }

    /// Keeps only the named profiles, in the order given.
    pub fn select_profiles(&mut self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let known: Vec<&str> = self.profiles.iter().map(|p| p.name.as_str()).collect();
        let mut selected = Vec::new();
        for name in names {
            match self.profiles.iter().find(|p| &p.name == name) {
                Some(profile) => selected.push(profile.clone()),
                None => bail!("unknown node profile `{name}` (configured: {})", known.join(", ")),
            }
        }
        self.profiles = selected;
        Ok(())
    }
}

/// The node's command line with `{placeholder}`s, split like a shell would (quotes kept
/// together), checked when read: a placeholder this lab does not fill is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    words: Vec<String>,
}

/// What the lab fills in: the block server's URL, the indexer, the database directory, the last
/// height to index, the port the node's JSON-RPC listens on.
pub const PLACEHOLDERS: [&str; 5] = ["rpc", "wasm", "db", "tip", "port"];

impl Template {
    pub fn parse(text: &str) -> Result<Self> {
        let words = shlex::split(text).with_context(|| format!("the node's argument template `{text}` has an unclosed quote"))?;
        for word in &words {
            for name in placeholders_in(word).with_context(|| format!("the node's argument template: `{word}` has an unmatched brace"))? {
                ensure!(
                    PLACEHOLDERS.contains(&name),
                    "the node's argument template names {{{name}}}: the placeholders are {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
                );
            }
        }
        Ok(Self { words })
    }

    /// The arguments with every placeholder replaced by `value(name)`.
    pub fn render(&self, value: impl Fn(&str) -> String) -> Vec<String> {
        self.words
            .iter()
            .map(|word| PLACEHOLDERS.iter().fold(word.clone(), |word, name| word.replace(&format!("{{{name}}}"), &value(name))))
            .collect()
    }
}

/// The names inside `{…}` in `word`; `None` when a brace is unmatched.
fn placeholders_in(word: &str) -> Option<Vec<&str>> {
    let mut names = Vec::new();
    let mut rest = word;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return None;
        }
        let close = rest[open..].find('}')? + open;
        names.push(&rest[open + 1..close]);
        rest = &rest[close + 1..];
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_template_is_rockshrew_mono_s_command_line() {
        let template = Template::parse(DEFAULT_ARGS).unwrap();
        let args = template.render(|name| format!("<{name}>"));
        assert_eq!(args.join(" "), "--daemon-rpc-url <rpc> --indexer <wasm> --db-path <db> --exit-at <tip> --host 0.0.0.0 --port <port>");
    }

    #[test]
    fn a_template_naming_an_unknown_placeholder_or_unbalanced_is_refused() {
        let unknown = Template::parse("--indexer {wasm} --network {network}").unwrap_err();
        assert_eq!(unknown.to_string(), "the node's argument template names {network}: the placeholders are {rpc} {wasm} {db} {tip} {port}");
        assert!(format!("{:#}", Template::parse("--db {db").unwrap_err()).contains("`{db` has an unmatched brace"));
        assert!(format!("{:#}", Template::parse("--db db}").unwrap_err()).contains("unmatched brace"));
        assert!(format!("{:#}", Template::parse("--label 'a b").unwrap_err()).contains("unclosed quote"));
        let quoted = Template::parse("node --label 'two words' --db-path={db}/x").unwrap();
        assert_eq!(quoted.render(|_| "/data".into()), ["node", "--label", "two words", "--db-path=/data/x"]);
    }

    #[test]
    fn profiles_are_checked_and_described() {
        let lab: NodeLab = serde_json::from_value(serde_json::json!({
            "stall_secs": 60,
            "profiles": [
                { "name": "quiet" },
                { "name": "tight", "memory": "512m", "cpus": "0", "nofile": 64, "pids": 64 },
                { "name": "load", "cpus": 1.5, "views": { "calls": [{ "name": "blockhash", "input": "00000000" }] }, "crash": { "at_heights": [100], "random": 2, "seed": 7 } }
            ]
        }))
        .unwrap();
        lab.check().unwrap();
        assert_eq!(lab.args, DEFAULT_ARGS);
        assert_eq!(lab.profiles[0].describe(), "no limits");
        assert_eq!(lab.profiles[1].describe(), "memory 512m, cpuset 0, nofile 64, pids 64");
        assert_eq!(lab.profiles[2].describe(), "cpus 1.5, views 1 x 4 at 50/s, crash at [100] + 2 random (seed 7)");
        let bad = |profile: serde_json::Value| {
            let lab: NodeLab = serde_json::from_value(serde_json::json!({ "stall_secs": 60, "profiles": [profile] })).unwrap();
            format!("{:#}", lab.check().unwrap_err())
        };
        assert!(bad(serde_json::json!({ "name": "x", "cpus": "two" })).contains("is not a CPU set"));
        assert!(bad(serde_json::json!({ "name": "x", "nofile": 3 })).contains("nofile below 16"));
        assert!(bad(serde_json::json!({ "name": "x", "views": { "calls": [{ "name": "v", "input": "zz" }] } })).contains("input `zz` is not hex"));
    }
}
