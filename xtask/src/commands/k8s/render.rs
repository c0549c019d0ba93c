//! `k8s render`: a ConfigMap holding the guest and the blocks, and one checked Job per profile.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

use super::quantity::{is_quantity, quantity};
use crate::config::{Profile, ReproConfig};
use crate::run_dir::new_run_dir;

/// A ConfigMap holds at most 1 MiB.
const CONFIG_MAP_LIMIT: usize = 1 << 20;
const INPUT: &str = "memrepro-input";

/// The Kubernetes name of a profile's Job: lowercase, `_` as `-`.
pub fn job_name(profile: &str) -> String {
    format!("memrepro-{}", profile.to_ascii_lowercase().replace('_', "-"))
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
pub(super) fn job(config: &ReproConfig, profile: &Profile, image: &str) -> Value {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::commands::k8s) fn config() -> ReproConfig {
        ReproConfig::from_workspace_metadata(&json!({ "repro": {
            "payload": "50x20", "height": 1, "timeout_secs": 600, "policy": "deterministic", "memory_budget": "192m", "sweep_limit": "1g", "sweep_steps": ["10x10"],
            "profiles": [{ "name": "low", "memory": "512m" }, { "name": "high", "memory": "4g" }], "matrix_profiles": [{ "name": "low", "memory": "512m" }]
        }}))
        .unwrap()
    }

    #[test]
    fn jobs_are_named_as_kubernetes_names_them() {
        assert_eq!(job_name("High_AS"), "memrepro-high-as");
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
