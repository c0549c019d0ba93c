//! `cargo xtask compare` over run directories from two "machines": the Docker backend and the
//! local backend of this one, each with its own report.json.

use std::path::Path;

use crate::support::*;

/// `repro` with `args` on `backend`, into its own directory; that run directory.
fn run_on(backend: &str, args: &[&str], out: &Path) -> std::path::PathBuf {
    let mut all = vec!["--backend", backend, "repro"];
    all.extend(args);
    let output = xtask(&all, out);
    assert!(matches!(output.status.code(), Some(0 | 1 | 3)), "{}", describe(&output));
    run_dir(out)
}

fn compare(dirs: &[&Path], out: &Path) -> std::process::Output {
    let mut args = vec!["compare"];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    xtask(&args, out)
}

#[test]
fn runs_from_two_backends_compare_identical_and_say_where_they_ran() {
    let (a, b, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The deterministic policy reserves only its budget, so the local backend completes under
    // any of its mechanisms (a cgroup of its own or a systemd scope, or RLIMIT_AS).
    let args = ["--policy", "deterministic", "--limit", "1g", "--payload", "10x3"];
    let docker = run_on("docker", &args, a.path());
    let local = run_on("local", &args, b.path());
    let report = read_json(&docker.join("report.json"));
    assert_eq!(report["machine"]["arch"], std::env::consts::ARCH);
    assert_eq!(report["runner"]["wasmtime_version"].as_str().unwrap().split('.').next(), Some("48"));
    assert_eq!(report["runner"]["sha256"].as_str().unwrap().len(), 64);

    let output = compare(&[&docker, &local], out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("-docker: ") && stdout.contains("-local: ") && stdout.contains("wasmtime 48."), "{stdout}");
    assert!(stdout.contains("VERDICT: identical — 2 runs compared"), "{stdout}");
    let compared = read_json(&run_dir(out.path()).join("report.json"));
    assert_eq!(compared["verdict"], "identical");
    assert_eq!(compared["comparisons"][0]["same_root"], true);
}

#[test]
fn a_run_killed_on_one_machine_and_completed_on_another_is_different() {
    let (a, b, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // 300 MB kept: OOM-killed under 256m, completed under 1g; two run directories, two "machines".
    let small = run_on("docker", &["--limit", "256m", "--payload", "10x30"], a.path());
    let large = run_on("docker", &["--limit", "1g", "--payload", "10x30"], b.path());
    let output = compare(&[&small, &large], out.path());
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("VERDICT: DIFFERENT — `") && stdout.contains("-docker.256m` oom-killed but `") && stdout.contains("-docker-2.1g` completed"), "{stdout}");
    assert!(stdout.contains("+\"/memory-stress-result/1\" = \"SUCCESS:300MB\""), "{stdout}");
}

#[test]
fn runs_of_different_blocks_or_no_run_directory_are_refused() {
    let (a, b, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = run_on("local", &["--limit", "1g", "--payload", "1x3"], a.path());
    let other = run_on("local", &["--limit", "1g", "--payload", "1x4"], b.path());
    let output = compare(&[&one, &other], out.path());
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("refusing to compare runs of different blocks"), "{}", describe(&output));
    let output = compare(&[&one, a.path()], out.path());
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a run directory (no readable report.json)"), "{}", describe(&output));
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "nothing written");
}
