//! What to run, parsed at the edge: `[workspace.metadata.repro]` in the root Cargo.toml, then the
//! command line on top. The rest of the xtask sees `ByteSize`s, `Policy`s, `EngineKind`s and
//! `StressPayload`s, not text.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

pub mod node;

pub use schema::{ByteSize, EngineKind, Policy};

use crate::units::MIN_DOCKER_LIMIT;

/// The stress guest's block payload: `MBxCOUNT[:digest][:release]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StressPayload {
    pub allocation_mb: u32,
    pub count: u32,
    /// Store length + SHA-256 instead of the full allocation.
    pub digest: bool,
    /// Release each allocation once stored instead of keeping all until the block ends.
    pub release: bool,
}

impl StressPayload {
    /// What the guest allocates in all, in MB.
    pub fn total_mb(self) -> u64 {
        u64::from(self.allocation_mb) * u64::from(self.count)
    }

    /// The bytes the guest reads after the height (see guest/src/lib.rs).
    pub fn to_bytes(self) -> Vec<u8> {
        let mut bytes = self.allocation_mb.to_le_bytes().to_vec();
        bytes.extend_from_slice(&self.count.to_le_bytes());
        if self.digest || self.release {
            bytes.push(u8::from(self.digest));
            bytes.push(u8::from(self.release));
        }
        bytes
    }
}

impl FromStr for StressPayload {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let usage = || format!("bad payload `{text}`: expected MBxCOUNT[:digest][:release], e.g. 50x20");
        let mut parts = text.trim().split(':');
        let (mb, count) = parts.next().unwrap_or("").split_once(['x', 'X']).with_context(usage)?;
        let mut payload = Self {
            allocation_mb: mb.parse().ok().with_context(usage)?,
            count: count.parse().ok().with_context(usage)?,
            digest: false,
            release: false,
        };
        for option in parts {
            match option {
                "digest" => payload.digest = true,
                "release" => payload.release = true,
                _ => bail!("{}: unknown option `{option}`", usage()),
            }
        }
        Ok(payload)
    }
}

impl fmt::Display for StressPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.allocation_mb, self.count)?;
        if self.digest {
            f.write_str(":digest")?;
        }
        if self.release {
            f.write_str(":release")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for StressPayload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|e: anyhow::Error| serde::de::Error::custom(format!("{e:#}")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub memory: ByteSize,
    /// RLIMIT_AS the runner applies to itself (Docker has no `--ulimit as`).
    #[serde(default)]
    pub address_space: Option<ByteSize>,
    /// Reserve no address space ahead for linear memory (growth moves it and may fail).
    #[serde(default)]
    pub small_memories: bool,
    /// `memrepro` (ours, the default) or `metashrew` (metashrew's own engine and host semantics).
    #[serde(default)]
    pub engine: EngineKind,
}

impl Profile {
    pub fn with_limit(memory: ByteSize) -> Self {
        Self { name: memory.to_string(), memory, address_space: None, small_memories: false, engine: EngineKind::default() }
    }

    /// The limits as the table shows them: `4g`, `4g as=2g small`.
    pub fn limits(&self) -> String {
        let mut text = self.memory.to_string();
        if let Some(address_space) = self.address_space {
            text += &format!(" as={address_space}");
        }
        if self.small_memories {
            text += " small";
        }
        text
    }

    /// The runner flags this profile adds.
    pub fn runner_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(address_space) = self.address_space {
            args.extend(["--address-space-limit".to_string(), address_space.bytes().to_string()]);
        }
        if self.small_memories {
            args.push("--small-memories".into());
        }
        if self.engine != EngineKind::default() {
            args.extend(["--engine".to_string(), self.engine.name().to_string()]);
        }
        args
    }

    /// The metashrew engine is metashrew's configuration as it is: only under the unbounded
    /// policy, with wasmtime's default memory layout.
    fn check_engine(&self, policy: Policy) -> Result<()> {
        ensure!(
            self.engine.allows(policy),
            "profile `{}`: engine = \"{}\" runs only under policy = \"unbounded\" (metashrew's engine has no memory budget and no fuel), not \"{policy}\"",
            self.name,
            self.engine
        );
        ensure!(
            !(self.engine == EngineKind::Metashrew && self.small_memories),
            "profile `{}`: engine = \"metashrew\" keeps wasmtime's default memory layout, as metashrew does: drop small_memories",
            self.name
        );
        Ok(())
    }
}

/// `[workspace.metadata.repro]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReproConfig {
    pub payload: StressPayload,
    pub height: u32,
    pub policy: Policy,
    /// The deterministic policy's fixed budget (written like a limit: `192m`).
    pub memory_budget: ByteSize,
    /// The deterministic policy's fuel per block; the runner's default when absent.
    #[serde(default)]
    pub fuel: Option<u64>,
    pub timeout_secs: u64,
    /// Seconds a run may commit no block before the harness kills it as stalled.
    #[serde(default = "default_stall_secs")]
    pub stall_secs: u64,
    pub profiles: Vec<Profile>,
    /// The profiles `cargo xtask matrix` runs under every policy.
    pub matrix_profiles: Vec<Profile>,
    /// `cargo xtask sweep`: the limit and the growing payloads.
    pub sweep_limit: ByteSize,
    pub sweep_steps: Vec<StressPayload>,
    /// The node lab (`repro --node`): `[workspace.metadata.repro.node]`.
    #[serde(default)]
    pub node: Option<node::NodeLab>,
    /// The database layout the runs commit in (`repro --layout`); ours when absent.
    #[serde(default)]
    pub layout: Option<Layout>,
}

/// Past the runner's own limit on one block (300 s, which ends a guest's endless loop as the
/// guest's outcome, `timed-out`), and its compile of a large guest.
fn default_stall_secs() -> u64 {
    420
}

/// A database layout the runner commits in (`--layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Ours: the pairs and a real state root.
    Trie,
    /// metashrew's v9.
    Metashrew,
    /// metashrew's v10, what production nodes run.
    MetashrewV10,
}

impl ReproConfig {
    /// `policy unbounded`, and the engine when it is not ours: `policy unbounded, engine metashrew`.
    pub fn describe_run(&self, profile: &Profile) -> String {
        match profile.engine {
            EngineKind::Memrepro => format!("policy {}", self.policy),
            engine => format!("policy {}, engine {engine}", self.policy),
        }
    }

    /// `--engine`: every profile runs under `engine`.
    pub fn use_engine(&mut self, engine: EngineKind) -> Result<()> {
        for profile in &mut self.profiles {
            profile.engine = engine;
        }
        self.check()
    }

    /// The runner's policy flags.
    pub fn policy_args(&self) -> Vec<String> {
        let mut args = vec!["--policy".to_string(), self.policy.name().to_string()];
        if self.policy == Policy::Deterministic {
            args.extend(["--memory-budget".to_string(), self.memory_budget.bytes().to_string()]);
            if let Some(fuel) = self.fuel {
                args.extend(["--fuel".to_string(), fuel.to_string()]);
            }
        }
        args
    }

    /// The runner's `--layout`, when not ours.
    pub fn layout_args(&self) -> Vec<String> {
        match self.layout {
            None | Some(Layout::Trie) => Vec::new(),
            Some(Layout::Metashrew) => vec!["--layout".into(), "metashrew".into()],
            Some(Layout::MetashrewV10) => vec!["--layout".into(), "metashrew-v10".into()],
        }
    }

    /// Reads and checks the workspace's configuration.
    pub fn from_workspace_metadata(metadata: &serde_json::Value) -> Result<Self> {
        let section = metadata
            .get("repro")
            .context("Cargo.toml has no [workspace.metadata.repro] section")?;
        let config: Self = serde_json::from_value(section.clone())
            .context("bad [workspace.metadata.repro] in Cargo.toml")?;
        config.check()?;
        Ok(config)
    }

    /// Checks the configuration as a whole; again after the command line changed it.
    pub fn check(&self) -> Result<()> {
        check_profiles(&self.profiles, "profiles")?;
        check_profiles(&self.matrix_profiles, "matrix_profiles")?;
        ensure!(self.timeout_secs > 0, "timeout_secs must be positive");
        ensure!(self.stall_secs > 0, "stall_secs must be positive");
        if let Some(lab) = &self.node {
            lab.check()?;
        }
        for profile in &self.profiles {
            profile.check_engine(self.policy)?;
        }
        // The matrix runs its profiles under every policy.
        if let Some(profile) = self.matrix_profiles.iter().find(|p| p.engine != EngineKind::default()) {
            bail!("matrix profile `{}`: the matrix runs every policy, so only our engine (drop engine = \"{}\")", profile.name, profile.engine);
        }
        Ok(())
    }

    /// Keeps only the named profiles (in the order given).
    pub fn select_profiles(&mut self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut selected = Vec::new();
        for name in names {
            let profile = self.profiles.iter().find(|p| &p.name == name).with_context(|| {
                let known: Vec<_> = self.profiles.iter().map(|p| p.name.as_str()).collect();
                format!("unknown profile `{name}` (configured: {})", known.join(", "))
            })?;
            selected.push(profile.clone());
        }
        self.profiles = selected;
        Ok(())
    }

    /// `--limit` replaces the configured profiles with one per limit, named after it.
    pub fn replace_limits(&mut self, limits: &[ByteSize]) -> Result<()> {
        if limits.is_empty() {
            return Ok(());
        }
        self.profiles = limits.iter().map(|limit| Profile::with_limit(*limit)).collect();
        self.check()
    }
}


fn check_profiles(profiles: &[Profile], key: &str) -> Result<()> {
    ensure!(!profiles.is_empty(), "[workspace.metadata.repro] {key} lists no profiles");
    for (i, profile) in profiles.iter().enumerate() {
        ensure!(
            !profile.name.is_empty() && profile.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "profile name `{}` must be letters, digits, - or _",
            profile.name
        );
        ensure!(
            profile.memory.bytes() >= MIN_DOCKER_LIMIT,
            "profile `{}`: memory limit {} is below Docker's minimum of 6m",
            profile.name,
            profile.memory
        );
        ensure!(
            !profiles[..i].iter().any(|p| p.name == profile.name),
            "profile `{}` is defined twice in [workspace.metadata.repro] {key}",
            profile.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_below_docker_s_minimum_is_refused_before_anything_runs() {
        let mut config = config(serde_json::json!({
            "payload": "50x20", "height": 1, "timeout_secs": 60, "policy": "unbounded", "memory_budget": "192m", "sweep_limit": "1g", "sweep_steps": ["10x10"],
            "profiles": [{ "name": "low", "memory": "512m" }], "matrix_profiles": [{ "name": "low", "memory": "512m" }]
        }))
        .unwrap();
        let err = config.replace_limits(&["5m".parse().unwrap()]).unwrap_err();
        assert_eq!(err.to_string(), "profile `5m`: memory limit 5m is below Docker's minimum of 6m");
    }

    #[test]
    fn payloads_round_trip_and_encode_like_the_guest_reads_them() {
        let plain: StressPayload = "50x20".parse().unwrap();
        assert_eq!(plain.to_bytes(), [50, 0, 0, 0, 20, 0, 0, 0]);
        let options: StressPayload = "10x5:digest:release".parse().unwrap();
        assert_eq!(options.to_bytes(), [10, 0, 0, 0, 5, 0, 0, 0, 1, 1]);
        assert_eq!(options.to_string(), "10x5:digest:release");
        for bad in ["50", "50x", "x20", "50x20:fast", "-1x2"] {
            assert!(bad.parse::<StressPayload>().is_err(), "{bad}");
        }
    }

    fn config(toml_like: serde_json::Value) -> Result<ReproConfig> {
        ReproConfig::from_workspace_metadata(&serde_json::json!({ "repro": toml_like }))
    }

    #[test]
    fn reads_the_workspace_configuration_and_rejects_duplicates() {
        let ok = config(serde_json::json!({
            "payload": "50x20", "height": 1, "timeout_secs": 60, "policy": "unbounded", "memory_budget": "192m", "sweep_limit": "1g", "sweep_steps": ["10x10"],
            "profiles": [{ "name": "low", "memory": "512m" }, { "name": "high", "memory": "4g" }], "matrix_profiles": [{ "name": "as", "memory": "4g", "address_space": "2g", "small_memories": true }]
        }))
        .unwrap();
        assert_eq!(ok.profiles[1], Profile { name: "high".into(), ..Profile::with_limit("4g".parse().unwrap()) });
        let as_profile = &ok.matrix_profiles[0];
        assert_eq!(as_profile.limits(), "4g as=2g small");
        assert_eq!(as_profile.runner_args(), ["--address-space-limit", "2147483648", "--small-memories"]);

        let dup = config(serde_json::json!({
            "payload": "50x20", "height": 1, "timeout_secs": 60, "policy": "unbounded", "memory_budget": "192m", "sweep_limit": "1g", "sweep_steps": ["10x10"],
            "profiles": [{ "name": "low", "memory": "512m" }, { "name": "low", "memory": "4g" }], "matrix_profiles": [{ "name": "low", "memory": "512m" }]
        }));
        assert!(format!("{:#}", dup.unwrap_err()).contains("profile `low` is defined twice"));

        let bad_limit = config(serde_json::json!({
            "payload": "50x20", "height": 1, "timeout_secs": 60, "policy": "unbounded", "memory_budget": "192m", "sweep_limit": "1g", "sweep_steps": ["10x10"],
            "profiles": [{ "name": "low", "memory": "512x" }], "matrix_profiles": [{ "name": "low", "memory": "512m" }]
        }));
        assert!(format!("{:#}", bad_limit.unwrap_err()).contains("bad size `512x`"));
    }

    #[test]
    fn policy_flags_carry_the_budget_only_for_the_deterministic_policy() {
        let mut config = config(serde_json::json!({
            "payload": "50x20", "height": 1, "timeout_secs": 60, "policy": "deterministic", "memory_budget": "192m", "sweep_limit": "1g", "sweep_steps": ["10x10"],
            "profiles": [{ "name": "low", "memory": "512m" }], "matrix_profiles": [{ "name": "low", "memory": "512m" }]
        }))
        .unwrap();
        assert_eq!(config.policy_args(), ["--policy", "deterministic", "--memory-budget", "201326592"]);
        config.policy = Policy::Headroom;
        assert_eq!(config.policy_args(), ["--policy", "headroom"]);
        let bad = super::tests::config(serde_json::json!({
            "payload": "50x20", "height": 1, "timeout_secs": 60, "policy": "lenient", "memory_budget": "192m", "sweep_limit": "1g", "sweep_steps": ["10x10"],
            "profiles": [{ "name": "low", "memory": "512m" }], "matrix_profiles": [{ "name": "low", "memory": "512m" }]
        }));
        assert!(format!("{:#}", bad.unwrap_err()).contains("unknown variant `lenient`"));
    }

    #[test]
    fn the_metashrew_engine_is_refused_under_any_policy_but_unbounded_before_anything_runs() {
        let with = |policy: &str, profile: serde_json::Value, matrix: serde_json::Value| {
            config(serde_json::json!({
                "payload": "50x20", "height": 1, "timeout_secs": 60, "policy": policy, "memory_budget": "192m", "sweep_limit": "1g", "sweep_steps": ["10x10"],
                "profiles": [{ "name": "low", "memory": "512m" }, profile], "matrix_profiles": [matrix]
            }))
        };
        let metashrew = serde_json::json!({ "name": "node", "memory": "4g", "engine": "metashrew" });
        let plain = serde_json::json!({ "name": "low", "memory": "512m" });
        let ok = with("unbounded", metashrew.clone(), plain.clone()).unwrap();
        assert_eq!(ok.profiles[1].engine, EngineKind::Metashrew);
        assert_eq!(ok.profiles[1].runner_args(), ["--engine", "metashrew"]);
        assert_eq!(ok.profiles[0].engine, EngineKind::Memrepro);
        assert!(ok.profiles[0].runner_args().is_empty(), "ours is the runner's default");
        assert_eq!(ok.describe_run(&ok.profiles[1]), "policy unbounded, engine metashrew");
        assert_eq!(ok.describe_run(&ok.profiles[0]), "policy unbounded");

        let refused = with("deterministic", metashrew.clone(), plain.clone()).unwrap_err();
        assert_eq!(
            format!("{refused:#}"),
            "profile `node`: engine = \"metashrew\" runs only under policy = \"unbounded\" (metashrew's engine has no memory budget and no fuel), not \"deterministic\""
        );
        let small = serde_json::json!({ "name": "node", "memory": "4g", "engine": "metashrew", "small_memories": true });
        assert!(format!("{:#}", with("unbounded", small, plain.clone()).unwrap_err()).contains("drop small_memories"));
        let high = serde_json::json!({ "name": "high", "memory": "4g" });
        assert!(format!("{:#}", with("unbounded", high, metashrew.clone()).unwrap_err()).contains("matrix profile `node`: the matrix runs every policy"));
        assert!(format!("{:#}", with("unbounded", serde_json::json!({ "name": "x", "memory": "4g", "engine": "wasmer" }), plain).unwrap_err()).contains("unknown variant `wasmer`"));

        // `--policy` on the command line, and `--engine` for every profile, are checked the same way.
        let mut config = ok.clone();
        config.policy = Policy::Headroom;
        assert!(format!("{:#}", config.check().unwrap_err()).contains("not \"headroom\""));
        let mut config = with("deterministic", serde_json::json!({ "name": "high", "memory": "4g" }), serde_json::json!({ "name": "low", "memory": "512m" })).unwrap();
        assert!(format!("{:#}", config.use_engine(EngineKind::Metashrew).unwrap_err()).contains("profile `low`: engine = \"metashrew\" runs only under"));
    }

    #[test]
    fn selects_profiles_by_name_and_replaces_limits() {
        let mut config = config(serde_json::json!({
            "payload": "50x20", "height": 1, "timeout_secs": 60, "policy": "unbounded", "memory_budget": "192m", "sweep_limit": "1g", "sweep_steps": ["10x10"],
            "profiles": [{ "name": "low", "memory": "512m" }, { "name": "high", "memory": "4g" }], "matrix_profiles": [{ "name": "as", "memory": "4g", "address_space": "2g", "small_memories": true }]
        }))
        .unwrap();
        let err = config.clone().select_profiles(&["medium".into()]).unwrap_err();
        assert_eq!(err.to_string(), "unknown profile `medium` (configured: low, high)");
        config.select_profiles(&["high".into()]).unwrap();
        assert_eq!(config.profiles.len(), 1);
        config.replace_limits(&["1g".parse().unwrap(), "2g".parse().unwrap()]).unwrap();
        assert_eq!(config.profiles.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["1g", "2g"]);
        assert!(config.replace_limits(&["1g".parse().unwrap(), "1024m".parse().unwrap()]).is_err());
    }
}
