//! Node mode: a node image the user gives against `host-runner node`, on the same guest (the
//! chain guest) over the same generated chain, each run by the node lab as its quiet profile (no
//! limits, no crashes, no views): blocks per second to the tip, start included, and the peak of
//! its memory cgroup.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use blocks::generate::{write_chain, Recipe};
use blocks::BlockArgs;
use serde_json::json;
use xshell::Shell;

use super::figure::{info, section, Figure};
use crate::backend::image::ImageBuild;
use crate::config::node::{NodeLab, NodeProfile, DEFAULT_ARGS};
use crate::flags::InputFlags;
use crate::input::GuestChoice;
use crate::lab::judge::LabProfile;
use crate::lab::{run_lab, LabArgs};
use crate::units::mib;

/// Blocks of the generated chain both nodes index.
pub(super) const NODE_CHAIN_BLOCKS: u32 = 5_000;

/// `image` and `host-runner node` over the same chain; `args` is the node lab's command-line
/// template (`[workspace.metadata.repro.node] args`).
pub(super) fn node_against_ours(sh: &Shell, root: &Path, dir: &Path, image: &str, args: Option<String>, image_build: ImageBuild) -> Result<Figure> {
    section(&format!("node mode: {image} against host-runner node, the chain guest over a generated chain of {NODE_CHAIN_BLOCKS} blocks"));
    let chain = dir.join("node-chain.blk");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&chain)?);
    write_chain(Recipe { blocks: NODE_CHAIN_BLOCKS, seed: 11, max_transactions: 10 }, &mut out)?;
    drop(out);
    let lab = NodeLab { args: args.unwrap_or_else(|| DEFAULT_ARGS.into()), label: None, auth: None, stall_secs: 120, profiles: vec![NodeProfile::quiet("bench")] };
    let run = |node: &str, name: &str| -> Result<LabProfile> {
        let input = InputFlags { guest: Some(GuestChoice::Chain), wasm: None, source: BlockArgs { blocks: Some(chain.clone()), ..BlockArgs::default() } };
        let args = LabArgs { node: node.into(), lab: lab.clone(), input, timeout: Duration::from_secs(1800), image_build, out_dir: dir.join(name) };
        let report = run_lab(sh, root, args).with_context(|| format!("the node lab with {node}"))?;
        let run = report.profiles.into_iter().next().context("the lab ran no profile")?;
        ensure!(run.failure(report.tip).is_none(), "{node} did not index the chain: {}", run.failure(report.tip).unwrap_or_default());
        Ok(run)
    };
    let theirs = run(image, "theirs")?;
    let ours = run("host-runner", "ours")?;
    std::fs::remove_file(&chain)?;
    let rate = |run: &LabProfile| f64::from(NODE_CHAIN_BLOCKS) / run.wall_secs;
    let peak = |run: &LabProfile| run.memory.cgroup_peak_bytes.map_or("unknown".into(), mib);
    let figure = format!(
        "{image}: {:.0} blocks/s, peak {}; host-runner node: {:.0} blocks/s, peak {} ({NODE_CHAIN_BLOCKS} blocks to the tip, start included; peak: the container's memory cgroup)",
        rate(&theirs),
        peak(&theirs),
        rate(&ours),
        peak(&ours),
    );
    let details = json!({
        "blocks": NODE_CHAIN_BLOCKS,
        "theirs": { "node": image, "wall_secs": theirs.wall_secs, "cgroup_peak_bytes": theirs.memory.cgroup_peak_bytes },
        "ours": { "node": "host-runner", "wall_secs": ours.wall_secs, "cgroup_peak_bytes": ours.memory.cgroup_peak_bytes },
    });
    Ok(info("node mode: the given node vs host-runner node", figure, details))
}
