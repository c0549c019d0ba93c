//! Reading metashrew databases built by hand, as metashrew lays them out: the state as of a
//! height, labels, metashrew's own keys left out, and each kind of damage named with its key.

use std::path::Path;

use state::rocksdb;

use crate::support::runner;

type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// `KEY/length` and `KEY/N = "{height}:{hex}"` for `entries`, under `prefix`.
fn history(prefix: &str, key: &str, entries: &[(u32, &[u8])]) -> Records {
    let key = format!("{prefix}{key}");
    let mut records = vec![(format!("{key}/length").into_bytes(), entries.len().to_string().into_bytes())];
    for (n, (height, value)) in entries.iter().enumerate() {
        records.push((format!("{key}/{n}").into_bytes(), format!("{height}:{}", hex::encode(value)).into_bytes()));
    }
    records
}

/// metashrew's own keys for a tip at `tip` (the sync layer's without the label).
fn internal(prefix: &str, tip: u32) -> Records {
    vec![
        (format!("{prefix}/__INTERNAL/tip-height").into_bytes(), tip.to_le_bytes().to_vec()),
        (b"__INTERNAL/height".to_vec(), tip.to_le_bytes().to_vec()),
        (format!("{prefix}smt:root:{tip}").into_bytes(), vec![7; 32]),
        (format!("/__INTERNAL/height-to-hash/{tip}").into_bytes(), vec![9; 32]),
    ]
}

fn database(dir: &Path, records: &[Records]) -> std::path::PathBuf {
    let path = dir.join("node");
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    let db = rocksdb::DB::open(&options, &path).unwrap();
    for (key, value) in records.iter().flatten() {
        db.put(key, value).unwrap();
    }
    path
}

/// `host-runner metashrew-state` over `db`: the dump, or the error's last line.
fn state(db: &Path, args: &[&str]) -> Result<String, String> {
    let dump = db.parent().unwrap().join("dump.txt");
    let output = runner().arg("metashrew-state").arg("--db").arg(db).arg("--dump").arg(&dump).args(args).output().unwrap();
    match output.status.code() {
        Some(0) => Ok(std::fs::read_to_string(dump).unwrap()),
        Some(2) => Err(String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("").to_string()),
        other => panic!("exit {other:?}: {}", String::from_utf8_lossy(&output.stderr)),
    }
}

#[test]
fn a_key_written_at_5_and_9_reads_as_of_4_5_7_and_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &[history("", "/k", &[(5, b"five"), (9, b"nine")]), history("", "/other", &[(1, b"x")]), internal("", 9)]);
    let as_of = |h: u32| state(&db, &["--height", &h.to_string()]).unwrap();
    assert_eq!(as_of(4), "\"/other\" = \"x\"\n");
    assert_eq!(as_of(5), "\"/k\" = \"five\"\n\"/other\" = \"x\"\n");
    assert_eq!(as_of(7), "\"/k\" = \"five\"\n\"/other\" = \"x\"\n");
    assert_eq!(as_of(9), "\"/k\" = \"nine\"\n\"/other\" = \"x\"\n");
    // Without --height: the tip.
    assert_eq!(state(&db, &[]).unwrap(), as_of(9));
}

#[test]
fn a_key_flushed_twice_in_a_block_reads_as_its_later_value_and_an_empty_value_is_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &[history("", "/twice", &[(3, b"first"), (3, b"second")]), history("", "/empty", &[(2, b"")]), internal("", 3)]);
    assert_eq!(state(&db, &[]).unwrap(), "\"/empty\" = \"\"\n\"/twice\" = \"second\"\n");
}

#[test]
fn keys_come_out_in_key_order_whatever_the_order_of_their_length_records() {
    // "a!/length" < "a/b/length" < "a/length", but "a" < "a!" < "a/b".
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &[history("", "a/b", &[(1, b"3")]), history("", "a", &[(1, b"1")]), history("", "a!", &[(1, b"2")]), internal("", 1)]);
    assert_eq!(state(&db, &[]).unwrap(), "\"a\" = \"1\"\n\"a!\" = \"2\"\n\"a/b\" = \"3\"\n");
}

#[test]
fn a_label_selects_its_keys_and_metashrews_own_keys_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(
        dir.path(),
        &[history("alkanes://", "/k", &[(4, b"labelled")]), internal("alkanes://", 4), history("other://", "/k", &[(4, b"another label")])],
    );
    assert_eq!(state(&db, &["--label", "alkanes"]).unwrap(), "\"/k\" = \"labelled\"\n");
    // Without the label every key is the guest's as stored.
    let all = state(&db, &["--height", "4"]).unwrap();
    assert_eq!(all, "\"alkanes:///k\" = \"labelled\"\n\"other:///k\" = \"another label\"\n");
}

#[test]
fn each_kind_of_damage_is_an_error_naming_the_key() {
    let good = || history("", "/good", &[(1, b"ok")]);
    let cases: Vec<(Records, &str)> = vec![
        (
            history("", "/missing", &[(1, b"a"), (2, b"b")]).into_iter().filter(|(k, _)| k != b"/missing/1").collect(),
            "damaged history of \"/missing\": entry 1 of 2 is missing",
        ),
        (vec![(b"/len/length".to_vec(), b"2x".to_vec()), (b"/len/0".to_vec(), b"1:00".to_vec())], "damaged history of \"/len\": length \"2x\" is not a decimal number"),
        (history("", "/back", &[(7, b"a"), (5, b"b")]), "damaged history of \"/back\": entry 1 is at height 5, after entry 0 at height 7"),
        (vec![(b"/hex/length".to_vec(), b"1".to_vec()), (b"/hex/0".to_vec(), b"3:zz".to_vec())], "damaged history of \"/hex\": entry 0: value `zz` is not hex"),
        (vec![(b"/orphan/0".to_vec(), b"3:00".to_vec())], "damaged database: \"/orphan/0\" is neither a history entry counted by a length record nor one of metashrew's keys"),
    ];
    for (records, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path(), &[good(), records, internal("", 9)]);
        let error = state(&db, &[]).expect_err(expected);
        assert!(error.ends_with(expected), "{error}\nexpected: {expected}");
    }
}

#[test]
fn a_database_without_a_tip_needs_a_height_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &[history("", "/k", &[(1, b"v")])]);
    assert!(state(&db, &[]).unwrap_err().ends_with("the database has no /__INTERNAL/tip-height: give --height"));
    assert_eq!(state(&db, &["--height", "1"]).unwrap(), "\"/k\" = \"v\"\n");
    let err = state(&dir.path().join("nothing"), &["--height", "1"]).unwrap_err();
    assert!(err.ends_with("is not a RocksDB directory (no CURRENT file)"), "{err}");
}

/// `host-runner metashrew-diff` of two nodes: its exit code and JSON.
fn compare(a: &Path, b: &Path) -> (i32, serde_json::Value) {
    compare_with(a, b, &[])
}

fn compare_with(a: &Path, b: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let output = runner().arg("metashrew-diff").arg("--db").arg(a).arg("--db").arg(b).args(args).output().unwrap();
    if output.status.code() == Some(2) {
        return (2, serde_json::json!(String::from_utf8_lossy(&output.stderr).trim()));
    }
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap(), json)
}

fn two_nodes(a: &[Records], b: &[Records]) -> (tempfile::TempDir, tempfile::TempDir) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    database(da.path(), a);
    database(db.path(), b);
    (da, db)
}

fn hash_at(height: u32, byte: u8) -> Records {
    vec![(format!("/__INTERNAL/height-to-hash/{height}").into_bytes(), vec![byte; 32])]
}

#[test]
fn two_nodes_that_diverge_at_a_height_in_one_key_are_found_there() {
    let shared = || [history("", "/a", &[(1, b"x"), (8, b"y")]), hash_at(7, 1), internal("", 9)];
    let (a, b) = two_nodes(
        &[shared().as_slice(), &[history("", "/b", &[(2, b"one"), (7, b"seven"), (9, b"nine")])]].concat(),
        &[shared().as_slice(), &[history("", "/b", &[(2, b"one"), (7, b"SEVEN"), (9, b"nine")])]].concat(),
    );
    let (code, json) = compare(&a.path().join("node"), &b.path().join("node"));
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["verdict"], "different_state");
    assert_eq!(json["height"], 7);
    assert_eq!(json["keys_differing_there"], 1);
    assert_eq!(json["keys_compared"], 2);
    assert_eq!(
        json["keys"],
        serde_json::json!([{ "key": "\"/b\"", "histories": [[[2, "\"one\""], [7, "\"seven\""], [9, "\"nine\""]], [[2, "\"one\""], [7, "\"SEVEN\""], [9, "\"nine\""]]] }])
    );
}

#[test]
fn nodes_that_indexed_different_blocks_are_told_apart_before_their_state() {
    let state = || history("", "/k", &[(3, b"v")]);
    let (a, b) = two_nodes(
        &[state(), hash_at(3, 1), hash_at(4, 2), internal("", 5)],
        &[history("", "/k", &[(3, b"other")]), hash_at(3, 1), hash_at(4, 3), internal("", 5)],
    );
    let (code, json) = compare(&a.path().join("node"), &b.path().join("node"));
    assert_eq!(code, 3, "{json}");
    assert_eq!((&json["verdict"], &json["height"]), (&serde_json::json!("different_blocks"), &serde_json::json!(4)));
    assert_eq!(json["block_hashes"], serde_json::json!([hex::encode([2; 32]), hex::encode([3; 32])]));
}

#[test]
fn nodes_with_the_same_history_up_to_the_lower_tip_are_identical() {
    let (a, b) = two_nodes(
        &[history("", "/k", &[(1, b"v")]), history("", "/later", &[(6, b"only A got here")]), internal("", 6)],
        &[history("", "/k", &[(1, b"v")]), internal("", 5)],
    );
    let (code, json) = compare(&a.path().join("node"), &b.path().join("node"));
    assert_eq!((code, &json["verdict"]), (0, &serde_json::json!("identical")), "{json}");
    assert_eq!(json["tips"], serde_json::json!([6, 5]));
}

#[test]
fn a_key_only_one_node_has_is_a_divergence_and_guest_keys_that_look_internal_are_the_guests() {
    let (a, b) = two_nodes(
        &[history("", "/k", &[(1, b"v")]), history("", "/only-a", &[(3, b"x")]), history("", "smt:root:7", &[(2, b"guest")]), internal("", 5)],
        &[history("", "/k", &[(1, b"v")]), history("", "smt:root:7", &[(2, b"guest")]), internal("", 5)],
    );
    let (code, json) = compare(&a.path().join("node"), &b.path().join("node"));
    assert_eq!(code, 1, "{json}");
    assert_eq!((&json["height"], &json["keys_compared"], &json["keys_differing_there"]), (&serde_json::json!(3), &serde_json::json!(3), &serde_json::json!(1)));
    assert_eq!(json["keys"][0]["histories"], serde_json::json!([[[3, "\"x\""]], []]));
    let state = state(&a.path().join("node"), &[]).unwrap();
    assert_eq!(state, "\"/k\" = \"v\"\n\"/only-a\" = \"x\"\n\"smt:root:7\" = \"guest\"\n");
}

#[test]
fn labelled_nodes_compare_the_sync_layers_unlabelled_block_hashes_and_damage_is_exit_2() {
    let (a, b) = two_nodes(
        &[history("alkanes://", "/k", &[(3, b"v")]), hash_at(3, 1), internal("alkanes://", 5)],
        &[history("alkanes://", "/k", &[(3, b"v")]), hash_at(3, 2), internal("alkanes://", 5)],
    );
    let (code, json) = compare_with(&a.path().join("node"), &b.path().join("node"), &["--label", "alkanes"]);
    assert_eq!((code, &json["verdict"], &json["height"]), (3, &serde_json::json!("different_blocks"), &serde_json::json!(3)), "{json}");

    let (good, damaged) = two_nodes(
        &[history("", "/k", &[(1, b"v")]), internal("", 2)],
        &[history("", "/k", &[(1, b"v")]), vec![(b"/stray/0".to_vec(), b"1:00".to_vec())], internal("", 2)],
    );
    let (code, error) = compare(&good.path().join("node"), &damaged.path().join("node"));
    assert_eq!(code, 2);
    assert!(error.as_str().unwrap().ends_with("damaged database: \"/stray/0\" is neither a history entry counted by a length record nor one of metashrew's keys"), "{error}");
}
