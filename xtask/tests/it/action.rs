//! The reusable action's step (ci/action-repro.sh) as GitHub runs it: inputs in the environment,
//! the outputs written to `$GITHUB_OUTPUT`, against the real Docker engine.

use std::path::Path;
use std::process::Command;

fn run_action_step(inputs: &[(&str, &str)], temp: &Path) -> (std::process::Output, String) {
    let outputs = temp.join("github_output");
    std::fs::write(&outputs, "").unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let output = Command::new("bash")
        .arg(root.join("ci/action-repro.sh"))
        .current_dir(root)
        .env("GITHUB_OUTPUT", &outputs)
        .env("RUNNER_TEMP", temp)
        .env("GITHUB_WORKSPACE", root)
        .env_remove("GITHUB_STEP_SUMMARY")
        // A workflow step starts without the static-linking flags `cargo xtask test` sets.
        .env_remove("RUSTFLAGS")
        .envs(inputs.iter().copied())
        .output()
        .unwrap();
    (output, std::fs::read_to_string(&outputs).unwrap())
}

#[test]
fn the_action_step_sets_the_verdict_and_the_run_directory_and_fails_unless_identical() {
    let temp = tempfile::tempdir().unwrap();
    let inputs = [("INPUT_WASM", ""), ("INPUT_BLOCKS", ""), ("INPUT_LIMITS", "512m 1g"), ("INPUT_POLICY", "deterministic"), ("INPUT_BUDGET", "192m")];
    let (output, outputs) = run_action_step(&inputs, temp.path());
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(outputs.contains("verdict=identical\n"), "{outputs}");
    let run_dir = outputs.lines().find_map(|l| l.strip_prefix("run-dir=")).expect("run-dir output");
    assert!(Path::new(run_dir).join("report.json").is_file(), "{run_dir}");

    // One limit compares nothing: exit 3, and the output says so.
    let temp = tempfile::tempdir().unwrap();
    let inputs = [("INPUT_WASM", ""), ("INPUT_BLOCKS", ""), ("INPUT_LIMITS", "1g"), ("INPUT_POLICY", "deterministic"), ("INPUT_BUDGET", "192m")];
    let (output, outputs) = run_action_step(&inputs, temp.path());
    assert_eq!(output.status.code(), Some(3));
    assert!(outputs.contains("verdict=not_compared\n"), "{outputs}");
}

#[test]
fn a_wasm_input_without_blocks_is_refused_before_anything_runs() {
    let temp = tempfile::tempdir().unwrap();
    let inputs = [("INPUT_WASM", "guest.wasm"), ("INPUT_BLOCKS", ""), ("INPUT_LIMITS", ""), ("INPUT_POLICY", "deterministic"), ("INPUT_BUDGET", "192m")];
    let (output, outputs) = run_action_step(&inputs, temp.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the wasm input needs the blocks input too"));
    assert!(outputs.is_empty());
}
