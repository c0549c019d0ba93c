//! The memory policies by name, and what the runner needs beside a policy's budget.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the runner itself needs beside the deterministic policy's budget and the compiled guest:
/// its own code and wasmtime (about 20 MiB resident), and RocksDB with its memory pinned (at most
/// 16 MiB of memtables and a 16 MiB block cache that also holds index and filter blocks), 52 MiB in
/// all at worst. The preflight requires 2 x budget + this + the compiled guest; `cargo xtask bench`
/// measures the runner's baseline against it.
pub const RUNNER_OVERHEAD: u64 = 64 << 20;

/// What the runner does when the guest grows its memory (see host-runner's `policy.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// wasmtime's defaults, as metashrew runs: growth never fails; a tight host OOM-kills.
    Unbounded,
    /// Refuse growth the cgroup cannot back: no OOM kill, but where growth fails depends on the host.
    Headroom,
    /// A fixed budget enforced identically everywhere, refused up front where it cannot be backed.
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

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_read_and_print_in_lowercase() {
        assert_eq!(serde_json::from_str::<Policy>("\"deterministic\"").unwrap(), Policy::Deterministic);
        assert_eq!(Policy::Headroom.to_string(), "headroom");
        assert!(serde_json::from_str::<Policy>("\"lenient\"").is_err());
    }
}
