//! `cargo xtask doctor`: is this machine ready? One line per prerequisite, with the fix for each
//! missing piece.

use std::path::Path;

use xshell::{cmd, Shell};

use crate::artifacts::WASM_TARGET;
use crate::backend::local::{self, LocalLimit, FORCE_VARIABLE};
use crate::exit::Exit;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace) -> Exit {
    Exit::passed(doctor(&ws.sh, &ws.root))
}

pub struct Check {
    pub name: &'static str,
    /// What was found, or why it is missing.
    pub detail: String,
    /// `None` when present.
    pub fix: Option<String>,
}

impl Check {
    fn present(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, detail: detail.into(), fix: None }
    }
    fn missing(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// Disk the first build needs (wasmtime, RocksDB, tests: about 6 GiB) plus room for runs.
const NEEDED_DISK_GIB: u64 = 10;

pub fn checks(sh: &Shell, root: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let quiet = |command: xshell::Cmd| command.quiet().ignore_stderr().read().map(|s| s.trim().to_string());

    checks.push(match quiet(cmd!(sh, "docker --version")) {
        Ok(version) => Check::present("docker CLI", version),
        Err(_) => Check::missing("docker CLI", "not found", "install Docker Engine (apt-get install docker.io), or use --backend local"),
    });
    let server = "{{.ServerVersion}} {{.MemoryLimit}} {{.CgroupVersion}} {{.CgroupDriver}}";
    match quiet(cmd!(sh, "docker info --format {server}")) {
        Ok(info) => {
            let fields: Vec<&str> = info.split_whitespace().collect();
            checks.push(Check::present("docker engine", format!("reachable, version {}", fields.first().unwrap_or(&"?"))));
            checks.push(match fields.get(1) {
                Some(&"true") => Check::present("memory limits", "the engine supports --memory"),
                _ => Check::missing("memory limits", "the engine does not support --memory", "enable the memory cgroup controller (cgroup_enable=memory on the kernel command line)"),
            });
            checks.push(Check::present("cgroup", format!("v{} ({} driver)", fields.get(2).unwrap_or(&"?"), fields.get(3).unwrap_or(&"?"))));
        }
        Err(_) => checks.push(Check::missing(
            "docker engine",
            "the daemon does not answer",
            "start it: sudo systemctl start docker (or dockerd &)",
        )),
    }

    checks.push(match find_libclang() {
        Some(path) => Check::present("libclang", path),
        None => Check::missing("libclang", "not found (RocksDB's bindings need it)", "apt-get install libclang-dev (or set LIBCLANG_PATH)"),
    });
    checks.push(match quiet(cmd!(sh, "c++ --version")) {
        Ok(version) => Check::present("C++ compiler", version.lines().next().unwrap_or("").to_string()),
        Err(_) => Check::missing("C++ compiler", "c++ not found (RocksDB is C++)", "apt-get install g++"),
    });
    checks.push(match quiet(cmd!(sh, "rustup target list --installed")) {
        Ok(list) if list.lines().any(|t| t == WASM_TARGET) => Check::present("wasm32 target", WASM_TARGET),
        Ok(_) => Check::missing("wasm32 target", "not installed", format!("rustup target add {WASM_TARGET} (cargo xtask repro/test do it for you)")),
        Err(_) => Check::missing("wasm32 target", "rustup not found", "install Rust with rustup (https://rustup.rs)"),
    });
    checks.push(match LocalLimit::select(local::forced().as_deref()) {
        Ok(probe) => Check::present("local limit", probe.summary()),
        Err(error) => Check::missing(
            "local limit",
            format!("{error:#}"),
            format!("unset {FORCE_VARIABLE} to use the first mechanism that works here (--backend local only)"),
        ),
    });
    let df = quiet(cmd!(sh, "df -Pk {root}"));
    let free_gib = df.ok().and_then(|out| out.lines().nth(1)?.split_whitespace().nth(3)?.parse::<u64>().ok()).map(|kib| kib >> 20);
    checks.push(match free_gib {
        Some(gib) if gib >= NEEDED_DISK_GIB => Check::present("disk space", format!("{gib} GiB free under {}", root.display())),
        Some(gib) => Check::missing("disk space", format!("{gib} GiB free under {}", root.display()), format!("free at least {NEEDED_DISK_GIB} GiB (the first build needs about 6)")),
        None => Check::missing("disk space", "df failed", "check the disk by hand: df -h"),
    });
    checks
}

fn find_libclang() -> Option<String> {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("LIBCLANG_PATH").map(Into::into).into_iter().collect();
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().contains("llvm-")).map(|p| p.join("lib")));
    }
    dirs.extend(["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/local/lib"].map(Into::into));
    dirs.iter().find_map(|dir| {
        std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libclang") && n.contains(".so"))
        })
    })
    .map(|p| p.display().to_string())
}

/// Prints the checks; true when nothing is missing.
pub fn doctor(sh: &Shell, root: &Path) -> bool {
    let checks = checks(sh, root);
    for check in &checks {
        match &check.fix {
            None => println!("ok       {:<15} {}", check.name, check.detail),
            Some(fix) => println!("MISSING  {:<15} {}\n         fix: {fix}", check.name, check.detail),
        }
    }
    let missing = checks.iter().filter(|c| c.fix.is_some()).count();
    if missing == 0 {
        println!("\neverything `cargo xtask repro` needs is here");
    } else {
        println!("\n{missing} missing: see the fixes above");
    }
    missing == 0
}
