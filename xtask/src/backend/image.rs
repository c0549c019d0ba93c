//! The host-runner image, built without pulling anything. On Linux the static runner built here is
//! copied into an empty (`FROM scratch`) image; elsewhere `host-runner/Dockerfile` builds it inside
//! Docker (that path needs a registry for its Rust base image).
//!
//! The tag carries a hash of what goes into the image, so an unchanged runner is not rebuilt.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use crate::artifacts::{build_runner, host_triple};

pub const REPOSITORY: &str = "memrepro-runner";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageBuild {
    /// Build the static runner on this host and copy it into a scratch image (Linux only).
    Host,
    /// Build everything inside Docker with host-runner/Dockerfile (needs a registry).
    Dockerfile,
}

impl ImageBuild {
    pub fn default_for_this_host() -> Self {
        if cfg!(target_os = "linux") {
            Self::Host
        } else {
            Self::Dockerfile
        }
    }
}

pub struct RunnerImage {
    pub tag: String,
    pub size_bytes: u64,
    /// False when an image with this content hash already existed.
    pub built: bool,
}

pub fn runner_image(sh: &Shell, root: &Path, how: ImageBuild) -> Result<RunnerImage> {
    let (tag, built) = match how {
        ImageBuild::Host => scratch_image(sh, root)?,
        ImageBuild::Dockerfile => {
            let tag = format!("{REPOSITORY}:dockerfile");
            let dockerfile = root.join("host-runner/Dockerfile");
            cmd!(sh, "docker build -t {tag} -f {dockerfile} {root}")
                .run()
                .context("docker build with host-runner/Dockerfile failed")?;
            (tag, true)
        }
    };
    smoke_test(sh, &tag)?;
    let format = "{{.Size}}";
    let size = cmd!(sh, "docker image inspect --format {format} {tag}").read()?;
    Ok(RunnerImage { size_bytes: size.trim().parse().context("reading the image size")?, tag, built })
}

fn scratch_image(sh: &Shell, root: &Path) -> Result<(String, bool)> {
    let binary = build_runner(sh, &host_triple(sh)?)?;
    let dockerfile = root.join("host-runner/Dockerfile.scratch");
    let mut hasher = Sha256::new();
    hasher.update(std::fs::read(&dockerfile).with_context(|| format!("reading {}", dockerfile.display()))?);
    hasher.update(std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?);
    let tag = format!("{REPOSITORY}:{}", &hex::encode(hasher.finalize())[..16]);
    if image_exists(sh, &tag) {
        return Ok((tag, false));
    }
    // Per process: two repro runs may build at once.
    let context = root.join(format!("target/repro-image-{}", std::process::id()));
    std::fs::create_dir_all(&context)?;
    std::fs::copy(&binary, context.join("host-runner")).context("copying host-runner into the image context")?;
    std::fs::copy(&dockerfile, context.join("Dockerfile"))?;
    // No `# syntax=` line and nothing to pull: the classic builder and BuildKit both build this offline.
    let built = cmd!(sh, "docker build --quiet -t {tag} {context}").quiet().ignore_status().output();
    let _ = std::fs::remove_dir_all(&context);
    let output = built.context("running docker build")?;
    if !output.status.success() {
        bail!("docker build of the scratch image failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok((tag, true))
}

pub fn image_exists(sh: &Shell, tag: &str) -> bool {
    cmd!(sh, "docker image inspect {tag}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// The image must start and be the runner: a missing loader or library shows up here.
fn smoke_test(sh: &Shell, tag: &str) -> Result<()> {
    let version = cmd!(sh, "docker run --rm --pull=never --network=none {tag} --version")
        .read()
        .with_context(|| format!("the runner image {tag} does not start"))?;
    if !version.starts_with("host-runner ") {
        bail!("the runner image {tag} printed `{version}` for --version");
    }
    Ok(())
}
