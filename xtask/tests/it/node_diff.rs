//! `cargo xtask diff --db A --db B` over two metashrew nodes' databases, built by hand in
//! metashrew's layout.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A node's database: `KEY/length` + `KEY/N = "{height}:{hex}"` per history, a tip, and block
/// hashes `(height, byte)`.
fn node(dir: &Path, histories: &[(&str, &[(u32, &str)])], tip: u32, hashes: &[(u32, u8)]) -> PathBuf {
    let path = dir.join("node");
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    let db = rocksdb::DB::open(&options, &path).unwrap();
    for (key, entries) in histories {
        db.put(format!("{key}/length"), entries.len().to_string()).unwrap();
        for (n, (height, value)) in entries.iter().enumerate() {
            db.put(format!("{key}/{n}"), format!("{height}:{}", hex::encode(value))).unwrap();
        }
    }
    db.put("/__INTERNAL/tip-height", tip.to_le_bytes()).unwrap();
    for (height, byte) in hashes {
        db.put(format!("/__INTERNAL/height-to-hash/{height}"), [*byte; 32]).unwrap();
    }
    path
}

fn diff(a: &Path, b: &Path, out: &Path) -> std::process::Output {
    xtask_command().args(["diff", "--db"]).arg(a).arg("--db").arg(b).arg("--out-dir").arg(out).output().unwrap()
}

#[test]
fn two_nodes_diverging_in_one_key_give_the_height_the_key_and_the_state_diff() {
    let (da, db, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), &[("/a", &[(1, "x")]), ("/b", &[(2, "one"), (7, "seven")])], 9, &[(7, 1)]);
    let b = node(db.path(), &[("/a", &[(1, "x")]), ("/b", &[(2, "one"), (7, "SEVEN")])], 9, &[(7, 1)]);
    let output = diff(&a, &b, out.path());
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("DIFFERENT — first at height 7 (tips 9 and 9): 1 keys differ there\n  \"/b\"\n"), "{stdout}");
    assert!(stdout.contains("-\"/b\" = \"seven\"\n+\"/b\" = \"SEVEN\"\n"), "{stdout}");
    let run = run_dir(out.path());
    assert_eq!(std::fs::read_to_string(run.join("a-state-at-7.txt")).unwrap(), "\"/a\" = \"x\"\n\"/b\" = \"seven\"\n");
    assert_eq!(read_json(&run.join("comparison.json"))["height"], 7);
}

#[test]
fn nodes_on_different_blocks_are_not_compared_and_a_bad_database_is_one_line() {
    let (da, db, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), &[("/k", &[(1, "v")])], 5, &[(3, 1), (4, 2)]);
    let b = node(db.path(), &[("/k", &[(1, "w")])], 5, &[(3, 1), (4, 3)]);
    let output = diff(&a, &b, out.path());
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("NOT COMPARED — the nodes indexed different blocks at height 4 (A "), "{stdout}");

    let missing = diff(&a, Path::new("/nonexistent/node"), out.path());
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.trim_end().ends_with("/nonexistent/node is not a RocksDB directory (no CURRENT file)"), "{stderr}");
}

/// A v10 node's database (`KEY/length` a u32 LE, `KEY/N = [u32 LE height][value]`), its tables
/// flushed in `compression`, as production nodes write them (metashrew: LZ4, and Zstd below L2).
fn v10_node(dir: &Path, histories: &[(&str, &[(u32, &str)])], tip: u32, compression: rocksdb::DBCompressionType) -> PathBuf {
    let path = dir.join("v10-node");
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    options.set_compression_type(compression);
    let db = rocksdb::DB::open(&options, &path).unwrap();
    for (key, entries) in histories {
        db.put(format!("{key}/length"), (entries.len() as u32).to_le_bytes()).unwrap();
        for (n, (height, value)) in entries.iter().enumerate() {
            db.put(format!("{key}/{n}"), [&height.to_le_bytes()[..], value.as_bytes()].concat()).unwrap();
        }
    }
    db.put("/__INTERNAL/tip-height", tip.to_le_bytes()).unwrap();
    db.flush().unwrap();
    path
}

/// A v9 node and a v10 node in Zstd tables holding the same state are identical; a change in the
/// v10 one is found at its height. (Before the codecs were built in, reading a Zstd table failed
/// with "ZSTD not supported in this build".)
#[test]
fn a_v9_node_and_a_v10_node_in_zstd_tables_are_compared_key_for_key() {
    let (d9, d10, d10b, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let histories: &[(&str, &[(u32, &str)])] = &[("/a", &[(1, "x")]), ("/b", &[(2, "one"), (7, "seven")])];
    let v9 = node(d9.path(), histories, 9, &[]);
    let v10 = v10_node(d10.path(), histories, 9, rocksdb::DBCompressionType::Zstd);
    let output = diff(&v9, &v10, out.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("IDENTICAL — 2 keys' histories agree up to height 9"), "{}", describe(&output));

    let changed = v10_node(d10b.path(), &[("/a", &[(1, "x")]), ("/b", &[(2, "one"), (7, "SEVEN")])], 9, rocksdb::DBCompressionType::Zstd);
    let output = diff(&v10, &changed, out.path());
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("DIFFERENT — first at height 7 (tips 9 and 9): 1 keys differ there\n  \"/b\"\n"), "{}", describe(&output));
}
