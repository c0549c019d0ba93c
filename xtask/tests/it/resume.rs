//! Long runs through the pipeline: a generated chain streamed to each profile's runner from a
//! block map, progress lines while it runs, and `repro --resume` after the xtask was SIGKILLed
//! in the first profile and again in the second (its container killed too, as a reboot would):
//! the leftover container is removed, each profile goes on after its last committed block, and the
//! verdict and every state root are those of an uninterrupted run.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

const BLOCKS: u32 = 2500;

fn repro_args(chain: &Path) -> Vec<String> {
    ["repro", "--guest", "chain", "--blocks", chain.to_str().unwrap(), "--limit", "256m", "--limit", "1g"].map(String::from).to_vec()
}

fn roots(report: &Value) -> Vec<Value> {
    report["profiles"].as_array().unwrap().iter().map(|p| p["state_root"].clone()).collect()
}

/// Runs the xtask (resuming when asked) and SIGKILLs it once profile `profile` (0 or 1) has
/// reported `reported` blocks, then its container (as a reboot would: the container is left,
/// stopped).
fn kill_during(args: &[String], out: &Path, profile: usize, reported: usize) {
    let mut child = xtask_command().args(args).arg("--out-dir").arg(out).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    loop {
        let reports = std::fs::read_dir(out).ok().and_then(|mut runs| runs.next()).map(|run| {
            let run = run.unwrap().path();
            let dir = ["256m", "1g"][profile];
            std::fs::read_to_string(run.join(dir).join("blocks.jsonl")).map_or(0, |t| t.lines().count())
        });
        if reports.unwrap_or(0) >= reported {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the xtask ended before profile {profile} reported {reported} blocks");
        assert!(started.elapsed() < Duration::from_secs(600), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let run = run_dir(out);
    let container = std::fs::read_to_string(run.join(["256m", "1g"][profile]).join("container")).unwrap();
    let killed = std::process::Command::new("docker").args(["kill", container.trim()]).output().unwrap();
    assert!(killed.status.success(), "the container was still running: {}", String::from_utf8_lossy(&killed.stderr));
}

#[test]
fn a_repro_killed_in_each_profile_and_resumed_ends_as_an_uninterrupted_one() {
    let _gibs = memory_hungry();
    let temp = tempfile::tempdir().unwrap();
    let chain = generated_chain(temp.path(), BLOCKS, 5);
    let args = repro_args(&chain);
    let whole = temp.path().join("whole");
    let output = xtask(&args.iter().map(String::as_str).collect::<Vec<_>>(), &whole);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let uninterrupted = report(&whole);
    assert_eq!(uninterrupted["verdict"], "identical");

    let out = temp.path().join("interrupted");
    kill_during(&args, &out, 0, 300);
    let mut resume = args.clone();
    resume.push("--resume".into());
    kill_during(&resume, &out, 1, 200);
    let run = run_dir(&out);
    let leftover = std::fs::read_to_string(run.join("1g/container")).unwrap();
    let output = xtask(&resume.iter().map(String::as_str).collect::<Vec<_>>(), &out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ended before the interruption: kept"), "the first profile, finished in the first resume, is kept: {stderr}");
    let resumed = report(&out);
    assert_eq!(resumed["verdict"], "identical");
    assert_eq!(roots(&resumed), roots(&uninterrupted));
    let last = read_json(&run.join("1g/result.json"));
    let after = last["resumed_after"].as_u64().expect("the second profile resumed");
    assert!((199..u64::from(BLOCKS) - 1).contains(&after), "resumed after {after}");
    assert_eq!(last["totals"]["run"].as_u64(), Some(u64::from(BLOCKS) - 1 - after));
    let inspect = std::process::Command::new("docker").args(["inspect", leftover.trim()]).output().unwrap();
    assert!(!inspect.status.success(), "the container the kill left behind was removed");
    // A finished run is not resumed, nor one of other blocks.
    let output = xtask(&resume.iter().map(String::as_str).collect::<Vec<_>>(), &out);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is finished (it has its report.json): nothing to resume"), "{}", describe(&output));
}
