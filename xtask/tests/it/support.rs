//! Runs the xtask binary and reads what it wrote.

use std::path::Path;
use std::process::{Command, Output};

pub use serde_json::Value;

/// Held by each test whose runs need GiBs (a 3-4 GiB container or process): one such test at a
/// time, so the suite fits a 16 GB CI runner whatever the number of test threads.
pub fn memory_hungry() -> std::sync::MutexGuard<'static, ()> {
    static GIBS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GIBS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A generated chain of `blocks` blocks (up to 10 transactions each) from `seed`, as `dir/chain.blk`.
pub fn generated_chain(dir: &Path, blocks: u32, seed: u64) -> std::path::PathBuf {
    let file = dir.join("chain.blk");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    blocks::generate::write_chain(blocks::generate::Recipe { blocks, seed, max_transactions: 10 }, &mut out).unwrap();
    file
}

/// The xtask binary, kept out of the CI job's summary: what the tests run is not the job's result.
pub fn xtask_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.env_remove("GITHUB_STEP_SUMMARY");
    command
}

pub fn xtask(args: &[&str], out_dir: &Path) -> Output {
    xtask_command()
        .args(args)
        .arg("--out-dir")
        .arg(out_dir)
        .output()
        .expect("running xtask")
}

/// The report.json of the only run directory under `out_dir`.
pub fn report(out_dir: &Path) -> Value {
    read_json(&run_dir(out_dir).join("report.json"))
}

pub fn describe(output: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}


/// The one run directory under `out_dir`.
pub fn run_dir(out_dir: &Path) -> std::path::PathBuf {
    let runs: Vec<_> = std::fs::read_dir(out_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}
