//! A Bitcoin chain indexer for the metashrew ABI: what real indexers store, block by block.
//!
//! Input: `height u32 LE ++ consensus-serialized block`, parsed with `bitcoin_slices`. A block
//! that does not parse, or has bytes after its last transaction, is logged and traps: nothing of
//! it is written.
//!
//! Key layout. Numbers are little-endian; hashes are in internal byte order (as inside blocks:
//! the reverse of the hex Bitcoin displays); an outpoint is `txid ++ vout u32`, as in an input.
//!
//! | key | value |
//! |---|---|
//! | `/blockhash/` height u32 | the block hash (32 bytes) |
//! | `/header/` height u32 | the 80-byte header |
//! | `/tx/` txid | height u32 ++ position in the block u32 (the raw bytes stay in the block) |
//! | `/output/` outpoint | value u64 ++ script_pubkey |
//! | `/spent/` outpoint | the spending txid ++ its input index u32 |
//! | `/balance/` SHA-256(script_pubkey) | u64: credited by each output, debited when it is spent |
//! | `/unknown-prevouts/` height u32 | u32: the block's inputs whose output is not in the state |
//!
//! Views (`() -> i32`, input after the height): `blockhash` (a height u32) and `header` (a height
//! u32) give what block indexed there; `balance` (SHA-256 of a script_pubkey) its balance;
//! `output` (an outpoint) the output; `tx` (a txid) where it is. Each reads the state as of the
//! view's height and gives an empty buffer where there is nothing.
//!
//! An input finds its output through the store's `get`: the state before this block, or this
//! block's pending writes for an output created earlier in the same block. An input whose output
//! is unknown (a block indexed without its history) is counted and skipped. Memory and key counts
//! grow with the block: every write is held until the block's one flush.

use core::ops::ControlFlow;

use bitcoin_slices::sha2::{Digest, Sha256};
use bitcoin_slices::{bsl, Visit, Visitor};
use guest_abi::{self as abi, KeyPointer};

type Hash = [u8; 32];
/// `txid ++ vout u32 LE`: the 36 bytes an input names its previous output by.
type OutPoint = [u8; 36];

#[no_mangle]
pub extern "C" fn _start() {
    // A panic aborts the block (an `unreachable` trap); say why in the host's log first.
    std::panic::set_hook(Box::new(|info| abi::log(&format!("guest panicked: {info}"))));
    let (height, block) = abi::height_and_block();
    let mut indexer = BlockIndexer::new(height);
    if let Err(problem) = index_block(&block, &mut indexer) {
        abi::log(&format!("block {height} does not parse: {problem}"));
        std::process::abort();
    }
    KeyPointer::keyword("/unknown-prevouts/")
        .select(&height.to_le_bytes())
        .set(indexer.unknown_prevouts.to_le_bytes().to_vec());
    abi::flush();
}

/// The value under `prefix ++ the view's input`, as of the view's height.
fn view(prefix: &str) -> i32 {
    let input = abi::input();
    abi::export_bytes(&KeyPointer::keyword(prefix).select(&input[4..]).get())
}

#[no_mangle]
pub extern "C" fn blockhash() -> i32 {
    view("/blockhash/")
}

#[no_mangle]
pub extern "C" fn header() -> i32 {
    view("/header/")
}

#[no_mangle]
pub extern "C" fn balance() -> i32 {
    view("/balance/")
}

#[no_mangle]
pub extern "C" fn output() -> i32 {
    view("/output/")
}

#[no_mangle]
pub extern "C" fn tx() -> i32 {
    view("/tx/")
}

/// Parses the whole block, indexing each transaction as soon as it has been read.
fn index_block(block: &[u8], indexer: &mut BlockIndexer) -> Result<(), String> {
    let parsed = bsl::Block::visit(block, indexer).map_err(|error| format!("{error:?}"))?;
    match parsed.remaining().len() {
        0 => Ok(()),
        extra => Err(format!("{extra} bytes after the last transaction")),
    }
}

/// Indexes a block as `bitcoin_slices` walks it: a transaction's inputs and outputs are visited
/// first, then the transaction itself (with its txid), which is when they are applied.
struct BlockIndexer {
    height: u32,
    position: u32,
    prevouts: Vec<OutPoint>,
    outputs: Vec<(u64, Vec<u8>)>,
    unknown_prevouts: u32,
}

impl BlockIndexer {
    fn new(height: u32) -> Self {
        Self { height, position: 0, prevouts: Vec::new(), outputs: Vec::new(), unknown_prevouts: 0 }
    }

    /// Spends the inputs, then creates the outputs, then records where the transaction is.
    fn index_transaction(&mut self, txid: Hash) {
        for (vin, prevout) in core::mem::take(&mut self.prevouts).iter().enumerate() {
            if !is_coinbase(prevout) {
                self.spend(prevout, &txid, vin as u32);
            }
        }
        for (vout, (value, script)) in core::mem::take(&mut self.outputs).into_iter().enumerate() {
            create_output(&outpoint(&txid, vout as u32), value, script);
        }
        let mut location = self.height.to_le_bytes().to_vec();
        location.extend_from_slice(&self.position.to_le_bytes());
        KeyPointer::keyword("/tx/").select(&txid).set(location);
        self.position += 1;
    }

    fn spend(&mut self, prevout: &OutPoint, spender: &Hash, vin: u32) {
        let output = output_key(prevout).get();
        // A stored output is at least its 8-byte value; an empty read means it is not known.
        let Some((value, script)) = output.split_first_chunk::<8>() else {
            self.unknown_prevouts += 1;
            return;
        };
        debit(script, u64::from_le_bytes(*value));
        let mut spent_by = spender.to_vec();
        spent_by.extend_from_slice(&vin.to_le_bytes());
        KeyPointer::keyword("/spent/").select(prevout).set(spent_by);
    }
}

impl Visitor for BlockIndexer {
    fn visit_block_header(&mut self, header: &bsl::BlockHeader) -> ControlFlow<()> {
        let height = self.height.to_le_bytes();
        KeyPointer::keyword("/blockhash/").select(&height).set(header.block_hash_sha2().to_vec());
        KeyPointer::keyword("/header/").select(&height).set(header.as_ref().to_vec());
        ControlFlow::Continue(())
    }

    fn visit_tx_in(&mut self, _vin: usize, tx_in: &bsl::TxIn) -> ControlFlow<()> {
        let prevout = tx_in.prevout().as_ref().try_into().expect("an outpoint is 36 bytes");
        self.prevouts.push(prevout);
        ControlFlow::Continue(())
    }

    fn visit_tx_out(&mut self, _vout: usize, tx_out: &bsl::TxOut) -> ControlFlow<()> {
        self.outputs.push((tx_out.value(), tx_out.script_pubkey().to_vec()));
        ControlFlow::Continue(())
    }

    fn visit_transaction(&mut self, tx: &bsl::Transaction) -> ControlFlow<()> {
        self.index_transaction(tx.txid_sha2().into());
        ControlFlow::Continue(())
    }
}

/// The coinbase's one input names no output: txid zero, vout 0xffffffff.
fn is_coinbase(prevout: &OutPoint) -> bool {
    prevout[..32] == [0; 32] && prevout[32..] == [0xff; 4]
}

fn outpoint(txid: &Hash, vout: u32) -> OutPoint {
    let mut outpoint = [0; 36];
    outpoint[..32].copy_from_slice(txid);
    outpoint[32..].copy_from_slice(&vout.to_le_bytes());
    outpoint
}

fn output_key(outpoint: &OutPoint) -> KeyPointer {
    KeyPointer::keyword("/output/").select(outpoint)
}

fn create_output(outpoint: &OutPoint, value: u64, script: Vec<u8>) {
    credit(&script, value);
    let mut output = value.to_le_bytes().to_vec();
    output.extend_from_slice(&script);
    output_key(outpoint).set(output);
}

fn balance_key(script: &[u8]) -> KeyPointer {
    KeyPointer::keyword("/balance/").select(&Sha256::digest(script))
}

/// The stored balance; a script never paid has none.
fn stored_balance(key: &KeyPointer) -> u64 {
    let stored = key.get();
    stored.as_slice().try_into().map(u64::from_le_bytes).unwrap_or(0)
}

fn credit(script: &[u8], value: u64) {
    let key = balance_key(script);
    let total = stored_balance(&key).checked_add(value).expect("a balance above u64::MAX");
    key.set(total.to_le_bytes().to_vec());
}

fn debit(script: &[u8], value: u64) {
    let key = balance_key(script);
    let left = stored_balance(&key).checked_sub(value).expect("a balance below zero: the state is inconsistent");
    key.set(left.to_le_bytes().to_vec());
}
