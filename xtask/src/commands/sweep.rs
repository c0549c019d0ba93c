//! `cargo xtask sweep`: the seed's gradual-increase test. One limit, growing stress payloads, stop
//! at the first step that does not succeed, and say where it broke.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use xshell::Shell;

use crate::backend::image::ImageBuild;
use crate::backend::BackendChoice;
use crate::config::{ByteSize, Profile, ReproConfig, StressPayload};
use crate::exit::Exit;
use crate::flags;
use crate::harness::Harness;
use crate::input::Blocks;
use crate::input::{Guest, GuestChoice};
use crate::judge::outcome::{Kind, Outcome};
use crate::judge::profile::ProfileReport;
use crate::plot::{write_svg, Limit, Plot, Point};
use crate::progress::quiet_phase;
use crate::run_dir::new_run_dir;
use crate::units::{in_mib, mib};
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, flags: flags::Sweep) -> Result<Exit> {
    let config = flags.run.apply(ws.config()?)?;
    let args = SweepArgs {
        limit: flags.limit.unwrap_or(config.sweep_limit),
        steps: if flags.steps.is_empty() { config.sweep_steps.clone() } else { flags.steps },
        config,
        image_build: ws.image_build,
        backend: ws.backend,
        out_dir: flags.run.out_dir,
    };
    let report = sweep(&ws.sh, &ws.root, args).context("sweep")?;
    Ok(if report.untrusted.is_some() { Exit::HarnessError } else { Exit::Success })
}

pub struct SweepArgs {
    pub config: ReproConfig,
    pub limit: ByteSize,
    pub steps: Vec<StressPayload>,
    pub image_build: ImageBuild,
    pub backend: BackendChoice,
    pub out_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub payload: String,
    pub total_mb: u64,
    pub run: ProfileReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub limit: String,
    pub policy: String,
    pub steps: Vec<Step>,
    /// The first step that did not succeed, `None` when every step did (or one was untrusted).
    pub breaking_point: Option<String>,
    /// The step whose run cannot be trusted (a harness error), which ended the sweep without a
    /// breaking point.
    pub untrusted: Option<String>,
}

/// A step succeeds when the block completed and the guest stored SUCCESS.
pub fn succeeded(run: &ProfileReport) -> bool {
    run.outcome == Outcome::Completed && run.stored_result.as_deref().is_some_and(|r| r.starts_with("SUCCESS:"))
}

pub fn sweep(sh: &Shell, root: &Path, args: SweepArgs) -> Result<SweepReport> {
    let total = 2 + args.steps.len();
    let harness = Harness::prepare(sh, root, &Guest::Ours(GuestChoice::Stress), args.image_build, args.backend, total)?;
    let dir = new_run_dir(args.out_dir.clone().unwrap_or_else(|| root.join("target/repro")))?;
    let profile = Profile { name: "run".into(), ..Profile::with_limit(args.limit) };
    let mut steps = Vec::new();
    let (mut breaking_point, mut untrusted) = (None, None);
    for (i, payload) in args.steps.iter().enumerate() {
        let step_dir = dir.join(format!("step-{}-{}", i + 1, payload.to_string().replace(':', "-")));
        let input = harness.write_input(&step_dir, &Blocks::stress(args.config.height, payload))?;
        let what = format!("{payload} ({} MB) under {} (policy {})", payload.total_mb(), args.limit, args.config.policy.name());
        let run = quiet_phase(3 + i, total, &what, || harness.run_profile(&input, &profile, &args.config, false))?;
        eprintln!("    {}", run.summary());
        let (ok, trusted) = (succeeded(&run), run.outcome.kind() != Kind::HarnessError);
        steps.push(Step { payload: payload.to_string(), total_mb: payload.total_mb(), run });
        if !trusted {
            untrusted = Some(payload.to_string());
            break;
        }
        if !ok {
            breaking_point = Some(payload.to_string());
            break;
        }
    }
    let report = SweepReport {
        limit: args.limit.to_string(),
        policy: args.config.policy.name().into(),
        steps,
        breaking_point,
        untrusted,
    };
    std::fs::write(dir.join("sweep.json"), serde_json::to_string_pretty(&report)?)?;
    let points: Vec<Point> = report
        .steps
        .iter()
        .map(|s| Point {
            x_mib: s.total_mb as f64,
            peak_mib: in_mib(s.run.peak_memory_bytes.unwrap_or(0)),
            good: succeeded(&s.run),
            label: format!("{} {}", s.payload, s.run.outcome.label()),
        })
        .collect();
    let title = format!("sweep under {} ({} policy)", report.limit, report.policy);
    write_svg(&dir.join("sweep.svg"), &Plot { title: &title, x_label: "stress total (MB)", limit: Limit::At(in_mib(args.limit.bytes())), good: "succeeded", bad: "did not succeed", points: &points })?;
    println!("\n{}", sweep_table(&report));
    println!("{}", conclusion(&report));
    println!("results: {} (sweep.json, sweep.svg)", dir.display());
    Ok(report)
}

pub fn sweep_table(report: &SweepReport) -> String {
    let mut text = format!("{:<22} {:>9}  {:<13} {:<60} {:>11} {:>8}\n", "payload", "total", "outcome", "stored result", "peak memory", "time");
    for step in &report.steps {
        text += &format!(
            "{:<22} {:>6} MB  {:<13} {:<60} {:>11} {:>6.1} s\n",
            step.payload,
            step.total_mb,
            step.run.outcome.label(),
            step.run.stored_result.as_deref().unwrap_or("-"),
            step.run.peak_memory_bytes.map_or("-".into(), mib),
            step.run.wall_secs
        );
    }
    text
}

pub fn conclusion(report: &SweepReport) -> String {
    let last_ok = report.steps.iter().rev().find(|s| succeeded(&s.run));
    if let (Some(step), Some(last)) = (&report.untrusted, report.steps.last()) {
        return format!(
            "NO BREAKING POINT: the run of {step} cannot be trusted ({}), so the sweep stopped there",
            last.run.reason()
        );
    }
    match (&report.breaking_point, report.steps.last()) {
        (Some(point), Some(step)) => format!(
            "BREAKING POINT under {}: {point} ({} MB) {}; the last success was {}",
            report.limit,
            step.total_mb,
            step.run.summary(),
            last_ok.map_or("none".into(), |s| format!("{} ({} MB)", s.payload, s.total_mb)),
        ),
        _ => format!("no breaking point under {}: every step succeeded", report.limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::profile::tests::profile;

    fn step(payload: &str, outcome: Outcome, stored: &str) -> Step {
        let mut run = profile("run", outcome, "r");
        run.stored_result = (!stored.is_empty()).then(|| stored.to_string());
        let payload: StressPayload = payload.parse().unwrap();
        Step { payload: payload.to_string(), total_mb: payload.total_mb(), run }
    }

    #[test]
    fn the_conclusion_names_the_breaking_step_and_the_last_success() {
        let report = SweepReport {
            limit: "1g".into(),
            policy: "unbounded".into(),
            steps: vec![
                step("10x10", Outcome::Completed, "SUCCESS:100MB"),
                step("10x50", Outcome::Completed, "SUCCESS:500MB"),
                step("10x100", Outcome::OomKilled { evidence: "e".into() }, ""),
            ],
            breaking_point: Some("10x100".into()),
            untrusted: None,
        };
        assert_eq!(
            conclusion(&report),
            "BREAKING POINT under 1g: 10x100 (1000 MB) oom-killed; the last success was 10x50 (500 MB)"
        );
        assert!(sweep_table(&report).lines().nth(3).unwrap().starts_with("10x100                   1000 MB  oom-killed"));
    }

    #[test]
    fn an_untrusted_step_is_no_breaking_point() {
        let report = SweepReport {
            limit: "1g".into(),
            policy: "unbounded".into(),
            steps: vec![step("10x10", Outcome::HarnessError { reason: "MEMORY LIMIT NOT ENFORCED".into() }, "")],
            breaking_point: None,
            untrusted: Some("10x10".into()),
        };
        assert_eq!(conclusion(&report), "NO BREAKING POINT: the run of 10x10 cannot be trusted (MEMORY LIMIT NOT ENFORCED), so the sweep stopped there");
    }

    #[test]
    fn a_stored_error_is_not_a_success() {
        assert!(!succeeded(&step("10x19", Outcome::Completed, "ERROR:Failed at allocation 18 of 19: Failed to reserve 10MB").run));
        assert!(succeeded(&step("10x18", Outcome::Completed, "SUCCESS:180MB").run));
    }
}
