//! What Docker and cargo take: build times, the image's size against a Debian-slim one, and a
//! warm `cargo xtask repro` against the time its containers ran.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use super::figure::{goal, info, section, Figure};
use crate::artifacts::{build_guest, build_runner, cargo, host_triple};
use crate::backend::image::{image_exists, runner_image, ImageBuild};
use crate::exit::Exit;
use crate::units::mib;

/// The Debian-slim base a conventional runner image would start from.
const DEBIAN_SLIM: &str = "debian:bookworm-slim";

/// Warm: everything rebuilt with nothing changed. Cold (`--cold-build`): the same from an empty
/// target directory. The image only where Docker answers (its time is 0 otherwise).
pub(super) fn build_times(sh: &Shell, root: &Path, image_build: ImageBuild, cold_build: bool, docker: bool) -> Result<Figure> {
    section("build times");
    let timed = |sh: &Shell| -> Result<[f64; 3]> {
        let started = Instant::now();
        build_guest(sh)?;
        let guest = started.elapsed().as_secs_f64();
        let started = Instant::now();
        build_runner(sh, &host_triple(sh)?)?;
        let runner_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        if docker {
            runner_image(sh, root, image_build)?;
        }
        Ok([guest, runner_secs, started.elapsed().as_secs_f64()])
    };
    let warm = timed(sh)?;
    let mut details = json!({ "warm_secs": { "guest": warm[0], "runner": warm[1], "image": warm[2] } });
    let mut figure = format!("warm {:.1} s (guest {:.1}, runner {:.1}, image {:.1})", warm.iter().sum::<f64>(), warm[0], warm[1], warm[2]);
    if cold_build {
        let target = tempfile::tempdir().context("creating an empty target directory")?;
        eprintln!("    cold build in {} (about 15 minutes on 2 cores)", target.path().display());
        let _empty = sh.push_env("CARGO_TARGET_DIR", target.path());
        let cold = timed(sh)?;
        details["cold_secs"] = json!({ "guest": cold[0], "runner": cold[1], "image": cold[2] });
        figure += &format!("; cold {:.0} s (guest {:.0}, runner {:.0}, image {:.0})", cold.iter().sum::<f64>(), cold[0], cold[1], cold[2]);
    } else {
        figure += "; cold: --cold-build";
    }
    Ok(info("build (guest + runner + image)", figure, details))
}

pub(super) fn image(sh: &Shell, root: &Path, runner: &Path, dir: &Path, how: ImageBuild) -> Result<Figure> {
    section("image size");
    let ours = runner_image(sh, root, how)?;
    let slim = debian_slim_image(sh, runner, dir)?;
    let ours_mb = ours.size_bytes as f64 / 1e6;
    let comparison = match &slim {
        Some((base, with_runner)) => format!("{DEBIAN_SLIM} + the same runner: {:.1} MB (base {:.1} MB)", *with_runner as f64 / 1e6, *base as f64 / 1e6),
        None => format!("{DEBIAN_SLIM} not available here (no registry), so not built; Docker Hub lists it at about 75 MB unpacked"),
    };
    let figure = format!("{:.1} MB ({}, FROM scratch); {comparison}", ours_mb, mib(ours.size_bytes));
    let details = json!({ "image": ours.tag, "bytes": ours.size_bytes, "debian_slim": slim.map(|(base, image)| json!({ "base_bytes": base, "image_bytes": image })) });
    Ok(goal("runner image size", figure, "< 40 MB", ours_mb < 40.0, details))
}

/// The base's size and that of the same static runner on it, where the base can be had.
fn debian_slim_image(sh: &Shell, runner: &Path, dir: &Path) -> Result<Option<(u64, u64)>> {
    if !image_exists(sh, DEBIAN_SLIM) && cmd!(sh, "docker pull --quiet {DEBIAN_SLIM}").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        return Ok(None);
    }
    let context = dir.join("debian-slim");
    std::fs::create_dir_all(&context)?;
    std::fs::copy(runner, context.join("host-runner"))?;
    std::fs::write(context.join("Dockerfile"), format!("FROM {DEBIAN_SLIM}\nCOPY host-runner /usr/local/bin/host-runner\nENTRYPOINT [\"/usr/local/bin/host-runner\"]\n"))?;
    let tag = "memrepro-runner-debian-slim:bench";
    cmd!(sh, "docker build --quiet -t {tag} {context}").quiet().ignore_stdout().run().context("building the Debian-slim comparison image")?;
    let _ = std::fs::remove_dir_all(&context);
    let size = |image: &str| -> Result<u64> {
        let format = "{{.Size}}";
        Ok(cmd!(sh, "docker image inspect --format {format} {image}").read()?.trim().parse()?)
    };
    Ok(Some((size(DEBIAN_SLIM)?, size(tag)?)))
}

/// `cargo xtask repro` with everything built, against the sum of its profiles' container runs.
pub(super) fn warm_repro(sh: &Shell, dir: &Path) -> Result<Figure> {
    section("warm cargo xtask repro");
    let out = dir.join("repro");
    let cargo = cargo();
    let started = Instant::now();
    let output = cmd!(sh, "{cargo} xtask repro --out-dir {out}").quiet().ignore_status().output()?;
    let total = started.elapsed().as_secs_f64();
    if !matches!(output.status.code().and_then(Exit::from_code), Some(Exit::Success | Exit::Different)) {
        bail!("cargo xtask repro failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let run_dir = std::fs::read_dir(&out)?.next().context("repro wrote no run directory")??.path();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json"))?)?;
    let profiles = report["profiles"].as_array().context("report.json has no profiles")?;
    let in_containers: f64 = profiles.iter().filter_map(|p| p["wall_secs"].as_f64()).sum();
    let ratio = total / in_containers;
    let figure = format!("{total:.1} s in all / {in_containers:.1} s in its {} containers = {ratio:.2}x", profiles.len());
    Ok(goal("warm repro vs its container runs", figure, "<= 1.5x", ratio <= 1.5, json!({ "total_secs": total, "container_secs": in_containers, "report": run_dir })))
}
