//! Two metashrew-layout databases compared by the runner (`host-runner metashrew-diff`): the
//! verdict, where they first differ and each node's tip. Used by `diff --db` and the node lab.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use schema::{NodeComparison, NodeVerdict};

use super::dump_diff::diff_dump_files;

/// Runs `runner metashrew-diff --db A --db B [--label L]`; its JSON also goes to `json_out`.
pub fn metashrew_diff(runner: &Path, nodes: [&Path; 2], label: Option<&str>, json_out: &Path) -> Result<NodeComparison> {
    let mut command = Command::new(runner);
    command.arg("metashrew-diff").arg("--db").arg(nodes[0]).arg("--db").arg(nodes[1]);
    labelled(&mut command, label);
    let output = command.output().with_context(|| format!("running {}", runner.display()))?;
    let verdict_codes = [NodeVerdict::Identical, NodeVerdict::DifferentState, NodeVerdict::DifferentBlocks].map(|v| i32::from(v.exit_code()));
    if !output.status.code().is_some_and(|code| verdict_codes.contains(&code)) {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim().trim_start_matches("host-runner: error: "));
    }
    std::fs::write(json_out, &output.stdout).with_context(|| format!("writing {}", json_out.display()))?;
    serde_json::from_slice(&output.stdout).context("host-runner metashrew-diff printed no comparison")
}

/// Both nodes' states as of `height` dumped (`out/a-state-at-H.txt`, `b-…`) and diffed
/// (`out/state.diff`); the diff.
pub fn state_diff_at(runner: &Path, nodes: [&Path; 2], label: Option<&str>, height: &str, out: &Path) -> Result<String> {
    let mut dumps = Vec::new();
    for (node, name) in nodes.iter().zip(["a", "b"]) {
        let dump = out.join(format!("{name}-state-at-{height}.txt"));
        let mut command = Command::new(runner);
        command.arg("metashrew-state").arg("--db").arg(node).arg("--height").arg(height).arg("--dump").arg(&dump);
        labelled(&mut command, label);
        let state = command.output().with_context(|| format!("running {}", runner.display()))?;
        ensure!(state.status.success(), "{}", String::from_utf8_lossy(&state.stderr).trim());
        dumps.push(dump);
    }
    let diff = diff_dump_files(Some(&dumps[0]), Some(&dumps[1]), "A", "B")?;
    std::fs::write(out.join("state.diff"), &diff.diff)?;
    Ok(diff.diff)
}

/// `--label LABEL`, when the nodes ran with one.
fn labelled(command: &mut Command, label: Option<&str>) {
    if let Some(label) = label {
        command.arg("--label").arg(label);
    }
}
