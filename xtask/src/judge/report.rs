//! The report of a run directory and its renderings: `report.json`, the terminal table and the
//! Markdown summary (also appended to `$GITHUB_STEP_SUMMARY` in GitHub Actions), published
//! together with the diffs.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use schema::{BlockOutcome, EngineKind};

use super::comparison::Comparison;
use super::dump_diff::{colorize, excerpt, SHOWN_LINES};
use super::outcome::Outcome;
use super::profile::ProfileReport;
use super::verdict::Decision;
use crate::units::mib;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub started_at: String,
    /// What ran the runner: the image (and its size) or the local backend and its limit.
    pub backend: String,
    /// The machine the runs were made on.
    pub machine: Machine,
    /// The runner that made them, as it reported itself (`None` when no run left a result).
    pub runner: Option<schema::RunnerIdentity>,
    pub policy: String,
    pub memory_budget_bytes: Option<u64>,
    pub wasm: String,
    pub wasm_sha256: String,
    /// The blocks given to every profile: what and where from, in one line; the SHA-256 of
    /// their `HEIGHT PAYLOAD_HEX` text.
    pub blocks: String,
    pub blocks_sha256: String,
    pub profiles: Vec<ProfileReport>,
    pub comparisons: Vec<Comparison>,
    /// `verdict` and `verdict_reason` in report.json.
    #[serde(flatten)]
    pub decision: Decision,
}

/// Where runs were made: enough to tell two machines (and CPU architectures) apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub arch: String,
    pub cpu_model: String,
    pub kernel: String,
    /// The cgroup version whose memory controller is mounted (`None`: none).
    pub cgroup_version: Option<u8>,
}

impl Machine {
    /// This machine, from /proc.
    pub fn this_one() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).map(|text| text.trim().to_string()).unwrap_or_else(|_| "unknown".into());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        // x86 names the model; arm64 often only its implementer and part numbers.
        let field = |name: &str| {
            cpuinfo.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let cpu_model = field("model name")
            .or_else(|| Some(format!("implementer {} part {}", field("CPU implementer")?, field("CPU part")?)))
            .unwrap_or_else(|| "unknown".into());
        Machine {
            hostname: read("/proc/sys/kernel/hostname"),
            arch: std::env::consts::ARCH.into(),
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease"),
            cgroup_version: cgroup::mounted_version(std::path::Path::new(cgroup::ROOT)),
        }
    }
}

/// The table's columns: `engine` only when some profile ran another engine than ours.
fn headers(report: &Report) -> Vec<&'static str> {
    let mut headers = vec!["profile", "limit", "outcome", "stored result", "state root", "peak memory", "time"];
    if shows_engines(report) {
        headers.insert(2, "engine");
    }
    headers
}

fn shows_engines(report: &Report) -> bool {
    report.profiles.iter().any(|p| p.engine != EngineKind::default())
}

fn rows(report: &Report) -> Vec<Vec<String>> {
    report
        .profiles
        .iter()
        .map(|p| {
            let mut row = vec![
                p.name.clone(),
                p.limit.clone(),
                p.outcome.label().to_string(),
                p.stored_result.clone().unwrap_or_else(|| "-".into()),
                p.state_root.as_deref().map_or("-".into(), |r| r[..r.len().min(16)].to_string()),
                p.peak_memory_bytes.map_or("-".into(), mib),
                format!("{:.1} s", p.wall_secs),
            ];
            if shows_engines(report) {
                row.insert(2, p.engine.to_string());
            }
            row
        })
        .collect()
}

/// The table as aligned text columns.
pub fn table(report: &Report) -> String {
    let (headers, rows) = (headers(report), rows(report));
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut text = line(headers);
    text += &line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect());
    for row in &rows {
        text += &line(row.iter().map(String::as_str).collect());
    }
    text
}

/// Why each profile that did not complete ended as it did, and the blocks the metashrew engine
/// counted as done with nothing written, one line each.
pub fn outcome_details(report: &Report) -> Vec<String> {
    let mut details = Vec::new();
    for profile in &report.profiles {
        details.extend(aborted_blocks(profile).map(|line| format!("{}: {line}", profile.name)));
        if profile.outcome != Outcome::Completed {
            details.push(format!("{}: {}", profile.name, profile.reason()));
        }
    }
    details
}

/// `block 2 aborted (metashrew engine: done, nothing written): …` for each such block.
fn aborted_blocks(profile: &ProfileReport) -> impl Iterator<Item = String> + '_ {
    profile.blocks.iter().flatten().filter_map(|block| match &block.outcome {
        BlockOutcome::Aborted { message } => {
            Some(format!("block {} aborted ({} engine: done, nothing written): {message}", block.height, profile.engine))
        }
        _ => None,
    })
}

/// The Markdown summary: the table, the details and each diff in a fenced block.
pub fn markdown(report: &Report) -> String {
    let mut text = String::from("## cargo xtask repro\n\n");
    text += &format!("**{}**\n\nPolicy: `{}`", report.decision.line(), report.policy);
    if let Some(budget) = report.memory_budget_bytes {
        text += &format!(", memory budget {}", mib(budget));
    }
    text += "\n\n";
    let headers = headers(report);
    text += &format!("| {} |\n|{}\n", headers.join(" | "), "---|".repeat(headers.len()));
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
        text += &format!("\n\n```diff\n{}```\n", excerpt(&comparison.diff, SHOWN_LINES));
    }
    text
}

/// Writes report.json, summary.md and the diffs, and prints the table, details and diffs.
pub fn publish(run_dir: &Path, report: &Report) -> Result<()> {
    crate::run_dir::write_atomically(&run_dir.join("report.json"), serde_json::to_string_pretty(report)?)?;
    let summary = markdown(report);
    std::fs::write(run_dir.join("summary.md"), &summary)?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).context("opening $GITHUB_STEP_SUMMARY")?;
        writeln!(file, "{summary}")?;
    }
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    println!();
    print!("{}", table(report));
    for detail in outcome_details(report) {
        println!("  {detail}");
    }
    for comparison in report.comparisons.iter().filter(|c| !c.diff.is_empty()) {
        std::fs::write(run_dir.join(format!("diff-{}-{}.diff", comparison.baseline, comparison.profile)), &comparison.diff)?;
        println!();
        if let Some(height) = comparison.divergence.height {
            println!("first diverging height: {height}");
        }
        if let Some(key) = &comparison.divergence.key {
            println!("first diverging key: {key}");
        }
        let shown = excerpt(&comparison.diff, SHOWN_LINES);
        print!("{}", if color { colorize(&shown) } else { shown });
    }
    println!();
    println!("{}", report.decision.line());
    println!("results: {}", run_dir.display());
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::judge::comparison::tests::comparison;
    use crate::judge::profile::tests::profile;
    use crate::judge::verdict::{decide, Verdict};

    /// A report of `profiles`, each compared with the first through `diffs`.
    pub(crate) fn report(profiles: Vec<ProfileReport>, diffs: &[&str]) -> Report {
        let comparisons: Vec<_> = profiles.iter().skip(1).zip(diffs).map(|(p, d)| comparison(&profiles[0], p, d)).collect();
        Report {
            started_at: "t".into(),
            backend: "docker image i".into(),
            machine: Machine::this_one(),
            runner: None,
            policy: "unbounded".into(),
            memory_budget_bytes: None,
            wasm: "w".into(),
            wasm_sha256: "s".into(),
            blocks: String::new(),
            blocks_sha256: "b".into(),
            decision: decide(&profiles, &comparisons),
            profiles,
            comparisons,
        }
    }

    #[test]
    fn report_json_carries_the_verdict_and_its_reason() {
        let r = report(vec![profile("a", Outcome::Completed, "r"), profile("b", Outcome::Completed, "r")], &[""]);
        assert_eq!(r.decision.verdict, Verdict::Identical);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["verdict"], "identical");
        assert!(json["verdict_reason"].as_str().unwrap().starts_with("2 runs compared"), "{json}");
        assert_eq!(json["comparisons"][0]["same_ending"], true);
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
        assert!(md.contains("**VERDICT: DIFFERENT — `a` and `b` both completed but committed different state"), "{md}");
        assert!(md.contains("| profile | limit | outcome |"), "{md}");
        assert!(md.contains("### a vs b\n\nFirst diverging height: 1. First diverging key: `\"k\"`.\n\n```diff\n--- a\n"), "{md}");
    }

    fn block(height: u32, outcome: BlockOutcome) -> schema::BlockReport {
        schema::BlockReport {
            height,
            outcome,
            flushed_pairs: 1,
            flushed_bytes: 6,
            host_charged_bytes: 0,
            fuel_consumed: None,
            state_root: "00".into(),
            wasm_memory_bytes: 65536,
            refused_growths: 0,
            timings: Default::default(),
        }
    }

    #[test]
    fn the_engine_column_and_the_metashrew_details_appear_when_a_profile_ran_metashrew_s_engine() {
        let ours = profile("ours", Outcome::Trapped { height: 2, message: "the guest called abort() at line 1, column 2".into() }, "r");
        let mut theirs = profile("theirs", Outcome::Completed, "s");
        theirs.engine = EngineKind::Metashrew;
        theirs.blocks = Some(vec![block(1, BlockOutcome::Completed), block(2, BlockOutcome::Aborted { message: "the guest called abort() at line 1, column 2".into() })]);
        let r = report(vec![ours, theirs], &["-x\n+y\n"]);
        let lines: Vec<String> = table(&r).lines().map(String::from).collect();
        assert_eq!(lines[0], "profile  limit  engine     outcome    stored result   state root  peak memory  time");
        assert_eq!(lines[3], "theirs   4g     metashrew  completed  SUCCESS:1000MB  s           1536 MiB     2.3 s");
        assert!(markdown(&r).contains("| profile | limit | engine | outcome |"));
        assert_eq!(
            outcome_details(&r),
            [
                "ours: trapped at height 2: the guest called abort() at line 1, column 2",
                "theirs: block 2 aborted (metashrew engine: done, nothing written): the guest called abort() at line 1, column 2",
            ]
        );
        let mut stuck = profile("stuck", Outcome::Trapped { height: 3, message: "unreachable".into() }, "r");
        stuck.engine = EngineKind::Metashrew;
        assert_eq!(
            outcome_details(&report(vec![stuck], &[])),
            ["stuck: trapped at height 3: unreachable; a metashrew node would retry this block for ever: it never moves past height 3"]
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!((&json["profiles"][0]["engine"], &json["profiles"][1]["engine"]), (&"memrepro".into(), &"metashrew".into()));
    }
}
