//! Builds the stress guest once, runs the host-runner binary, reads its result.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use schema::RunResult;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The stress guest: `$GUEST_WASM` when set (cargo xtask test sets it), else built here.
pub fn guest_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| built_guest("GUEST_WASM", "guest"))
}

/// The chain guest: `$CHAIN_GUEST_WASM` when set (cargo xtask test sets it), else built here.
pub fn chain_guest_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| built_guest("CHAIN_GUEST_WASM", "chain-guest"))
}

/// `$variable`, else `cargo build --release --target wasm32-unknown-unknown -p PACKAGE`'s .wasm.
fn built_guest(variable: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-unknown-unknown", "-p", package])
        .arg("--message-format=json-render-diagnostics")
        .env_remove("RUSTFLAGS")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running cargo to build a guest");
    let reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let target = package.replace('-', "_");
    let mut wasm = None;
    for message in cargo_metadata::Message::parse_stream(reader) {
        if let Ok(cargo_metadata::Message::CompilerArtifact(artifact)) = message {
            if artifact.target.name == target {
                wasm = artifact.filenames.into_iter().find(|f| f.extension() == Some("wasm"));
            }
        }
    }
    assert!(
        child.wait().unwrap().success(),
        "building {package} failed: is the target installed? (rustup target add wasm32-unknown-unknown)"
    );
    wasm.unwrap_or_else(|| panic!("cargo reported no .wasm for {package}")).into_std_path_buf()
}

pub fn runner() -> Command {
    Command::new(env!("CARGO_BIN_EXE_host-runner"))
}

/// A WAT guest written to a file in `dir` (the runner reads .wat text as well as .wasm).
pub fn wat_guest(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let path = dir.join(format!("{name}.wat"));
    std::fs::write(&path, wat).unwrap();
    path
}

pub struct Run {
    pub output: Output,
    pub result: Option<RunResult>,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn result(&self) -> &RunResult {
        self.result.as_ref().unwrap_or_else(|| panic!("no result JSON; stderr:\n{}", self.stderr()))
    }
    /// The message of the block that trapped.
    pub fn trap(&self) -> String {
        match &self.result().outcome {
            schema::RunOutcome::Trapped { message, .. } => message.clone(),
            other => panic!("expected a trap, got {other:?}"),
        }
    }
}

/// `host-runner run` of one block; the result JSON lands next to the database.
pub fn run_block(wasm: &Path, db: &Path, height: u32, payload: &[u8]) -> Run {
    let out = db.with_extension("json");
    let _ = std::fs::remove_file(&out);
    let output = runner()
        .args(["run", "--height", &height.to_string(), "--payload", &hex_of(payload)])
        .arg("--wasm")
        .arg(wasm)
        .arg("--db")
        .arg(db)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("running host-runner");
    let result = std::fs::read_to_string(&out).ok().map(|text| RunResult::from_json(&text).unwrap());
    Run { output, result }
}

pub fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stress payload: allocation MB, count, then the optional storage and retention bytes.
pub fn stress_payload(allocation_mb: u32, count: u32, options: &[u8]) -> Vec<u8> {
    let mut payload = allocation_mb.to_le_bytes().to_vec();
    payload.extend_from_slice(&count.to_le_bytes());
    payload.extend_from_slice(options);
    payload
}

pub fn dump(db: &Path) -> Output {
    runner().arg("dump").arg("--db").arg(db).output().expect("running host-runner dump")
}

pub fn view(wasm: &Path, db: &Path, name: &str) -> String {
    let output = runner().arg("view").arg("--wasm").arg(wasm).arg("--db").arg(db).args(["--name", name]).output().unwrap();
    assert!(output.status.success(), "view {name} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim_end().to_string()
}
