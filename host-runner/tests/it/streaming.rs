//! Long runs: blocks streamed from a block map (never held), each block's report appended to a
//! file, the runner's own memory reported apart from the guest's, and `--resume` after a kill at
//! several heights ending with exactly the state of an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blocks::blk::Start;
use blocks::generate::{write_chain, Recipe};
use blocks::{HeightRange, Source};
use schema::RunResult;

use crate::support::{chain_guest_wasm, runner, TestResult};

/// A generated chain of `count` blocks in `dir`, and its map of `range`.
fn chain(dir: &Path, count: u32, range: HeightRange) -> (PathBuf, PathBuf) {
    let file = dir.join("chain.blk");
    if !file.exists() {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        write_chain(Recipe { blocks: count, seed: 11, max_transactions: 10 }, &mut out).unwrap();
    }
    let map = dir.join(format!("{range}.map").replace([' ', '-'], ""));
    let mut out = std::fs::File::create(&map).unwrap();
    blocks::write_map(&Source::detect(&file).unwrap(), range, Start::Genesis, &mut out, |_| {}).unwrap();
    (file, map)
}

/// `host-runner run` of the chain guest over `blocks` into `db`.
fn chain_run(blocks: &Path, db: &Path) -> Command {
    let mut command = runner();
    command.arg("run").arg("--wasm").arg(chain_guest_wasm()).arg("--blocks").arg(blocks).arg("--db").arg(db);
    command
}

/// `host-runner run` of the chain guest; its result.
fn run(blocks: &Path, db: &Path, extra: &[&str]) -> (std::process::Output, Option<RunResult>) {
    let out = db.with_extension("json");
    let _ = std::fs::remove_file(&out);
    let output = chain_run(blocks, db).arg("--out").arg(&out).args(extra).output().unwrap();
    let result = std::fs::read_to_string(&out).ok().map(|t| RunResult::from_json(&t).unwrap());
    (output, result)
}

fn completed(run: (std::process::Output, Option<RunResult>)) -> RunResult {
    let (output, result) = run;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    result.unwrap()
}

#[test]
fn a_mapped_run_streams_the_blocks_and_ends_where_a_held_run_does() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (file, map) = chain(dir.path(), 300, HeightRange::default());
    let held = completed(run(&file, &dir.path().join("held"), &[]));
    let reports = dir.path().join("blocks.jsonl");
    let streamed = completed(run(&map, &dir.path().join("streamed"), &["--block-reports", reports.to_str().unwrap()]));
    assert_eq!(streamed.state_root, held.state_root);
    assert_eq!(streamed.dump, held.dump);
    assert!(streamed.input.source.starts_with("block map "), "{}", streamed.input.source);
    assert_eq!((streamed.input.first_height, streamed.input.last_height, streamed.input.blocks), (Some(0), Some(299), 300));
    assert_eq!(streamed.input.bytes, std::fs::metadata(&file)?.len() - 8 * 300, "every block's bytes, without the files' framing");
    assert!(streamed.blocks.is_empty(), "the reports went to the file");
    assert_eq!(streamed.block_reports.as_ref().map(|f| f.lines), Some(300));
    let lines: Vec<schema::BlockReport> = std::fs::read_to_string(&reports)?.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|r| r.height).collect::<Vec<_>>(), (0..300).collect::<Vec<_>>());
    assert_eq!(lines.iter().map(|r| r.state_root.clone()).collect::<Vec<_>>(), held.blocks.iter().map(|r| r.state_root.clone()).collect::<Vec<_>>());
    assert_eq!(streamed.totals, held.totals);
    assert_eq!(streamed.totals.run, 300);
    // Both read from the kernel, whose per-thread counters may lag a few pages: no order asserted.
    let (runner_rss, peak) = (streamed.memory.runner_rss_bytes.unwrap(), streamed.memory.peak_rss_bytes.unwrap());
    assert!(runner_rss > 1 << 20 && peak > 1 << 20, "the runner's own {runner_rss}, the process's peak {peak}");
    Ok(())
}

#[test]
fn a_run_killed_at_several_heights_and_resumed_ends_with_the_uninterrupted_state() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_, map) = chain(dir.path(), 600, HeightRange::default());
    let whole = completed(run(&map, &dir.path().join("whole"), &[]));
    let db = dir.path().join("interrupted");
    let reports = dir.path().join("interrupted.jsonl");
    let mut killed_at = Vec::new();
    for reported in [40, 250, 450] {
        killed_at.push(kill_after(&map, &db, &reports, reported));
    }
    let resumed = completed(run(&map, &db, &["--resume", "--block-reports", reports.to_str().unwrap()]));
    let last_kill = *killed_at.last().unwrap();
    assert_eq!(resumed.resumed_after, Some(last_kill), "resumed after the last block the killed run committed");
    assert_eq!(resumed.totals.run, u64::from(599 - last_kill));
    assert_eq!(resumed.state_root, whole.state_root, "killed after {killed_at:?} and resumed");
    assert_eq!(resumed.dump, whole.dump);
    // Every block was committed once: the reports across the runs cover each height once, save
    // one a kill may have cut between its commit and its report.
    let heights: Vec<u32> = std::fs::read_to_string(&reports)?.lines().map(|l| serde_json::from_str::<schema::BlockReport>(l).unwrap().height).collect();
    assert!(heights.windows(2).all(|w| w[0] < w[1]), "no block run twice: {heights:?}");
    assert!(heights.len() >= 600 - killed_at.len(), "{} reports", heights.len());
    Ok(())
}

/// Starts (or resumes) the run, SIGKILLs it once its reports pass `reported` lines, and returns
/// the tip its database was left at.
fn kill_after(map: &Path, db: &Path, reports: &Path, reported: usize) -> u32 {
    let mut child = chain_run(map, db)
        .args(["--resume", "--block-reports"])
        .arg(reports)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::fs::read_to_string(reports).map_or(0, |t| t.lines().count()) < reported {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before {reported} blocks");
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = db.with_extension("state.json");
    let state = runner().arg("state").arg("--db").arg(db).arg("--out").arg(&out).output().unwrap();
    assert!(state.status.success(), "{}", String::from_utf8_lossy(&state.stderr));
    let state: schema::StoredState = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let tip = state.tip.expect("blocks were committed");
    assert!(tip as usize + 1 >= reported && tip < 599, "killed mid-run: tip {tip} after {reported} reports");
    tip
}

#[test]
fn a_resume_that_would_skip_heights_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_, first) = chain(dir.path(), 200, HeightRange { from: None, to: Some(99) });
    let (_, later) = chain(dir.path(), 200, HeightRange { from: Some(150), to: None });
    let db = dir.path().join("db");
    completed(run(&first, &db, &[]));
    let (output, _) = run(&later, &db, &["--resume"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(i32::from(schema::runner_exit::FAILED)), "{stderr}");
    assert!(stderr.contains("the database holds blocks up to height 99, but the blocks resume at 150: height 100 is missing"), "{stderr}");
    Ok(())
}
