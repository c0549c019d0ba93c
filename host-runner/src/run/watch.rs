//! `watch`: runs `host-runner run …` as a child and records how it ended, from inside the same
//! cgroup. When the OOM killer strikes, it is the child (made its preferred victim) that dies; the
//! watcher survives to read what the cgroup itself counted meanwhile (limit hits, OOM kills),
//! which is better evidence than an exit code of 137 seen from outside. The memory limit and
//! whether the cgroup can swap are read back before the child starts.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result};
use schema::WatchReport;

use cgroup::Cgroup;
use state::files::write_atomically;

use crate::process::{elapsed_ms, limit_address_space, memory_report, sandbox_report};

/// `address_space_limit`: RLIMIT_AS for the watcher and, inherited, the run (the local backend's
/// limit where it cannot create a cgroup). `export_to_log`: afterwards, print the files of the
/// report's directory framed on stdout (see [`export_to_log`]).
pub fn watch(report_path: &Path, address_space_limit: Option<u64>, run_args: &[String], export: bool) -> Result<ExitCode> {
    if let Some(limit) = address_space_limit {
        limit_address_space(limit)?;
    }
    let cgroup = Cgroup::of_this_process();
    let memory_at_start = memory_report(0, None);
    let events_before = cgroup.as_ref().map(Cgroup::events);
    let started = Instant::now();
    let exe = std::env::current_exe().context("locating the host-runner binary")?;
    let mut child = Command::new(&exe).args(run_args).spawn().context("starting `host-runner run`")?;
    // Raising a child's OOM score needs no privilege; lowering our own would.
    let _ = std::fs::write(format!("/proc/{}/oom_score_adj", child.id()), "1000");
    let status = child.wait().context("waiting for `host-runner run`")?;
    let cgroup_events = cgroup.as_ref().zip(events_before).map(|(cgroup, before)| before.since(cgroup.events()));
    let report = WatchReport {
        schema_version: schema::SCHEMA_VERSION,
        memory_at_start,
        exit_code: status.code(),
        signal: status.signal(),
        cgroup_events,
        cgroup_peak_bytes: cgroup.as_ref().and_then(Cgroup::peak),
        wall_ms: elapsed_ms(started),
        sandbox: sandbox_report(),
    };
    write_atomically(report_path, &report.to_json())?;
    if export {
        export_to_log(report_path.parent().unwrap_or(Path::new(".")), &exe)?;
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code.clamp(0, 255) as u8),
        (None, Some(signal)) => ExitCode::from((128 + signal).clamp(0, 255) as u8),
        _ => ExitCode::from(2),
    })
}

/// For runs whose only way out is their log (a Kubernetes Job): when the run left no result
/// (it was killed), reads back what its database holds (`state`, as the harness does in a fresh
/// container elsewhere), then prints every file of `dir` but the database, framed
/// (`schema::log_files`).
fn export_to_log(dir: &Path, exe: &Path) -> Result<()> {
    if !dir.join("result.json").exists() && dir.join("db/CURRENT").exists() {
        let status = Command::new(exe)
            .arg("state")
            .arg("--db")
            .arg(dir.join("db"))
            .arg("--out")
            .arg(dir.join("state.json"))
            .arg("--dump")
            .arg(dir.join("dump.txt"))
            .status()
            .context("reading back the state the run left")?;
        if !status.success() {
            // The files there still say how the run ended: hand them over all the same.
            eprintln!("host-runner: reading back the state the run left failed ({status})");
        }
    }
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = std::io::stdout().lock();
    for name in names {
        let bytes = std::fs::read(dir.join(&name)).with_context(|| format!("reading {name}"))?;
        schema::log_files::write_file(&mut out, &name, &bytes)?;
    }
    Ok(())
}
