//! `cargo xtask test`: everything a fresh clone needs before `cargo test` can pass, then the
//! tests. The guests are built first (installing the wasm32 target when missing) and handed to
//! the tests as `GUEST_WASM` and `CHAIN_GUEST_WASM`, and the faulty node (an example target of
//! host-runner's tests) as `FAULTY_NODE`; the tests are built exactly like the image's
//! runner (static, release, explicit target) so they share its compiled dependencies instead of
//! building wasmtime and RocksDB a second time. Doc tests are not run: the crates have none, and
//! a closing "0 passed" line would read as "no tests".

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::artifacts::{build_faulty_node, build_guest, build_guest_package, cargo, host_triple, STATIC_RUSTFLAGS};
use crate::exit::Exit;
use crate::flags;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, flags: flags::Test) -> Result<Exit> {
    test(&ws.sh, &flags.cargo_test_args).map(|()| Exit::Success)
}

pub fn test(sh: &Shell, extra: &[String]) -> Result<()> {
    let guest = build_guest(sh)?;
    let chain_guest = build_guest_package(sh, "chain-guest")?;
    let triple = host_triple(sh)?;
    let faulty_node = build_faulty_node(sh, &triple)?;
    let _faulty_node = sh.push_env("FAULTY_NODE", &faulty_node);
    let _guest = sh.push_env("GUEST_WASM", &guest);
    let _chain_guest = sh.push_env("CHAIN_GUEST_WASM", &chain_guest);
    let _static = sh.push_env("RUSTFLAGS", STATIC_RUSTFLAGS);
    let cargo = cargo();
    cmd!(sh, "{cargo} test --release --target {triple} --workspace --exclude guest --exclude guest-abi --exclude chain-guest --all-targets {extra...}")
        .run()
        .context("tests failed")
}
