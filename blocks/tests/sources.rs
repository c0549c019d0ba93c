//! Every block source over the real blocks in testdata/blocks, and each kind of bad input.

use std::path::{Path, PathBuf};

use blocks::bitcoin::{decode_block, display};
use blocks::blk::{BlockFiles, Start};
use blocks::stand_in::{Behaviour, StandIn};
use blocks::{Block, BlockArgs, HeightRange, Source};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/blocks").join(name)
}

fn chain_file() -> PathBuf {
    testdata("mainnet-0-589.blk")
}

fn hash(block: &Block) -> String {
    display(&decode_block(&block.payload).unwrap().hash)
}

fn error(result: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", result.unwrap_err())
}

const GENESIS: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
const H170: &str = "00000000d1145790a8694403d4063f323d499e655c83426834d4ce2f8dd4a2ee";
const H589: &str = "00000000b96305605f1eb5ab800024ff3fa260deedf6005e1e3987daa11d3935";

fn all_of(source: &Source) -> Vec<Block> {
    source.read(HeightRange::default(), Start::Genesis).unwrap()
}

/// The records of the real block file: (magic+size frame, block).
fn records() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(chain_file()).unwrap();
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        records.push(bytes[at..at + 8 + size].to_vec());
        at += 8 + size;
    }
    records
}

#[test]
fn a_block_file_gives_the_real_chain_in_order() {
    let source = Source::detect(&chain_file()).unwrap();
    assert!(matches!(source, Source::BlockFiles(_)), "{source:?}");
    let blocks = all_of(&source);
    assert_eq!(blocks.len(), 590);
    assert!(blocks.iter().enumerate().all(|(i, b)| b.height == i as u32));
    assert_eq!((hash(&blocks[0]).as_str(), hash(&blocks[170]).as_str(), hash(&blocks[589]).as_str()), (GENESIS, H170, H589));
    let some = source.read(HeightRange { from: Some(168), to: Some(171) }, Start::Genesis).unwrap();
    assert_eq!(some.iter().map(|b| b.height).collect::<Vec<_>>(), [168, 169, 170, 171]);
    assert_eq!(hash(&some[2]), H170);
    let err = error(source.read(HeightRange { from: Some(1000), to: None }, Start::Genesis));
    assert!(err.starts_with("the chain in the files ends at height 589") && err.ends_with("--from 1000 asks for height 1000"), "{err}");
}

#[test]
fn block_files_out_of_order_across_files_with_a_stale_branch_are_put_in_chain_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = records();
    // A stale sibling of block 5: the same parent, another nonce (the sources check links and
    // decoding, not proof of work).
    let mut stale = records[5].clone();
    stale[8 + 76] ^= 0xff;
    records.reverse();
    let (first, second) = records.split_at(300);
    std::fs::write(dir.path().join("blk00000.dat"), first.concat()).unwrap();
    std::fs::write(dir.path().join("blk00001.dat"), [second.concat(), stale, vec![0; 4096]].concat()).unwrap();
    let source = Source::detect(dir.path()).unwrap();
    assert_eq!(source.describe(), format!("2 Bitcoin Core block files in {}", dir.path().display()));
    let blocks = all_of(&source);
    assert_eq!(blocks, all_of(&Source::detect(&chain_file()).unwrap()));
}

/// `record` (magic, size, block) with its header's parent, target and nonce replaced.
fn reheader(record: &[u8], prev: [u8; 32], bits: u32, nonce: u32) -> Vec<u8> {
    let mut record = record.to_vec();
    record[8 + 4..8 + 36].copy_from_slice(&prev);
    record[8 + 72..8 + 76].copy_from_slice(&bits.to_le_bytes());
    record[8 + 76..8 + 80].copy_from_slice(&nonce.to_le_bytes());
    record
}

fn hash_of(record: &[u8]) -> [u8; 32] {
    blocks::bitcoin::header(&record[8..88]).unwrap().hash
}

#[test]
fn the_chain_with_the_most_work_is_followed_not_the_longest_nor_the_first_stored() {
    let records = records();
    // A stale branch off block 5, stored before the real blocks 6..=9 and longer than them (8
    // blocks), at regtest's target: 2 work each against the real blocks' 2^32.
    let mut stale = Vec::new();
    let mut parent = hash_of(&records[5]);
    for n in 0..8 {
        let block = reheader(&records[6 + n % 4], parent, 0x207fffff, n as u32);
        parent = hash_of(&block);
        stale.push(block);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blk00000.dat");
    std::fs::write(&file, [records[..6].concat(), stale.concat(), records[6..10].concat()].concat()).unwrap();
    let source = Source::detect(&file).unwrap();
    let blocks = all_of(&source);
    assert_eq!(blocks, all_of(&Source::detect(&chain_file()).unwrap())[..10]);

    // With as much work behind it, the branch stored first wins (Bitcoin Core keeps the first it
    // received); with more, the other.
    let rival = |bits: u32| {
        let block = reheader(&records[6], hash_of(&records[5]), bits, 7);
        std::fs::write(&file, [records[..6].concat(), block.clone(), records[6..7].concat()].concat()).unwrap();
        (hash_of(&block), all_of(&Source::detect(&file).unwrap()))
    };
    let (first_stored, same_work) = rival(0x1d00ffff);
    assert_eq!(decode_block(&same_work[6].payload).unwrap().hash, first_stored);
    let (harder, more_work) = rival(0x1c7fffff);
    assert_eq!(decode_block(&more_work[6].payload).unwrap().hash, harder);

    // --tip-hash follows the chain to the block named, stale or not.
    let args = |tip: &str| BlockArgs { blocks: Some(file.clone()), tip_hash: Some(tip.into()), ..Default::default() };
    let real_6 = display(&hash_of(&records[6]));
    let chosen = args(&real_6).read().unwrap().unwrap().1;
    assert_eq!(decode_block(&chosen[6].payload).unwrap().hash, hash_of(&records[6]));
    let err = error(args(&display(&hash_of(&records[9]))).read());
    assert!(err.contains("is not in the block files"), "{err}");
}

#[test]
fn a_start_hash_is_checked_against_the_height_its_block_states() {
    let block = std::fs::read(testdata("mainnet/574200.bin")).unwrap();
    let record = [&[0xf9, 0xbe, 0xb4, 0xd9][..], &(block.len() as u32).to_le_bytes(), &block].concat();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blk00000.dat");
    std::fs::write(&file, record).unwrap();
    let source = Source::detect(&file).unwrap();
    let hash = blocks::bitcoin::header(&block[..80]).unwrap().hash;
    let at = |height: u32| source.read(HeightRange { from: Some(height), to: None }, Start::Hash { hash, height });
    assert_eq!(at(574200).unwrap()[0].height, 574200);
    let err = error(at(574199));
    assert!(err.contains(&format!("--start-hash {} is the block at height 574200 (its coinbase says so, BIP34), not --from 574199", display(&hash))), "{err}");
}

#[test]
fn obfuscated_block_files_are_read_with_xor_dat_and_refused_without_it() {
    // As Bitcoin Core writes them: each file XORed from its own offset 0, the preallocated
    // tail left as plain zeros.
    let dir = tempfile::tempdir().unwrap();
    let key = [0x3c, 0x91, 0x05, 0xe2, 0x7a, 0x00, 0xd4, 0x18];
    let records = records();
    for (name, part) in [("blk00000.dat", &records[..301]), ("blk00001.dat", &records[301..])] {
        let mut bytes = part.concat();
        bytes.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 8]);
        bytes.extend([0; 4096]);
        std::fs::write(dir.path().join(name), &bytes).unwrap();
    }
    let err = error(Source::detect(dir.path()).unwrap().read(HeightRange::default(), Start::Genesis));
    assert!(err.contains("at byte 0: wrong magic") && err.contains("without its xor.dat?"), "{err}");
    std::fs::write(dir.path().join("xor.dat"), key).unwrap();
    let source = Source::detect(dir.path()).unwrap();
    assert!(source.describe().ends_with("XOR-obfuscated"), "{}", source.describe());
    assert_eq!(all_of(&source), all_of(&Source::detect(&chain_file()).unwrap()));
    std::fs::write(dir.path().join("xor.dat"), [1, 2, 3]).unwrap();
    let err = error(Source::detect(&dir.path().join("blk00000.dat")));
    assert!(err.ends_with("xor.dat: 3 bytes, expected an 8-byte key"), "{err}");
}

#[test]
fn a_block_stored_twice_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let records = records();
    std::fs::write(dir.path().join("blk00000.dat"), [records.concat(), records[100].clone()].concat()).unwrap();
    assert_eq!(all_of(&Source::detect(dir.path()).unwrap()), all_of(&Source::detect(&chain_file()).unwrap()));
}

#[test]
fn data_after_the_zero_padding_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blk00000.dat");
    let bytes = std::fs::read(chain_file()).unwrap();
    std::fs::write(&path, [bytes.clone(), vec![0; 100], records()[3].clone()].concat()).unwrap();
    let err = error(Source::detect(&path).unwrap().read(HeightRange::default(), Start::Genesis));
    assert!(err.ends_with(&format!("at byte {}: data after zero padding (a damaged or overwritten file)", bytes.len())), "{err}");
}

#[test]
fn a_start_hash_without_to_ignores_stale_blocks_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = records();
    let mut stale = records[5].clone();
    stale[8 + 76] ^= 0xff;
    records.push(stale);
    std::fs::write(dir.path().join("blk00000.dat"), records.concat()).unwrap();
    let args = BlockArgs { blocks: Some(dir.path().to_path_buf()), start_hash: Some(H170.into()), from: Some(170), ..Default::default() };
    let blocks = args.read().unwrap().unwrap().1;
    assert_eq!((blocks.len(), blocks[0].height, hash(&blocks[0])), (420, 170, H170.to_string()));
    assert_eq!(hash(blocks.last().unwrap()), H589);
}

#[test]
fn a_start_hash_starts_the_chain_there() {
    let files = BlockFiles::open(&chain_file()).unwrap();
    let genesis_chain = blocks::blk::read(&files, Start::Genesis, HeightRange::default()).unwrap();
    let start = Start::Hash { hash: decode_block(&genesis_chain[170].payload).unwrap().hash, height: 170 };
    let blocks = blocks::blk::read(&files, start, HeightRange { from: Some(170), to: Some(175) }).unwrap();
    assert_eq!(blocks, genesis_chain[170..=175]);
    let args = BlockArgs { blocks: Some(chain_file()), start_hash: Some(H170.into()), from: Some(170), to: Some(172), ..Default::default() };
    assert_eq!(args.read().unwrap().unwrap().1, genesis_chain[170..=172]);
}

#[test]
fn a_gap_in_the_chain_is_named_and_indexing_up_to_it_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = records();
    records.remove(300);
    std::fs::write(dir.path().join("blk00000.dat"), records.concat()).unwrap();
    let source = Source::detect(dir.path()).unwrap();
    let err = error(source.read(HeightRange::default(), Start::Genesis));
    assert!(
        err.starts_with("gap in the chain: the chain in the files ends at height 299 (block ")
            && err.contains("and 289 blocks do not connect to it")
            && err.ends_with("give --to 299 to index up to it"),
        "{err}"
    );
    let up_to_the_gap = source.read(HeightRange { from: Some(290), to: Some(299) }, Start::Genesis).unwrap();
    let whole = all_of(&Source::detect(&chain_file()).unwrap());
    assert_eq!(up_to_the_gap, whole[290..=299]);
    let err = error(source.read(HeightRange { from: None, to: Some(400) }, Start::Genesis));
    assert!(err.ends_with("--to 400 asks for height 400"), "{err}");
}

#[test]
fn damaged_block_files_are_refused_with_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blk00000.dat");
    let bytes = std::fs::read(chain_file()).unwrap();
    let records = records();
    let offset_of_2: usize = records[..2].iter().map(Vec::len).sum();

    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = error(Source::detect(&path).unwrap().read(HeightRange::default(), Start::Genesis));
    let last = records.last().unwrap().len() - 8;
    assert!(err.contains(&format!("truncated block: {last} bytes announced, {} left in the file", last - 10)), "{err}");

    let mut wrong_magic = bytes.clone();
    wrong_magic[offset_of_2] = 0xaa;
    std::fs::write(&path, &wrong_magic).unwrap();
    let err = error(Source::detect(&path).unwrap().read(HeightRange::default(), Start::Genesis));
    assert!(err.contains(&format!("at byte {offset_of_2}: wrong magic aabeb4d9")), "{err}");

    let mut undecodable = bytes.clone();
    undecodable[offset_of_2 + 8 + 80] = 0x09; // block 2 claims 9 transactions; it holds one
    std::fs::write(&path, &undecodable).unwrap();
    let err = error(Source::detect(&path).unwrap().read(HeightRange::default(), Start::Genesis));
    assert!(err.starts_with(&format!("block 2 (")) && err.contains(&format!("at byte {offset_of_2}: not a Bitcoin block")), "{err}");

    let mut testnet_among_mainnet = bytes.clone();
    testnet_among_mainnet[offset_of_2..offset_of_2 + 4].copy_from_slice(&[0x0b, 0x11, 0x09, 0x07]);
    std::fs::write(&path, &testnet_among_mainnet).unwrap();
    let err = error(Source::detect(&path).unwrap().read(HeightRange::default(), Start::Genesis));
    assert!(err.contains("a testnet3 block among mainnet blocks"), "{err}");
}

fn bin_dir(blocks: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in blocks {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

#[test]
fn a_directory_of_height_bin_files_gives_its_blocks_decoded() {
    let big = ["574200", "702861"].map(|h| std::fs::read(testdata(&format!("mainnet/{h}.bin"))).unwrap());
    let dir = bin_dir(&[("574200.bin", &big[0]), ("702861.bin", &big[1])]);
    let source = Source::detect(dir.path()).unwrap();
    let blocks = all_of(&source);
    assert_eq!(blocks.iter().map(|b| (b.height, b.payload.len())).collect::<Vec<_>>(), [(574200, 1_245_250), (702861, 1_381_836)]);
    assert_eq!(hash(&blocks[1]), "000000000000000000000c835b2adcaedc20fdf6ee440009c249452c726dafae");
    let err = error(source.read(HeightRange { from: Some(702860), to: Some(702861) }, Start::Genesis));
    assert_eq!(err, format!("gap in the chain: --from 702860 --to 702861 asks for height 702860 but {} has no 702860.bin", dir.path().display()));
    // A bound asks for a stretch of chain; one block is a stretch of one.
    let err = error(source.read(HeightRange { from: Some(574200), to: None }, Start::Genesis));
    assert!(err.starts_with("gap in the chain: --from 574200 asks for height 574201"), "{err}");
    let only = source.read(HeightRange { from: Some(574200), to: Some(574200) }, Start::Genesis).unwrap();
    assert_eq!(only, blocks[..1]);
    let one = Source::detect(&testdata("mainnet/702861.bin")).unwrap();
    assert_eq!(one.describe(), format!("raw block {}", testdata("mainnet/702861.bin").display()));
    assert_eq!(all_of(&one), blocks[1..]);
}

#[test]
fn bad_height_bin_directories_are_refused() {
    let chain = all_of(&Source::detect(&chain_file()).unwrap());
    let twice = bin_dir(&[("5.bin", &chain[5].payload), ("05.bin", &chain[5].payload)]);
    let err = error(Source::detect(twice.path()).unwrap().read(HeightRange::default(), Start::Genesis));
    assert!(err.starts_with("height 5 given twice"), "{err}");
    let misnamed = bin_dir(&[("5.bin", &chain[5].payload), ("six.bin", &chain[6].payload)]);
    let err = error(Source::detect(misnamed.path()).unwrap().read(HeightRange::default(), Start::Genesis));
    assert!(err.ends_with("expected only HEIGHT.bin files, found `six.bin`"), "{err}");
    let swapped = bin_dir(&[("100.bin", &chain[101].payload), ("101.bin", &chain[100].payload)]);
    let err = error(Source::detect(swapped.path()).unwrap().read(HeightRange::default(), Start::Genesis));
    assert!(err.contains("does not follow block 100"), "{err}");
    let garbage = bin_dir(&[("7.bin", b"not a block at all, though long enough to hold a header of eighty bytes........")]);
    let err = error(Source::detect(garbage.path()).unwrap().read(HeightRange::default(), Start::Genesis));
    assert!(err.starts_with("block 7 (") && err.contains("not a Bitcoin block"), "{err}");
}

#[test]
fn text_files_stay_as_they_were_and_binary_junk_is_not_taken_for_text() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("blocks.txt");
    std::fs::write(&text, "1 ff\n2\n3 00\n").unwrap();
    let source = Source::detect(&text).unwrap();
    assert!(matches!(source, Source::Text(_)));
    assert_eq!(source.read(HeightRange { from: Some(2), to: None }, Start::Genesis).unwrap().len(), 2);
    let junk = dir.path().join("junk");
    std::fs::write(&junk, [0xffu8, 0xfe, 0x00, 0x01, 0x80]).unwrap();
    let err = error(Source::detect(&junk).unwrap().read(HeightRange::default(), Start::Genesis));
    assert!(err.ends_with("is neither `HEIGHT HEX` text nor a Bitcoin Core block file (no known network magic at its start)"), "{err}");
    let err = error(Source::detect(&dir.path().join("missing")));
    assert!(err.ends_with("missing: no such file or directory"), "{err}");
}

fn stand_in(behaviour: Behaviour) -> StandIn {
    StandIn::on_loopback(Source::detect(&chain_file()).unwrap().index(HeightRange::default(), Start::Genesis).unwrap(), behaviour).unwrap()
}

fn rpc_args(url: &str, from: u32, to: u32) -> BlockArgs {
    BlockArgs { rpc: Some(url.into()), from: Some(from), to: Some(to), ..Default::default() }
}

#[test]
fn rpc_fetches_the_same_blocks_as_the_block_file() {
    let node = stand_in(Behaviour { credentials: Some("alice:secret".into()), ..Default::default() });
    let args = BlockArgs { rpc_user: Some("alice".into()), rpc_password: Some("secret".into()), ..rpc_args(&node.url, 160, 175) };
    let (source, blocks) = args.read().unwrap().unwrap();
    assert_eq!(source.describe(), format!("Bitcoin Core RPC {}", node.url));
    let chain = all_of(&Source::detect(&chain_file()).unwrap());
    assert_eq!(blocks, chain[160..=175]);
    assert_eq!(node.requests(), 1 + 2 * 16);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".cookie"), "alice:secret\n").unwrap();
    let args = BlockArgs { rpc_cookie: Some(dir.path().join(".cookie")), ..rpc_args(&node.url, 0, 0) };
    assert_eq!(args.read().unwrap().unwrap().1, chain[..1]);

    let args = BlockArgs { rpc_user: Some("alice".into()), rpc_password: Some("wrong".into()), ..rpc_args(&node.url, 0, 0) };
    assert!(error(args.read()).ends_with("refused the credentials (HTTP 401): check --rpc-cookie or --rpc-user/--rpc-password"));
    let args = BlockArgs { rpc_cookie: Some(dir.path().join("gone")), ..rpc_args(&node.url, 0, 0) };
    assert!(error(args.read()).contains("(it exists only while the node runs)"));
}

#[test]
fn rpc_retries_a_busy_or_warming_node() {
    let node = stand_in(Behaviour { busy_first: 2, warming_up_first: 1, ..Default::default() });
    let blocks = rpc_args(&node.url, 5, 6).read().unwrap().unwrap().1;
    assert_eq!(blocks.len(), 2);
    assert_eq!(node.requests(), 3 + 1 + 2 * 2);
}

#[test]
fn rpc_names_an_unreachable_syncing_or_short_node() {
    // Nothing listens on port 1.
    let unreachable = "http://127.0.0.1:1";
    let err = error(BlockArgs { rpc_wait: Some(1), ..rpc_args(unreachable, 0, 1) }.read());
    assert!(err.starts_with(&format!("Bitcoin Core at {unreachable} did not answer `getblockchaininfo` (")), "{err}");
    assert!(err.contains(" s): unreachable: "), "{err}");

    let syncing = stand_in(Behaviour { syncing_headers_ahead: Some(1000), ..Default::default() });
    let err = error(rpc_args(&syncing.url, 580, 600).read());
    assert_eq!(err, "the node is still syncing: it has blocks up to height 589 (headers to 1589); --to 600 is beyond them");

    let node = stand_in(Behaviour::default());
    let err = error(rpc_args(&node.url, 580, 600).read());
    assert_eq!(err, "height 600 is missing: the node's chain (main) ends at height 589");
    let err = error(BlockArgs { rpc: Some(node.url.clone()), ..Default::default() }.read());
    assert_eq!(err, "--rpc needs --from and --to: which heights to fetch");
    assert_eq!(error(rpc_args(&node.url, 3, 1).read()), "--from 3 is above --to 1");
}

/// Every source's index reads each block when asked, the same bytes `read` gives, and knows
/// each block's height by its hash.
#[test]
fn an_index_reads_each_block_when_asked_and_finds_it_by_hash() {
    let chain = all_of(&Source::detect(&chain_file()).unwrap());
    let dir = bin_dir(&[("100.bin", &chain[100].payload), ("101.bin", &chain[101].payload), ("102.bin", &chain[102].payload)]);
    let text = tempfile::NamedTempFile::new().unwrap();
    blocks::text::write(&chain[..20], &mut std::fs::File::create(text.path()).unwrap()).unwrap();
    let node = stand_in(Behaviour::default());
    let sources = [
        (Source::detect(&chain_file()).unwrap(), HeightRange::default(), 0..=589),
        (Source::detect(dir.path()).unwrap(), HeightRange::default(), 100..=102),
        (Source::detect(text.path()).unwrap(), HeightRange::default(), 0..=19),
        (rpc_args(&node.url, 160, 175).source().unwrap().unwrap(), HeightRange { from: Some(160), to: Some(175) }, 160..=175),
    ];
    for (source, range, heights) in sources {
        let index = source.index(range, Start::Genesis).unwrap();
        assert_eq!((index.first(), index.tip()), heights.clone().into_inner(), "{}", source.describe());
        for height in [*heights.start(), *heights.end(), (heights.start() + heights.end()) / 2] {
            assert_eq!(index.read(height).unwrap(), chain[height as usize], "{} {height}", source.describe());
            assert_eq!(index.height_of(&index.hash(height).unwrap()), Some(height));
        }
        index.check().unwrap();
        assert!(error(index.read(heights.end() + 1)).starts_with(&format!("no block at height {}", heights.end() + 1)));
    }
    let stress = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(stress.path(), "1 3200000014000000\n").unwrap();
    let err = error(Source::detect(stress.path()).unwrap().index(HeightRange::default(), Start::Genesis));
    assert!(err.starts_with("block 1: not a Bitcoin block"), "{err}");
}

/// What a node asks of Bitcoin Core, answered from block files: counts, hashes, a block as hex
/// and described, and the errors for what is not there.
#[test]
fn the_server_answers_the_calls_a_node_makes_as_bitcoin_core_does() {
    let node = stand_in(Behaviour { credentials: Some("u:p".into()), ..Default::default() });
    let client = blocks::rpc::Client::new(&node.url, &blocks::rpc::Auth::UserPassword("u".into(), "p".into()), std::time::Duration::from_secs(5)).unwrap();
    let call = |method: &str, params: serde_json::Value| client.call(method, params);
    assert_eq!(call("getblockcount", serde_json::json!([])).unwrap(), 589);
    assert_eq!(call("getbestblockhash", serde_json::json!([])).unwrap(), H589);
    assert_eq!(call("getblockhash", serde_json::json!([170])).unwrap(), H170);
    let hex_block = call("getblock", serde_json::json!([H170, 0])).unwrap();
    assert_eq!(hash(&Block { height: 170, payload: hex::decode(hex_block.as_str().unwrap()).unwrap() }), H170);
    // The first transfer of bitcoin: two transactions, its neighbours linked.
    let described = call("getblock", serde_json::json!([H170])).unwrap();
    assert_eq!((described["height"].as_u64(), described["nTx"].as_u64(), described["confirmations"].as_u64()), (Some(170), Some(2), Some(420)));
    assert_eq!(described["tx"][1], "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16");
    assert_eq!((described["bits"].as_str(), described["difficulty"].as_f64()), (Some("1d00ffff"), Some(1.0)));
    assert!(described["previousblockhash"].is_string() && described["nextblockhash"].is_string());
    let genesis = call("getblock", serde_json::json!([GENESIS, 1])).unwrap();
    assert!(genesis.get("previousblockhash").is_none(), "{genesis}");
    let header = call("getblockheader", serde_json::json!([H589])).unwrap();
    assert!(header.get("tx").is_none() && header.get("nextblockhash").is_none() && header["height"] == 589, "{header}");
    assert_eq!(call("getblockchaininfo", serde_json::json!([])).unwrap()["blocks"], 589);
    assert!(call("getnetworkinfo", serde_json::json!([])).unwrap()["subversion"].as_str().unwrap().starts_with("/memrepro-blocks:"));
    assert!(error(call("getblockhash", serde_json::json!([590]))).ends_with("RPC error -8: Block height out of range"));
    assert!(error(call("getblock", serde_json::json!(["00".repeat(32), 0]))).ends_with("RPC error -5: Block not found"));
    assert!(error(call("sendrawtransaction", serde_json::json!(["00"]))).ends_with("Method not found: sendrawtransaction"));
}

#[test]
fn a_generated_chain_is_read_back_whole_and_the_same_seed_gives_the_same_bytes() {
    use blocks::generate::{write_chain, Recipe};
    let recipe = Recipe { blocks: 300, seed: 7, max_transactions: 20 };
    let (mut once, mut again, mut other) = (Vec::new(), Vec::new(), Vec::new());
    write_chain(recipe, &mut once).unwrap();
    write_chain(recipe, &mut again).unwrap();
    write_chain(Recipe { seed: 8, ..recipe }, &mut other).unwrap();
    assert!(once == again && once != other);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blk00000.dat");
    std::fs::write(&file, &once).unwrap();
    let source = Source::detect(&file).unwrap();
    assert!(source.describe().contains("block file"), "{}", source.describe());
    let blocks = all_of(&source);
    assert_eq!(blocks.len(), 300);
    // Every block decodes (its merkle root checked), states its height, and after maturity holds
    // transactions spending earlier outputs.
    let mut spending = 0;
    for block in &blocks {
        assert_eq!(blocks::bitcoin::coinbase_height(&block.payload), Some(block.height));
        spending += blocks::bitcoin::summarize(&block.payload).unwrap().txids.len() - 1;
    }
    assert!(spending > 1000, "{spending} spending transactions");
}
