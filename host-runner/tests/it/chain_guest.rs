//! The chain guest through the real runner over real Bitcoin blocks (`testdata/blocks`). What it
//! stores is checked against facts anyone can look up (block hashes, famous transactions) and
//! against counts made here, independently, with bitcoin_slices. The state is read through the
//! runner's dump (`--dump`), whose lines are built here with `schema::dump::line`.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Output;

use bitcoin_slices::{bsl, Visit, Visitor};
use schema::dump::line as dump_line;
use state::trie::TrieStore;
use sha2::{Digest, Sha256};

use crate::support::{chain_guest_wasm, runner};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BTC: u64 = 100_000_000;
/// The genesis coinbase's output script: pay to Satoshi's first public key.
const GENESIS_SCRIPT: &str = "4104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac";
const GENESIS_COINBASE: &str = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b";
/// Block 9's coinbase, spent by the first person-to-person payment (block 170).
const BLOCK_9_COINBASE: &str = "0437cd7f8525ceed2324359c2d0ba26006d92d856a9c20fa0241106ee5a597c9";
const BLOCK_9_SCRIPT: &str = "410411db93e1dcdb8a016b49840f8c53bc1eb68a382e97b1482ecad7b148a6909a5cb2e0eaddfb84ccf9744464f82e160bfa9b8b64f9d4c03f999b8643f656b412a3ac";
/// Satoshi to Hal Finney: 10 BTC to Hal, 40 BTC back to block 9's key.
const BLOCK_170_PAYMENT: &str = "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16";
const HAL_FINNEY_SCRIPT: &str = "4104ae1a62fe09c5f51b13905f07f06b99a2f7159b2225f374cd378d71302fa28414e7aab37397f554a7df5f142c21c1b7303b8a0626f1baded5c72a704f7e6cd84cac";

#[test]
fn mainnet_0_to_589_stores_the_known_block_hashes_and_every_transaction_and_output() -> TestResult {
    let chain = testdata("mainnet-0-589.blk");
    let blocks = blocks_of_blk_file(&chain);
    assert_eq!(blocks.len(), 590);
    let reference = Reference::of(&blocks);
    let dir = tempfile::tempdir()?;
    let indexed = index(&chain, dir.path());

    for (height, hash) in [
        (0, "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"),
        (170, "00000000d1145790a8694403d4063f323d499e655c83426834d4ce2f8dd4a2ee"),
        (589, "00000000b96305605f1eb5ab800024ff3fa260deedf6005e1e3987daa11d3935"),
    ] {
        indexed.assert_has(&key("/blockhash/", &[&height_bytes(height)]), &hash_bytes(hash));
    }
    indexed.assert_has(&key("/header/", &[&height_bytes(0)]), &blocks[0][..80]);
    assert_eq!(indexed.count("/blockhash/"), 590);
    assert_eq!(indexed.count("/header/"), 590);
    // Counted here: 605 transactions, 615 outputs, 24 spends (4 of an output of the same block).
    assert_eq!((reference.transactions, reference.outputs, reference.spends.len()), (605, 615, 24));
    assert_eq!(indexed.count("/tx/"), reference.transactions);
    assert_eq!(indexed.count("/output/"), reference.outputs);
    assert_eq!(indexed.count("/spent/"), reference.spends.len());
    for height in 0..590 {
        indexed.assert_has(&key("/unknown-prevouts/", &[&height_bytes(height)]), &0u32.to_le_bytes());
    }

    indexed.assert_has(&outpoint_key("/output/", GENESIS_COINBASE, 0), &output(50 * BTC, GENESIS_SCRIPT));
    // Block 9's key got 50 BTC at 9; its change moved on (170, 181, 182, 183) and 18 BTC of it
    // (block 248) is still unspent at 589.
    let block_9_script = hex::decode(BLOCK_9_SCRIPT)?;
    assert_eq!(reference.unspent_balance(&block_9_script), 18 * BTC);
    indexed.assert_has(&balance_key(&block_9_script), &(18 * BTC).to_le_bytes());
    Ok(())
}

#[test]
fn block_170_spends_block_9s_coinbase_pays_hal_finney_10_btc_and_debits_block_9s_key() -> TestResult {
    // Heights 0..=170 as a directory of HEIGHT.bin files: the state just after block 170.
    let blocks = blocks_of_blk_file(&testdata("mainnet-0-589.blk"));
    let dir = tempfile::tempdir()?;
    let bin_dir = dir.path().join("blocks");
    std::fs::create_dir(&bin_dir)?;
    for (height, block) in blocks.iter().enumerate().take(171) {
        std::fs::write(bin_dir.join(format!("{height}.bin")), block)?;
    }
    let indexed = index(&bin_dir, dir.path());

    let mut spent_by = hash_bytes(BLOCK_170_PAYMENT);
    spent_by.extend_from_slice(&0u32.to_le_bytes());
    indexed.assert_has(&outpoint_key("/spent/", BLOCK_9_COINBASE, 0), &spent_by);
    let location = [height_bytes(170), 1u32.to_le_bytes()].concat();
    indexed.assert_has(&key("/tx/", &[&hash_bytes(BLOCK_170_PAYMENT)]), &location);
    indexed.assert_has(&outpoint_key("/output/", BLOCK_170_PAYMENT, 0), &output(10 * BTC, HAL_FINNEY_SCRIPT));
    indexed.assert_has(&outpoint_key("/output/", BLOCK_170_PAYMENT, 1), &output(40 * BTC, BLOCK_9_SCRIPT));
    // 50 BTC credited at block 9, debited when spent, 40 BTC of change credited back.
    indexed.assert_has(&balance_key(&hex::decode(BLOCK_9_SCRIPT)?), &(40 * BTC).to_le_bytes());
    indexed.assert_has(&balance_key(&hex::decode(HAL_FINNEY_SCRIPT)?), &(10 * BTC).to_le_bytes());
    assert_eq!(indexed.count("/spent/"), 1, "block 170's is the first spend of the chain");
    Ok(())
}

#[test]
fn large_single_blocks_store_every_transaction_and_output_and_count_unknown_prevouts() -> TestResult {
    for (height, hash, transactions) in [
        (574200, "0000000000000000001602407ac49862a7bca9d00f7f402db20b7be2f5de59d2", 3315),
        (702861, "000000000000000000000c835b2adcaedc20fdf6ee440009c249452c726dafae", 2500),
    ] {
        let block = std::fs::read(testdata(&format!("mainnet/{height}.bin")))?;
        let reference = Reference::of(std::slice::from_ref(&block));
        let dir = tempfile::tempdir()?;
        let bin_dir = dir.path().join("blocks");
        std::fs::create_dir(&bin_dir)?;
        std::fs::write(bin_dir.join(format!("{height}.bin")), &block)?;
        let indexed = index(&bin_dir, dir.path());

        indexed.assert_has(&key("/blockhash/", &[&height_bytes(height)]), &hash_bytes(hash));
        assert_eq!(reference.transactions, transactions);
        assert_eq!(indexed.count("/tx/"), transactions, "block {height}");
        assert_eq!(indexed.count("/output/"), reference.outputs, "block {height}");
        // Without history only the spends of this block's own outputs are found.
        let in_block = reference.spends.iter().filter(|spend| reference.created.contains_key(*spend)).count();
        assert_eq!(indexed.count("/spent/"), in_block, "block {height}");
        let unknown = u32::try_from(reference.spends.len() - in_block)?;
        indexed.assert_has(&key("/unknown-prevouts/", &[&height_bytes(height)]), &unknown.to_le_bytes());
        assert_eq!(indexed.output_sum()?, reference.output_sum, "block {height}");
        if height == 702861 {
            assert_eq!(reference.output_sum, 2_883_682_728_990);
        }
    }
    Ok(())
}

#[test]
fn a_block_that_does_not_parse_is_logged_and_traps_with_nothing_written() -> TestResult {
    let genesis = &blocks_of_blk_file(&testdata("mainnet-0-589.blk"))[0];
    let truncated = &genesis[..genesis.len() - 1];
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    let output = runner()
        .args(["run", "--height", "1", "--payload", &hex::encode(truncated)])
        .arg("--wasm")
        .arg(chain_guest_wasm())
        .arg("--db")
        .arg(&db)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "a trapped block: {stderr}");
    assert!(stderr.contains("[guest] block 1 does not parse: MoreBytesNeeded"), "{stderr}");
    let dump = runner().arg("dump").arg("--db").arg(&db).output()?;
    assert!(dump.status.success() && dump.stdout.is_empty(), "nothing committed: {}", String::from_utf8_lossy(&dump.stdout));
    Ok(())
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/blocks").join(name)
}

/// What the runner committed after indexing `blocks` with the chain guest.
struct Indexed {
    db: PathBuf,
    dump: HashSet<String>,
}

/// `host-runner run --blocks BLOCKS --dump FILE` with the chain guest, which must complete.
fn index(blocks: &Path, dir: &Path) -> Indexed {
    let db = dir.join("db");
    let dump_file = dir.join("dump.txt");
    let output: Output = runner()
        .arg("run")
        .arg("--wasm")
        .arg(chain_guest_wasm())
        .arg("--db")
        .arg(&db)
        .arg("--blocks")
        .arg(blocks)
        .arg("--dump")
        .arg(&dump_file)
        .output()
        .expect("running host-runner");
    assert!(output.status.success(), "indexing {} failed: {}", blocks.display(), String::from_utf8_lossy(&output.stderr));
    let dump = std::fs::read_to_string(&dump_file).expect("the dump file");
    Indexed { db, dump: dump.lines().map(str::to_string).collect() }
}

impl Indexed {
    fn assert_has(&self, key: &[u8], value: &[u8]) {
        let line = dump_line(key, value);
        assert!(self.dump.contains(&line), "the dump lacks {line}");
    }

    /// The number of keys starting with `prefix` (an ASCII prefix: the dump shows it as is).
    fn count(&self, prefix: &str) -> usize {
        let quoted = format!("\"{prefix}");
        self.dump.iter().filter(|line| line.starts_with(&quoted)).count()
    }

    /// The values of every stored output, added up (read from the state: the dump shows long
    /// values as a digest).
    fn output_sum(&self) -> Result<u64, Box<dyn std::error::Error>> {
        let store = TrieStore::open_read_only(&self.db)?;
        let mut sum = 0;
        for entry in store.entries() {
            let (key, value) = entry?;
            if key.starts_with(b"/output/") {
                sum += u64::from_le_bytes(value[..8].try_into()?);
            }
        }
        Ok(sum)
    }
}

/// The blocks of a Bitcoin Core block file (magic, u32 LE size, block), in file order: for
/// mainnet-0-589.blk, height order.
fn blocks_of_blk_file(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut blocks = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        assert_eq!(rest[..4], [0xf9, 0xbe, 0xb4, 0xd9], "mainnet magic");
        let size = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
        blocks.push(rest[8..8 + size].to_vec());
        rest = &rest[8 + size..];
    }
    blocks
}

/// Counts made here with bitcoin_slices, independently of the guest.
#[derive(Default)]
struct Reference {
    transactions: usize,
    outputs: usize,
    output_sum: u64,
    /// Every output created: its outpoint, value and script.
    created: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    /// Every outpoint an input spends (coinbases excluded).
    spends: Vec<Vec<u8>>,
    pending_outputs: Vec<(u64, Vec<u8>)>,
}

impl Reference {
    fn of(blocks: &[Vec<u8>]) -> Self {
        let mut reference = Reference::default();
        for block in blocks {
            let parsed = bsl::Block::visit(block, &mut reference).expect("a real block parses");
            assert!(parsed.remaining().is_empty());
        }
        reference
    }

    /// What `script` holds: its outputs that no input spends.
    fn unspent_balance(&self, script: &[u8]) -> u64 {
        let spent: HashSet<&Vec<u8>> = self.spends.iter().collect();
        let unspent = self.created.iter().filter(|(outpoint, (_, to))| to == script && !spent.contains(outpoint));
        unspent.map(|(_, (value, _))| value).sum()
    }
}

impl Visitor for Reference {
    fn visit_tx_in(&mut self, _vin: usize, tx_in: &bsl::TxIn) -> ControlFlow<()> {
        let prevout = tx_in.prevout().as_ref();
        let coinbase = prevout[..32] == [0; 32] && prevout[32..] == [0xff; 4];
        if !coinbase {
            self.spends.push(prevout.to_vec());
        }
        ControlFlow::Continue(())
    }

    fn visit_tx_out(&mut self, _vout: usize, tx_out: &bsl::TxOut) -> ControlFlow<()> {
        self.outputs += 1;
        self.output_sum += tx_out.value();
        self.pending_outputs.push((tx_out.value(), tx_out.script_pubkey().to_vec()));
        ControlFlow::Continue(())
    }

    fn visit_transaction(&mut self, tx: &bsl::Transaction) -> ControlFlow<()> {
        self.transactions += 1;
        let txid: [u8; 32] = tx.txid_sha2().into();
        for (vout, output) in std::mem::take(&mut self.pending_outputs).into_iter().enumerate() {
            self.created.insert([&txid[..], &(vout as u32).to_le_bytes()].concat(), output);
        }
        ControlFlow::Continue(())
    }
}

fn key(prefix: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = prefix.as_bytes().to_vec();
    parts.iter().for_each(|part| key.extend_from_slice(part));
    key
}

fn height_bytes(height: u32) -> [u8; 4] {
    height.to_le_bytes()
}

/// A hash as Bitcoin displays it, in the internal byte order the guest stores.
fn hash_bytes(display: &str) -> Vec<u8> {
    let mut bytes = hex::decode(display).unwrap();
    bytes.reverse();
    bytes
}

fn outpoint_key(prefix: &str, txid: &str, vout: u32) -> Vec<u8> {
    key(prefix, &[&hash_bytes(txid), &vout.to_le_bytes()])
}

fn output(value: u64, script_hex: &str) -> Vec<u8> {
    [value.to_le_bytes().to_vec(), hex::decode(script_hex).unwrap()].concat()
}

fn balance_key(script: &[u8]) -> Vec<u8> {
    key("/balance/", &[&Sha256::digest(script)])
}
