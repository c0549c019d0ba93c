//! `cargo xtask diff OLD NEW`: two storage dumps compared in one streaming pass. `cargo xtask
//! diff --db A --db B`: two metashrew nodes' databases, through the runner's `metashrew-diff`
//! and `metashrew-state`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use schema::NodeVerdict;

use crate::artifacts::{build_runner, host_triple};
use crate::exit::Exit;
use crate::flags;
use crate::judge::dump_diff::{diff_dump_files, excerpt, SHOWN_LINES};
use crate::judge::node_diff::{metashrew_diff, state_diff_at};
use crate::run_dir::new_run_dir;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, flags: flags::Diff) -> Result<Exit> {
    if !flags.dbs.is_empty() {
        let [a, b] = <[PathBuf; 2]>::try_from(flags.dbs).map_err(|dbs| anyhow!("--db twice: node A and node B (got {})", dbs.len()))?;
        let runner = build_runner(&ws.sh, &host_triple(&ws.sh)?)?;
        let out = new_run_dir(ws.out_dir(flags.out_dir, "target/diff"))?;
        return diff_nodes(&runner, [&a, &b], flags.label.as_deref(), &out);
    }
    let (old, new) = (&flags.dumps[0], &flags.dumps[1]);
    let found = diff_dump_files(Some(old), Some(new), &old.display().to_string(), &new.display().to_string())?;
    print!("{}", found.diff);
    match &found.first_key {
        Some(key) => eprintln!("{} differing keys; first: {key}", found.differing_keys),
        None => eprintln!("identical"),
    }
    Ok(Exit::passed(found.first_key.is_none()))
}

/// `host-runner metashrew-diff` says where two metashrew nodes first diverge; at a state
/// divergence both states as of that height are dumped (`host-runner metashrew-state`) and
/// diffed here. Exit codes as `repro`: identical, different, or not compared (the nodes indexed
/// different blocks).
pub fn diff_nodes(runner: &Path, nodes: [&Path; 2], label: Option<&str>, out: &Path) -> Result<Exit> {
    let found = metashrew_diff(runner, nodes, label, &out.join("comparison.json"))?;
    let tips = format!("tips {} and {}", found.tips[0], found.tips[1]);
    match found.verdict {
        NodeVerdict::Identical => {
            println!(
                "IDENTICAL — {} keys' histories agree up to height {} ({tips}); block hashes compared at {} heights",
                found.keys_compared,
                found.tips[0].min(found.tips[1]),
                found.block_hashes_compared
            );
            Ok(Exit::Success)
        }
        NodeVerdict::DifferentBlocks => {
            let [a, b] = found.block_hashes.unwrap_or_default();
            println!(
                "NOT COMPARED — the nodes indexed different blocks at height {} (A {a}, B {b}): a reorg or another chain, so their states are not comparable from there",
                found.height.unwrap_or(0)
            );
            Ok(Exit::NotCompared)
        }
        NodeVerdict::DifferentState => {
            let height = found.height.context("no height")?.to_string();
            println!("DIFFERENT — first at height {height} ({tips}): {} keys differ there", found.keys_differing_there);
            for key in &found.keys {
                println!("  {}\n    A: {}\n    B: {}", key.key, histories_json(&key.histories[0]), histories_json(&key.histories[1]));
            }
            let diff = state_diff_at(runner, nodes, label, &height, out)?;
            println!("state as of height {height} (A → B):\n{}", excerpt(&diff, SHOWN_LINES));
            println!("results: {}", out.display());
            Ok(Exit::Different)
        }
    }
}

/// `[[height,"value"],…]`, as the comparison's JSON writes a history.
fn histories_json(history: &[(u32, String)]) -> String {
    serde_json::to_string(history).unwrap_or_default()
}
