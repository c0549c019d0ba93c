//! `k8s collect`: the run directory rebuilt from the Jobs' logs, classified and judged exactly as
//! `repro` would.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::quantity::size_of_quantity;
use super::render::{blocks_record, job_name};
use crate::backend::supervise::{Enforcement, RunExit};
use crate::config::{EngineKind, Profile};
use crate::judge::comparison::compare_profiles;
use crate::judge::outcome::Outcome;
use crate::judge::profile::ProfileReport;
use crate::judge::report::{publish, Machine, Report};
use crate::judge::verdict::decide;
use crate::run_dir::{new_run_dir, read_json};

/// One Job's log, read: its profile's name, its Job, the log's text and the files it carried.
struct JobLog {
    name: String,
    job: Value,
    text: String,
    files: Vec<(String, Vec<u8>)>,
}

/// The run directory rebuilt from the Jobs' logs (`<profile>.log` each) of the rendering in
/// `rendered`, with the verdict, as `repro` prints it.
pub fn collect(rendered: &Path, logs: &[PathBuf], out: PathBuf) -> Result<Report> {
    ensure!(!logs.is_empty(), "name the Jobs' logs (kubectl logs job/memrepro-<profile> > <profile>.log)");
    let input = rendered.join("input");
    let wasm = std::fs::read(input.join("guest.wasm")).with_context(|| format!("{} is not a `k8s render` directory", rendered.display()))?;
    let (blocks, blocks_sha256) = blocks_record(&input)?;
    let jobs = logs.iter().map(|log| read_log(rendered, log)).collect::<Result<Vec<_>>>()?;
    let dir = new_run_dir(out)?;
    let profiles = jobs.into_iter().map(|job| unpack(&dir, job)).collect::<Result<Vec<_>>>()?;
    let comparisons = compare_profiles(&dir, &profiles)?;
    let runner = profiles.iter().find_map(|p| {
        let result = read_json(&dir.join(&p.dir).join("result.json"), schema::RunResult::from_json).ok()??;
        Some(result.runner)
    });
    let report = Report {
        started_at: dir.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        backend: "kubernetes jobs (results read from their logs)".into(),
        machine: Machine {
            hostname: "kubernetes nodes".into(),
            arch: runner.as_ref().map_or("unknown".into(), |r| r.arch.clone()),
            cpu_model: "not reported by the pods".into(),
            kernel: "not reported by the pods".into(),
            cgroup_version: None,
        },
        runner,
        policy: policy_of(rendered)?,
        memory_budget_bytes: None,
        wasm: "input/guest.wasm".into(),
        wasm_sha256: hex::encode(Sha256::digest(&wasm)),
        blocks,
        blocks_sha256,
        decision: decide(&profiles, &comparisons),
        profiles,
        comparisons,
    };
    publish(&dir, &report)?;
    Ok(report)
}

/// `log`, with the Job of its profile in `rendered`; every log is read before anything is written.
fn read_log(rendered: &Path, log: &Path) -> Result<JobLog> {
    let name = log.file_stem().and_then(|s| s.to_str()).with_context(|| format!("{}: name it <profile>.log", log.display()))?;
    let job: Value = read_json(&rendered.join(format!("job-{name}.json")), |t| serde_json::from_str(t))?
        .with_context(|| format!("{}: no Job for profile `{name}` in {}", log.display(), rendered.display()))?;
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let files = schema::log_files::read_files(&text).map_err(|e| anyhow::anyhow!("{}: {e}", log.display()))?;
    ensure!(
        !files.is_empty(),
        "{}: no result files in this log: give the output of `kubectl logs job/{}` (without --timestamps) of a Job `k8s render` wrote",
        log.display(),
        job_name(name)
    );
    Ok(JobLog { name: name.to_string(), job, text, files })
}

/// The log's files written into the profile's directory under `dir`, and its profile's report.
fn unpack(dir: &Path, JobLog { name, job, text, files }: JobLog) -> Result<ProfileReport> {
    let limit = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .and_then(size_of_quantity)
        .context("the Job has no memory limit this tool wrote")?;
    let profile = Profile { name: name.clone(), engine: engine_of(&job), ..Profile::with_limit(limit) };
    let profile_dir = dir.join(&name);
    std::fs::create_dir_all(&profile_dir)?;
    std::fs::write(profile_dir.join("run.log"), schema::log_files::without_files(&text))?;
    for (file, bytes) in &files {
        ensure!(!file.contains('/') && !file.starts_with('.'), "{name}: a file named `{file}` in the log");
        std::fs::write(profile_dir.join(file), bytes)?;
    }
    pod_report(&profile, &profile_dir)
}

/// A pod's profile, from the files its log carried: how it ended as its watcher saw it (a pod
/// has no outside record like Docker's), and the state it left (its watcher read it back).
fn pod_report(profile: &Profile, dir: &Path) -> Result<ProfileReport> {
    let Some(watch) = read_json(&dir.join("watch.json"), schema::WatchReport::from_json)? else {
        // Nothing says how it ended or what it left: killed, its state unknown.
        return Ok(ProfileReport {
            name: profile.name.clone(),
            limit: profile.limits(),
            limit_bytes: profile.memory.bytes(),
            engine: profile.engine,
            outcome: Outcome::Killed {
                reason: "the log holds no watcher report: the pod ended before its watcher could write one, so the cause is unknown (`kubectl describe pod` may say)".into(),
            },
            stored_result: None,
            state_root: None,
            peak_memory_bytes: None,
            wall_secs: 0.0,
            dump: None,
            dir: profile.name.clone(),
            blocks: None,
        });
    };
    let exit_code = watch.exit_code.map_or_else(|| 128 + i64::from(watch.signal.unwrap_or(0)), i64::from);
    let exit = RunExit { exit_code, docker_oom_killed: None, harness_timeout: None, harness_stall: None, wall: std::time::Duration::from_secs_f64(watch.wall_ms / 1000.0) };
    ProfileReport::read(profile, dir, &exit, Enforcement::Cgroup, || {
        Ok(read_json(&dir.join("state.json"), |t| serde_json::from_str::<schema::StoredState>(t))?.unwrap_or_default())
    })
}

/// The engine a rendered Job runs, from its arguments (ours without `--engine`).
fn engine_of(job: &Value) -> EngineKind {
    let args = job["spec"]["template"]["spec"]["containers"][0]["args"].as_array().cloned().unwrap_or_default();
    let named = args.iter().position(|a| a == "--engine").and_then(|i| args.get(i + 1)).and_then(Value::as_str);
    named.and_then(|name| serde_json::from_value(Value::from(name)).ok()).unwrap_or_default()
}

/// The policy the rendered Jobs run under, from their arguments.
fn policy_of(rendered: &Path) -> Result<String> {
    for entry in std::fs::read_dir(rendered)? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("job-")) {
            let job: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            let args = job["spec"]["template"]["spec"]["containers"][0]["args"].as_array().cloned().unwrap_or_default();
            if let Some(i) = args.iter().position(|a| a == "--policy") {
                return Ok(args.get(i + 1).and_then(Value::as_str).unwrap_or("?").to_string());
            }
        }
    }
    bail!("no Job in {}", rendered.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::k8s::render::tests::config;
    use crate::commands::k8s::render::{check_job, job};

    #[test]
    fn a_job_carries_the_profile_s_limit_the_policy_and_the_hardening() {
        let config = config();
        let job = job(&config, &config.profiles[0], "registry.example/memrepro-runner:abc", false, &super::super::render::Delivery::ConfigMap);
        check_job(&job).unwrap();
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
        let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(args.windows(4).any(|w| w == ["--policy", "deterministic", "--memory-budget", "201326592"]), "{args:?}");
        assert_eq!(&args[..4], ["watch", "--report", "/out/watch.json", "--export-to-log"]);
        assert!(!args.contains(&"--engine"), "ours is the runner's default: {args:?}");
        assert_eq!(engine_of(&job), EngineKind::Memrepro);
    }

    #[test]
    fn a_metashrew_profile_s_job_runs_metashrew_s_engine_and_collect_reads_it_back() {
        let mut config = config();
        config.policy = crate::config::Policy::Unbounded;
        config.profiles[1].engine = EngineKind::Metashrew;
        let job = job(&config, &config.profiles[1], "i", false, &super::super::render::Delivery::ConfigMap);
        check_job(&job).unwrap();
        let args: Vec<&str> = job["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(args.windows(2).any(|w| w == ["--engine", "metashrew"]), "{args:?}");
        assert_eq!(engine_of(&job), EngineKind::Metashrew);
    }
}
