//! `cargo xtask matrix`: `repro` once per policy over the `matrix_profiles`, then one table of
//! policy x profile -> outcome (the table in `docs/policies.md`).

use std::path::Path;

use anyhow::{Context, Result};
use xshell::Shell;

use super::repro::{repro, ReproArgs};
use crate::config::Policy;
use crate::exit::Exit;
use crate::flags;
use crate::judge::report::Report;
use crate::judge::verdict::Verdict;
use crate::run_dir::new_run_dir;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, flags: flags::Matrix) -> Result<Exit> {
    let policies = match flags.run.policy {
        Some(policy) => vec![policy],
        None => vec![Policy::Unbounded, Policy::Headroom, Policy::Deterministic],
    };
    let config = flags.run.apply(ws.config()?)?;
    let args = ReproArgs { config, input: Default::default(), image_build: ws.image_build, backend: ws.backend, out_dir: flags.run.out_dir, resume: None, from_db: None };
    let reports = matrix(&ws.sh, &ws.root, args, &policies).context("matrix")?;
    let untrusted = reports.iter().any(|r| r.decision.verdict == Verdict::HarnessError);
    Ok(if untrusted { Exit::HarnessError } else { Exit::Success })
}

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
            text += &format!(" {} |", report.profiles.get(i).map_or("-".into(), |p| p.cell()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::outcome::Outcome;
    use crate::judge::profile::tests::profile;
    use crate::judge::report::tests::report;

    #[test]
    fn the_table_has_a_column_per_policy_and_a_verdict_row() {
        let reports = ["unbounded", "deterministic"].map(|policy| {
            let profiles = vec![profile("low", Outcome::Completed, "r"), profile("high", Outcome::Completed, "r")];
            let mut report = report(profiles, &[""]);
            report.policy = policy.into();
            report
        });
        let table = matrix_table(&reports);
        assert!(table.starts_with("| profile | limits | unbounded | deterministic |\n|---|---|---|---|\n| low | 4g | completed, SUCCESS:1000MB | completed, SUCCESS:1000MB |\n| high | 4g | completed, SUCCESS:1000MB | completed, SUCCESS:1000MB |\n"), "{table}");
        assert!(table.ends_with("| **verdict** | | **identical** (exit 0) | **identical** (exit 0) |\n"), "{table}");
    }
}
