//! Bitcoin Core's block files (`blk*.dat`): records of network magic, u32 LE size and the block,
//! in arrival order (not height order), possibly with stale blocks, zero padding at the end of a
//! preallocated file, and, from Bitcoin Core 28 on, XOR-obfuscated with the 8-byte key in
//! `xor.dat` (byte `i` of a file is XORed with `key[i % 8]`).
//!
//! The files are scanned header by header (a whole data directory is never loaded), the chain is
//! followed by prev-hash links from genesis or from `--start-hash`, and only the blocks of the
//! requested heights are read and decoded.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::bitcoin::{self, decode_block, display, BlockHash, ZERO_HASH};
use crate::block::{Block, HeightRange};

/// Network magics: mainnet, testnet3, testnet4, signet, regtest.
const MAGICS: [([u8; 4], &str); 5] = [
    ([0xf9, 0xbe, 0xb4, 0xd9], "mainnet"),
    ([0x0b, 0x11, 0x09, 0x07], "testnet3"),
    ([0x1c, 0x16, 0x3f, 0x28], "testnet4"),
    ([0x0a, 0x03, 0xcf, 0x40], "signet"),
    ([0xfa, 0xbf, 0xb5, 0xda], "regtest"),
];
/// No block is larger than this (4 MB of weight): a larger size field means damage.
const MAX_BLOCK_SIZE: u32 = 4_000_000;

/// Block files and the XOR key that applies to them.
#[derive(Debug, Clone)]
pub struct BlockFiles {
    pub files: Vec<PathBuf>,
    pub xor_key: [u8; 8],
    /// Follow the chain to this block (`--tip-hash`) instead of the one with the most work.
    pub tip: Option<BlockHash>,
}

impl BlockFiles {
    /// A `blk*.dat` file, or a directory of them (Bitcoin Core's `blocks/`); `xor.dat` beside
    /// them gives the key.
    pub fn open(path: &Path) -> Result<Self> {
        let (dir, files) = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| is_block_file_name(p))
                .collect();
            files.sort();
            (path.to_path_buf(), files)
        } else {
            (path.parent().unwrap_or(Path::new(".")).to_path_buf(), vec![path.to_path_buf()])
        };
        if files.is_empty() {
            bail!("{}: no blk*.dat files", path.display());
        }
        Ok(Self { files, xor_key: read_xor_key(&dir)?, tip: None })
    }

    /// Whether `path` is a block file: named `blk*.dat`, or starting with a known magic after
    /// the XOR key beside it (a `.blk` copy, say).
    pub fn looks_like(path: &Path) -> bool {
        if is_block_file_name(path) {
            return true;
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let key = read_xor_key(dir).unwrap_or_default();
        let mut start = [0u8; 4];
        File::open(path).and_then(|mut f| f.read_exact(&mut start)).is_ok() && network(unxor(start, &key, 0)).is_some()
    }
}

pub fn is_block_file_name(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.starts_with("blk") && name.ends_with(".dat")
}

fn read_xor_key(dir: &Path) -> Result<[u8; 8]> {
    let path = dir.join("xor.dat");
    match std::fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|b: Vec<u8>| anyhow::anyhow!("{}: {} bytes, expected an 8-byte key", path.display(), b.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok([0; 8]),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn unxor<const N: usize>(mut bytes: [u8; N], key: &[u8; 8], offset: u64) -> [u8; N] {
    xor_in_place(&mut bytes, key, offset);
    bytes
}

fn xor_in_place(bytes: &mut [u8], key: &[u8; 8], offset: u64) {
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte ^= key[((offset + i as u64) % 8) as usize];
    }
}

fn network(magic: [u8; 4]) -> Option<&'static str> {
    MAGICS.iter().find(|(m, _)| *m == magic).map(|(_, name)| *name)
}

/// Where a block is, and its place in the chain.
struct Record {
    file: usize,
    offset: u64,
    size: u32,
    hash: BlockHash,
    prev: BlockHash,
    /// The work its proof represents ([`bitcoin::work`]).
    work: u128,
}

/// Reads `len` bytes at `offset`, as stored.
fn read_raw(file: &mut File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0; len];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Reads `len` bytes at `offset`, de-obfuscated.
fn read_at(file: &mut File, key: &[u8; 8], offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = read_raw(file, offset, len)?;
    xor_in_place(&mut bytes, key, offset);
    Ok(bytes)
}

/// Whether everything from `offset` to the end is zero as stored: the space Bitcoin Core
/// preallocates and has not written yet (never obfuscated).
fn only_padding_from(file: &mut File, offset: u64) -> std::io::Result<bool> {
    file.seek(SeekFrom::Start(offset))?;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut chunk)? {
            0 => return Ok(true),
            n if chunk[..n].iter().any(|&b| b != 0) => return Ok(false),
            _ => {}
        }
    }
}

/// Every block record of one file: its headers only.
fn scan(index: usize, path: &Path, key: &[u8; 8], network_seen: &mut Option<&'static str>) -> Result<Vec<Record>> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().with_context(|| format!("reading {}", path.display()))?.len();
    let io = |e: std::io::Error| anyhow::Error::new(e).context(format!("reading {}", path.display()));
    let mut records = Vec::new();
    let mut offset = 0u64;
    while offset < len {
        let at = || format!("{} at byte {offset}", path.display());
        let raw = read_raw(&mut file, offset, (len - offset).min(8) as usize).map_err(io)?;
        if raw.iter().all(|&b| b == 0) {
            // Zeros as stored: the preallocated, unwritten end of the file, which must stay so.
            if !only_padding_from(&mut file, offset).map_err(io)? {
                bail!("{}: data after zero padding (a damaged or overwritten file)", at());
            }
            break;
        }
        if raw.len() < 8 {
            bail!("{}: truncated record ({} bytes)", at(), raw.len());
        }
        let frame = read_at(&mut file, key, offset, 8).map_err(io)?;
        let magic: [u8; 4] = frame[..4].try_into().expect("4 bytes");
        let Some(this_network) = network(magic) else {
            bail!("{}: wrong magic {} (not a Bitcoin network's; an obfuscated file without its xor.dat?)", at(), hex::encode(magic));
        };
        match network_seen {
            Some(seen) if *seen != this_network => bail!("{}: a {this_network} block among {seen} blocks", at()),
            _ => *network_seen = Some(this_network),
        }
        let size = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
        if !(80..=MAX_BLOCK_SIZE).contains(&size) {
            bail!("{}: block size {size} is impossible (80..={MAX_BLOCK_SIZE})", at());
        }
        if offset + 8 + u64::from(size) > len {
            bail!("{}: truncated block: {size} bytes announced, {} left in the file", at(), len - offset - 8);
        }
        let header = bitcoin::header(&read_at(&mut file, key, offset + 8, 80).map_err(io)?).with_context(at)?;
        let work = bitcoin::work(header.bits).with_context(|| format!("{}: block {} has an impossible target (bits {:#010x})", at(), display(&header.hash), header.bits))?;
        records.push(Record { file: index, offset: offset + 8, size, hash: header.hash, prev: header.prev, work });
        offset += 8 + u64::from(size);
    }
    Ok(records)
}

/// Where the chain starts: genesis (the one block whose parent is zero), or a given hash at a
/// given height.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    Genesis,
    Hash { hash: BlockHash, height: u32 },
}

/// Where a block of the chain is stored, and its hash.
#[derive(Debug, Clone)]
pub struct Located {
    pub height: u32,
    pub hash: BlockHash,
    pub(crate) file: usize,
    pub(crate) offset: u64,
    pub(crate) size: u32,
}

/// The blocks of `range` in chain order, each decoded.
pub fn read(files: &BlockFiles, start: Start, range: HeightRange) -> Result<Vec<Block>> {
    let mut reader = Reader::new(files);
    locate(files, start, range)?.iter().map(|located| reader.read(located)).collect()
}

/// Where the blocks of `range` are, in chain order: the files' headers scanned and the chain
/// followed and checked, no block read.
pub fn locate(files: &BlockFiles, start: Start, range: HeightRange) -> Result<Vec<Located>> {
    let mut network = None;
    let mut records = Vec::new();
    for (index, path) in files.files.iter().enumerate() {
        records.extend(scan(index, path, &files.xor_key, &mut network)?);
    }
    let chain = follow_chain(&records, start, files.tip)?;
    if let (Start::Hash { height, .. }, Some(network)) = (start, network) {
        check_start_height(files, &records[chain.records[0]], height, network)?;
    }
    let tip = chain.tip_height()?;
    let (from, to) = (range.from.unwrap_or(chain.start_height), range.to.unwrap_or(tip));
    if from < chain.start_height {
        bail!("{range} starts before the chain's first block (height {})", chain.start_height);
    }
    if to > tip || from > tip {
        bail!("{}; {range} asks for height {}", chain.describe_end(&records)?, to.max(from));
    }
    if range.to.is_none() && chain.unconnected > 0 {
        bail!("gap in the chain: {}; give --to {tip} to index up to it", chain.describe_end(&records)?);
    }
    let located = (from..=to).map(|height| {
        let record = &records[chain.records[(height - chain.start_height) as usize]];
        Located { height, hash: record.hash, file: record.file, offset: record.offset, size: record.size }
    });
    Ok(located.collect())
}

/// The first height of each network at which every block states its height in its coinbase
/// (BIP34).
fn bip34_height(network: &str) -> u32 {
    match network {
        "mainnet" => 227_931,
        "testnet3" => 21_111,
        _ => 1,
    }
}

/// `--start-hash`'s block must be at `--from`: where the block states its height (BIP34), the
/// two must agree.
fn check_start_height(files: &BlockFiles, start: &Record, height: u32, network: &str) -> Result<()> {
    let located = Located { height, hash: start.hash, file: start.file, offset: start.offset, size: start.size };
    let block = Reader::new(files).read(&located)?;
    match bitcoin::coinbase_height(&block.payload) {
        Some(stated) if stated >= bip34_height(network) && stated != height => {
            bail!("--start-hash {} is the block at height {stated} (its coinbase says so, BIP34), not --from {height}", display(&start.hash))
        }
        _ => Ok(()),
    }
}

/// One block file open at a time (a range may span thousands of files): the one reads at an
/// offset come from, reopened only when the file changes.
#[derive(Default)]
pub(crate) struct OpenFile(Option<(usize, File)>);

impl OpenFile {
    /// `len` bytes at `offset` of file number `index` (at `path`), de-obfuscated with `key`.
    pub(crate) fn read(&mut self, index: usize, path: &Path, key: &[u8; 8], offset: u64, len: usize) -> Result<Vec<u8>> {
        if self.0.as_ref().is_none_or(|(open, _)| *open != index) {
            self.0 = Some((index, File::open(path).with_context(|| format!("opening {}", path.display()))?));
        }
        let file = &mut self.0.as_mut().expect("opened above").1;
        read_at(file, key, offset, len).with_context(|| format!("reading {}", path.display()))
    }
}

/// Reads located blocks, each decoded and checked as it is read.
pub struct Reader<'a> {
    files: &'a BlockFiles,
    open: OpenFile,
}

impl<'a> Reader<'a> {
    pub fn new(files: &'a BlockFiles) -> Self {
        Self { files, open: OpenFile::default() }
    }

    pub fn read(&mut self, located: &Located) -> Result<Block> {
        let path = &self.files.files[located.file];
        let payload = self.open.read(located.file, path, &self.files.xor_key, located.offset, located.size as usize)?;
        let place = || format!("block {} ({}) in {} at byte {}", located.height, display(&located.hash), path.display(), located.offset - 8);
        let header = decode_block(&payload).with_context(place)?;
        anyhow::ensure!(header.hash == located.hash, "{}: it changed since the files were scanned", place());
        Ok(Block { height: located.height, payload })
    }
}

struct Chain {
    start_height: u32,
    /// Indexes into the records, by height from `start_height`.
    records: Vec<usize>,
    /// Blocks that do not descend from the start and whose line of parents ends at a block that
    /// is not in the files (not at genesis, nor, with a start hash, at one of its ancestors).
    unconnected: usize,
    first_unconnected: Option<usize>,
}

impl Chain {
    fn tip_height(&self) -> Result<u32> {
        u32::try_from(self.records.len() - 1)
            .ok()
            .and_then(|blocks| self.start_height.checked_add(blocks))
            .context("the chain's heights run past u32::MAX (is --from right?)")
    }

    fn describe_end(&self, records: &[Record]) -> Result<String> {
        let tip = &records[*self.records.last().expect("a chain has a block")];
        let mut text = format!("the chain in the files ends at height {} (block {})", self.tip_height()?, display(&tip.hash));
        if let Some(first) = self.first_unconnected {
            text += &format!(
                ", and {} blocks do not connect to it (the first, {}, descends from a block that is not in the files)",
                self.unconnected,
                display(&records[first].hash),
            );
        }
        Ok(text)
    }
}

/// The chain from `start` by prev-hash links, as Bitcoin Core chooses it: to the block with the
/// most work behind it (the sum of its ancestors' from the start), the one stored first where two
/// have the same, or to `tip` when given. A stale branch, even a longer one, never enters it. A
/// block stored twice counts once (its first copy).
fn follow_chain(records: &[Record], start: Start, tip: Option<BlockHash>) -> Result<Chain> {
    let mut by_hash: HashMap<BlockHash, usize> = HashMap::new();
    let mut children: HashMap<BlockHash, Vec<usize>> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(slot) = by_hash.entry(record.hash) {
            slot.insert(i);
            children.entry(record.prev).or_default().push(i);
        }
    }
    let (first, start_height) = match start {
        Start::Hash { hash, height } => {
            let first = *by_hash.get(&hash).with_context(|| format!("the start block {} is not in the block files", display(&hash)))?;
            (first, height)
        }
        Start::Genesis => match children.get(&ZERO_HASH).map(Vec::as_slice) {
            Some([genesis]) => (*genesis, 0),
            Some(several) => bail!("{} blocks have no parent: give --start-hash and --from", several.len()),
            None => bail!("no genesis block in the block files (none has a zero parent): give --start-hash and --from"),
        },
    };
    let chain_work = chain_work(records, &children, first);
    let tip = match tip {
        Some(hash) => match by_hash.get(&hash) {
            Some(i) if chain_work.contains_key(i) => *i,
            Some(_) => bail!("--tip-hash {} does not descend from the chain's start", display(&hash)),
            None => bail!("--tip-hash {} is not in the block files", display(&hash)),
        },
        None => chain_work.iter().max_by_key(|(&i, &work)| (work, std::cmp::Reverse(i))).map(|(&i, _)| i).expect("the start is reached"),
    };
    let mut chain = vec![tip];
    while *chain.last().expect("not empty") != first {
        chain.push(by_hash[&records[*chain.last().expect("not empty")].prev]);
    }
    chain.reverse();
    let unconnected = unconnected(records, &by_hash, &chain_work, first);
    Ok(Chain { start_height, records: chain, unconnected: unconnected.len(), first_unconnected: unconnected.first().copied() })
}

/// The first copy of each block that neither descends from `first` (`reached`) nor leads back,
/// through parents in the files, to genesis or to an ancestor of `first`. Linear: each block's
/// line of parents is walked once, its answer remembered.
fn unconnected(records: &[Record], by_hash: &HashMap<BlockHash, usize>, reached: &HashMap<usize, u128>, first: usize) -> Vec<usize> {
    let mut connected: HashMap<usize, bool> = HashMap::new();
    let mut at = Some(first);
    while let Some(i) = at {
        if connected.insert(i, true).is_some() {
            break;
        }
        at = by_hash.get(&records[i].prev).copied();
    }
    let mut found = Vec::new();
    let first_copies = (0..records.len()).filter(|&i| by_hash[&records[i].hash] == i);
    for i in first_copies {
        if reached.contains_key(&i) {
            continue;
        }
        // Up the parents until a block whose answer is known, or the line ends.
        let mut line = Vec::new();
        let mut at = Some(i);
        let answer = loop {
            match at {
                Some(j) if connected.contains_key(&j) => break connected[&j],
                Some(j) if records[j].prev == ZERO_HASH => break true,
                Some(j) => {
                    line.push(j);
                    at = by_hash.get(&records[j].prev).copied();
                }
                None => break false,
            }
        };
        for j in line {
            connected.insert(j, answer);
        }
        if !answer {
            found.push(i);
        }
    }
    found
}

/// The work from `first` to each block that descends from it, `first`'s own included; without
/// recursion.
fn chain_work(records: &[Record], children: &HashMap<BlockHash, Vec<usize>>, first: usize) -> HashMap<usize, u128> {
    let mut work = HashMap::from([(first, records[first].work)]);
    let mut order = vec![first];
    let mut i = 0;
    while i < order.len() {
        let parent = order[i];
        for &child in children.get(&records[parent].hash).into_iter().flatten() {
            work.insert(child, work[&parent].saturating_add(records[child].work));
            order.push(child);
        }
        i += 1;
    }
    work
}
