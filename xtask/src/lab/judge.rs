//! The lab's verdict: each profile's run in words from its evidence (how it ended, the tip its
//! database holds), its database compared with the quiet run's, every view answer compared with
//! every other answer to the same question; then one verdict over all of them.

use serde::{Deserialize, Serialize};

use schema::{NodeComparison, NodeVerdict};

use super::drive::{Injection, MemoryEvidence, NodeEnd};
use super::views::ViewMismatch;
use crate::config::node::NodeProfile;
use crate::judge::verdict::{Decision, Verdict};
use crate::units::mib;

/// One profile's run, judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabProfile {
    #[serde(flatten)]
    pub profile: NodeProfile,
    pub end: NodeEnd,
    /// The tip its database holds (`None`: no database).
    pub db_tip: Option<u32>,
    /// The last height its JSON-RPC answered.
    pub last_height: Option<u32>,
    pub injected: Vec<Injection>,
    pub memory: MemoryEvidence,
    pub wall_secs: f64,
    pub views_answered: usize,
    pub views_failed: usize,
    /// Its database against the quiet run's (`None` for the quiet run, or a run that failed).
    pub comparison: Option<NodeComparison>,
    /// Its last lines of output.
    pub log_tail: Vec<String>,
    /// Where its database differs: both states as of the first diverging height, diffed
    /// (`state.diff` in its directory).
    #[serde(skip)]
    pub state_diff: Option<String>,
}

impl LabProfile {
    /// `None` when it indexed the tip; else what happened instead, in words.
    pub fn failure(&self, tip: u32) -> Option<String> {
        let at = |height: Option<u32>| height.map_or("before indexing any block".into(), |h| format!("at height {h}"));
        match &self.end {
            NodeEnd::Finished { code, stopped_at_tip, .. } if self.db_tip == Some(tip) && (*code == 0 || *stopped_at_tip) => None,
            NodeEnd::Finished { code, docker_oom_killed, .. } => Some(match self.oom_evidence(*code, *docker_oom_killed) {
                Some(evidence) => format!("oom-killed {} ({evidence})", at(self.db_tip)),
                None => format!("exited with code {code} {}", at(self.db_tip)),
            }),
            NodeEnd::Stalled { height, secs } => Some(format!("stalled {} (no progress for {secs} s)", at(*height))),
            NodeEnd::TimedOut { height, secs } => Some(format!("still indexing {} after {secs} s (timeout)", at(*height))),
        }
    }

    /// An OOM kill only when everything recorded says so: SIGKILL, Docker's record and the
    /// cgroup's peak at its limit.
    fn oom_evidence(&self, code: i64, docker_oom_killed: bool) -> Option<String> {
        let (limit, peak) = (self.memory.cgroup_limit_bytes?, self.memory.cgroup_peak_bytes?);
        (code == 137 && docker_oom_killed && peak + (1 << 20) >= limit)
            .then(|| format!("exit 137, Docker's OOMKilled, cgroup peak {} of its {} limit", mib(peak), mib(limit)))
    }

    /// The table's cell for how it compares with the quiet run.
    pub fn versus_quiet(&self, tip: u32) -> String {
        if let Some(failure) = self.failure(tip) {
            return failure;
        }
        match &self.comparison {
            None => "(the quiet run)".into(),
            Some(c) => match c.verdict {
                NodeVerdict::Identical => format!("identical ({} keys)", c.keys_compared),
                NodeVerdict::DifferentState => format!("DIFFERENT from height {}", c.height.unwrap_or(0)),
                NodeVerdict::DifferentBlocks => format!("not compared: other blocks at height {}", c.height.unwrap_or(0)),
            },
        }
    }
}

/// One verdict over the runs; the first is the quiet run.
pub fn decide(profiles: &[LabProfile], tip: u32, views: Option<&ViewMismatch>) -> Decision {
    let Some((quiet, others)) = profiles.split_first() else {
        return Decision::new(Verdict::NotCompared, "no profile ran");
    };
    if let Some(failure) = quiet.failure(tip) {
        return Decision::new(Verdict::NotCompared, format!("the quiet run `{}` {failure}: nothing to compare against", quiet.profile.name));
    }
    if others.is_empty() {
        return Decision::new(Verdict::NotCompared, "one profile: nothing to compare");
    }
    for other in others {
        if let Some(decision) = different(quiet, other, tip) {
            return decision;
        }
    }
    if let Some(mismatch) = views {
        let [(a, first), (b, second)] = &mismatch.answers;
        return Decision::new(
            Verdict::Different,
            format!("view `{}` ({}) at height {} answered {first} on `{a}` and {second} on `{b}`", mismatch.view, mismatch.input, mismatch.height),
        );
    }
    if let Some(other) = others.iter().find(|o| o.comparison.as_ref().is_some_and(|c| c.verdict == NodeVerdict::DifferentBlocks)) {
        return Decision::new(Verdict::NotCompared, format!("`{}` indexed other blocks than `{}`", other.profile.name, quiet.profile.name));
    }
    let names: Vec<&str> = profiles.iter().map(|p| p.profile.name.as_str()).collect();
    Decision::new(Verdict::Identical, format!("{} indexed to height {tip}, every database identical to the quiet run's", names.join(", ")))
}

fn different(quiet: &LabProfile, other: &LabProfile, tip: u32) -> Option<Decision> {
    let (name, quiet_name) = (&other.profile.name, &quiet.profile.name);
    if let Some(failure) = other.failure(tip) {
        return Some(Decision::new(Verdict::Different, format!("`{name}` ({}) {failure}, while `{quiet_name}` indexed to height {tip}", other.profile.describe())));
    }
    let comparison = other.comparison.as_ref()?;
    (comparison.verdict == NodeVerdict::DifferentState).then(|| {
        let key = comparison.keys.first().map_or(String::new(), |k| format!(", first key {}", k.key));
        Decision::new(
            Verdict::Different,
            format!("`{name}` ({}) differs from `{quiet_name}` first at height {}{key} ({} keys there)", other.profile.describe(), comparison.height.unwrap_or(0), comparison.keys_differing_there),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, end: NodeEnd, db_tip: Option<u32>, comparison: Option<NodeComparison>) -> LabProfile {
        LabProfile {
            profile: NodeProfile { name: name.into(), memory: None, cpus: None, nofile: None, pids: None, views: None, crash: None },
            end,
            db_tip,
            last_height: db_tip,
            injected: Vec::new(),
            memory: MemoryEvidence { cgroup_limit_bytes: Some(512 << 20), cgroup_peak_bytes: Some(512 << 20) },
            wall_secs: 1.0,
            views_answered: 0,
            views_failed: 0,
            comparison,
            log_tail: Vec::new(),
            state_diff: None,
        }
    }

    fn finished(code: i64) -> NodeEnd {
        NodeEnd::Finished { code, stopped_at_tip: false, docker_oom_killed: code == 137 }
    }

    fn compared(verdict: NodeVerdict, height: Option<u32>) -> Option<NodeComparison> {
        Some(NodeComparison { verdict, height, tips: [589, 589], block_hashes_compared: 590, block_hashes: None, keys_compared: 10, keys: Vec::new(), keys_differing_there: 1 })
    }

    #[test]
    fn every_failure_to_reach_the_tip_is_a_difference_and_never_identical() {
        let quiet = run("quiet", finished(0), Some(589), None);
        let same = run("low", finished(0), Some(589), compared(NodeVerdict::Identical, None));
        assert_eq!(decide(&[quiet.clone(), same.clone()], 589, None).verdict, Verdict::Identical);

        let stalled = run("nofile", NodeEnd::Stalled { height: Some(120), secs: 30 }, Some(120), None);
        let decision = decide(&[quiet.clone(), same.clone(), stalled], 589, None);
        assert_eq!(decision.line(), "VERDICT: DIFFERENT — `nofile` (no limits) stalled at height 120 (no progress for 30 s), while `quiet` indexed to height 589");

        let early = run("low", finished(1), Some(40), None);
        assert!(decide(&[quiet.clone(), early], 589, None).why.contains("exited with code 1 at height 40"));
        let oom = run("low", finished(137), Some(40), None);
        assert!(decide(&[quiet.clone(), oom], 589, None).why.contains("oom-killed at height 40 (exit 137, Docker's OOMKilled, cgroup peak 512 MiB"));
        let exited_clean_below_tip = run("low", finished(0), Some(588), None);
        assert!(decide(&[quiet.clone(), exited_clean_below_tip], 589, None).why.contains("exited with code 0 at height 588"));

        let diverged = run("views", finished(0), Some(589), compared(NodeVerdict::DifferentState, Some(77)));
        assert!(decide(&[quiet.clone(), diverged], 589, None).why.contains("differs from `quiet` first at height 77"));

        let quiet_failed = run("quiet", NodeEnd::TimedOut { height: None, secs: 600 }, None, None);
        assert_eq!(decide(&[quiet_failed, same], 589, None).verdict, Verdict::NotCompared);
    }

    #[test]
    fn a_view_answered_differently_is_a_difference() {
        let quiet = run("quiet", finished(0), Some(589), None);
        let loaded = run("views", finished(0), Some(589), compared(NodeVerdict::Identical, None));
        let mismatch = ViewMismatch { view: "balance".into(), input: "ab".into(), height: 9, answers: [("quiet".into(), "0x01".into()), ("views".into(), "0x02".into())] };
        assert_eq!(decide(&[quiet, loaded], 589, Some(&mismatch)).why, "view `balance` (ab) at height 9 answered 0x01 on `quiet` and 0x02 on `views`");
    }
}
