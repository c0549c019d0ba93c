//! One profile's run as the report shows it: read from what the run left in its directory,
//! classified, and put into words.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use schema::{EngineKind, RunResult, StoredState, WatchReport};

use super::outcome::{classify, Evidence, Outcome};
use crate::backend::supervise::{Enforcement, RunExit};
use crate::config::Profile;
use crate::run_dir::read_json;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileReport {
    pub name: String,
    pub limit: String,
    pub limit_bytes: u64,
    /// The engine the run used, as its result says (else as configured); `memrepro` in reports
    /// from before engines had a name.
    #[serde(default)]
    pub engine: EngineKind,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The stress result the run committed (`/memory-stress-result/{height}`).
    pub stored_result: Option<String>,
    /// Root of the committed state (after a kill: of what the run left in its database); `None`
    /// under metashrew's layouts, which record no state root.
    pub state_root: Option<String>,
    /// The container's cgroup peak, else the runner's peak RSS.
    pub peak_memory_bytes: Option<u64>,
    pub wall_secs: f64,
    /// The storage dump the profile committed (sorted lines), relative to the report; `None`
    /// when it committed nothing.
    pub dump: Option<String>,
    /// The profile's directory (result.json, watch.json, run.log, db/), relative to the report.
    pub dir: String,
    /// Per-block reports from result.json (`None` after a kill); kept for the comparison, already
    /// in result.json, so not repeated in report.json.
    #[serde(skip)]
    pub blocks: Option<Vec<schema::BlockReport>>,
}

/// The dump file of each profile, in its directory.
pub const DUMP: &str = "dump.txt";
/// Each block's report, a JSON line each, in the profile's directory.
pub const BLOCK_REPORTS: &str = "blocks.jsonl";

impl ProfileReport {
    /// What one profile's run left in `dir` (watch.json, result.json, run.log, the dump),
    /// classified; `read_back` gives the state a run without a result left behind.
    pub fn read(
        profile: &Profile,
        dir: &Path,
        exit: &RunExit,
        enforced_by: Enforcement,
        read_back: impl FnOnce() -> Result<StoredState>,
    ) -> Result<Self> {
        let watch = read_json(&dir.join("watch.json"), WatchReport::from_json)?;
        let result = read_json(&dir.join("result.json"), RunResult::from_json)?;
        let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
        let log_tail = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no output)").to_string();
        let evidence = Evidence { limit: profile.memory, enforced_by, exit, watch: watch.as_ref(), result: result.as_ref(), log_tail: &log_tail };
        let mut outcome = classify(&evidence);

        // The committed state: from the result, or read back from what a killed run left behind.
        let dump = || Some(format!("{}/{DUMP}", profile.name));
        // Only our layout's root commits to the state (metashrew's records a hash of a block's
        // last pair, or nothing): the others are compared by their dumps alone.
        let root = |root: &str, layout: &str| (layout == "trie").then(|| root.to_string());
        let (state_root, dump, stored_result) = match &result {
            Some(result) => (root(&result.state_root, &result.db_layout), dump(), result.stress_result.clone()),
            None if matches!(outcome, Outcome::Refused { .. }) => (None, None, None),
            None => {
                let state = read_back()?;
                if let Outcome::Stalled { height, .. } = &mut outcome {
                    *height = state.tip.map(|tip| tip + 1);
                }
                (root(&state.state_root, &state.db_layout), state.tip.and_then(|_| dump()), state.stress_result)
            }
        };
        Ok(Self {
            name: profile.name.clone(),
            limit: profile.limits(),
            limit_bytes: profile.memory.bytes(),
            engine: result.as_ref().map_or(profile.engine, |r| r.policy.engine),
            outcome,
            stored_result,
            state_root,
            peak_memory_bytes: watch.as_ref().and_then(|w| w.cgroup_peak_bytes).or(result.as_ref().and_then(|r| r.memory.peak_rss_bytes)),
            wall_secs: exit.wall.as_secs_f64(),
            dump,
            dir: profile.name.clone(),
            blocks: result.map(|r| block_reports(r, dir)).transpose()?,
        })
    }
}

/// The run's block reports: in its result, or in the file it appended them to (every run of a
/// resumed profile's, in order); `dir` is the profile's directory.
pub fn block_reports(result: RunResult, dir: &Path) -> Result<Vec<schema::BlockReport>> {
    if result.block_reports.is_none() {
        return Ok(result.blocks);
    }
    let path = dir.join(BLOCK_REPORTS);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let parse = |(n, line): (usize, &str)| serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), n + 1));
    text.lines().enumerate().map(parse).collect()
}

/// A run in words, from its outcome's words and what it stored.
impl ProfileReport {
    /// `oom-killed` or `completed, stored SUCCESS:1000MB`.
    pub fn summary(&self) -> String {
        match &self.stored_result {
            Some(stored) => format!("{}, stored {stored}", self.outcome.label()),
            None => self.outcome.label().to_string(),
        }
    }

    /// Why the run ended as it did (the detail line under the table).
    pub fn reason(&self) -> String {
        self.outcome.reason(self.engine)
    }

    /// The matrix's cell: `completed, ERROR at allocation 9`, `trapped: …`, `oom-killed`.
    pub fn cell(&self) -> String {
        let stored = self.stored_result.as_deref().unwrap_or("");
        match &self.outcome {
            Outcome::Completed => match stored.strip_prefix("ERROR:Failed at allocation ") {
                Some(rest) => format!("completed, ERROR at allocation {}", rest.split(' ').next().unwrap_or("?")),
                None => format!("completed, {stored}"),
            },
            other => other.brief(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn profile(name: &str, outcome: Outcome, root: &str) -> ProfileReport {
        ProfileReport {
            name: name.into(),
            limit: "4g".into(),
            limit_bytes: 4 << 30,
            engine: EngineKind::Memrepro,
            outcome,
            stored_result: Some("SUCCESS:1000MB".into()),
            state_root: Some(root.into()),
            peak_memory_bytes: Some(1536 << 20),
            wall_secs: 2.3,
            dump: Some(format!("{name}/dump.txt")),
            dir: name.into(),
            blocks: None,
        }
    }

    #[test]
    fn cells_say_the_outcome_and_where_allocation_failed() {
        let mut profile = profile("low", Outcome::Completed, "r");
        profile.stored_result = Some("ERROR:Failed at allocation 9 of 20: Failed to reserve 50MB".into());
        assert_eq!(profile.cell(), "completed, ERROR at allocation 9");
        profile.outcome = Outcome::OomKilled { evidence: "e".into() };
        assert_eq!(profile.cell(), "oom-killed");
        profile.outcome = Outcome::Trapped { height: 1, message: "mmap failed to reserve 0x104000000 bytes: Cannot allocate memory (os error 12)".into() };
        assert_eq!(profile.cell(), "trapped: mmap failed to reserve 0x104000000 bytes: Cannot allocate memory…");
    }
}
