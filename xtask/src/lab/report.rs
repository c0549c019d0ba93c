//! The lab's report: each profile's run judged against the quiet run's database, the view answers
//! compared, the verdict; printed as a table with the first divergence, and kept as report.json.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use schema::{NodeComparison, NodeVerdict};

use super::judge::{decide, LabProfile};
use super::node::NodeUnderTest;
use super::views::{compare_answers, ViewAnswer, ViewMismatch};
use super::profile_run::{database, ProfileRun};
use crate::judge::dump_diff::{excerpt, SHOWN_LINES};
use crate::judge::node_diff::{metashrew_diff, state_diff_at};
use crate::judge::verdict::Decision;
use crate::units::mib;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabReport {
    pub node: String,
    pub blocks: String,
    pub tip: u32,
    pub wasm_sha256: String,
    pub profiles: Vec<LabProfile>,
    /// View questions answered more than once (across runs or within one) and compared.
    pub view_answers_compared: usize,
    pub view_mismatch: Option<ViewMismatch>,
    #[serde(flatten)]
    pub decision: Decision,
}

impl LabReport {
    /// Judges the runs (the first is the quiet run), then publishes the report in `run_dir`.
    #[allow(clippy::too_many_arguments)]
    pub fn judge(runner: &Path, run_dir: &Path, runs: Vec<ProfileRun>, node: &NodeUnderTest, blocks: &str, tip: u32, label: Option<&str>, wasm_sha256: String) -> Result<Self> {
        let quiet_db = runs.first().map(|run| database(&run.dir)).context("no profile ran")?;
        let answers: Vec<(&str, &[ViewAnswer])> = runs.iter().map(|run| (run.profile.name.as_str(), run.answers.as_slice())).collect();
        let (view_mismatch, view_answers_compared) = compare_answers(&answers);
        let compare = |run: &ProfileRun| -> Result<Option<NodeComparison>> {
            let db = database(&run.dir);
            let both = db.join("CURRENT").exists() && quiet_db.join("CURRENT").exists();
            both.then(|| metashrew_diff(runner, [&quiet_db, &db], label, &run.dir.join("comparison.json"))).transpose()
        };
        let comparisons: Vec<Option<NodeComparison>> = runs.iter().skip(1).map(compare).collect::<Result<_>>()?;
        // The quiet run's tip, as any comparison gives it; against itself only when there is none.
        let quiet_tip = match comparisons.iter().flatten().next() {
            Some(c) => Some(c.tips[0]),
            None => compare(&runs[0])?.map(|c| c.tips[1]),
        };
        let mut profiles = vec![LabProfile::of(&runs[0], None, quiet_tip, None)];
        for (run, comparison) in runs.iter().skip(1).zip(comparisons) {
            let state_diff = match comparison.as_ref().filter(|c| c.verdict == NodeVerdict::DifferentState).and_then(|c| c.height) {
                Some(height) => Some(state_diff_at(runner, [&quiet_db, &database(&run.dir)], label, &height.to_string(), &run.dir)?),
                None => None,
            };
            let db_tip = comparison.as_ref().map(|c| c.tips[1]);
            profiles.push(LabProfile::of(run, comparison, db_tip, state_diff));
        }
        let decision = decide(&profiles, tip, view_mismatch.as_ref());
        let report = Self { node: node.describe(), blocks: blocks.into(), tip, wasm_sha256, profiles, view_answers_compared, view_mismatch, decision };
        report.publish(run_dir)?;
        Ok(report)
    }

    fn publish(&self, run_dir: &Path) -> Result<()> {
        std::fs::write(run_dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        println!("\nnode: {}\nblocks: {}", self.node, self.blocks);
        println!("{:<16} {:<44} {:>5} {:>8} {:>7}  vs quiet", "profile", "settings", "tip", "peak", "wall");
        for p in &self.profiles {
            let peak = p.memory.cgroup_peak_bytes.map_or("-".into(), mib);
            let tip = p.db_tip.map_or("-".into(), |t| t.to_string());
            println!("{:<16} {:<44} {:>5} {:>8} {:>6.1}s  {}", p.profile.name, p.profile.describe(), tip, peak, p.wall_secs, p.versus_quiet(self.tip));
        }
        for line in self.details() {
            println!("  {line}");
        }
        for p in &self.profiles {
            if let (Some(diff), Some(height)) = (&p.state_diff, p.comparison.as_ref().and_then(|c| c.height)) {
                println!("\nstate as of height {height} (A = {}, B = {}):\n{}", self.profiles[0].profile.name, p.profile.name, excerpt(diff, SHOWN_LINES));
            }
        }
        println!("\n{}\nresults: {}", self.decision.line(), run_dir.display());
        Ok(())
    }

    /// What was injected when, view traffic, and where each differing run first diverged.
    fn details(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for p in &self.profiles {
            for injection in &p.injected {
                lines.push(format!("{}: {} at {:.1} s", p.profile.name, injection.what, injection.at_secs));
            }
            if let Some(crash) = &p.profile.crash {
                let planned = crash.at_heights.iter().filter(|&&h| h < self.tip).count() + crash.random as usize;
                if p.injected.len() < planned {
                    lines.push(format!("{}: {} of {planned} planned crashes came before the node reached the tip", p.profile.name, p.injected.len()));
                }
            }
            if p.profile.views.is_some() {
                lines.push(format!("{}: {} view calls answered, {} failed", p.profile.name, p.views_answered, p.views_failed));
            }
            if p.failure(self.tip).is_some() && !p.log_tail.is_empty() {
                lines.push(format!("{}: last output: {}", p.profile.name, p.log_tail.join(" | ")));
            }
            let Some(comparison) = p.comparison.as_ref().filter(|c| c.verdict == NodeVerdict::DifferentState) else { continue };
            lines.push(format!("{}: first diverging height {}; {} keys differ there", p.profile.name, comparison.height.unwrap_or(0), comparison.keys_differing_there));
            for key in comparison.keys.iter().take(3) {
                lines.push(format!("  first diverging key {}: quiet {:?} / {} {:?}", key.key, key.histories[0], p.profile.name, key.histories[1]));
            }
        }
        if self.view_answers_compared > 0 || self.view_mismatch.is_some() {
            lines.push(format!("view answers compared: {} questions answered more than once", self.view_answers_compared));
        }
        lines
    }
}

impl LabProfile {
    /// A run with what its database showed.
    fn of(run: &ProfileRun, comparison: Option<NodeComparison>, db_tip: Option<u32>, state_diff: Option<String>) -> Self {
        Self {
            profile: run.profile.clone(),
            end: run.driven.end.clone(),
            db_tip,
            last_height: run.driven.last_height,
            injected: run.driven.injected.clone(),
            memory: run.driven.memory.clone(),
            wall_secs: run.driven.wall.as_secs_f64(),
            views_answered: run.answers.iter().filter(|a| a.answer.is_ok()).count(),
            views_failed: run.answers.iter().filter(|a| a.answer.is_err()).count(),
            comparison,
            log_tail: run.log_tail.clone(),
            state_diff,
        }
    }
}

/// One JSON object per answer.
pub fn write_answers(file: &Path, answers: &[ViewAnswer]) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?);
    for answer in answers {
        writeln!(out, "{}", serde_json::to_string(answer)?)?;
    }
    out.flush()?;
    Ok(())
}
