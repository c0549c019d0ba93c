//! SIGKILL at arbitrary points of a multi-block run: the database is always at a block boundary
//! whose root is the clean run's root at that height, and the result file is never half-written.

use std::time::{Duration, Instant};

use crate::support::*;

const BLOCKS: u32 = 30;

fn blocks_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("blocks.txt");
    let lines: String = (1..=BLOCKS).map(|h| format!("{h} {}\n", hex_of(&stress_payload(2, 2 + h % 3, &[])))).collect();
    std::fs::write(&path, lines).unwrap();
    path
}

fn run_command(blocks: &std::path::Path, db: &std::path::Path, out: &std::path::Path) -> std::process::Command {
    let mut command = runner();
    command.arg("run").arg("--wasm").arg(guest_wasm()).arg("--blocks").arg(blocks).arg("--db").arg(db).arg("--out").arg(out);
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    command
}

#[test]
fn a_killed_run_leaves_the_database_at_a_block_boundary_of_the_clean_run() -> TestResult {
    let dir = tempfile::tempdir()?;
    let blocks = blocks_file(dir.path());
    let clean_out = dir.path().join("clean.json");
    let started = Instant::now();
    assert!(run_command(&blocks, &dir.path().join("clean"), &clean_out).status()?.success());
    let clean_duration = started.elapsed();
    let clean = schema::RunResult::from_json(&std::fs::read_to_string(&clean_out)?)?;
    let root_at = |height: u32| clean.blocks.iter().find(|b| b.height == height).map(|b| b.state_root.clone());

    // Deterministic "random" kill points spread over the clean run's duration.
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut heights_seen = Vec::new();
    for attempt in 0..8 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = clean_duration.mul_f64((seed >> 11) as f64 / (1u64 << 53) as f64);
        let db = dir.path().join(format!("killed-{attempt}"));
        let out = dir.path().join(format!("killed-{attempt}.json"));
        let mut child = run_command(&blocks, &db, &out).spawn()?;
        std::thread::sleep(delay.max(Duration::from_millis(5)));
        child.kill()?;
        child.wait()?;

        // The result file is whole or absent.
        if let Ok(text) = std::fs::read_to_string(&out) {
            schema::RunResult::from_json(&text).expect("a result file that exists is complete JSON");
        }
        if !db.join("CURRENT").exists() {
            continue; // killed before the database was created
        }
        let state_out = dir.path().join(format!("state-{attempt}.json"));
        let output = runner().arg("state").arg("--db").arg(&db).arg("--out").arg(&state_out).output()?;
        assert!(output.status.success(), "attempt {attempt} (killed after {delay:?}): {}", String::from_utf8_lossy(&output.stderr));
        let state: schema::StoredState = serde_json::from_str(&std::fs::read_to_string(&state_out)?)?;
        match state.tip {
            Some(height) => {
                assert_eq!(Some(state.state_root.clone()), root_at(height), "attempt {attempt}: root after height {height}");
                assert_eq!(state.dump.iter().filter(|l| l.starts_with("\"/memory-stress-result/")).count(), height as usize);
                heights_seen.push(height);
            }
            None => assert!(state.dump.is_empty(), "attempt {attempt}: entries without a committed block"),
        }
    }
    // The kills landed at several different points, not all before or after the run.
    heights_seen.sort();
    heights_seen.dedup();
    assert!(heights_seen.len() >= 2, "kills landed at {heights_seen:?}");
    Ok(())
}
