//! Which engine a run used: the wasmtime configuration and the host semantics that go with it.
//! The one engine enum of the workspace.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Policy;

/// The engine a run used (see host-runner's `host::config`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Ours: canonical NaNs, deterministic relaxed SIMD, an explicit stack limit; `abort` traps.
    #[default]
    Memrepro,
    /// metashrew's block engine (wasmtime's `Config::default()`) and its host semantics: `abort`
    /// marks the block failed and the block is done with nothing written; a trapping block is
    /// retried for ever. Unbounded policy only.
    Metashrew,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Memrepro => "memrepro",
            Self::Metashrew => "metashrew",
        }
    }

    /// Whether this engine can run under `policy`: metashrew's own engine has no memory budget
    /// and no fuel, so it runs only unbounded.
    pub fn allows(self, policy: Policy) -> bool {
        self == Self::Memrepro || policy == Policy::Unbounded
    }

    /// What a node running this engine does about a block that trapped at `height`, when it is
    /// more than stopping there: a metashrew node retries it for ever.
    pub fn after_trap(self, height: u32) -> Option<String> {
        match self {
            Self::Memrepro => None,
            Self::Metashrew => Some(format!("a metashrew node would retry this block for ever: it never moves past height {height}")),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_read_and_print_in_lowercase_and_memrepro_is_the_default() {
        assert_eq!(serde_json::from_str::<EngineKind>("\"metashrew\"").unwrap(), EngineKind::Metashrew);
        assert_eq!(EngineKind::default().to_string(), "memrepro");
        assert!(serde_json::from_str::<EngineKind>("\"wasmer\"").is_err());
    }

    #[test]
    fn the_metashrew_engine_runs_only_unbounded() {
        assert!(EngineKind::Metashrew.allows(Policy::Unbounded));
        assert!(!EngineKind::Metashrew.allows(Policy::Deterministic) && !EngineKind::Metashrew.allows(Policy::Headroom));
        assert!(EngineKind::Memrepro.allows(Policy::Deterministic));
    }
}
