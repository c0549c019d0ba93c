//! Generated chains for scale (`cargo xtask blocks generate`): a valid, chained regtest block
//! file of N blocks from a seed, the same bytes for the same seed. Each block has a coinbase
//! stating its height (BIP34) and, after the first 100 blocks, up to `max_transactions` ordinary
//! transactions spending outputs of earlier blocks (one to three inputs, one to three outputs, a
//! fee), paid to a pool of reused scripts so balances accumulate. Headers carry regtest's target,
//! met by each block's proof of work.

use std::io::Write;

use anyhow::Result;
use bitcoin_slices::sha2::{Digest, Sha256};

use crate::bitcoin::{double_sha256, merkle_root, BlockHash};

/// Regtest's network magic and target.
const MAGIC: [u8; 4] = [0xfa, 0xbf, 0xb5, 0xda];
const BITS: u32 = 0x207f_ffff;
/// 50 BTC, the first subsidy.
const SUBSIDY: u64 = 5_000_000_000;
/// Coinbase outputs are spent only after this many blocks, as Bitcoin's rules ask.
const MATURITY: usize = 100;
/// Scripts paid to: few enough that they are paid again and again.
const SCRIPTS: u64 = 64;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    pub blocks: u32,
    pub seed: u64,
    /// The most ordinary transactions a block holds.
    pub max_transactions: u32,
}

/// An output not spent yet: where it is and what it holds.
struct Unspent {
    txid: [u8; 32],
    vout: u32,
    value: u64,
}

/// Writes the chain as a block file (records of magic, size, block) to `out`.
pub fn write_chain(recipe: Recipe, out: &mut impl Write) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(recipe.seed);
    let mut unspent: Vec<Unspent> = Vec::new();
    let mut maturing: Vec<Vec<Unspent>> = Vec::new();
    let mut prev = [0u8; 32];
    for height in 0..recipe.blocks {
        if maturing.len() >= MATURITY {
            unspent.extend(maturing.remove(0));
        }
        let mut transactions = vec![coinbase(height, &mut rng)];
        let count = if height as usize >= MATURITY { rng.u32(0..=recipe.max_transactions) } else { 0 };
        let mut created = Vec::new();
        for _ in 0..count {
            if unspent.is_empty() {
                break;
            }
            let (tx, outputs) = spend(&mut unspent, &mut rng);
            created.extend(outputs.into_iter().map(|(vout, value)| Unspent { txid: txid(&tx), vout, value }));
            transactions.push(tx);
        }
        let block = block(prev, height, &transactions);
        prev = double_sha256(&block[..80]);
        unspent.extend(created);
        maturing.push(vec![Unspent { txid: txid(&transactions[0]), vout: 0, value: SUBSIDY }]);
        out.write_all(&MAGIC)?;
        out.write_all(&(block.len() as u32).to_le_bytes())?;
        out.write_all(&block)?;
    }
    Ok(())
}

/// The coinbase: its height as BIP34 asks, the subsidy to one of the scripts.
fn coinbase(height: u32, rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut script_sig = height_push(height);
    script_sig.extend_from_slice(&rng.u64(..).to_le_bytes());
    transaction(&[([0; 32], u32::MAX, script_sig)], &[(SUBSIDY, script(rng))])
}

/// `height` pushed as Bitcoin Core's coinbases push it (BIP34): OP_0, OP_1..OP_16, or its
/// minimal little-endian bytes.
fn height_push(height: u32) -> Vec<u8> {
    match height {
        0 => vec![0x00],
        1..=16 => vec![0x50 + height as u8],
        _ => {
            let mut bytes = height.to_le_bytes().to_vec();
            while bytes.len() > 1 && bytes.last() == Some(&0) {
                bytes.pop();
            }
            if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                bytes.push(0);
            }
            [vec![bytes.len() as u8], bytes].concat()
        }
    }
}

/// A transaction spending one to three unspent outputs into one to three new ones, less a fee;
/// it and its outputs' (index, value).
fn spend(unspent: &mut Vec<Unspent>, rng: &mut fastrand::Rng) -> (Vec<u8>, Vec<(u32, u64)>) {
    let mut inputs = Vec::new();
    for _ in 0..rng.usize(1..=3).min(unspent.len()) {
        inputs.push(unspent.swap_remove(rng.usize(..unspent.len())));
    }
    let total: u64 = inputs.iter().map(|u| u.value).sum();
    let fee = total.min(1_000 + rng.u64(..10_000));
    let count = rng.u64(1..=3);
    let values: Vec<u64> = (0..count).map(|i| if i + 1 == count { (total - fee) - (total - fee) / count * (count - 1) } else { (total - fee) / count }).collect();
    let ins: Vec<([u8; 32], u32, Vec<u8>)> = inputs.iter().map(|u| (u.txid, u.vout, signature_like(rng))).collect();
    let outs: Vec<(u64, Vec<u8>)> = values.iter().map(|&v| (v, script(rng))).collect();
    (transaction(&ins, &outs), values.into_iter().enumerate().map(|(i, v)| (i as u32, v)).collect())
}

/// A P2WPKH script paying one of the pool's keys.
fn script(rng: &mut fastrand::Rng) -> Vec<u8> {
    let key = Sha256::digest(rng.u64(..SCRIPTS).to_le_bytes());
    [&[0x00, 0x14][..], &key[..20]].concat()
}

/// Bytes the size of a signature and a public key (nothing checks them).
fn signature_like(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut bytes = vec![72];
    bytes.extend((0..72).map(|_| rng.u8(..)));
    bytes.push(33);
    bytes.extend((0..33).map(|_| rng.u8(..)));
    bytes
}

/// A legacy-serialized transaction of `inputs` (txid, vout, scriptSig) and `outputs` (value,
/// scriptPubKey).
fn transaction(inputs: &[([u8; 32], u32, Vec<u8>)], outputs: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut tx = 1u32.to_le_bytes().to_vec();
    compact_size(&mut tx, inputs.len());
    for (txid, vout, script_sig) in inputs {
        tx.extend_from_slice(txid);
        tx.extend_from_slice(&vout.to_le_bytes());
        compact_size(&mut tx, script_sig.len());
        tx.extend_from_slice(script_sig);
        tx.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    compact_size(&mut tx, outputs.len());
    for (value, script) in outputs {
        tx.extend_from_slice(&value.to_le_bytes());
        compact_size(&mut tx, script.len());
        tx.extend_from_slice(script);
    }
    tx.extend_from_slice(&0u32.to_le_bytes());
    tx
}

/// The block: a header meeting regtest's target, then the transactions.
fn block(prev: BlockHash, height: u32, transactions: &[Vec<u8>]) -> Vec<u8> {
    let mut header = 0x2000_0000u32.to_le_bytes().to_vec();
    header.extend_from_slice(&prev);
    header.extend_from_slice(&merkle_root(transactions.iter().map(|tx| txid(tx)).collect()));
    header.extend_from_slice(&(1_296_688_602 + 600 * height).to_le_bytes());
    header.extend_from_slice(&BITS.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    // Regtest's target is 0x7fffff x 2^232: a hash whose top byte is below 0x7f is under it.
    for nonce in 0u32.. {
        header[76..80].copy_from_slice(&nonce.to_le_bytes());
        if double_sha256(&header)[31] < 0x7f {
            break;
        }
    }
    let mut block = header;
    compact_size(&mut block, transactions.len());
    transactions.iter().for_each(|tx| block.extend_from_slice(tx));
    block
}

fn compact_size(out: &mut Vec<u8>, n: usize) {
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
    }
}

fn txid(tx: &[u8]) -> [u8; 32] {
    double_sha256(tx)
}
