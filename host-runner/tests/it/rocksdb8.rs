//! Against the RocksDB a node links: metashrew's rocksdb crate 0.21 is RocksDB 8.1.1, run here
//! through rocksdict 0.3.13 (`rocksdb8.py`). What we write in metashrew's layouts opens there
//! record for record, and what it writes in every compression a node may use reads back here.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use state::rocksdb;

use crate::support::{chain_guest_wasm, runner, TestResult};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/rocksdb8.py");

/// `rocksdb8.py ARGS`, with `stdin`; its stdout.
fn rocksdb8(args: &[&str], stdin: &str) -> String {
    let output = rocksdb8_output(args, stdin);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "rocksdb8.py {args:?} failed (run ci/install-prereqs.sh for rocksdict 0.3.13): {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

fn rocksdb8_output(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed: run ci/install-prereqs.sh");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Every record of `db` as our RocksDB reads it, as `rocksdb8.py read` prints them.
fn our_records(db: &Path) -> String {
    let db = rocksdb::DB::open_for_read_only(&rocksdb::Options::default(), db, false).unwrap();
    db.iterator(rocksdb::IteratorMode::Start).map(|r| r.unwrap()).map(|(k, v)| format!("{} {}\n", hex::encode(k), hex::encode(v))).collect()
}

#[test]
fn our_metashrew_layouts_open_record_for_record_in_rocksdb_8_1() -> TestResult {
    let dir = tempfile::tempdir()?;
    let chain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/blocks/mainnet-0-589.blk");
    for layout in ["metashrew", "metashrew-v10"] {
        let db = dir.path().join(layout);
        let output = runner().arg("run").arg("--wasm").arg(chain_guest_wasm()).arg("--blocks").arg(&chain).args(["--to", "100", "--layout", layout]).arg("--db").arg(&db).output()?;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        // Tables, not only a log: the run flushed its memtables before it reported.
        assert!(std::fs::read_dir(&db)?.any(|f| f.unwrap().path().extension().is_some_and(|e| e == "sst")), "{layout}: no table files");
        let theirs = rocksdb8(&["read", db.to_str().unwrap()], "");
        assert!(theirs.lines().count() > 400, "{layout}: {} records", theirs.lines().count());
        assert!(theirs == our_records(&db), "{layout}: RocksDB 8.1.1 reads other records than ours");
    }
    Ok(())
}

/// Why metashrew's layouts are written in table format 5: our own layout keeps this RocksDB's
/// default, format 7, which RocksDB 8.1.1 refuses.
#[test]
fn a_table_in_this_rocksdbs_default_format_is_refused_by_rocksdb_8_1() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("trie");
    let chain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/blocks/mainnet-0-589.blk");
    let output = runner().arg("run").arg("--wasm").arg(chain_guest_wasm()).arg("--blocks").arg(&chain).args(["--to", "10"]).arg("--db").arg(&db).output()?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let refused = rocksdb8_output(&["read", db.to_str().unwrap()], "");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("unsupported format_version: 7"), "{stderr}");
    Ok(())
}

/// A v10 node's records for two blocks (`/k` at 5 and 9, `/e` at 9) and the v9 spelling of the
/// same state, as `KEYHEX VALUEHEX` lines.
fn node_records(v10: bool) -> String {
    let entry = |height: u32, value: &str| match v10 {
        true => [&height.to_le_bytes()[..], value.as_bytes()].concat(),
        false => format!("{height}:{}", hex::encode(value)).into_bytes(),
    };
    let length = |n: u32| match v10 {
        true => n.to_le_bytes().to_vec(),
        false => n.to_string().into_bytes(),
    };
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"/k/0".to_vec(), entry(5, "a")),
        (b"/k/1".to_vec(), entry(9, "b")),
        (b"/k/length".to_vec(), length(2)),
        (b"/e/0".to_vec(), entry(9, "")),
        (b"/e/length".to_vec(), length(1)),
        (b"/__INTERNAL/tip-height".to_vec(), 9u32.to_le_bytes().to_vec()),
    ];
    // Enough of them to fill real table blocks, each compressed.
    records.extend((0..500u32).map(|i| (format!("/bulk/{i:04}/0").into_bytes(), entry(5, &"x".repeat(200)))));
    records.extend((0..500u32).map(|i| (format!("/bulk/{i:04}/length").into_bytes(), length(1))));
    records.iter().map(|(k, v)| format!("{} {}\n", hex::encode(k), hex::encode(v))).collect()
}

#[test]
fn node_databases_written_by_rocksdb_8_1_in_every_compression_are_read() -> TestResult {
    let dir = tempfile::tempdir()?;
    for compression in ["snappy", "lz4", "lz4hc", "zstd", "zlib", "bz2"] {
        for v10 in [false, true] {
            let db = dir.path().join(format!("{compression}-{v10}"));
            rocksdb8(&["write", db.to_str().unwrap(), compression], &node_records(v10));
            let dump = dir.path().join(format!("{compression}-{v10}.txt"));
            let output = runner().arg("metashrew-state").arg("--db").arg(&db).arg("--dump").arg(&dump).output()?;
            assert!(output.status.success(), "{compression}, v10 {v10}: {}", String::from_utf8_lossy(&output.stderr));
            let state = std::fs::read_to_string(&dump)?;
            assert_eq!(state.lines().count(), 502, "{compression}, v10 {v10}");
            assert!(state.starts_with("\"/bulk/0000\" = len=200 sha256=") && state.ends_with("\"/e\" = \"\"\n\"/k\" = \"b\"\n"), "{compression}, v10 {v10}: {state}");
        }
    }
    Ok(())
}
