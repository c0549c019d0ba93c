//! The verdict: one model, decided in one place ([`decide`]); the verdict table in
//! docs/output-and-verdict.md says the same.
//!
//! | verdict | exit | when |
//! |---|---|---|
//! | identical | 0 | at least two runs were compared, all ended the same deterministic way (completed, or trapped at the same height with the same message), and their committed state is byte-identical: dumps and full state roots |
//! | different | 1 | two compared runs differ in outcome (one completed, the other killed, trapped or timed out) or in committed state |
//! | harness error | 2 | a run cannot be trusted (limit not enforced, swap on, runner error), or equal dumps came with different roots |
//! | not compared | 3 | fewer than two runs to compare (one profile, the rest refused), or every run ended by a host event |
//!
//! A run refused by the deterministic preflight is safe (that node would not start) and is never
//! compared. Host events (oom-killed, killed, stalled, timed-out, host-limit) are never a deterministic ending: next to
//! a run that completed or trapped they are a difference; on their own they prove nothing.

use serde::{Deserialize, Serialize};

use super::comparison::Comparison;
use super::outcome::Kind;
use super::profile::ProfileReport;
use crate::exit::Exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Identical,
    Different,
    HarnessError,
    NotCompared,
}

impl Verdict {
    pub fn exit(self) -> Exit {
        match self {
            Self::Identical => Exit::Success,
            Self::Different => Exit::Different,
            Self::HarnessError => Exit::HarnessError,
            Self::NotCompared => Exit::NotCompared,
        }
    }

    pub fn exit_code(self) -> u8 {
        self.exit().code()
    }

    /// The verdict as the last line shows it.
    pub fn headline(self) -> &'static str {
        match self {
            Self::Identical => "identical",
            Self::Different => "DIFFERENT",
            Self::HarnessError => "no verdict (harness error)",
            Self::NotCompared => "NOT COMPARED",
        }
    }
}

/// A verdict and the evidence it rests on, in a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    #[serde(rename = "verdict_reason")]
    pub why: String,
}

impl Decision {
    pub fn new(verdict: Verdict, why: impl Into<String>) -> Self {
        Self { verdict, why: why.into() }
    }

    /// `VERDICT: DIFFERENT — `low` oom-killed …`
    pub fn line(&self) -> String {
        format!("VERDICT: {} — {}", self.verdict.headline(), self.why)
    }
}

/// The verdict over `profiles` (in order) and the comparisons of every compared run with the
/// first one.
pub fn decide(profiles: &[ProfileReport], comparisons: &[Comparison]) -> Decision {
    if let Some(untrusted) = untrusted(profiles, comparisons) {
        return untrusted;
    }
    let compared: Vec<&ProfileReport> = profiles.iter().filter(|p| p.outcome.kind() != Kind::Refused).collect();
    let refused: Vec<String> = profiles.iter().filter(|p| p.outcome.kind() == Kind::Refused).map(|p| format!("`{}`", p.name)).collect();
    let refused_note = match refused.len() {
        0 => String::new(),
        1 => format!("; {} was refused by the deterministic preflight (safe: that node would not start)", refused[0]),
        _ => format!("; {} were refused by the deterministic preflight (safe: those nodes would not start)", refused.join(", ")),
    };
    if let Some(too_few) = too_few(&compared, &refused, &refused_note) {
        return too_few;
    }
    if let Some(different) = different(&compared, comparisons) {
        return different;
    }
    let names: Vec<String> = compared.iter().map(|p| format!("`{}`", p.name)).collect();
    let roots = match compared.iter().all(|p| p.state_root.is_some()) {
        true => " and equal state roots",
        false => "",
    };
    Decision::new(
        Verdict::Identical,
        format!(
            "{} runs compared ({}): all {}, byte-identical dumps{roots}{refused_note}",
            compared.len(),
            names.join(", "),
            compared[0].outcome.describe()
        ),
    )
}

/// A harness error: a run that cannot be trusted, or known roots that disagree with their dumps.
fn untrusted(profiles: &[ProfileReport], comparisons: &[Comparison]) -> Option<Decision> {
    if let Some(p) = profiles.iter().find(|p| p.outcome.kind() == Kind::HarnessError) {
        return Some(Decision::new(Verdict::HarnessError, format!("`{}` cannot be trusted: {}", p.name, p.reason())));
    }
    // Two known roots that disagree with their dumps: the runner's root or dump is wrong. (A run
    // whose state could not be read back has no root to disagree with.)
    let root_known = |name: &str| profiles.iter().any(|p| p.name == name && p.state_root.is_some());
    let c = comparisons.iter().find(|c| c.same_dump() != c.same_root && root_known(&c.baseline) && root_known(&c.profile))?;
    let (dumps, roots) = if c.same_root { ("different", "equal") } else { ("byte-identical", "different") };
    Some(Decision::new(
        Verdict::HarnessError,
        format!("internal error: `{}` and `{}` have {dumps} dumps but {roots} state roots; the runner's root or dump is wrong", c.baseline, c.profile),
    ))
}

/// Not compared: fewer than two runs, or only host events, which show nothing of the guest.
fn too_few(compared: &[&ProfileReport], refused: &[String], refused_note: &str) -> Option<Decision> {
    match compared {
        [] => {
            return Some(Decision::new(
                Verdict::NotCompared,
                format!("no run to compare{refused_note}: raise the limits or lower the memory budget"),
            ))
        }
        [only] => {
            let fix = if refused.is_empty() { "add a profile (`--limit`) to compare" } else { "add a profile whose limit passes the preflight" };
            return Some(Decision::new(Verdict::NotCompared, format!("only `{}` ran ({}){refused_note}: {fix}", only.name, only.outcome.describe())));
        }
        _ => {}
    }
    if !compared.iter().all(|p| p.outcome.kind() == Kind::HostEvent) {
        return None;
    }
    let ends: Vec<String> = compared.iter().map(|p| format!("`{}` {}", p.name, p.outcome.describe())).collect();
    Some(Decision::new(
        Verdict::NotCompared,
        format!(
            "every run ended by a host event ({}), so nothing shows how the guest itself behaves: raise the limits or lower the payload",
            ends.join(", ")
        ),
    ))
}

/// Different: two compared runs ended differently, or committed different state.
fn different(compared: &[&ProfileReport], comparisons: &[Comparison]) -> Option<Decision> {
    let by_name = |name: &str| *compared.iter().find(|p| p.name == name).expect("compared profiles are in the report");
    let deterministic = |name: &str| by_name(name).outcome.kind() == Kind::Deterministic;
    let differing_endings = || comparisons.iter().filter(|c| !c.same_ending);
    // Two host events never end "the same way"; the difference worth naming has a deterministic side.
    if let Some(c) = differing_endings().find(|c| deterministic(&c.baseline) || deterministic(&c.profile)).or_else(|| differing_endings().next()) {
        let (a, b) = (by_name(&c.baseline), by_name(&c.profile));
        return Some(Decision::new(Verdict::Different, format!("`{}` {} but `{}` {}", a.name, a.outcome.describe(), b.name, b.outcome.describe())));
    }
    let c = comparisons.iter().find(|c| !c.same_dump())?;
    Some(Decision::new(
        Verdict::Different,
        format!(
            "`{}` and `{}` both {} but committed different state ({} differing keys, first {})",
            c.baseline,
            c.profile,
            by_name(&c.baseline).outcome.describe(),
            c.differing_keys,
            c.divergence.key.as_deref().unwrap_or("?")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::comparison::tests::comparison;
    use crate::judge::outcome::Outcome;
    use crate::judge::profile::tests::profile;

    fn classes() -> [(&'static str, Outcome); 10] {
        let trap = |height| Outcome::Trapped { height, message: "wasm `unreachable` instruction executed".into() };
        [
            ("C", Outcome::Completed),
            ("T2", trap(2)),
            ("T3", trap(3)),
            ("TO", Outcome::TimedOut { height: 2, message: "time limit".into() }),
            ("HL", Outcome::HostLimit { height: 2, message: "mmap failed to reserve 0x180000000 bytes".into() }),
            ("OOM", Outcome::OomKilled { evidence: "SIGKILL; failcnt +3, oom_kill +1".into() }),
            ("ST", Outcome::Stalled { height: Some(2), after_secs: 420 }),
            ("K", Outcome::Killed { reason: "signal 9 and no watcher report".into() }),
            ("R", Outcome::Refused { reason: "needs 448 MiB".into() }),
            ("H", Outcome::HarnessError { reason: "MEMORY LIMIT NOT ENFORCED".into() }),
        ]
    }

    /// Two profiles with byte-identical state and equal roots: the verdict for every pair of
    /// outcome classes (rows and columns in the order of `classes`).
    const TABLE: [[&str; 10]; 10] = [
        //  C     T2    T3    TO    HL    OOM   ST    K     R     H
        ["I", "D", "D", "D", "D", "D", "D", "D", "N", "H"], // C
        ["D", "I", "D", "D", "D", "D", "D", "D", "N", "H"], // T2
        ["D", "D", "I", "D", "D", "D", "D", "D", "N", "H"], // T3
        ["D", "D", "D", "N", "N", "N", "N", "N", "N", "H"], // TO
        ["D", "D", "D", "N", "N", "N", "N", "N", "N", "H"], // HL
        ["D", "D", "D", "N", "N", "N", "N", "N", "N", "H"], // OOM
        ["D", "D", "D", "N", "N", "N", "N", "N", "N", "H"], // ST
        ["D", "D", "D", "N", "N", "N", "N", "N", "N", "H"], // K
        ["N", "N", "N", "N", "N", "N", "N", "N", "N", "H"], // R
        ["H", "H", "H", "H", "H", "H", "H", "H", "H", "H"], // H
    ];

    fn decide_pair(a: Outcome, b: Outcome, diff: &str, roots: (&str, &str)) -> Decision {
        let profiles = vec![profile("low", a, roots.0), profile("high", b, roots.1)];
        let comparisons = match profiles.iter().all(|p| matches!(p.outcome.kind(), Kind::Deterministic | Kind::HostEvent)) {
            true => vec![comparison(&profiles[0], &profiles[1], diff)],
            false => vec![],
        };
        decide(&profiles, &comparisons)
    }

    #[test]
    fn every_pair_of_outcome_classes_gets_the_table_s_verdict() {
        for (i, (row, a)) in classes().into_iter().enumerate() {
            for (j, (column, b)) in classes().into_iter().enumerate() {
                let decision = decide_pair(a.clone(), b, "", ("r", "r"));
                let expected = match TABLE[i][j] {
                    "I" => Verdict::Identical,
                    "D" => Verdict::Different,
                    "N" => Verdict::NotCompared,
                    _ => Verdict::HarnessError,
                };
                assert_eq!(decision.verdict, expected, "{row} vs {column}: {}", decision.why);
            }
        }
    }

    #[test]
    fn the_same_ending_with_different_state_is_different() {
        let decision = decide_pair(Outcome::Completed, Outcome::Completed, "--- low\n+++ high\n-\"k\" = \"1\"\n+\"k\" = \"2\"\n", ("r", "s"));
        assert_eq!(decision.verdict, Verdict::Different);
        assert_eq!(decision.why, "`low` and `high` both completed but committed different state (1 differing keys, first \"k\")");
    }

    #[test]
    fn equal_dumps_with_different_roots_are_an_internal_error() {
        let decision = decide_pair(Outcome::Completed, Outcome::Completed, "", ("r", "s"));
        assert_eq!(decision.verdict, Verdict::HarnessError);
        assert!(decision.why.starts_with("internal error: `low` and `high` have byte-identical dumps but different state roots"), "{}", decision.why);
        let reverse = decide_pair(Outcome::Completed, Outcome::Completed, "-x\n+y\n", ("r", "r"));
        assert!(reverse.why.contains("have different dumps but equal state roots"), "{}", reverse.why);
    }

    #[test]
    fn fewer_than_two_runs_say_why_and_what_to_change() {
        let one = decide(&[profile("high", Outcome::Completed, "r")], &[]);
        assert_eq!(one, Decision::new(Verdict::NotCompared, "only `high` ran (completed): add a profile (`--limit`) to compare"));
        let refused = decide(&[profile("low", Outcome::Refused { reason: "r".into() }, "-"), profile("high", Outcome::Completed, "r")], &[]);
        assert_eq!(refused.why, "only `high` ran (completed); `low` was refused by the deterministic preflight (safe: that node would not start): add a profile whose limit passes the preflight");
        let killed = decide_pair(Outcome::OomKilled { evidence: "e".into() }, Outcome::OomKilled { evidence: "e".into() }, "", ("r", "r"));
        assert!(killed.why.starts_with("every run ended by a host event (`low` oom-killed, `high` oom-killed)"), "{}", killed.why);
    }

    #[test]
    fn a_refused_profile_is_listed_as_safe_beside_an_identical_pair() {
        let profiles = vec![
            profile("tiny", Outcome::Refused { reason: "r".into() }, "-"),
            profile("low", Outcome::Completed, "r"),
            profile("high", Outcome::Completed, "r"),
        ];
        let decision = decide(&profiles, &[comparison(&profiles[1], &profiles[2], "")]);
        assert_eq!(decision.line(), "VERDICT: identical — 2 runs compared (`low`, `high`): all completed, byte-identical dumps and equal state roots; `tiny` was refused by the deterministic preflight (safe: that node would not start)");
        assert_eq!(decision.verdict.exit_code(), 0);
    }

    #[test]
    fn the_difference_named_is_one_with_a_deterministic_side() {
        let killed = || Outcome::OomKilled { evidence: "e".into() };
        let profiles = vec![profile("a", killed(), "r"), profile("b", killed(), "r"), profile("c", Outcome::Completed, "r")];
        let comparisons = vec![comparison(&profiles[0], &profiles[1], ""), comparison(&profiles[0], &profiles[2], "")];
        assert_eq!(decide(&profiles, &comparisons).why, "`a` oom-killed but `c` completed");
    }

    #[test]
    fn a_kill_beside_a_completed_run_is_different_whichever_comes_first() {
        let killed = || Outcome::OomKilled { evidence: "e".into() };
        for (a, b) in [(killed(), Outcome::Completed), (Outcome::Completed, killed())] {
            let decision = decide_pair(a, b, "", ("r", "r"));
            assert_eq!((decision.verdict, decision.verdict.exit_code()), (Verdict::Different, 1), "{}", decision.why);
        }
        assert_eq!(decide_pair(killed(), Outcome::Completed, "", ("r", "r")).why, "`low` oom-killed but `high` completed");
    }
}
