//! `k8s render`: the guest and the blocks for the Jobs (in a ConfigMap up to 1 MiB, else on a
//! volume or in an image the user names), and one checked Job per profile.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

use super::quantity::{is_quantity, quantity};
use crate::config::{Profile, ReproConfig};
use crate::input::{Blocks, Feed};
use crate::run_dir::new_run_dir;

/// A ConfigMap holds at most 1 MiB.
const CONFIG_MAP_LIMIT: usize = 1 << 20;
const INPUT: &str = "memrepro-input";

/// The Kubernetes name of a profile's Job: lowercase, `_` as `-`.
pub fn job_name(profile: &str) -> String {
    format!("memrepro-{}", profile.to_ascii_lowercase().replace('_', "-"))
}

/// How the Jobs get their input.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// A ConfigMap (at most 1 MiB of guest and blocks as text).
    ConfigMap,
    /// A PersistentVolumeClaim the user fills with the rendered `input/`.
    Volume(String),
    /// An image holding `/input`, copied by an init container into the pod.
    Image(String),
}

impl Delivery {
    /// What the render says it used.
    pub fn describe(&self, dir: &Path, bytes: u64) -> String {
        let input = dir.join("input");
        match self {
            Self::ConfigMap => format!("a ConfigMap, {INPUT} ({bytes} bytes)"),
            Self::Volume(claim) => format!("the PersistentVolumeClaim {claim}: copy {} into it ({bytes} bytes)", input.display()),
            Self::Image(image) => format!("an init container of {image}: docker build -t {image} {} && docker push {image}", input.display()),
        }
    }
}

/// The rendered input: the guest, the blocks (text, or a map with its files under `blocks/`),
/// what they are (`blocks.json`), and for an input image its Dockerfile.
const BLOCKS_RECORD: &str = "blocks.json";

/// Writes the input and one Job per profile (and the ConfigMap, when it carries the input) into a
/// new directory under `out`; its path, and the input's size.
pub fn render(config: &ReproConfig, wasm: &Path, blocks: &Blocks, image: &str, delivery: &Delivery, out: PathBuf) -> Result<(PathBuf, u64)> {
    let guest = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    if let Delivery::ConfigMap = delivery {
        let text = blocks.text().context("a ConfigMap carries the blocks as text")?;
        ensure!(
            guest.len() + text.len() <= CONFIG_MAP_LIMIT,
            "the guest and blocks take {} bytes, and a ConfigMap holds at most 1 MiB: give them on a volume (--input-volume CLAIM) or in an image (--input-image IMAGE)",
            guest.len() + text.len()
        );
    }
    let dir = new_run_dir(out)?;
    let input = dir.join("input");
    let bytes = write_input(&input, &guest, blocks, delivery)?;
    if let (Delivery::ConfigMap, Some(text)) = (delivery, blocks.text()) {
        let config_map = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": INPUT, "labels": { "app.kubernetes.io/name": "memrepro" } },
            "binaryData": { "guest.wasm": base64::engine::general_purpose::STANDARD.encode(&guest) },
            "data": { "blocks.txt": text },
        });
        std::fs::write(dir.join("configmap.json"), serde_json::to_string_pretty(&config_map)?)?;
    }
    for profile in &config.profiles {
        let job = job(config, profile, image, blocks.text().is_none(), delivery);
        check_job(&job).with_context(|| format!("the Job of profile `{}`", profile.name))?;
        std::fs::write(dir.join(format!("job-{}.json", profile.name)), serde_json::to_string_pretty(&job)?)?;
    }
    Ok((dir, bytes))
}

/// `input/`: the guest, the blocks' text or map and files (hard-linked where the filesystem
/// allows), `blocks.json`, and an input image's Dockerfile; its size in bytes.
fn write_input(input: &Path, guest: &[u8], blocks: &Blocks, delivery: &Delivery) -> Result<u64> {
    std::fs::create_dir_all(input)?;
    std::fs::write(input.join("guest.wasm"), guest)?;
    let mut bytes = guest.len() as u64;
    match &blocks.feed {
        Feed::Text(text) => {
            std::fs::write(input.join("blocks.txt"), text)?;
            bytes += text.len() as u64;
        }
        Feed::Map { map, read, .. } => {
            std::fs::write(input.join("blocks.map"), map)?;
            let files = input.join("blocks");
            std::fs::create_dir_all(&files)?;
            for file in read {
                let target = files.join(file.file_name().context("a block file without a name")?);
                if std::fs::hard_link(file, &target).is_err() {
                    std::fs::copy(file, &target).with_context(|| format!("copying {}", file.display()))?;
                }
                bytes += std::fs::metadata(&target)?.len();
            }
        }
    }
    let record = json!({ "description": blocks.description, "sha256": blocks.sha256 });
    std::fs::write(input.join(BLOCKS_RECORD), serde_json::to_string_pretty(&record)?)?;
    if let Delivery::Image(_) = delivery {
        // Any image with `cp` will do; busybox is the smallest common one.
        std::fs::write(input.join("Dockerfile"), "FROM busybox:stable\nCOPY . /input\n")?;
    }
    Ok(bytes)
}

/// What `blocks.json` of a rendered `input/` says: the blocks' description and fingerprint.
pub fn blocks_record(input: &Path) -> Result<(String, String)> {
    let record: Value = serde_json::from_str(&std::fs::read_to_string(input.join(BLOCKS_RECORD)).with_context(|| format!("reading {}", input.join(BLOCKS_RECORD).display()))?)?;
    let field = |name: &str| record[name].as_str().map(String::from).with_context(|| format!("{BLOCKS_RECORD} has no `{name}`"));
    Ok((field("description")?, field("sha256")?))
}

/// The runner's arguments for one profile.
fn runner_args(config: &ReproConfig, profile: &Profile, mapped: bool) -> Vec<String> {
    let mut args: Vec<String> =
        ["watch", "--report", "/out/watch.json", "--export-to-log", "--", "run", "--wasm", "/input/guest.wasm", "--db", "/out/db", "--out", "/out/result.json", "--dump", "/out/dump.txt"]
            .map(String::from)
            .to_vec();
    match mapped {
        true => args.extend(["--blocks", "/input/blocks.map", "--block-dir", "/input/blocks"].map(String::from)),
        false => args.extend(["--blocks", "/input/blocks.txt"].map(String::from)),
    }
    args.extend(config.policy_args());
    args.extend(profile.runner_args());
    args
}

/// The pod's `/input` volume, and the init container that fills it (from an input image).
fn input_volume(delivery: &Delivery, hardening: &Value) -> (Value, Option<Value>) {
    match delivery {
        Delivery::ConfigMap => (json!({ "name": "input", "configMap": { "name": INPUT } }), None),
        Delivery::Volume(claim) => (json!({ "name": "input", "persistentVolumeClaim": { "claimName": claim, "readOnly": true } }), None),
        Delivery::Image(image) => {
            let copy = json!({
                "name": "input",
                "image": image,
                "command": ["cp", "-a", "/input/.", "/shared/"],
                "securityContext": hardening,
                "volumeMounts": [{ "name": "input", "mountPath": "/shared" }],
            });
            (json!({ "name": "input", "emptyDir": {} }), Some(copy))
        }
    }
}

/// One profile's Job.
pub(super) fn job(config: &ReproConfig, profile: &Profile, image: &str, mapped: bool, delivery: &Delivery) -> Value {
    let memory = quantity(profile.memory);
    let labels = json!({ "app.kubernetes.io/name": "memrepro", "memrepro/profile": profile.name });
    let hardening = json!({
        "runAsNonRoot": true,
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "capabilities": { "drop": ["ALL"] },
    });
    let (input, fill) = input_volume(delivery, &hardening);
    let mut pod = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "securityContext": { "runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534, "seccompProfile": { "type": "RuntimeDefault" } },
        "containers": [{
            "name": "runner",
            "image": image,
            "args": runner_args(config, profile, mapped),
            // Requests = limits: the scheduler places it only where the limit can be backed.
            "resources": { "requests": { "memory": memory }, "limits": { "memory": memory } },
            "securityContext": hardening,
            "volumeMounts": [
                { "name": "input", "mountPath": "/input", "readOnly": true },
                { "name": "out", "mountPath": "/out" },
            ],
        }],
        "volumes": [input, { "name": "out", "emptyDir": {} }],
    });
    if let Some(fill) = fill {
        pod["initContainers"] = json!([fill]);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": job_name(&profile.name), "labels": labels },
        "spec": {
            // One attempt: a retried run would hide how the first one ended.
            "backoffLimit": 0,
            "activeDeadlineSeconds": config.timeout_secs,
            "template": { "metadata": { "labels": labels }, "spec": pod },
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
        let good = job(&config, &config.profiles[1], "i", false, &Delivery::ConfigMap);
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
