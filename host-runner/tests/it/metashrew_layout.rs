//! `host-runner run --layout metashrew` (v9) and `--layout metashrew-v10`: blocks committed as
//! metashrew commits them, checked record by record, read back by `metashrew-state`, and
//! compared by `metashrew-diff` with databases built by hand, with each other and with runs in
//! this runner's own layout.

use std::path::{Path, PathBuf};

use state::rocksdb;

use sha2::{Digest, Sha256};

use crate::support::{chain_guest_wasm, hex_of, runner, wat_guest, TestResult};

/// A guest whose block payload is a `KeyValueFlush`, flushed as it is. When the payload is not
/// empty it first flushes `/seen` = the value of `/k` as the block reads it with `__get` (at most
/// 127 bytes), so what a block sees is recorded too. An empty payload flushes nothing.
const ECHO_GUEST: &str = r#"(module
  (import "env" "__host_len" (func $host_len (result i32)))
  (import "env" "__load_input" (func $load_input (param i32)))
  (import "env" "__get_len" (func $get_len (param i32) (result i32)))
  (import "env" "__get" (func $get (param i32 i32)))
  (import "env" "__flush" (func $flush (param i32)))
  (memory (export "memory") 1)
  ;; The key "/k" (ArrayBuffer: length at 12) and the start of the /seen flush at 8192.
  (data (i32.const 12) "\02\00\00\00/k")
  (data (i32.const 8192) "\0a\05/seen\0a")
  (func (export "_start")
    (local $len i32) (local $seen i32)
    (local.set $len (call $host_len))
    (call $load_input (i32.const 16384))
    (if (i32.gt_u (local.get $len) (i32.const 4)) (then
      (local.set $seen (call $get_len (i32.const 16)))
      (call $get (i32.const 16) (i32.const 8201))
      (i32.store8 (i32.const 8200) (local.get $seen))
      (i32.store (i32.const 8188) (i32.add (local.get $seen) (i32.const 9)))
      (call $flush (i32.const 8192))
      ;; The payload after the height, as an ArrayBuffer (its length over the height).
      (i32.store (i32.const 16384) (i32.sub (local.get $len) (i32.const 4)))
      (call $flush (i32.const 16388)))))
)"#;

/// A `KeyValueFlush` of `pairs` (field 1, alternating key and value).
fn flush(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut message = Vec::new();
    for item in pairs.iter().flat_map(|(k, v)| [k, v]) {
        assert!(item.len() < 128, "one-byte lengths only");
        message.extend([0x0a, item.len() as u8]);
        message.extend(item.as_bytes());
    }
    message
}

/// The blocks of the tests: `/k` written at 5 and 9 (twice at 9), nothing at 7, an empty value.
fn blocks_file(dir: &Path) -> PathBuf {
    let blocks = [
        (5, flush(&[("/k", "a")])),
        (7, Vec::new()),
        (9, flush(&[("/k", "b"), ("/k", "c"), ("/e", "")])),
    ];
    let path = dir.join("blocks.txt");
    let text: String = blocks.iter().map(|(h, payload)| format!("{h} {}\n", hex_of(payload))).collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// `host-runner run` over `blocks` into `db` with `args`; the result JSON.
fn run(wasm: &Path, blocks: &Path, db: &Path, args: &[&str]) -> serde_json::Value {
    let out = db.with_extension("json");
    let output = runner().arg("run").arg("--wasm").arg(wasm).arg("--db").arg(db).arg("--blocks").arg(blocks).arg("--out").arg(&out).args(args).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// Every raw record of a RocksDB database, in key order, as text.
fn records(db: &Path) -> Vec<(String, String)> {
    let db = rocksdb::DB::open_for_read_only(&rocksdb::Options::default(), db, false).unwrap();
    db.iterator(rocksdb::IteratorMode::Start)
        .map(|entry| {
            let (key, value) = entry.unwrap();
            let text = |bytes: &[u8]| match std::str::from_utf8(bytes) {
                Ok(text) if !text.chars().any(char::is_control) => text.to_string(),
                _ => format!("0x{}", hex::encode(bytes)),
            };
            (text(&key), text(&value))
        })
        .collect()
}

fn smt_root(key: &str, value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(key);
    hasher.update(Sha256::digest(value));
    format!("0x{}", hex::encode(hasher.finalize()))
}

fn le(height: u32) -> String {
    format!("0x{}", hex::encode(height.to_le_bytes()))
}

#[test]
fn each_block_is_committed_record_for_record_as_metashrew_lays_it_out() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wasm = wat_guest(dir.path(), "echo", ECHO_GUEST);
    let db = dir.path().join("db");
    let result = run(&wasm, &blocks_file(dir.path()), &db, &["--layout", "metashrew"]);
    let expected: Vec<(String, String)> = [
        ("/__INTERNAL/tip-height", le(9)),
        ("/e/0", "9:".into()),
        ("/e/length", "1".into()),
        // One entry per occurrence, in flush order; block 9 read /k as of 8 ("a"), not its own.
        ("/k/0", "5:61".into()),
        ("/k/1", "9:62".into()),
        ("/k/2", "9:63".into()),
        ("/k/length", "3".into()),
        // Block 5 read /k before anything was written: an empty value.
        ("/seen/0", "5:".into()),
        ("/seen/1", "9:61".into()),
        ("/seen/length", "2".into()),
        ("__INTERNAL/height", le(9)),
        // The block's last pair; block 7 flushed nothing and keeps block 5's root.
        ("smt:root:5", smt_root("/k", "a")),
        ("smt:root:7", smt_root("/k", "a")),
        ("smt:root:9", smt_root("/e", "")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(records(&db), expected);
    assert_eq!(result["db_layout"], "metashrew");
    assert_eq!(format!("0x{}", result["state_root"].as_str().unwrap()), smt_root("/e", ""));
    assert_eq!(result["dump"], serde_json::json!(["\"/e\" = \"\"", "\"/k\" = \"c\"", "\"/seen\" = \"a\""]));
    Ok(())
}

#[test]
fn each_block_is_committed_record_for_record_as_metashrew_v10_lays_it_out() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wasm = wat_guest(dir.path(), "echo", ECHO_GUEST);
    let db = dir.path().join("db");
    let result = run(&wasm, &blocks_file(dir.path()), &db, &["--layout", "metashrew-v10"]);
    let entry = |height: u32, value: &str| format!("0x{}{}", hex::encode(height.to_le_bytes()), hex::encode(value));
    // `[u32 LE count]`, then `[u32 LE length][key]` each, sorted and each once.
    let manifest = |keys: &[&str]| {
        let mut bytes = (keys.len() as u32).to_le_bytes().to_vec();
        for key in keys {
            bytes.extend((key.len() as u32).to_le_bytes());
            bytes.extend(key.as_bytes());
        }
        format!("0x{}", hex::encode(bytes))
    };
    let expected: Vec<(String, String)> = [
        // Block 7 wrote nothing: no manifest.
        ("/__INTERNAL/keys-at-height/5", manifest(&["/k", "/seen"])),
        ("/__INTERNAL/keys-at-height/9", manifest(&["/e", "/k", "/seen"])),
        ("/__INTERNAL/tip-height", le(9)),
        ("/e/0", entry(9, "")),
        ("/e/length", le(1)),
        ("/k/0", entry(5, "a")),
        ("/k/1", entry(9, "b")),
        ("/k/2", entry(9, "c")),
        ("/k/length", le(3)),
        ("/seen/0", entry(5, "")),
        ("/seen/1", entry(9, "a")),
        ("/seen/length", le(2)),
        ("__INTERNAL/height", le(9)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(records(&db), expected);
    assert_eq!(result["db_layout"], "metashrew-v10");
    // v10 records no root.
    assert_eq!(result["state_root"], "0".repeat(64));
    assert_eq!(result["dump"], serde_json::json!(["\"/e\" = \"\"", "\"/k\" = \"c\"", "\"/seen\" = \"a\""]));
    Ok(())
}

/// `metashrew-state` of `db` at `height` (and `args`).
fn state_at(db: &Path, height: u32, args: &[&str]) -> String {
    let dump = db.with_extension(format!("{height}.txt"));
    let output = runner().arg("metashrew-state").arg("--db").arg(db).arg("--dump").arg(&dump).arg("--height").arg(height.to_string()).args(args).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    std::fs::read_to_string(dump).unwrap()
}

#[test]
fn a_labelled_run_reads_back_as_of_each_height_and_equals_this_runners_layout_at_the_tip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wasm = wat_guest(dir.path(), "echo", ECHO_GUEST);
    let blocks = blocks_file(dir.path());
    let db = dir.path().join("labelled");
    let labelled = run(&wasm, &blocks, &db, &["--layout", "metashrew", "--label", "lab"]);
    assert!(records(&db).iter().all(|(key, _)| key.starts_with("lab://") || key.starts_with("__INTERNAL/")), "{:?}", records(&db));
    let as_of = |h| state_at(&db, h, &["--label", "lab"]);
    assert_eq!(as_of(4), "");
    assert_eq!(as_of(5), "\"/k\" = \"a\"\n\"/seen\" = \"\"\n");
    assert_eq!(as_of(7), as_of(5));
    assert_eq!(as_of(9), "\"/e\" = \"\"\n\"/k\" = \"c\"\n\"/seen\" = \"a\"\n");
    // The same blocks in this runner's own layout: the same state, the real root.
    let ours = run(&wasm, &blocks, &dir.path().join("ours"), &[]);
    assert_eq!(ours["db_layout"], "trie");
    assert_eq!(ours["dump"], labelled["dump"]);
    assert_ne!(ours["state_root"], labelled["state_root"]);
    Ok(())
}

#[test]
fn the_layouts_refuse_each_others_databases_and_state_reads_either() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wasm = wat_guest(dir.path(), "echo", ECHO_GUEST);
    let blocks = blocks_file(dir.path());
    let (metashrew, ours) = (dir.path().join("metashrew"), dir.path().join("ours"));
    run(&wasm, &blocks, &metashrew, &["--layout", "metashrew"]);
    run(&wasm, &blocks, &ours, &[]);
    // `memrepro`: the name our layout had before, still accepted.
    for (db, layout) in [(&metashrew, "trie"), (&metashrew, "memrepro"), (&ours, "metashrew"), (&ours, "metashrew-v10")] {
        let output = runner().arg("run").arg("--wasm").arg(&wasm).arg("--db").arg(db).args(["--height", "10", "--layout", layout]).output()?;
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("column families") && stderr.contains("index into a new directory"), "{stderr}");
    }
    // Nor one version of metashrew's into the other's.
    let output = runner().arg("run").arg("--wasm").arg(&wasm).arg("--db").arg(&metashrew).args(["--height", "10", "--layout", "metashrew-v10"]).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code() == Some(2) && stderr.contains("holds metashrew layout, not metashrew-v10"), "{stderr}");
    // `state` tells the layout from the database.
    for db in [&metashrew, &ours] {
        let out = dir.path().join("state.json");
        let output = runner().arg("state").arg("--db").arg(db).arg("--out").arg(&out).output()?;
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let state: schema::StoredState = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
        assert_eq!(state.tip, Some(9));
        assert_eq!(state.dump, ["\"/e\" = \"\"", "\"/k\" = \"c\"", "\"/seen\" = \"a\""]);
    }
    let output = runner().arg("run").arg("--wasm").arg(&wasm).arg("--db").arg(dir.path().join("new")).args(["--height", "1", "--label", "x"]).output()?;
    assert!(String::from_utf8_lossy(&output.stderr).contains("--label is for --layout metashrew"));
    Ok(())
}

/// `metashrew-diff` of two databases: its exit code and JSON.
fn diff(a: &Path, b: &Path) -> (i32, serde_json::Value) {
    let output = runner().arg("metashrew-diff").arg("--db").arg(a).arg("--db").arg(b).output().unwrap();
    (output.status.code().unwrap(), serde_json::from_slice(&output.stdout).unwrap_or_default())
}

#[test]
fn a_run_compares_equal_to_the_node_database_built_by_hand_and_a_change_is_found_at_its_height() -> TestResult {
    let dir = tempfile::tempdir()?;
    let wasm = wat_guest(dir.path(), "echo", ECHO_GUEST);
    let ours = dir.path().join("ours");
    run(&wasm, &blocks_file(dir.path()), &ours, &["--layout", "metashrew"]);
    // A node's database as metashrew wrote it for the same blocks (from the layout's description).
    let node = |change: Option<(&str, &str)>| {
        let path = dir.path().join(format!("node-{}", change.is_some()));
        let db = rocksdb::DB::open(&{ let mut o = rocksdb::Options::default(); o.create_if_missing(true); o }, &path).unwrap();
        let mut records = vec![
            ("/k/length", "3"), ("/k/0", "5:61"), ("/k/1", "9:62"), ("/k/2", "9:63"),
            ("/seen/length", "2"), ("/seen/0", "5:"), ("/seen/1", "9:61"),
            ("/e/length", "1"), ("/e/0", "9:"),
        ];
        if let Some(changed) = change {
            records.retain(|(k, _)| *k != changed.0);
            records.push(changed);
        }
        for (key, value) in records {
            db.put(key, value).unwrap();
        }
        db.put("/__INTERNAL/tip-height", 9u32.to_le_bytes()).unwrap();
        path
    };
    let (code, same) = diff(&ours, &node(None));
    assert_eq!((code, same["verdict"].as_str()), (0, Some("identical")), "{same}");
    let (code, changed) = diff(&ours, &node(Some(("/k/2", "9:78"))));
    assert_eq!((code, changed["verdict"].as_str(), changed["height"].as_u64()), (1, Some("different_state"), Some(9)), "{changed}");
    assert_eq!(changed["keys"][0]["key"], "\"/k\"");
    Ok(())
}

#[test]
fn the_chain_guest_over_mainnet_0_to_589_in_metashrews_layouts_has_the_state_and_block_hashes_of_its_own_layout() -> TestResult {
    let dir = tempfile::tempdir()?;
    let chain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/blocks/mainnet-0-589.blk");
    let chain = chain.to_str().unwrap();
    let dumps: Vec<String> = ["metashrew", "metashrew-v10", "trie"]
        .iter()
        .map(|layout| {
            let dump = dir.path().join(format!("{layout}.txt"));
            let dump_arg = dump.to_str().unwrap();
            run(chain_guest_wasm(), Path::new(chain), &dir.path().join(layout), &["--layout", layout, "--dump", dump_arg]);
            std::fs::read_to_string(dump).unwrap()
        })
        .collect();
    assert!(dumps[0].lines().count() > 2000, "{} lines", dumps[0].lines().count());
    assert!(dumps[0] == dumps[1] && dumps[1] == dumps[2], "the layouts' states differ");
    // A v9 node and a v10 node of the same chain: every key's history agrees.
    let (code, same) = diff(&dir.path().join("metashrew"), &dir.path().join("metashrew-v10"));
    assert_eq!((code, same["verdict"].as_str(), same["block_hashes_compared"].as_u64()), (0, Some("identical"), Some(590)), "{same}");
    // The sync layer's block hashes, in display order: genesis and block 589.
    let db = rocksdb::DB::open_for_read_only(&rocksdb::Options::default(), dir.path().join("metashrew"), false)?;
    let hash = |h: u32| db.get(format!("/__INTERNAL/height-to-hash/{h}")).unwrap().map(hex::encode);
    assert_eq!(hash(0).as_deref(), Some("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"));
    assert_eq!(hash(589).as_deref().map(|h| &h[..8]), Some("00000000"));
    assert_eq!(hash(590), None);
    Ok(())
}
