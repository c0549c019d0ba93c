//! `cargo xtask compare DIR…`: the verdict over run directories made anywhere — another machine,
//! another backend, another CPU architecture — by the same model, table, diff and exit codes as
//! `repro`. Each directory is what `repro` wrote (`report.json`, and per profile its
//! `result.json` and dump); runs of different guests or blocks are refused, not compared.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use schema::RunResult;

use crate::exit::Exit;
use crate::flags;
use crate::judge::comparison::compare_profiles;
use crate::judge::profile::{block_reports, ProfileReport};
use crate::judge::report::{publish, Machine, Report};
use crate::judge::verdict::decide;
use crate::run_dir::new_run_dir;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, flags: flags::Compare) -> Result<Exit> {
    let report = compare(&ws.root, &flags.dirs, flags.out_dir).context("compare")?;
    Ok(report.decision.verdict.exit())
}

/// One run directory, as read back.
struct Source {
    dir: PathBuf,
    /// How its profiles are named in the comparison: `hostname-backend`.
    label: String,
    report: Report,
}

pub fn compare(root: &Path, dirs: &[PathBuf], out_dir: Option<PathBuf>) -> Result<Report> {
    let sources = read_sources(dirs)?;
    refuse_different_inputs(&sources)?;
    let first = &sources[0].report;
    let mut profiles = Vec::new();
    for source in &sources {
        for profile in &source.report.profiles {
            profiles.push(placed(source, profile)?);
        }
    }
    let dir = new_run_dir(out_dir.unwrap_or_else(|| root.join("target/compare")))?;
    println!();
    for source in &sources {
        println!("{}", describe(source));
    }
    // Dumps are absolute paths now, so they are found from anywhere.
    let comparisons = compare_profiles(Path::new("/"), &profiles)?;
    let policies: Vec<&str> = sources.iter().map(|s| s.report.policy.as_str()).collect();
    let report = Report {
        started_at: dir.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        backend: format!("compare of {} run directories", sources.len()),
        machine: Machine::this_one(),
        runner: first.runner.clone(),
        policy: if policies.iter().all(|p| *p == policies[0]) { policies[0].to_string() } else { format!("mixed: {}", policies.join(", ")) },
        memory_budget_bytes: first.memory_budget_bytes,
        wasm: first.wasm.clone(),
        wasm_sha256: first.wasm_sha256.clone(),
        blocks: first.blocks.clone(),
        blocks_sha256: first.blocks_sha256.clone(),
        decision: decide(&profiles, &comparisons),
        profiles,
        comparisons,
    };
    publish(&dir, &report)?;
    Ok(report)
}

/// Runs of different guests or blocks are not comparable: an error naming both.
fn refuse_different_inputs(sources: &[Source]) -> Result<()> {
    let first = &sources[0].report;
    for source in &sources[1..] {
        let other = &source.report;
        if other.wasm_sha256 != first.wasm_sha256 {
            bail!(
                "refusing to compare runs of different guests: {} ran {} (sha256 {}), {} ran {} (sha256 {})",
                sources[0].dir.display(), first.wasm, short(&first.wasm_sha256), source.dir.display(), other.wasm, short(&other.wasm_sha256)
            );
        }
        if other.blocks_sha256 != first.blocks_sha256 {
            bail!(
                "refusing to compare runs of different blocks: {} (sha256 {}) and {} (sha256 {})",
                sources[0].dir.display(), short(&first.blocks_sha256), source.dir.display(), short(&other.blocks_sha256)
            );
        }
    }
    Ok(())
}

fn read_sources(dirs: &[PathBuf]) -> Result<Vec<Source>> {
    anyhow::ensure!(!dirs.is_empty(), "name the run directories to compare");
    let mut sources: Vec<Source> = Vec::new();
    for dir in dirs {
        let path = dir.join("report.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} is not a run directory (no readable report.json): give directories `cargo xtask repro` wrote", dir.display()))?;
        let report: Report = serde_json::from_str(&text).with_context(|| format!("{} is not a report of this version", path.display()))?;
        let kind = report.backend.split_whitespace().next().unwrap_or("run").to_string();
        let mut label = format!("{}-{kind}", report.machine.hostname);
        let same = sources.iter().filter(|s| s.label.starts_with(&label)).count();
        if same > 0 {
            label = format!("{label}-{}", same + 1);
        }
        let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
        sources.push(Source { dir, label, report });
    }
    Ok(sources)
}

/// `profile` of `source`, renamed `label.name`, with absolute paths and its per-block reports.
fn placed(source: &Source, profile: &ProfileReport) -> Result<ProfileReport> {
    let mut placed = profile.clone();
    placed.name = format!("{}.{}", source.label, profile.name);
    placed.dump = profile.dump.as_ref().map(|dump| source.dir.join(dump).display().to_string());
    let dir = source.dir.join(&profile.dir);
    let result = std::fs::read_to_string(dir.join("result.json")).ok().and_then(|text| RunResult::from_json(&text).ok());
    placed.blocks = result.map(|r| block_reports(r, &dir)).transpose()?;
    placed.dir = dir.display().to_string();
    Ok(placed)
}

/// The first 16 characters of a hash read from a report (whatever it holds).
fn short(hash: &str) -> String {
    hash.chars().take(16).collect()
}

/// `label: host (arch, cpu, kernel, cgroup vN), backend, runner version sha256…, wasmtime V, policy`.
fn describe(source: &Source) -> String {
    let (report, machine) = (&source.report, &source.report.machine);
    let runner = report.runner.as_ref().map_or("runner unknown (no run left a result)".into(), |r| {
        format!("runner {} ({} build, sha256 {}…, wasmtime {})", r.version, r.arch, short(&r.sha256), r.wasmtime_version)
    });
    format!(
        "{}: {} ({}, {}, kernel {}, cgroup {}), {}, {}, policy {}\n  {}",
        source.label,
        machine.hostname,
        machine.arch,
        machine.cpu_model,
        machine.kernel,
        machine.cgroup_version.map_or("none".into(), |v| format!("v{v}")),
        report.backend,
        runner,
        report.policy,
        source.dir.display()
    )
}
