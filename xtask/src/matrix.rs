//! `cargo xtask matrix`: `repro` once per policy over the `matrix_profiles`, then one table of
//! policy x profile -> outcome (the table in README).

use std::path::Path;

use anyhow::Result;
use xshell::Shell;

use crate::config::Policy;
use crate::outcome::Outcome;
use crate::repro::{new_run_dir, repro, ReproArgs};
use crate::report::{ProfileReport, Report};

pub fn matrix(sh: &Shell, root: &Path, mut args: ReproArgs, policies: &[Policy]) -> Result<Vec<Report>> {
    let dir = new_run_dir(args.out_dir.clone().unwrap_or_else(|| root.join("target/repro")))?;
    args.out_dir = Some(dir.clone());
    args.config.profiles = args.config.matrix_profiles.clone();
    let mut reports = Vec::new();
    for &policy in policies {
        eprintln!("\n######## policy {} ########", policy.name());
        args.config.policy = policy;
        reports.push(repro(sh, root, args.clone())?);
    }
    let text = matrix_table(&reports);
    std::fs::write(dir.join("matrix.md"), &text)?;
    println!("\n{text}");
    println!("results: {}", dir.display());
    Ok(reports)
}

/// A Markdown table: one row per profile, one column per policy, and the verdicts.
pub fn matrix_table(reports: &[Report]) -> String {
    let mut text = String::from("| profile | limits |");
    for report in reports {
        text += &format!(" {} |", report.policy);
    }
    text += &format!("\n|---|---|{}\n", "---|".repeat(reports.len()));
    let Some(first) = reports.first() else { return text };
    for (i, profile) in first.profiles.iter().enumerate() {
        text += &format!("| {} | {} |", profile.name, profile.limit);
        for report in reports {
            text += &format!(" {} |", report.profiles.get(i).map_or("-".into(), cell));
        }
        text += "\n";
    }
    text += "| **verdict** | |";
    for report in reports {
        let verdict = report.decision.verdict;
        text += &format!(" **{}** (exit {}) |", serde_json::to_value(verdict).unwrap().as_str().unwrap_or(""), verdict.exit_code());
    }
    text + "\n"
}

fn cell(profile: &ProfileReport) -> String {
    let stored = profile.stored_result.as_deref().unwrap_or("");
    match &profile.outcome {
        Outcome::Completed => match stored.strip_prefix("ERROR:Failed at allocation ") {
            Some(rest) => format!("completed, ERROR at allocation {}", rest.split(' ').next().unwrap_or("?")),
            None => format!("completed, {stored}"),
        },
        Outcome::Trapped { message, .. } => format!("trapped: {}", shorten(message)),
        Outcome::TimedOut { .. } => "timed-out".into(),
        Outcome::Killed { reason } => format!("killed: {}", shorten(reason)),
        other => other.label().to_string(),
    }
}

fn shorten(text: &str) -> String {
    let text = text.replace('|', "/");
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_say_the_outcome_and_where_allocation_failed() {
        let mut profile = crate::report::tests::profile("low", Outcome::Completed, "r");
        profile.stored_result = Some("ERROR:Failed at allocation 9 of 20: Failed to reserve 50MB".into());
        assert_eq!(cell(&profile), "completed, ERROR at allocation 9");
        profile.outcome = Outcome::OomKilled { evidence: "e".into() };
        assert_eq!(cell(&profile), "oom-killed");
        profile.outcome = Outcome::Trapped { height: 1, message: "mmap failed to reserve 0x104000000 bytes: Cannot allocate memory (os error 12)".into() };
        assert_eq!(cell(&profile), "trapped: mmap failed to reserve 0x104000000 bytes: Cannot allocate memory…");
    }

    #[test]
    fn the_table_has_a_column_per_policy_and_a_verdict_row() {
        let reports = ["unbounded", "deterministic"].map(|policy| {
            let profiles = vec![crate::report::tests::profile("low", Outcome::Completed, "r"), crate::report::tests::profile("high", Outcome::Completed, "r")];
            let mut report = crate::report::tests::report(profiles, &[""]);
            report.policy = policy.into();
            report
        });
        let table = matrix_table(&reports);
        assert!(table.starts_with("| profile | limits | unbounded | deterministic |\n|---|---|---|---|\n| low | 4g | completed, SUCCESS:1000MB | completed, SUCCESS:1000MB |\n| high | 4g | completed, SUCCESS:1000MB | completed, SUCCESS:1000MB |\n"), "{table}");
        assert!(table.ends_with("| **verdict** | | **identical** (exit 0) | **identical** (exit 0) |\n"), "{table}");
    }
}
