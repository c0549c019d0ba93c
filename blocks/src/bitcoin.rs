//! What the block sources need to know of a Bitcoin block: that it decodes, its hash and its
//! parent's. Parsing is bitcoin_slices' (no allocation, the whole block must be consumed).

use anyhow::{bail, Result};
use bitcoin_slices::sha2::{Digest, Sha256};
use bitcoin_slices::{bsl, Parse, Visit, Visitor};

/// A block hash in internal byte order (as stored in headers); [`display`] shows it the usual way.
pub type BlockHash = [u8; 32];

#[derive(Debug)]
pub struct Header {
    pub hash: BlockHash,
    pub prev: BlockHash,
    /// The compact proof-of-work target.
    pub bits: u32,
}

/// The hash, parent and target of an 80-byte header.
pub fn header(bytes: &[u8]) -> Result<Header> {
    let parsed = bsl::BlockHeader::parse(bytes).map_err(|e| anyhow::anyhow!("the header does not decode: {e:?}"))?;
    let header = parsed.parsed();
    let bits = u32::from_le_bytes(bytes[72..76].try_into().expect("an 80-byte header"));
    Ok(Header { hash: header.block_hash_sha2().into(), prev: header.prev_blockhash().try_into().expect("32 bytes"), bits })
}

/// The work a block's proof represents, as Bitcoin Core counts it: 2^256 / (target + 1), the
/// target being `bits` expanded (mantissa x 256^(exponent - 3)). `None` for a target no chain can
/// have (zero, negative, or so small that the work would not fit in 128 bits).
pub fn work(bits: u32) -> Option<u128> {
    let (exponent, mantissa) = (bits >> 24, u128::from(bits & 0x007f_ffff));
    if mantissa == 0 || bits & 0x0080_0000 != 0 || !(20..=32).contains(&exponent) {
        return None;
    }
    // target = mantissa x 2^shift with shift >= 136, so 2^256 / (target + 1) is 2^(256 - shift) /
    // mantissa rounded down, one less where the mantissa divides it exactly.
    let shift = 8 * (exponent - 3);
    let numerator = 1u128 << (256 - shift);
    let work = numerator / mantissa;
    Some(if numerator % mantissa == 0 { work - 1 } else { work })
}

/// Decodes the whole block (header, every transaction, nothing after them), checks that its
/// transactions are the ones its header commits to (the merkle root), and returns its header.
pub fn decode_block(bytes: &[u8]) -> Result<Header> {
    let mut txids = Txids(Vec::new());
    let parsed = bsl::Block::visit(bytes, &mut txids).map_err(|e| anyhow::anyhow!("not a Bitcoin block: {}", describe(e)))?;
    if !parsed.remaining().is_empty() {
        bail!("not a Bitcoin block: {} bytes follow its last transaction", parsed.remaining().len());
    }
    if merkle_root(txids.0) != bytes[36..68] {
        bail!("damaged block: its transactions do not match its header's merkle root");
    }
    header(bytes)
}

/// What Bitcoin Core's `getblock HASH 1` says of a block that its bytes alone tell.
#[derive(Debug)]
pub struct Summary {
    pub hash: BlockHash,
    pub prev: BlockHash,
    pub version: u32,
    pub merkle_root: BlockHash,
    pub time: u32,
    pub bits: u32,
    pub nonce: u32,
    /// Its transactions' ids, in internal byte order.
    pub txids: Vec<[u8; 32]>,
}

impl Summary {
    /// The proof-of-work difficulty its `bits` state (difficulty 1 at `0x1d00ffff`).
    pub fn difficulty(&self) -> f64 {
        let target = |bits: u32| f64::from(bits & 0x00ff_ffff) * 256f64.powi((bits >> 24) as i32 - 3);
        target(0x1d00_ffff) / target(self.bits)
    }
}

/// [`decode_block`], with the header's fields and the transactions' ids.
pub fn summarize(bytes: &[u8]) -> Result<Summary> {
    let header = decode_block(bytes)?;
    let mut txids = Txids(Vec::new());
    bsl::Block::visit(bytes, &mut txids).map_err(|e| anyhow::anyhow!("not a Bitcoin block: {}", describe(e)))?;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    Ok(Summary {
        hash: header.hash,
        prev: header.prev,
        version: u32_at(0),
        merkle_root: bytes[36..68].try_into().expect("32 bytes"),
        time: u32_at(68),
        bits: u32_at(72),
        nonce: u32_at(76),
        txids: txids.0,
    })
}

/// The height a block states in its coinbase (BIP34: the first push of the coinbase's
/// scriptSig, little-endian), where its version (2 or more) says it follows BIP34; `None`
/// otherwise or when the push is not a height.
pub fn coinbase_height(block: &[u8]) -> Option<u32> {
    let version = u32::from_le_bytes(block.get(..4)?.try_into().ok()?);
    if version < 2 {
        return None;
    }
    let mut first = FirstScriptSig(None);
    let _ = bsl::Block::visit(block, &mut first);
    let script = first.0?;
    match *script.first()? {
        0x00 => Some(0),
        op @ 0x51..=0x60 => Some(u32::from(op - 0x50)),
        len @ 1..=4 => {
            let bytes = script.get(1..1 + usize::from(len))?;
            let mut le = [0u8; 4];
            le[..bytes.len()].copy_from_slice(bytes);
            Some(u32::from_le_bytes(le))
        }
        _ => None,
    }
}

/// The scriptSig of the block's first input (its coinbase's).
struct FirstScriptSig(Option<Vec<u8>>);

impl Visitor for FirstScriptSig {
    fn visit_tx_in(&mut self, _vin: usize, tx_in: &bsl::TxIn) -> core::ops::ControlFlow<()> {
        self.0 = Some(tx_in.script_sig().to_vec());
        core::ops::ControlFlow::Break(())
    }
}

struct Txids(Vec<[u8; 32]>);

impl Visitor for Txids {
    fn visit_transaction(&mut self, tx: &bsl::Transaction) -> core::ops::ControlFlow<()> {
        self.0.push(tx.txid_sha2().into());
        core::ops::ControlFlow::Continue(())
    }
}

pub(crate) fn double_sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(bytes)).into()
}

/// Bitcoin's merkle root of `txids` (an odd level pairs its last hash with itself).
pub(crate) fn merkle_root(mut level: Vec<[u8; 32]>) -> [u8; 32] {
    while level.len() > 1 {
        level = level.chunks(2).map(|pair| double_sha256(&[pair[0], *pair.last().expect("a chunk")].concat())).collect();
    }
    level.first().copied().unwrap_or_default()
}

fn describe(error: bitcoin_slices::Error) -> String {
    match error {
        bitcoin_slices::Error::MoreBytesNeeded => "it ends inside a transaction (truncated)".into(),
        other => format!("{other:?}"),
    }
}

/// A hash as Bitcoin shows it (byte-reversed hex).
pub fn display(hash: &BlockHash) -> String {
    let mut reversed = *hash;
    reversed.reverse();
    hex::encode(reversed)
}

/// A hash as Bitcoin shows it, back to internal byte order.
pub fn parse_hash(text: &str) -> Result<BlockHash> {
    let mut bytes: BlockHash = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("`{text}` is not a block hash (64 hex digits)"))?;
    bytes.reverse();
    Ok(bytes)
}

pub const ZERO_HASH: BlockHash = [0; 32];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_block_states_no_height_and_a_bip34_block_its_own() {
        assert_eq!(coinbase_height(&hex::decode(GENESIS).unwrap()), None);
        let block = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/blocks/mainnet/574200.bin")).unwrap();
        assert_eq!(coinbase_height(&block), Some(574200));
    }

    #[test]
    fn work_is_bitcoin_core_s_two_to_the_256_over_target_plus_one() {
        // Core's chainwork of the genesis block, and of a regtest block.
        assert_eq!(work(0x1d00ffff), Some(0x1_0001_0001));
        assert_eq!(work(0x207fffff), Some(2));
        // A mantissa dividing 2^(256 - shift): 2^256 / (2^223 + 1) rounds down to 2^33 - 1.
        assert_eq!(work(0x1d008000), Some((1 << 33) - 1));
        // A later target: 2^256 / (0x0404cb * 256^(0x17 - 3) + 1).
        assert_eq!(work(0x170404cb), Some((1u128 << 96) / 0x0404cb));
        for impossible in [0x1d000000, 0x1d800001, 0x03123456, 0x21010000] {
            assert_eq!(work(impossible), None, "{impossible:#x}");
        }
    }

    const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c0101000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000";

    #[test]
    fn genesis_decodes_to_its_known_hash() {
        let header = decode_block(&hex::decode(GENESIS).unwrap()).unwrap();
        assert_eq!(display(&header.hash), "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f");
        assert_eq!(header.prev, ZERO_HASH);
        assert_eq!(parse_hash(&display(&header.hash)).unwrap(), header.hash);
    }

    #[test]
    fn a_block_whose_transactions_do_not_match_its_merkle_root_is_refused() {
        let mut block = hex::decode(GENESIS).unwrap();
        let last = block.len() - 10; // inside the coinbase's output script
        block[last] ^= 1;
        let err = decode_block(&block).unwrap_err().to_string();
        assert_eq!(err, "damaged block: its transactions do not match its header's merkle root");
    }

    #[test]
    fn genesis_summarizes_as_bitcoin_core_describes_it() {
        let summary = summarize(&hex::decode(GENESIS).unwrap()).unwrap();
        assert_eq!((summary.version, summary.time, summary.bits, summary.nonce), (1, 1231006505, 0x1d00ffff, 2083236893));
        assert_eq!(display(&summary.merkle_root), "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b");
        assert_eq!(summary.txids.iter().map(display).collect::<Vec<_>>(), ["4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"]);
        assert_eq!(summary.difficulty(), 1.0);
    }

    #[test]
    fn truncated_or_padded_blocks_are_refused() {
        let block = hex::decode(GENESIS).unwrap();
        let err = decode_block(&block[..block.len() - 3]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let mut padded = block.clone();
        padded.push(0);
        let err = decode_block(&padded).unwrap_err().to_string();
        assert!(err.contains("1 bytes follow"), "{err}");
    }
}
