//! The verdict of a repro run and its renderings: `report.json`, the terminal table and the
//! Markdown summary (also appended to `$GITHUB_STEP_SUMMARY` in GitHub Actions).

use serde::Serialize;

use crate::diff::Divergence;
use crate::outcome::Outcome;

#[derive(Debug, Clone, Serialize)]
pub struct ProfileReport {
    pub name: String,
    pub limit: String,
    pub limit_bytes: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The stress result the run committed (`/memory-stress-result/{height}`).
    pub stored_result: Option<String>,
    /// Root of the committed state (after a kill: of what the run left in its database).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every profile that ran completed and committed byte-identical state (profiles refused by
    /// the deterministic preflight committed nothing and are listed as such).
    Identical,
    /// The profiles' committed state differs, or one of them did not complete.
    Differ,
    /// A run could not be trusted (e.g. the memory limit was not enforced).
    HarnessError,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Identical => 0,
            Self::Differ => 1,
            Self::HarnessError => 2,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub baseline: String,
    pub profile: String,
    pub divergence: Divergence,
    /// Keys whose line differs (only in one dump, or with different values).
    pub differing_keys: u64,
    /// Unified diff of the two dumps (empty when identical).
    pub diff: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_at: String,
    /// What ran the runner: the image (and its size) or the local backend and its limit.
    pub backend: String,
    pub policy: String,
    pub memory_budget_bytes: Option<u64>,
    pub wasm: String,
    pub wasm_sha256: String,
    /// The blocks given to every profile, as `HEIGHT PAYLOAD_HEX` lines.
    pub blocks: Vec<String>,
    pub profiles: Vec<ProfileReport>,
    pub comparisons: Vec<Comparison>,
    pub verdict: Verdict,
}

/// Whether the profile ran at all (a refusal is not a run).
pub fn ran(profile: &ProfileReport) -> bool {
    !matches!(profile.outcome, Outcome::Refused { .. })
}

pub fn verdict(profiles: &[ProfileReport], comparisons: &[Comparison]) -> Verdict {
    let mut ran = profiles.iter().filter(|p| ran(p)).peekable();
    if ran.peek().is_none() || profiles.iter().any(|p| matches!(p.outcome, Outcome::HarnessError { .. })) {
        Verdict::HarnessError
    } else if ran.all(|p| p.outcome == Outcome::Completed) && comparisons.iter().all(|c| c.diff.is_empty()) {
        Verdict::Identical
    } else {
        Verdict::Differ
    }
}

const HEADERS: [&str; 7] = ["profile", "limit", "outcome", "stored result", "state root", "peak memory", "time"];

fn rows(report: &Report) -> Vec<[String; 7]> {
    report
        .profiles
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.limit.clone(),
                p.outcome.label().to_string(),
                p.stored_result.clone().unwrap_or_else(|| "-".into()),
                p.state_root.as_deref().map_or("-".into(), |r| r[..r.len().min(16)].to_string()),
                p.peak_memory_bytes.map_or("-".into(), mib),
                format!("{:.1} s", p.wall_secs),
            ]
        })
        .collect()
}

pub fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The table as aligned text columns.
pub fn table(report: &Report) -> String {
    let rows = rows(report);
    let widths: Vec<usize> = (0..HEADERS.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([HEADERS[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut text = line(HEADERS.to_vec());
    text += &line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect());
    for row in &rows {
        text += &line(row.iter().map(String::as_str).collect());
    }
    text
}

/// Why each profile that did not complete ended as it did, one line each.
pub fn outcome_details(report: &Report) -> Vec<String> {
    report
        .profiles
        .iter()
        .filter_map(|p| {
            let detail = match &p.outcome {
                Outcome::Completed => return None,
                Outcome::Trapped { height, message } => format!("trapped at height {height}: {message}"),
                Outcome::TimedOut { height, message } => format!("timed out at height {height}: {message}"),
                Outcome::OomKilled { evidence } => evidence.clone(),
                Outcome::Refused { reason } => reason.clone(),
                Outcome::Killed { reason } => reason.clone(),
                Outcome::HarnessError { reason } => reason.clone(),
            };
            Some(format!("{}: {}", p.name, detail))
        })
        .collect()
}

pub fn verdict_line(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Identical => "VERDICT: identical — every profile that ran committed byte-identical state",
        Verdict::Differ => "VERDICT: DIFFERENT — the profiles did not commit the same state",
        Verdict::HarnessError => "VERDICT: no verdict — the harness could not trust a run, or no profile ran (see above)",
    }
}

/// The Markdown summary: the table, the details and each diff in a fenced block.
pub fn markdown(report: &Report) -> String {
    let mut text = String::from("## cargo xtask repro\n\n");
    text += &format!("**{}**\n\nPolicy: `{}`", verdict_line(report.verdict), report.policy);
    if let Some(budget) = report.memory_budget_bytes {
        text += &format!(", memory budget {}", mib(budget));
    }
    text += "\n\n";
    text += &format!("| {} |\n|{}\n", HEADERS.join(" | "), "---|".repeat(HEADERS.len()));
    for row in rows(report) {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        text += &format!("| {} |\n", cells.join(" | "));
    }
    for detail in outcome_details(report) {
        text += &format!("\n- {detail}");
    }
    text += "\n";
    for comparison in report.comparisons.iter().filter(|c| !c.diff.is_empty()) {
        text += &format!("\n### {} vs {}\n\n", comparison.baseline, comparison.profile);
        if let Some(height) = comparison.divergence.height {
            text += &format!("First diverging height: {height}. ");
        }
        if let Some(key) = &comparison.divergence.key {
            text += &format!("First diverging key: `{key}`.");
        }
        text += &format!("\n\n```diff\n{}```\n", crate::diff::excerpt(&comparison.diff, crate::diff::SHOWN_LINES));
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn profile(name: &str, outcome: Outcome, root: &str) -> ProfileReport {
        ProfileReport {
            name: name.into(),
            limit: "4g".into(),
            limit_bytes: 4 << 30,
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

    pub(crate) fn report(profiles: Vec<ProfileReport>, diffs: &[&str]) -> Report {
        let comparisons: Vec<_> = diffs
            .iter()
            .map(|d| Comparison {
                baseline: "a".into(),
                profile: "b".into(),
                divergence: Divergence { height: Some(1), key: Some("\"k\"".into()) },
                differing_keys: 1,
                diff: d.to_string(),
            })
            .collect();
        Report {
            started_at: "t".into(),
            backend: "docker image i".into(),
            policy: "unbounded".into(),
            memory_budget_bytes: None,
            wasm: "w".into(),
            wasm_sha256: "s".into(),
            blocks: vec![],
            verdict: verdict(&profiles, &comparisons),
            profiles,
            comparisons,
        }
    }

    #[test]
    fn identical_only_when_all_completed_and_no_diff() {
        let same = report(vec![profile("a", Outcome::Completed, "r"), profile("b", Outcome::Completed, "r")], &[""]);
        assert_eq!((same.verdict, same.verdict.exit_code()), (Verdict::Identical, 0));
        let differ = report(vec![profile("a", Outcome::Completed, "r"), profile("b", Outcome::Completed, "s")], &["-x\n+y\n"]);
        assert_eq!((differ.verdict, differ.verdict.exit_code()), (Verdict::Differ, 1));
    }

    #[test]
    fn a_kill_is_a_difference_even_with_identical_partial_state() {
        let killed = Outcome::OomKilled { evidence: "SIGKILL".into() };
        let r = report(vec![profile("a", killed, "r"), profile("b", Outcome::Completed, "r")], &[""]);
        assert_eq!(r.verdict, Verdict::Differ);
    }

    #[test]
    fn a_refused_profile_is_not_a_divergence_but_all_refused_is_no_verdict() {
        let refused = || Outcome::Refused { reason: "needs 448 MiB".into() };
        let r = report(vec![profile("a", refused(), "0"), profile("b", Outcome::Completed, "r"), profile("c", Outcome::Completed, "r")], &[""]);
        assert_eq!(r.verdict, Verdict::Identical);
        let none = report(vec![profile("a", refused(), "0"), profile("b", refused(), "0")], &[]);
        assert_eq!(none.verdict, Verdict::HarnessError);
    }

    #[test]
    fn a_harness_error_wins_over_everything() {
        let error = Outcome::HarnessError { reason: "MEMORY LIMIT NOT ENFORCED".into() };
        let r = report(vec![profile("a", Outcome::Completed, "r"), profile("b", error, "r")], &[""]);
        assert_eq!((r.verdict, r.verdict.exit_code()), (Verdict::HarnessError, 2));
    }

    #[test]
    fn the_table_aligns_columns_and_shortens_roots() {
        let r = report(vec![profile("low", Outcome::OomKilled { evidence: "e".into() }, "0123456789abcdef0123")], &[]);
        let table = table(&r);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "profile  limit  outcome     stored result   state root        peak memory  time");
        assert_eq!(lines[2], "low      4g     oom-killed  SUCCESS:1000MB  0123456789abcdef  1536 MiB     2.3 s");
        assert_eq!(outcome_details(&r), ["low: e"]);
    }

    #[test]
    fn markdown_has_the_verdict_table_and_fenced_diffs() {
        let r = report(vec![profile("a", Outcome::Completed, "r"), profile("b", Outcome::Completed, "s")], &["--- a\n+++ b\n-x\n+y\n"]);
        let md = markdown(&r);
        assert!(md.contains("**VERDICT: DIFFERENT"), "{md}");
        assert!(md.contains("| profile | limit | outcome |"), "{md}");
        assert!(md.contains("### a vs b\n\nFirst diverging height: 1. First diverging key: `\"k\"`.\n\n```diff\n--- a\n"), "{md}");
    }
}
