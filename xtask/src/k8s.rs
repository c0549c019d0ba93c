//! `cargo xtask k8s`: the same profiles as Kubernetes Jobs, and the verdict over what comes back.
//!
//! - `render` writes a ConfigMap holding the guest and the blocks, and one Job per profile: the
//!   profile's limit as `requests.memory` = `limits.memory`, the containers' hardening (non-root,
//!   read-only root filesystem, no privilege escalation, no capabilities), `restartPolicy: Never`,
//!   `backoffLimit: 0`. Each Job's runner prints its result files framed in its log
//!   (`watch --export-to-log`, `schema::log_files`), since a finished pod's volumes are gone.
//! - `collect` reads those logs (`kubectl logs job/memrepro-low > low.log`), rebuilds a run
//!   directory and gives the verdict, exactly as `repro` would.
//!
//! No cluster can run on the machines this project is developed on: the manifests are validated
//! offline (kubernetes-validate, plus [`check_job`] for what a schema cannot say), and the tests
//! run each rendered Job's container with Docker standing in for the kubelet.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{ByteSize, EngineKind, Profile, ReproConfig};
use crate::outcome::{Enforcement, Outcome};
use crate::repro::{compare_profiles, new_run_dir, profile_report, publish, read_json};
use crate::report::{Machine, ProfileReport, Report};
use crate::supervise::RunExit;
use crate::verdict::decide;

/// A ConfigMap holds at most 1 MiB.
const CONFIG_MAP_LIMIT: usize = 1 << 20;
const INPUT: &str = "memrepro-input";

/// The Kubernetes name of a profile's Job: lowercase, `_` as `-`.
pub fn job_name(profile: &str) -> String {
    format!("memrepro-{}", profile.to_ascii_lowercase().replace('_', "-"))
}

/// A size as a Kubernetes quantity: `512Mi`, `4Gi`, or bytes.
pub fn quantity(size: ByteSize) -> String {
    let bytes = size.bytes();
    for (shift, unit) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if bytes != 0 && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Writes the ConfigMap and one Job per profile into a new directory under `out`; its path.
pub fn render(config: &ReproConfig, wasm: &Path, blocks_text: &str, image: &str, out: PathBuf) -> Result<PathBuf> {
    let guest = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    ensure!(
        guest.len() + blocks_text.len() <= CONFIG_MAP_LIMIT,
        "the guest and blocks take {} bytes, and a ConfigMap holds at most 1 MiB: put them on a volume the Jobs mount at /input instead",
        guest.len() + blocks_text.len()
    );
    let dir = new_run_dir(out)?;
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": INPUT, "labels": { "app.kubernetes.io/name": "memrepro" } },
        "binaryData": { "guest.wasm": base64::engine::general_purpose::STANDARD.encode(&guest) },
        "data": { "blocks.txt": blocks_text },
    });
    std::fs::write(dir.join("configmap.json"), serde_json::to_string_pretty(&config_map)?)?;
    let input = dir.join("input");
    std::fs::create_dir_all(&input)?;
    std::fs::write(input.join("guest.wasm"), &guest)?;
    std::fs::write(input.join("blocks.txt"), blocks_text)?;
    for profile in &config.profiles {
        let job = job(config, profile, image);
        check_job(&job).with_context(|| format!("the Job of profile `{}`", profile.name))?;
        std::fs::write(dir.join(format!("job-{}.json", profile.name)), serde_json::to_string_pretty(&job)?)?;
    }
    Ok(dir)
}

/// One profile's Job.
fn job(config: &ReproConfig, profile: &Profile, image: &str) -> Value {
    let mut args: Vec<String> = [
        "watch", "--report", "/out/watch.json", "--export-to-log", "--", "run", "--wasm", "/input/guest.wasm", "--blocks",
        "/input/blocks.txt", "--db", "/out/db", "--out", "/out/result.json", "--dump", "/out/dump.txt",
    ]
    .map(String::from)
    .to_vec();
    args.extend(config.policy_args());
    args.extend(profile.runner_args());
    let memory = quantity(profile.memory);
    let labels = json!({ "app.kubernetes.io/name": "memrepro", "memrepro/profile": profile.name });
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": job_name(&profile.name), "labels": labels },
        "spec": {
            // One attempt: a retried run would hide how the first one ended.
            "backoffLimit": 0,
            "activeDeadlineSeconds": config.timeout_secs,
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": [{
                        "name": "runner",
                        "image": image,
                        "args": args,
                        // Requests = limits: the scheduler places it only where the limit can be backed.
                        "resources": { "requests": { "memory": memory }, "limits": { "memory": memory } },
                        "securityContext": {
                            "runAsNonRoot": true,
                            "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false,
                            "capabilities": { "drop": ["ALL"] },
                        },
                        "volumeMounts": [
                            { "name": "input", "mountPath": "/input", "readOnly": true },
                            { "name": "out", "mountPath": "/out" },
                        ],
                    }],
                    "volumes": [
                        { "name": "input", "configMap": { "name": INPUT } },
                        { "name": "out", "emptyDir": {} },
                    ],
                },
            },
        },
    })
}

/// What the Kubernetes schema cannot say and a run needs: one attempt, never restarted, a memory
/// limit that is a valid quantity and equals the request, and the hardening.
pub fn check_job(job: &Value) -> Result<()> {
    let spec = &job["spec"];
    ensure!(spec["backoffLimit"] == 0, "backoffLimit must be 0 (one attempt), not {}", spec["backoffLimit"]);
    let pod = &spec["template"]["spec"];
    ensure!(pod["restartPolicy"] == "Never", "restartPolicy must be Never, not {}", pod["restartPolicy"]);
    let containers = pod["containers"].as_array().context("no containers")?;
    ensure!(containers.len() == 1, "one container, the runner");
    let container = &containers[0];
    let (request, limit) = (&container["resources"]["requests"]["memory"], &container["resources"]["limits"]["memory"]);
    let limit_text = limit.as_str().context("resources.limits.memory is missing")?;
    ensure!(is_quantity(limit_text), "resources.limits.memory `{limit_text}` is not a Kubernetes quantity (e.g. 512Mi, 4Gi)");
    ensure!(request == limit, "requests.memory ({request}) must equal limits.memory ({limit})");
    let security = &container["securityContext"];
    for (field, expected) in [("runAsNonRoot", json!(true)), ("readOnlyRootFilesystem", json!(true)), ("allowPrivilegeEscalation", json!(false))] {
        ensure!(security[field] == expected, "securityContext.{field} must be {expected}");
    }
    ensure!(security["capabilities"]["drop"] == json!(["ALL"]), "securityContext.capabilities.drop must be [ALL]");
    Ok(())
}

/// The size a quantity written by [`quantity`] stands for.
fn size_of_quantity(text: &str) -> Option<ByteSize> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        "Ti" => 40,
        _ => return None,
    };
    Some(ByteSize::from_bytes(number.parse::<u64>().ok()?.checked_mul(1 << shift)?))
}

/// `123`, `512Mi`, `4G`, `1.5Gi`: a number and an optional binary or decimal suffix.
fn is_quantity(text: &str) -> bool {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    !number.is_empty()
        && number.parse::<f64>().is_ok()
        && ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E"].contains(&suffix)
}

/// The run directory rebuilt from the Jobs' logs (`<profile>.log` each) of the rendering in
/// `rendered`, with the verdict, as `repro` prints it.
pub fn collect(rendered: &Path, logs: &[PathBuf], out: PathBuf) -> Result<Report> {
    ensure!(!logs.is_empty(), "name the Jobs' logs (kubectl logs job/memrepro-<profile> > <profile>.log)");
    let input = rendered.join("input");
    let wasm = std::fs::read(input.join("guest.wasm")).with_context(|| format!("{} is not a `k8s render` directory", rendered.display()))?;
    let blocks_text = std::fs::read_to_string(input.join("blocks.txt"))?;
    let mut jobs = Vec::new();
    for log in logs {
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
        jobs.push((name.to_string(), job, text, files));
    }
    let dir = new_run_dir(out)?;
    let mut profiles = Vec::new();
    for (name, job, text, files) in jobs {
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
        profiles.push(pod_report(&profile, &profile_dir)?);
    }
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
        blocks: crate::repro::Blocks::describe(
            &format!("{}", rendered.join("input/blocks.txt").display()),
            &blocks::text::parse(&blocks_text).context("the rendered blocks.txt")?,
        ),
        blocks_sha256: hex::encode(Sha256::digest(blocks_text.as_bytes())),
        decision: decide(&profiles, &comparisons),
        profiles,
        comparisons,
    };
    publish(&dir, &report)?;
    Ok(report)
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
    let exit = RunExit { exit_code, docker_oom_killed: None, harness_timeout: None, wall: std::time::Duration::from_secs_f64(watch.wall_ms / 1000.0) };
    profile_report(profile, dir, &exit, Enforcement::Cgroup, || {
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

    #[test]
    fn sizes_become_quantities_and_quantities_are_recognised() {
        assert_eq!(quantity("512m".parse().unwrap()), "512Mi");
        assert_eq!(quantity("4g".parse().unwrap()), "4Gi");
        assert_eq!(quantity("6500k".parse().unwrap()), "6500Ki");
        assert_eq!(quantity("7340033".parse().unwrap()), "7340033");
        for good in ["512Mi", "4Gi", "1.5Gi", "123", "4G"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["512mb", "4 Gi", "Gi", "-1Mi", "512m"] {
            assert!(!is_quantity(bad), "{bad}");
        }
        assert_eq!(job_name("High_AS"), "memrepro-high-as");
        for size in ["512m", "4g", "6500k", "7340033"] {
            let size: ByteSize = size.parse().unwrap();
            assert_eq!(size_of_quantity(&quantity(size)), Some(size));
        }
    }

    fn config() -> ReproConfig {
        ReproConfig::from_workspace_metadata(&json!({ "repro": {
            "payload": "50x20", "height": 1, "timeout_secs": 600, "policy": "deterministic", "memory_budget": "192m", "sweep_limit": "1g", "sweep_steps": ["10x10"],
            "profiles": [{ "name": "low", "memory": "512m" }, { "name": "high", "memory": "4g" }], "matrix_profiles": [{ "name": "low", "memory": "512m" }]
        }}))
        .unwrap()
    }

    #[test]
    fn a_job_carries_the_profile_s_limit_the_policy_and_the_hardening() {
        let config = config();
        let job = job(&config, &config.profiles[0], "registry.example/memrepro-runner:abc");
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
        let job = job(&config, &config.profiles[1], "i");
        check_job(&job).unwrap();
        let args: Vec<&str> = job["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(args.windows(2).any(|w| w == ["--engine", "metashrew"]), "{args:?}");
        assert_eq!(engine_of(&job), EngineKind::Metashrew);
    }

    #[test]
    fn the_checks_catch_what_the_schema_cannot() {
        let config = config();
        let good = job(&config, &config.profiles[1], "i");
        let broken = |path: &[&str], value: Value| {
            let mut job = good.clone();
            let mut at = &mut job;
            for key in path {
                at = if let Ok(i) = key.parse::<usize>() { &mut at[i] } else { &mut at[*key] };
            }
            *at = value;
            format!("{:#}", check_job(&job).unwrap_err())
        };
        assert!(broken(&["spec", "backoffLimit"], json!(6)).contains("backoffLimit must be 0"));
        assert!(broken(&["spec", "template", "spec", "restartPolicy"], json!("OnFailure")).contains("restartPolicy must be Never"));
        let limits = ["spec", "template", "spec", "containers", "0", "resources", "limits", "memory"];
        assert!(broken(&limits, json!("4gb")).contains("`4gb` is not a Kubernetes quantity"));
        assert!(broken(&limits, json!("2Gi")).contains("must equal limits.memory"));
        let security = ["spec", "template", "spec", "containers", "0", "securityContext", "readOnlyRootFilesystem"];
        assert!(broken(&security, json!(false)).contains("readOnlyRootFilesystem must be true"));
    }
}
