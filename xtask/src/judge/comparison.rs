//! Two runs compared: their endings, their roots, and their dumps in one streaming pass.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::dump_diff::{diff_dump_files, first_diverging_height, Divergence, DumpDiff};
use super::outcome::Kind;
use super::profile::ProfileReport;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline: String,
    pub profile: String,
    /// Both runs ended the same deterministic way (see `Outcome::same_ending`).
    pub same_ending: bool,
    /// Both full state roots are known and equal.
    pub same_root: bool,
    pub divergence: Divergence,
    /// Keys whose line differs (only in one dump, or with different values).
    pub differing_keys: u64,
    /// Unified diff of the two dumps (empty when identical).
    pub diff: String,
}

impl Comparison {
    /// `profile` against `baseline`: their endings, their roots and what their dumps' diff found.
    pub fn between(baseline: &ProfileReport, profile: &ProfileReport, found: DumpDiff, height: Option<u32>) -> Self {
        Self {
            baseline: baseline.name.clone(),
            profile: profile.name.clone(),
            same_ending: baseline.outcome.same_ending(&profile.outcome),
            same_root: baseline.state_root.is_some() && baseline.state_root == profile.state_root,
            divergence: Divergence { height, key: found.first_key },
            differing_keys: found.differing_keys,
            diff: found.diff,
        }
    }

    pub fn same_dump(&self) -> bool {
        self.differing_keys == 0
    }
}

/// Every compared run (neither refused nor untrusted) against the first one. Dumps are found
/// relative to `run_dir` (or absolute).
pub fn compare_profiles(run_dir: &Path, profiles: &[ProfileReport]) -> Result<Vec<Comparison>> {
    let compared: Vec<&ProfileReport> =
        profiles.iter().filter(|p| matches!(p.outcome.kind(), Kind::Deterministic | Kind::HostEvent)).collect();
    let Some((baseline, others)) = compared.split_first() else { return Ok(Vec::new()) };
    let dump = |profile: &ProfileReport| profile.dump.as_ref().map(|path| run_dir.join(path));
    let mut comparisons = Vec::new();
    for &profile in others {
        let found = diff_dump_files(
            dump(baseline).as_deref(),
            dump(profile).as_deref(),
            &format!("{} ({})", baseline.name, baseline.limit),
            &format!("{} ({})", profile.name, profile.limit),
        )?;
        let height = first_diverging_height(baseline.blocks.as_deref(), profile.blocks.as_deref());
        comparisons.push(Comparison::between(baseline, profile, found, height));
    }
    Ok(comparisons)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `a` against `b` with `diff` as their dump diff.
    pub(crate) fn comparison(a: &ProfileReport, b: &ProfileReport, diff: &str) -> Comparison {
        let found = DumpDiff {
            diff: diff.to_string(),
            first_key: (!diff.is_empty()).then(|| "\"k\"".to_string()),
            differing_keys: u64::from(!diff.is_empty()),
        };
        Comparison::between(a, b, found, Some(1))
    }
}
