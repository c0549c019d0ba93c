//! Building the guest and the runner with cargo, and finding what cargo built from its JSON
//! messages (never from a guessed target path).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cargo_metadata::{Message, Metadata, MetadataCommand};
use xshell::{cmd, Shell};

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// A fully static runner needs no loader or libraries: it runs in an empty (`FROM scratch`) image.
pub const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The workspace as cargo sees it: its root, members and `[workspace.metadata]`.
pub fn workspace_metadata() -> Result<Metadata> {
    MetadataCommand::new().no_deps().exec().context("running cargo metadata")
}

/// The host's target triple (`rustc -vV`), given explicitly so RUSTFLAGS never reach build scripts.
pub fn host_triple(sh: &Shell) -> Result<String> {
    let version = cmd!(sh, "rustc -vV").read().context("running rustc -vV")?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV printed no host triple")
}

/// Installs the wasm32 target through rustup when it is missing.
pub fn ensure_wasm_target(sh: &Shell) -> Result<()> {
    let installed = cmd!(sh, "rustup target list --installed").read();
    match installed {
        Ok(list) if list.lines().any(|t| t.trim() == WASM_TARGET) => Ok(()),
        Ok(_) => {
            eprintln!("    installing the {WASM_TARGET} target (rustup target add {WASM_TARGET})");
            cmd!(sh, "rustup target add {WASM_TARGET}")
                .run()
                .with_context(|| format!("the {WASM_TARGET} target is missing and rustup could not add it"))
        }
        Err(_) => {
            // No rustup: the target may still come with the toolchain; the build will tell.
            Ok(())
        }
    }
}

/// The stress guest (`-p guest`): the path of guest.wasm.
pub fn build_guest(sh: &Shell) -> Result<PathBuf> {
    build_guest_package(sh, "guest")
}

/// `cargo build --release --target wasm32-unknown-unknown -p PACKAGE`: the path of its .wasm.
pub fn build_guest_package(sh: &Shell, package: &str) -> Result<PathBuf> {
    ensure_wasm_target(sh)?;
    let cargo = cargo();
    let messages = cmd!(sh, "{cargo} build --release --target {WASM_TARGET} -p {package} --message-format=json-render-diagnostics")
        .env_remove("RUSTFLAGS")
        .read()
        .with_context(|| format!("building {package} failed (is the {WASM_TARGET} target installed? `rustup target add {WASM_TARGET}`)"))?;
    // Cargo names a library target after its package, with `-` as `_`.
    artifact(&messages, &package.replace('-', "_"), |path| path.extension() == Some("wasm"))
}

/// The static release build of host-runner for `triple`: the executable's path.
pub fn build_runner(sh: &Shell, triple: &str) -> Result<PathBuf> {
    build_static(sh, triple, &[], "host-runner").context("building host-runner failed (RocksDB's bindings need libclang: `apt-get install libclang-dev`)")
}

/// The tests' faulty node (`host-runner/tests/nodes/faulty_node.rs`, an example target, never
/// shipped), built like the runner: the executable's path.
pub fn build_faulty_node(sh: &Shell, triple: &str) -> Result<PathBuf> {
    build_static(sh, triple, &["--example", "faulty-node"], "faulty-node").context("building the faulty node failed")
}

/// A static release build of one of host-runner's targets (`extra` picks it), as the image's.
fn build_static(sh: &Shell, triple: &str, extra: &[&str], target: &str) -> Result<PathBuf> {
    let _static = sh.push_env("RUSTFLAGS", STATIC_RUSTFLAGS);
    let cargo = cargo();
    let messages = cmd!(sh, "{cargo} build --release --target {triple} -p host-runner {extra...} --message-format=json-render-diagnostics").read()?;
    artifact(&messages, target, |_| true)
}

fn artifact(messages: &str, target: &str, wanted: impl Fn(&cargo_metadata::camino::Utf8Path) -> bool) -> Result<PathBuf> {
    let mut found = None;
    for message in Message::parse_stream(messages.as_bytes()) {
        if let Message::CompilerArtifact(artifact) = message.context("reading cargo's JSON messages")? {
            if artifact.target.name != target {
                continue;
            }
            if let Some(executable) = artifact.executable {
                found = Some(executable);
            } else if let Some(file) = artifact.filenames.into_iter().find(|f| wanted(f)) {
                found = Some(file);
            }
        }
    }
    match found {
        Some(path) => Ok(path.into_std_path_buf()),
        None => bail!("cargo built no artifact for `{target}`"),
    }
}
