//! What to run, parsed at the edge: `[workspace.metadata.repro]` in the root Cargo.toml, then the
//! command line on top. The rest of the xtask sees `MemoryLimit`s and `StressPayload`s, not text.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

/// A container memory limit in bytes, written like Docker's `--memory` (`512m`, `4g`, `6500k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryLimit(u64);

/// Docker refuses limits below 6 MiB.
const MIN_LIMIT: u64 = 6 * 1024 * 1024;

impl MemoryLimit {
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// A limit computed by the harness (bisection midpoints), not parsed from a user.
    pub fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The form given to `docker run --memory`.
    pub fn docker_arg(self) -> String {
        format!("{}b", self.0)
    }
}

impl FromStr for MemoryLimit {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
        let (number, unit) = lower.split_at(digits_end);
        ensure!(!number.is_empty(), "bad memory limit `{text}`: expected a number and a unit (e.g. 512m, 4g)");
        let shift = match unit {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => bail!("bad memory limit `{text}`: unit `{unit}` is not one of b, k, m, g, t (e.g. 512m, 4g)"),
        };
        let number: u64 = number.parse().with_context(|| format!("bad memory limit `{text}`: too large"))?;
        let bytes = number
            .checked_mul(1 << shift)
            .with_context(|| format!("bad memory limit `{text}`: too large"))?;
        ensure!(bytes >= MIN_LIMIT, "bad memory limit `{text}`: Docker needs at least 6m");
        Ok(Self(bytes))
    }
}

impl fmt::Display for MemoryLimit {
    /// The shortest exact form: `512m`, `4g`, `6500k`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(40, "t"), (30, "g"), (20, "m"), (10, "k")] {
            if self.0 % (1 << shift) == 0 {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}b", self.0)
    }
}

impl<'de> Deserialize<'de> for MemoryLimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|e: anyhow::Error| serde::de::Error::custom(format!("{e:#}")))
    }
}

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

/// The runner's memory policy (see host-runner/src/policy.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Unbounded,
    Headroom,
    Deterministic,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Unbounded => "unbounded",
            Self::Headroom => "headroom",
            Self::Deterministic => "deterministic",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub memory: MemoryLimit,
    /// RLIMIT_AS the runner applies to itself (Docker has no `--ulimit as`).
    #[serde(default)]
    pub address_space: Option<MemoryLimit>,
    /// Reserve no address space ahead for linear memory (growth moves it and may fail).
    #[serde(default)]
    pub small_memories: bool,
}

impl Profile {
    pub fn with_limit(memory: MemoryLimit) -> Self {
        Self { name: memory.to_string(), memory, address_space: None, small_memories: false }
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
        args
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
    pub memory_budget: MemoryLimit,
    pub timeout_secs: u64,
    pub profiles: Vec<Profile>,
    /// The profiles `cargo xtask matrix` runs under every policy.
    pub matrix_profiles: Vec<Profile>,
    /// `cargo xtask sweep`: the limit and the growing payloads.
    pub sweep_limit: MemoryLimit,
    pub sweep_steps: Vec<StressPayload>,
}

impl ReproConfig {
    /// The runner's policy flags.
    pub fn policy_args(&self) -> Vec<String> {
        let mut args = vec!["--policy".to_string(), self.policy.name().to_string()];
        if self.policy == Policy::Deterministic {
            args.extend(["--memory-budget".to_string(), self.memory_budget.bytes().to_string()]);
        }
        args
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

    fn check(&self) -> Result<()> {
        check_profiles(&self.profiles, "profiles")?;
        check_profiles(&self.matrix_profiles, "matrix_profiles")?;
        ensure!(self.timeout_secs > 0, "timeout_secs must be positive");
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
    pub fn replace_limits(&mut self, limits: &[MemoryLimit]) -> Result<()> {
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
    fn parses_docker_style_limits() {
        for (text, bytes) in [("512m", 512 << 20), ("4g", 4 << 30), ("4G", 4 << 30), ("6500k", 6500 << 10), ("1gib", 1 << 30), ("7340032", 7 << 20)] {
            assert_eq!(text.parse::<MemoryLimit>().unwrap().bytes(), bytes, "{text}");
        }
    }

    #[test]
    fn rejects_bad_limits_with_the_reason() {
        for (text, reason) in [
            ("512x", "unit `x` is not one of"),
            ("", "expected a number"),
            ("m", "expected a number"),
            ("-1g", "expected a number"),
            ("1.5g", "unit `.5g`"),
            ("5m", "at least 6m"),
            ("99999999999t", "too large"),
        ] {
            let err = format!("{:#}", text.parse::<MemoryLimit>().unwrap_err());
            assert!(err.contains(reason) && err.contains(&format!("`{text}`")), "{text}: {err}");
        }
    }

    #[test]
    fn limits_print_in_their_shortest_exact_form() {
        for text in ["512m", "4g", "6500k", "1t", "7340033b"] {
            assert_eq!(text.parse::<MemoryLimit>().unwrap().to_string(), text);
        }
        assert_eq!("1024m".parse::<MemoryLimit>().unwrap().to_string(), "1g");
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
        assert!(format!("{:#}", bad_limit.unwrap_err()).contains("bad memory limit `512x`"));
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
