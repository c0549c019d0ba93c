//! Real Bitcoin blocks through the pipeline: the chain guest over the real chain and the largest
//! real block, blocks fetched over RPC (from the stand-in: no Bitcoin Core runs here), and bad
//! blocks refused before anything is built or run.

use std::path::PathBuf;

use blocks::stand_in::{Behaviour, StandIn};

use crate::support::*;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/blocks").join(name)
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_chain_guest_over_the_real_chain_is_identical_under_the_default_profiles() {
    let chain = testdata("mainnet-0-589.blk");
    let out = tempfile::tempdir().unwrap();
    let output = xtask(&["repro", "--guest", "chain", "--blocks", path(&chain)], out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = report(out.path());
    assert_eq!(report["verdict"], "identical");
    let payload_bytes = std::fs::metadata(&chain).unwrap().len() - 590 * 8;
    assert_eq!(
        report["blocks"],
        format!("Bitcoin Core block file {}: heights 0..=589, 590 blocks, {payload_bytes} bytes", chain.display())
    );
    let profiles = report["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 2);
    for profile in profiles {
        assert_eq!(profile["outcome"], "completed", "{profile}");
        assert_eq!(profile["state_root"], profiles[0]["state_root"], "{profile}");
    }
}

#[test]
fn blocks_over_rpc_give_the_same_state_as_the_block_file() {
    let served = blocks::Source::detect(&testdata("mainnet-0-589.blk")).unwrap().index(Default::default(), blocks::blk::Start::Genesis).unwrap();
    let node = StandIn::on_loopback(served, Behaviour { credentials: Some("user:pw".into()), busy_first: 1, ..Default::default() }).unwrap();
    let (over_rpc, from_file) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rpc = ["repro", "--guest", "chain", "--rpc", &node.url, "--rpc-user", "user", "--rpc-password", "pw", "--from", "0", "--to", "200", "--limit", "256m", "--limit", "512m"];
    let output = xtask(&rpc, over_rpc.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let chain = testdata("mainnet-0-589.blk");
    let file = ["repro", "--guest", "chain", "--blocks", path(&chain), "--to", "200", "--limit", "256m", "--limit", "512m"];
    let output = xtask(&file, from_file.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let (a, b) = (report(over_rpc.path()), report(from_file.path()));
    assert_eq!(a["blocks_sha256"], b["blocks_sha256"]);
    assert_eq!(a["profiles"][0]["state_root"], b["profiles"][0]["state_root"]);
    assert!(a["blocks"].as_str().unwrap().starts_with(&format!("Bitcoin Core RPC {}: heights 0..=200, 201 blocks", node.url)), "{}", a["blocks"]);
}

#[test]
fn bad_blocks_are_refused_in_one_line_before_anything_is_built_or_run() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("blk00000.dat");
    let bytes = std::fs::read(testdata("mainnet-0-589.blk")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let twice = dir.path().join("twice.txt");
    std::fs::write(&twice, "1 00\n1 01\n").unwrap();
    let chain = testdata("mainnet-0-589.blk");
    let cases: [(&[&str], &str); 4] = [
        (&["--guest", "chain", "--blocks", path(&truncated)], "truncated block"),
        (&["--blocks", path(&twice)], "line 2: height 1 given twice (also on line 1)"),
        (&["--guest", "chain"], "--guest chain needs blocks: --blocks PATH, or --rpc URL --from H --to H"),
        (&["--guest", "chain", "--blocks", path(&chain), "--from", "580", "--to", "600"], "asks for height 600"),
    ];
    for (args, expected) in cases {
        let out = tempfile::tempdir().unwrap();
        let output = xtask(&[&["repro"], args].concat(), out.path());
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("==> [1/"), "{args:?}: a phase started before the blocks were checked: {stderr}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "{args:?}: a run directory was made");
    }
}
