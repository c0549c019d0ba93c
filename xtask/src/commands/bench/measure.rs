//! Measuring a child process: the JSON `host-runner bench` prints, or the time and peak memory
//! of any command.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::Value;

/// Runs `runner bench ARGS` and parses the JSON it prints.
pub(super) fn runner_bench(runner: &Path, args: &[&str]) -> Result<Value> {
    let output = Command::new(runner).arg("bench").args(args).stderr(Stdio::inherit()).output()
        .with_context(|| format!("running {}", runner.display()))?;
    anyhow::ensure!(output.status.success(), "`host-runner bench {}` failed ({})", args.join(" "), output.status);
    serde_json::from_slice(&output.stdout).context("host-runner bench printed no JSON")
}

pub(super) fn median(values: &Value) -> Result<f64> {
    let mut values: Vec<f64> = values.as_array().context("not a list")?.iter().filter_map(Value::as_f64).collect();
    anyhow::ensure!(!values.is_empty(), "no measurements");
    values.sort_by(f64::total_cmp);
    Ok(values[values.len() / 2])
}

/// Time and peak memory of one child process.
pub(super) struct Measured {
    pub(super) secs: f64,
    /// The child's VmHWM, sampled every 2 ms until it exits. (Not `wait4`'s `ru_maxrss`: a
    /// child started with vfork/posix_spawn inherits this process's peak as its floor.)
    pub(super) max_rss_bytes: u64,
    pub(super) exit_code: Option<i32>,
}

/// Its stdout goes to `stdout`, its stderr beside it (`.err`).
pub(super) fn measure(command: &mut Command, stdout: &Path) -> Result<Measured> {
    let stderr = std::fs::File::create(stdout.with_extension("err"))?;
    let stdout = std::fs::File::create(stdout)?;
    let started = Instant::now();
    let mut child = command.stdout(stdout).stderr(stderr).spawn().with_context(|| format!("starting {command:?}"))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut max_rss_bytes = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let high_water = std::fs::read_to_string(&status_file).ok().and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
        max_rss_bytes = max_rss_bytes.max(high_water.unwrap_or(0) * 1024);
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    Ok(Measured { secs: started.elapsed().as_secs_f64(), max_rss_bytes, exit_code: status.code() })
}
