//! `cargo xtask test`: everything a fresh clone needs before `cargo test` can pass, then the
//! tests. The guest is built first (installing the wasm32 target when missing), and the tests
//! are built exactly like the image's runner (static, release, explicit target) so they share
//! its compiled dependencies instead of building wasmtime and RocksDB a second time. Doc tests
//! are not run: the crates have none, and a closing "0 passed" line would read as "no tests".

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::artifacts::{build_guest, cargo, host_triple, STATIC_RUSTFLAGS};

pub fn test(sh: &Shell, extra: &[String]) -> Result<()> {
    let guest = build_guest(sh)?;
    let triple = host_triple(sh)?;
    let _guest = sh.push_env("GUEST_WASM", &guest);
    let _static = sh.push_env("RUSTFLAGS", STATIC_RUSTFLAGS);
    let cargo = cargo();
    cmd!(sh, "{cargo} test --release --target {triple} --workspace --exclude guest --all-targets {extra...}")
        .run()
        .context("tests failed")
}
