//! Every input of the committed fuzz corpus (host-runner/fuzz/corpus), replayed through the same
//! entry points the fuzz targets call: what once ran clean must stay clean.

use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert!(inputs.len() >= 2, "the {target} corpus is missing");
    inputs
}

#[test]
fn the_flush_decoder_corpus_replays_clean() {
    for input in corpus("flush_decoder") {
        host_runner::fuzzing::flush_decoder(&input);
    }
}

#[test]
fn the_host_abi_corpus_replays_clean() {
    for input in corpus("host_abi") {
        host_runner::fuzzing::host_abi(&input);
    }
}
