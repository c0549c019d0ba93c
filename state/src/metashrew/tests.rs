//! Both of metashrew's layouts written by a run, told apart and read back; tables in every
//! compression a node may use.

use bytes::Bytes;
use rocksdb::{DBCompressionType, Options, DB};

use super::keys::{self, Version};
use super::{compare, MetashrewDb, MetashrewStore};
use schema::NodeVerdict;

fn pairs(items: &[(&str, &str)]) -> Vec<(Bytes, Bytes)> {
    items.iter().map(|(k, v)| (Bytes::from(k.to_string()), Bytes::from(v.to_string()))).collect()
}

/// Three blocks: a key written twice in one block, an empty block, an empty value.
fn write_blocks(dir: &std::path::Path, label: Option<&str>, version: Version) {
    let store = MetashrewStore::open(dir, label, version).unwrap();
    store.commit_block(5, &[], &pairs(&[("/k", "a"), ("/seen", ""), ("/k", "b")])).unwrap();
    store.commit_block(7, &[], &[]).unwrap();
    store.commit_block(9, &[], &pairs(&[("/k", "c"), ("/e", "")])).unwrap();
    store.sync().unwrap();
}

fn records(dir: &std::path::Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = DB::open_for_read_only(&Options::default(), dir, false).unwrap();
    db.iterator(rocksdb::IteratorMode::Start).map(|r| r.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

#[test]
fn v10_is_written_in_binary_with_a_manifest_per_block_and_no_root() {
    let dir = tempfile::tempdir().unwrap();
    write_blocks(dir.path(), None, Version::V10);
    let le = |n: u32| n.to_le_bytes().to_vec();
    let entry = |height: u32, value: &str| [&height.to_le_bytes()[..], value.as_bytes()].concat();
    let manifest = |keys: &[&str]| keys::encode_manifest(keys.iter().map(|k| k.as_bytes()));
    let expected: Vec<(Vec<u8>, Vec<u8>)> = [
        ("/__INTERNAL/keys-at-height/5", Some(manifest(&["/k", "/seen"]))),
        ("/__INTERNAL/keys-at-height/9", Some(manifest(&["/e", "/k"]))),
        ("/__INTERNAL/tip-height", Some(le(9))),
        ("/e/0", Some(entry(9, ""))),
        ("/e/length", Some(le(1))),
        ("/k/0", Some(entry(5, "a"))),
        ("/k/1", Some(entry(5, "b"))),
        ("/k/2", Some(entry(9, "c"))),
        ("/k/length", Some(le(3))),
        ("/seen/0", Some(entry(5, ""))),
        ("/seen/length", Some(le(1))),
        ("__INTERNAL/height", Some(le(9))),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some((key.as_bytes().to_vec(), value?)))
    .collect();
    assert_eq!(records(dir.path()), expected);
}

#[test]
fn each_version_is_told_by_its_histories_and_reads_back_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut histories = Vec::new();
    for (version, label) in [(Version::V9, None), (Version::V10, None), (Version::V9, Some("alkanes")), (Version::V10, Some("alkanes"))] {
        let db = dir.path().join(format!("{version:?}-{label:?}"));
        write_blocks(&db, label, version);
        let node = MetashrewDb::open(&db, label, None).unwrap();
        assert_eq!((node.version(), node.tip_height().unwrap()), (version, Some(9)));
        assert_eq!(node.value_as_of(b"/k", 8).unwrap().as_deref(), Some(&b"b"[..]));
        assert_eq!(node.value_as_of(b"/k", 4).unwrap(), None);
        let read: Vec<_> = node.histories().map(Result::unwrap).collect();
        histories.push(read);
    }
    assert!(histories.windows(2).all(|pair| pair[0] == pair[1]), "{histories:?}");
    assert_eq!(histories[0][1], (b"/k".to_vec(), vec![(5, b"a".to_vec()), (5, b"b".to_vec()), (9, b"c".to_vec())]));
}

/// A v9 node and a v10 node that indexed the same blocks hold the same state.
#[test]
fn a_v9_node_and_a_v10_node_of_the_same_blocks_compare_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (v9, v10) = (dir.path().join("v9"), dir.path().join("v10"));
    write_blocks(&v9, None, Version::V9);
    write_blocks(&v10, None, Version::V10);
    let comparison = compare(&MetashrewDb::open(&v9, None, None).unwrap(), &MetashrewDb::open(&v10, None, None).unwrap()).unwrap();
    assert_eq!((comparison.verdict, comparison.keys_compared), (NodeVerdict::Identical, 3));
}

#[test]
fn a_run_does_not_write_one_version_into_a_database_of_the_other() {
    let dir = tempfile::tempdir().unwrap();
    write_blocks(dir.path(), None, Version::V9);
    let error = MetashrewStore::open(dir.path(), None, Version::V10).err().unwrap().to_string();
    assert!(error.contains("holds metashrew layout, not metashrew-v10"), "{error}");
}

/// A node's tables in each compression RocksDB has (metashrew's: LZ4 and Zstd by level) are
/// read: the build has every codec.
#[test]
fn tables_in_every_compression_are_read() {
    let dir = tempfile::tempdir().unwrap();
    for compression in [DBCompressionType::Snappy, DBCompressionType::Lz4, DBCompressionType::Zstd, DBCompressionType::Zlib, DBCompressionType::Bz2, DBCompressionType::Lz4hc] {
        let path = dir.path().join(format!("{compression:?}"));
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(compression);
        let db = DB::open(&options, &path).unwrap();
        let version = Version::V10;
        for n in 0..200u32 {
            db.put(keys::entry_key(b"/k", n), version.encode_entry(n, &[7; 100])).unwrap();
        }
        db.put(keys::length_key(b"/k"), version.encode_length(200)).unwrap();
        db.put(keys::TIP_HEIGHT, 199u32.to_le_bytes()).unwrap();
        db.flush().unwrap();
        drop(db);
        let node = MetashrewDb::open(&path, None, None).unwrap();
        let histories: Vec<_> = node.histories().map(Result::unwrap).collect();
        assert_eq!((histories.len(), histories[0].1.len()), (1, 200), "{compression:?}");
    }
}
