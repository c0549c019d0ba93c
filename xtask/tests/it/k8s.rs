//! `cargo xtask k8s`: rendered Jobs validated offline against the Kubernetes schema, then run
//! with Docker standing in for the kubelet (no cluster can run here: each Job's container spec —
//! image, arguments, memory limit, hardening, volumes — is turned into one `docker run`), and
//! the verdict collected from their logs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// The runner image the harness builds (a one-profile repro builds or reuses it).
fn runner_image() -> String {
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["repro", "--limit", "1g", "--payload", "1x1"], out.path());
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let backend = report(out.path())["backend"].as_str().unwrap().to_string();
    backend.split_whitespace().nth(2).expect("docker image TAG (size)").to_string()
}

fn render(args: &[&str], out: &Path) -> PathBuf {
    let mut all = vec!["k8s", "render"];
    all.extend(args);
    let output = xtask(&all, out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    run_dir(out)
}

/// What a kubelet would run for the Job in `job`: its container, under its memory limit, with
/// its hardening and volumes (the ConfigMap's files, an empty `/out`); its log, as
/// `kubectl logs` gives it (stdout and stderr).
fn run_like_a_kubelet(rendered: &Path, job: &str, log: &Path) {
    let job: Value = read_json(&rendered.join(format!("job-{job}.json")));
    let pod = &job["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsUser"], 65534);
    let memory = container["resources"]["limits"]["memory"].as_str().unwrap();
    let (number, unit) = memory.split_at(memory.len() - 2);
    let bytes = number.parse::<u64>().unwrap() << match unit { "Mi" => 20, "Gi" => 30, other => panic!("{other}") };
    let out = tempfile::tempdir().unwrap();
    std::fs::set_permissions(out.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let output = Command::new("docker")
        .args(["run", "--rm", "--pull=never", "--network=none", "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges", "--user=65534:65534"])
        .arg(format!("--memory={bytes}b"))
        .arg(format!("--memory-swap={bytes}b"))
        .arg(format!("--mount=type=bind,source={},target=/input,readonly", rendered.join("input").display()))
        .arg(format!("--mount=type=bind,source={},target=/out", out.path().display()))
        .arg(container["image"].as_str().unwrap())
        .args(args)
        .output()
        .unwrap();
    std::fs::write(log, [output.stdout, output.stderr].concat()).unwrap();
}

#[test]
fn rendered_jobs_pass_the_kubernetes_schema_and_a_broken_one_does_not() {
    let out = tempfile::tempdir().unwrap();
    let rendered = render(&["--image", "registry.example/memrepro-runner:abc", "--policy", "deterministic", "--payload", "1x1"], out.path());
    let manifests = ["configmap.json", "job-low.json", "job-high.json"].map(|f| rendered.join(f));
    let validate = |files: &[PathBuf]| Command::new("kubernetes-validate").arg("--strict").args(files).output().expect("kubernetes-validate is not installed: run ci/install-prereqs.sh");
    let output = validate(&manifests);
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let job: Value = read_json(&manifests[1]);
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"], "512Mi");
    // The schema must be able to fail: a field it does not know, under --strict.
    let mut broken = job.clone();
    broken["spec"]["template"]["spec"]["containers"][0]["memoryLimit"] = Value::from("512Mi");
    let broken_file = out.path().join("broken.json");
    std::fs::write(&broken_file, broken.to_string()).unwrap();
    assert!(!validate(&[broken_file]).status.success());
}

#[test]
fn jobs_run_by_a_stand_in_kubelet_come_back_through_their_logs_with_the_verdict() {
    let image = runner_image();
    let out = tempfile::tempdir().unwrap();
    // Unbounded, 300 MB kept: the 256m pod is OOM-killed, the 1g one completes.
    let rendered = render(&["--image", &image, "--limit", "256m", "--limit", "1g", "--policy", "unbounded", "--payload", "10x30"], out.path());
    let logs = tempfile::tempdir().unwrap();
    for job in ["256m", "1g"] {
        run_like_a_kubelet(&rendered, job, &logs.path().join(format!("{job}.log")));
    }
    let runs = tempfile::tempdir().unwrap();
    let output = xtask_command()
        .args(["k8s", "collect", "--rendered"])
        .arg(&rendered)
        .arg(logs.path().join("256m.log"))
        .arg(logs.path().join("1g.log"))
        .arg("--out-dir")
        .arg(runs.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report = report(runs.path());
    assert_eq!(report["profiles"][0]["outcome"], "oom_killed", "{}", report["profiles"][0]);
    assert!(report["profiles"][0]["evidence"].as_str().unwrap().contains("oom_kill +1"));
    assert_eq!(report["profiles"][1]["stored_result"], "SUCCESS:300MB");
    assert_eq!(report["runner"]["arch"], std::env::consts::ARCH);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("VERDICT: DIFFERENT — `256m` oom-killed but `1g` completed"), "{stdout}");
}

#[test]
fn a_truncated_log_is_refused_with_the_file_it_cut() {
    let out = tempfile::tempdir().unwrap();
    let rendered = render(&["--image", "i", "--limit", "1g", "--payload", "1x1"], out.path());
    let log = out.path().join("1g.log");
    std::fs::write(&log, "=== memrepro-file result.json 10\n3031\n").unwrap();
    let output = xtask_command().args(["k8s", "collect", "--rendered"]).arg(&rendered).arg(&log).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("1g.log: the log ends inside result.json"), "{}", describe(&output));
}

#[test]
fn inputs_over_a_config_map_go_on_a_volume_or_in_an_image_and_run_the_same() {
    let large = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/blocks/mainnet");
    let large = large.to_str().unwrap();
    let image = runner_image();
    let out = tempfile::tempdir().unwrap();
    let over = xtask(&["k8s", "render", "--image", &image, "--guest", "chain", "--blocks", large], out.path());
    assert_eq!(over.status.code(), Some(2), "{}", describe(&over));
    assert!(String::from_utf8_lossy(&over.stderr).contains("a ConfigMap holds at most 1 MiB: give them on a volume (--input-volume CLAIM) or in an image (--input-image IMAGE)"), "{}", describe(&over));

    let args = ["k8s", "render", "--image", &image, "--guest", "chain", "--blocks", large, "--limit", "512m", "--limit", "1g", "--input-volume", "memrepro-blocks"];
    let output = xtask(&args, out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("  input: the PersistentVolumeClaim memrepro-blocks: copy "), "{stdout}");
    let rendered = run_dir(out.path());
    assert!(!rendered.join("configmap.json").exists());
    for file in ["input/blocks.map", "input/blocks/574200.bin", "input/blocks/702861.bin", "input/guest.wasm"] {
        assert!(rendered.join(file).is_file(), "{file}");
    }
    let job: Value = read_json(&rendered.join("job-512m.json"));
    assert_eq!(job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], "memrepro-blocks");
    let validate = |files: &[PathBuf]| Command::new("kubernetes-validate").arg("--strict").args(files).output().unwrap();
    let output = validate(&[rendered.join("job-512m.json"), rendered.join("job-1g.json")]);
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    // The volume as a kubelet would mount it, filled with the rendered input.
    let logs = tempfile::tempdir().unwrap();
    for job in ["512m", "1g"] {
        run_like_a_kubelet(&rendered, job, &logs.path().join(format!("{job}.log")));
    }
    let runs = tempfile::tempdir().unwrap();
    let collect = xtask_command().args(["k8s", "collect", "--rendered"]).arg(&rendered).arg(logs.path().join("512m.log")).arg(logs.path().join("1g.log")).arg("--out-dir").arg(runs.path()).output().unwrap();
    assert_eq!(collect.status.code(), Some(0), "{}", describe(&collect));
    let report = report(runs.path());
    assert_eq!(report["verdict"], "identical");
    assert!(report["blocks"].as_str().unwrap().contains("heights 574200..=702861, 2 blocks"), "{}", report["blocks"]);

    let images = tempfile::tempdir().unwrap();
    let args = ["k8s", "render", "--image", &image, "--guest", "chain", "--blocks", large, "--input-image", "registry.example/memrepro-input:1"];
    let output = xtask(&args, images.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("  input: an init container of registry.example/memrepro-input:1: docker build -t registry.example/memrepro-input:1 "));
    let rendered = run_dir(images.path());
    assert_eq!(std::fs::read_to_string(rendered.join("input/Dockerfile")).unwrap(), "FROM busybox:stable\nCOPY . /input\n");
    let job: Value = read_json(&rendered.join("job-low.json"));
    let init = &job["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["image"], "registry.example/memrepro-input:1");
    assert_eq!(init["command"], serde_json::json!(["cp", "-a", "/input/.", "/shared/"]));
    let output = validate(&[rendered.join("job-low.json")]);
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
}
