//! `cargo xtask k8s`: the same profiles as Kubernetes Jobs, and the verdict over what comes back.
//!
//! - `render` writes the input (in a ConfigMap up to 1 MiB; else for a PersistentVolumeClaim
//!   or an init container's image the user names, `--input-volume`/`--input-image`, with block
//!   files mapped as `repro` maps them) and one Job per profile: the
//!   profile's limit as `requests.memory` = `limits.memory`, the containers' hardening (non-root,
//!   read-only root filesystem, no privilege escalation, no capabilities), `restartPolicy: Never`,
//!   `backoffLimit: 0`. Each Job's runner prints its result files framed in its log
//!   (`watch --export-to-log`, `schema::log_files`), since a finished pod's volumes are gone.
//! - `collect` reads those logs (`kubectl logs job/memrepro-low > low.log`), rebuilds a run
//!   directory and gives the verdict, exactly as `repro` would.
//!
//! No cluster can run on the machines this project is developed on: the manifests are validated
//! offline (kubernetes-validate, plus [`render::check_job`] for what a schema cannot say), and the tests
//! run each rendered Job's container with Docker standing in for the kubelet.

mod collect;
mod quantity;
mod render;

use anyhow::{Context, Result};

use crate::exit::Exit;
use crate::flags::{self, K8sCommand};
use crate::input::Blocks;
use crate::workspace::Workspace;
use render::{job_name, Delivery};

pub fn run(ws: &Workspace, flags: flags::K8s) -> Result<Exit> {
    match flags.command {
        K8sCommand::Render(flags) => render(ws, flags),
        K8sCommand::Collect(flags) => {
            let out = ws.out_dir(flags.out_dir, "target/k8s-runs");
            let report = collect::collect(&flags.rendered, &flags.logs, out).context("k8s collect")?;
            Ok(report.decision.verdict.exit())
        }
    }
}

/// `k8s render`, then what to run with kubectl.
fn render(ws: &Workspace, flags: flags::K8sRender) -> Result<Exit> {
    let mut config = flags.run.apply(ws.config()?)?;
    config.replace_limits(&flags.limits)?;
    let guest = flags.input.guest();
    let delivery = match (flags.input_volume, flags.input_image) {
        (Some(claim), _) => Delivery::Volume(claim),
        (None, Some(image)) => Delivery::Image(image),
        (None, None) => Delivery::ConfigMap,
    };
    let blocks = match delivery {
        Delivery::ConfigMap => Blocks::resolve_as_text(&guest, &flags.input.source, &config)?,
        _ => Blocks::resolve(&guest, &flags.input.source, &config)?,
    };
    let wasm = guest.build(&ws.sh)?;
    let (dir, bytes) = render::render(&config, &wasm, &blocks, &flags.image, &delivery, ws.out_dir(flags.run.out_dir, "target/k8s"))?;
    println!("rendered: {}", dir.display());
    println!("  input: {}", delivery.describe(&dir, bytes));
    println!("  kubectl apply -f {}", dir.display());
    for profile in &config.profiles {
        let job = job_name(&profile.name);
        println!("  kubectl wait --for=condition=complete --timeout={}s job/{job} ; kubectl logs job/{job} > {}.log", config.timeout_secs, profile.name);
    }
    let logs: Vec<String> = config.profiles.iter().map(|p| format!("{}.log", p.name)).collect();
    println!("  cargo xtask k8s collect --rendered {} {}", dir.display(), logs.join(" "));
    Ok(Exit::Success)
}
