//! Two metashrew-layout databases compared by the runner (`host-runner metashrew-diff`): the
//! verdict, where they first differ and each node's tip. Used by `diff --db` and the node lab.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use schema::{NodeComparison, NodeVerdict};

/// Runs `runner metashrew-diff --db A --db B [--label L]`; its JSON also goes to `json_out`.
pub fn metashrew_diff(runner: &Path, nodes: [&Path; 2], label: Option<&str>, json_out: &Path) -> Result<NodeComparison> {
    let mut command = Command::new(runner);
    command.arg("metashrew-diff").arg("--db").arg(nodes[0]).arg("--db").arg(nodes[1]);
    if let Some(label) = label {
        command.arg("--label").arg(label);
    }
    let output = command.output().with_context(|| format!("running {}", runner.display()))?;
    let verdict_codes = [NodeVerdict::Identical, NodeVerdict::DifferentState, NodeVerdict::DifferentBlocks].map(|v| i32::from(v.exit_code()));
    if !output.status.code().is_some_and(|code| verdict_codes.contains(&code)) {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim().trim_start_matches("host-runner: error: "));
    }
    std::fs::write(json_out, &output.stdout).with_context(|| format!("writing {}", json_out.display()))?;
    serde_json::from_slice(&output.stdout).context("host-runner metashrew-diff printed no comparison")
}
