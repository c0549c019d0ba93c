//! A block map: where each block of a checked chain is stored, one line per block, so a run can
//! stream a long chain without scanning block files itself or holding the range.
//!
//! The xtask writes one ([`crate::write_map`]) after checking a source (every block read, decoded and linked); the
//! runner reads it a line at a time and each block when its turn comes, checking the hash the
//! map recorded. The text:
//!
//! ```text
//! memrepro-block-map 1
//! dir /home/me/.bitcoin/blocks      where the files were (a run may be told another place)
//! xor 0000000000000000              the block files' XOR key (xor.dat), zero for none
//! file blk00000.dat                 the files, numbered from 0 in this order
//! block 0 000000000019d6…26f 0 8 285  height, hash, file number, offset, size
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::bitcoin::{decode_block, display, parse_hash, BlockHash};
use crate::blk;
use crate::block::Block;

const MAGIC_LINE: &str = "memrepro-block-map 1";

/// What a map was written from: the blocks' heights and total size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extent {
    pub first: Option<u32>,
    pub last: Option<u32>,
    pub count: u64,
    pub bytes: u64,
}

impl Extent {
    pub(crate) fn add(&mut self, height: u32, size: u64) {
        self.first.get_or_insert(height);
        self.last = Some(height);
        self.count += 1;
        self.bytes += size;
    }
}

/// One block's place.
pub(crate) struct Entry {
    pub(crate) height: u32,
    pub(crate) hash: BlockHash,
    pub(crate) file: usize,
    pub(crate) offset: u64,
    pub(crate) size: u32,
}

/// Writes the map's header: where its files are, their XOR key, their names in order.
pub(crate) fn write_header(out: &mut impl Write, dir: &Path, xor: [u8; 8], files: &[PathBuf]) -> Result<()> {
    let dir = dir.to_str().with_context(|| format!("{}: a block map needs a UTF-8 path", dir.display()))?;
    ensure!(!dir.contains('\n'), "{dir}: a path with a newline");
    writeln!(out, "{MAGIC_LINE}\ndir {dir}\nxor {}", hex::encode(xor))?;
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).with_context(|| format!("{}: a block map needs UTF-8 file names", file.display()))?;
        ensure!(!name.contains(char::is_whitespace), "{name}: a block file name with white space");
        writeln!(out, "file {name}")?;
    }
    Ok(())
}

/// Writes one block's line.
pub(crate) fn write_entry(out: &mut dyn Write, entry: &Entry) -> Result<()> {
    writeln!(out, "block {} {} {} {} {}", entry.height, display(&entry.hash), entry.file, entry.offset, entry.size)?;
    Ok(())
}

/// A block map, its header read and every line checked (none of the blocks read yet).
#[derive(Debug, Clone)]
pub struct BlockMap {
    pub path: PathBuf,
    /// Where the files are: the map's `dir`, or where a run was told they are.
    pub dir: PathBuf,
    xor: [u8; 8],
    files: Vec<String>,
    /// Where the first `block` line starts.
    body: u64,
    pub extent: Extent,
}

impl BlockMap {
    /// Whether `path` starts with the map's first line.
    pub fn looks_like(path: &Path) -> bool {
        let mut first = String::new();
        File::open(path).map(BufReader::new).and_then(|mut r| r.read_line(&mut first)).is_ok() && first.trim_end() == MAGIC_LINE
    }

    /// The map at `path`: its header, and every `block` line checked for form, ascending
    /// heights and a file that is named.
    pub fn open(path: &Path) -> Result<Self> {
        let at = |n: usize| format!("{} line {n}", path.display());
        let mut reader = BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
        let mut map = BlockMap { path: path.to_path_buf(), dir: PathBuf::new(), xor: [0; 8], files: Vec::new(), body: 0, extent: Extent::default() };
        let (mut n, mut offset, mut raw) = (0, 0u64, String::new());
        loop {
            raw.clear();
            let len = reader.read_line(&mut raw).with_context(|| at(n + 1))?;
            if len == 0 {
                break;
            }
            n += 1;
            let line = raw.trim_end_matches(['\n', '\r']);
            if n == 1 {
                ensure!(line == MAGIC_LINE, "{}: not a block map (it starts `{MAGIC_LINE}`)", path.display());
            } else if line.starts_with("block ") {
                let entry = map.parse_entry(line).with_context(|| at(n))?;
                match map.extent.last {
                    Some(last) => ensure!(entry.height > last, "{}: height {} after height {last} (heights ascend)", at(n), entry.height),
                    None => map.body = offset,
                }
                map.extent.add(entry.height, u64::from(entry.size));
            } else {
                ensure!(map.extent.count == 0, "{}: `{line}` after the first block line", at(n));
                map.header_line(line).with_context(|| at(n))?;
            }
            offset += len as u64;
        }
        ensure!(map.extent.count > 0, "{}: a block map without blocks", path.display());
        Ok(map)
    }

    fn header_line(&mut self, line: &str) -> Result<()> {
        if let Some(dir) = line.strip_prefix("dir ") {
            self.dir = dir.into();
        } else if let Some(key) = line.strip_prefix("xor ") {
            self.xor = hex::decode(key).ok().and_then(|k| k.try_into().ok()).context("`xor` takes 16 hex digits")?;
        } else if let Some(name) = line.strip_prefix("file ") {
            self.files.push(name.into());
        } else {
            bail!("`{line}` is not a block map line");
        }
        Ok(())
    }

    fn parse_entry(&self, line: &str) -> Result<Entry> {
        let fields: Vec<&str> = line.split(' ').collect();
        let [_, height, hash, file, offset, size] = fields.as_slice() else {
            bail!("`{line}`: a block line is `block HEIGHT HASH FILE OFFSET SIZE`");
        };
        let entry = Entry {
            height: height.parse().context("the height")?,
            hash: parse_hash(hash)?,
            file: file.parse().context("the file number")?,
            offset: offset.parse().context("the offset")?,
            size: size.parse().context("the size")?,
        };
        ensure!(entry.file < self.files.len(), "file {} is not named (the map names {} files)", entry.file, self.files.len());
        Ok(entry)
    }

    /// Where its files are to be found instead of its `dir` (a container's mount, say).
    pub fn with_dir(mut self, dir: PathBuf) -> Self {
        self.dir = dir;
        self
    }

    /// The files it names, in `dir`.
    pub fn files(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.files.iter().map(|name| self.dir.join(name))
    }

    /// Its blocks above `after` (all when `None`), each read when the iterator reaches it,
    /// decoded, checked against its recorded hash and linked to the block before.
    pub fn blocks(&self, after: Option<u32>) -> Result<MapBlocks> {
        let mut file = File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        file.seek(SeekFrom::Start(self.body))?;
        Ok(MapBlocks { map: self.clone(), lines: BufReader::new(file).lines(), after, open: blk::OpenFile::default(), previous: None })
    }

    pub fn describe(&self) -> String {
        format!("block map {} ({} blocks in {})", self.path.display(), self.extent.count, self.dir.display())
    }
}

/// A map's blocks, read one at a time.
pub struct MapBlocks {
    map: BlockMap,
    lines: std::io::Lines<BufReader<File>>,
    after: Option<u32>,
    open: blk::OpenFile,
    previous: Option<(u32, BlockHash)>,
}

impl MapBlocks {
    fn read(&mut self, entry: &Entry) -> Result<Block> {
        let path = self.map.dir.join(&self.map.files[entry.file]);
        let payload = self.open.read(entry.file, &path, &self.map.xor, entry.offset, entry.size as usize)?;
        let place = || format!("block {} ({}) in {} at byte {}", entry.height, display(&entry.hash), path.display(), entry.offset);
        let header = decode_block(&payload).with_context(place)?;
        ensure!(header.hash == entry.hash, "{}: it changed since the map was written (it hashes to {})", place(), display(&header.hash));
        if let Some((height, hash)) = self.previous.filter(|(h, _)| h + 1 == entry.height) {
            ensure!(header.prev == hash, "{}: its parent is {}, not block {height} ({})", place(), display(&header.prev), display(&hash));
        }
        self.previous = Some((entry.height, header.hash));
        Ok(Block { height: entry.height, payload })
    }
}

impl Iterator for MapBlocks {
    type Item = Result<Block>;

    fn next(&mut self) -> Option<Result<Block>> {
        loop {
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => return Some(Err(anyhow::Error::new(e).context(format!("reading {}", self.map.path.display())))),
            };
            let entry = match self.map.parse_entry(&line) {
                Ok(entry) => entry,
                Err(e) => return Some(Err(e.context(format!("{}", self.map.path.display())))),
            };
            if self.after.is_some_and(|after| entry.height <= after) {
                continue;
            }
            return Some(self.read(&entry));
        }
    }
}
