//! Reading a metashrew node's database (its layout is in the README, "Reading a metashrew
//! database"): every key the guest flushed is an append-only history, optionally under a
//! `LABEL://` prefix,
//!
//! ```text
//! KEY/length = "3"                       (ASCII decimal: how many entries)
//! KEY/0      = "5:68656c6c6f"            ("{height}:{lowercase hex of the value}")
//! KEY/1      = "9:"                      (an empty value)
//! ```
//!
//! beside metashrew's own keys (`smt:root:{h}`, `/__INTERNAL/tip-height`, `__INTERNAL/height`,
//! `/__INTERNAL/height-to-hash/{h}`). The value of KEY as of height h is its last entry whose
//! height is at most h. The database is opened read-only (or as a secondary instance beside a
//! running node) and nothing is written to it. Histories are read in one forward pass, a key at
//! a time, and the state is put in key order through a temporary RocksDB, so memory stays flat
//! however many keys there are. A damaged history is an error naming the key, never skipped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rocksdb::{IteratorMode, Options, DB};

use crate::dump::quoted;

const LENGTH: &[u8] = b"/length";
const HEIGHT_TO_HASH: &[u8] = b"/__INTERNAL/height-to-hash/";

/// A decimal number as metashrew writes one: digits only, no leading zero.
fn canonical_u32(text: &str) -> Option<u32> {
    text.parse().ok().filter(|n: &u32| n.to_string() == text)
}

/// metashrew's own keys, told apart from the guest's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Internal {
    /// `smt:root:{height}`: metashrew's "state root" (a hash of the block's last pair only).
    SmtRoot(u32),
    /// `/__INTERNAL/tip-height` (u32 LE): the last height indexed.
    TipHeight,
    /// `__INTERNAL/height` (u32 LE), written by the sync layer.
    SyncHeight,
    /// `/__INTERNAL/height-to-hash/{height}`: the block hash indexed at that height.
    HeightToHash(u32),
}

impl Internal {
    /// The internal key `key` is, if it is one, with or without a `LABEL://` prefix (read
    /// without its label, a labelled node's own keys are still its own).
    pub fn of(key: &[u8]) -> Option<Self> {
        let key = std::str::from_utf8(key).ok()?;
        Self::unlabelled(key).or_else(|| Self::unlabelled(&key[key.find("://")? + 3..]))
    }

    fn unlabelled(key: &str) -> Option<Self> {
        let height = |rest: &str| rest.parse().ok();
        if let Some(rest) = key.strip_prefix("smt:root:") {
            return height(rest).map(Self::SmtRoot);
        }
        if let Some(rest) = key.strip_prefix("/__INTERNAL/height-to-hash/") {
            return height(rest).map(Self::HeightToHash);
        }
        match key {
            "/__INTERNAL/tip-height" => Some(Self::TipHeight),
            "__INTERNAL/height" => Some(Self::SyncHeight),
            _ => None,
        }
    }
}

/// One entry of a history: the height it was written at and the value.
pub type Entry = (u32, Vec<u8>);

/// A metashrew database, opened without writing to it.
pub struct MetashrewDb {
    pub(crate) db: DB,
    /// `LABEL://`, when the node ran with `--label`.
    prefix: Vec<u8>,
}

impl MetashrewDb {
    /// Opens `dir` read-only, or, with `secondary`, as a RocksDB secondary instance (for a
    /// database a running node is writing; `secondary` holds the instance's own files).
    pub fn open(dir: &Path, label: Option<&str>, secondary: Option<&Path>) -> Result<Self> {
        anyhow::ensure!(dir.join("CURRENT").exists(), "{} is not a RocksDB directory (no CURRENT file)", dir.display());
        let mut options = Options::default();
        options.set_max_open_files(256);
        let db = match secondary {
            None => DB::open_for_read_only(&options, dir, false),
            Some(own) => DB::open_as_secondary(&options, dir, own).and_then(|db| db.try_catch_up_with_primary().map(|()| db)),
        }
        .with_context(|| format!("opening the metashrew database {}", dir.display()))?;
        Ok(Self::with_db(db, label))
    }

    /// A database already open (e.g. one a run writes), its keys under `LABEL://` with a label.
    pub fn with_db(db: DB, label: Option<&str>) -> Self {
        let prefix = label.map(|label| format!("{label}://").into_bytes()).unwrap_or_default();
        Self { db, prefix }
    }

    /// `key` as stored: under the label's prefix.
    pub(crate) fn labelled(&self, key: &[u8]) -> Vec<u8> {
        [&self.prefix[..], key].concat()
    }

    /// How many entries `key`'s history has (0 without one).
    pub(crate) fn history_length(&self, key: &[u8]) -> Result<u32> {
        match self.get(&[&self.labelled(key)[..], LENGTH].concat())? {
            None => Ok(0),
            Some(length) => parse_length(key, &length),
        }
    }

    /// The value of `key` as of `height`, by point reads: its last history entry at or below
    /// it, walking back from the newest (during indexing the newest is almost always it).
    pub fn value_as_of(&self, key: &[u8], height: u32) -> Result<Option<Vec<u8>>> {
        let labelled = self.labelled(key);
        for n in (0..self.history_length(key)?).rev() {
            let entry = self.get(&[&labelled[..], format!("/{n}").as_bytes()].concat())?;
            let entry = entry.ok_or_else(|| damaged(key, format!("entry {n} is missing")))?;
            let (at, value) = parse_entry(&entry).map_err(|what| damaged(key, format!("entry {n}: {what}")))?;
            if at <= height {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// `smt:root:{height}`, or 32 zero bytes where there is none.
    pub fn smt_root(&self, height: u32) -> Result<[u8; 32]> {
        let stored = self.get(&self.labelled(format!("smt:root:{height}").as_bytes()))?;
        Ok(stored.and_then(|bytes| bytes.try_into().ok()).unwrap_or_default())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).with_context(|| format!("reading {}", quoted(key)))
    }

    /// The last height indexed (`/__INTERNAL/tip-height`).
    pub fn tip_height(&self) -> Result<Option<u32>> {
        let key = [&self.prefix[..], b"/__INTERNAL/tip-height"].concat();
        match self.get(&key)? {
            None => Ok(None),
            Some(bytes) => match <[u8; 4]>::try_from(bytes.as_slice()) {
                Ok(le) => Ok(Some(u32::from_le_bytes(le))),
                Err(_) => bail!("{}: {} bytes, expected a u32", quoted(&key), bytes.len()),
            },
        }
    }

    /// The block hash indexed at `height`: `/__INTERNAL/height-to-hash/{h}`, which metashrew's
    /// sync layer writes without the label (a labelled copy is read where there is no other).
    pub fn block_hash(&self, height: u32) -> Result<Option<Vec<u8>>> {
        let key = [HEIGHT_TO_HASH, height.to_string().as_bytes()].concat();
        match self.get(&key)? {
            Some(hash) => Ok(Some(hash)),
            None if self.prefix.is_empty() => Ok(None),
            None => self.get(&[&self.prefix[..], &key].concat()),
        }
    }

    /// Each `(height, hash)` recorded, unlabelled then labelled, in key order (not height order).
    pub fn recorded_hashes(&self) -> impl Iterator<Item = Result<(u32, Box<[u8]>)>> + '_ {
        let prefixes = if self.prefix.is_empty() { vec![Vec::new()] } else { vec![Vec::new(), self.prefix.clone()] };
        prefixes.into_iter().flat_map(move |prefix| {
            let start = [&prefix[..], HEIGHT_TO_HASH].concat();
            self.db
                .iterator(IteratorMode::From(&start.clone(), rocksdb::Direction::Forward))
                .map(|entry| entry.context("reading block hashes"))
                .take_while(move |entry| entry.as_ref().map_or(true, |(raw, _)| raw.starts_with(&start)))
                .filter_map(move |entry| match entry {
                    Err(error) => Some(Err(error)),
                    Ok((raw, hash)) => {
                        let height = std::str::from_utf8(&raw[prefix.len() + HEIGHT_TO_HASH.len()..]).ok().and_then(canonical_u32)?;
                        Some(Ok((height, hash)))
                    }
                })
        })
    }

    /// Every guest key's history (label removed), checked, in one forward pass over the
    /// database, in the order of their `KEY/length` records. A key's entries `KEY/N` sort before
    /// its `KEY/length` (digits before `l`), so a history is whole when its length record is
    /// reached: only histories whose length record is still ahead are held (one, unless keys
    /// nest). Checked: a length in ASCII decimal, every entry present, each `{height}:{hex}`,
    /// heights never going backwards, and every record metashrew's own, a length record, or an
    /// entry a length record counts (anything else would otherwise be skipped).
    pub fn histories(&self) -> Histories<'_> {
        let mut options = rocksdb::ReadOptions::default();
        // One pass over everything: keep its blocks out of the cache (memory stays flat) and
        // read ahead.
        options.fill_cache(false);
        options.set_readahead_size(2 << 20);
        let records = self.db.iterator_opt(IteratorMode::From(&self.prefix, rocksdb::Direction::Forward), options);
        Histories { records, prefix: &self.prefix, pending: HashMap::new(), done: false }
    }

    /// Writes the guest's state as of `height` to `out` as a dump (key order), in flat memory:
    /// the values go through a temporary RocksDB in `scratch`, which sorts them.
    pub fn write_state(&self, height: u32, scratch: &Path, out: impl std::io::Write) -> Result<schema::DumpFile> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_write_buffer_size(16 << 20);
        let sorter = DB::open(&options, scratch.join("sorted")).context("opening the scratch database")?;
        let mut write = rocksdb::WriteOptions::default();
        write.disable_wal(true);
        for history in self.histories() {
            let (key, history) = history?;
            if let Some(value) = value_as_of(&history, height) {
                sorter.put_opt(&key, value, &write).context("writing to the scratch database")?;
            }
        }
        let entries = sorter.iterator(IteratorMode::Start).map(|entry| entry.context("reading the scratch database"));
        crate::dump::write_entries(entries, out)
    }
}

/// Where two nodes' databases first differ, as of the heights both indexed.
#[derive(Debug, serde::Serialize)]
pub struct Comparison {
    /// `identical`, `different_blocks` (the nodes indexed different blocks: a reorg, another
    /// chain) or `different_state`.
    pub verdict: &'static str,
    /// The first height that differs.
    pub height: Option<u32>,
    /// Each node's tip height.
    pub tips: [u32; 2],
    /// Heights whose block hashes both nodes recorded and that were compared.
    pub block_hashes_compared: u32,
    /// At `different_blocks`: each node's block hash there (display order, hex).
    pub block_hashes: Option<[String; 2]>,
    /// Guest keys read in either node.
    pub keys_compared: u64,
    /// At `different_state`: the keys that first differ at `height` (at most [`SHOWN_KEYS`]),
    /// with each node's history around it.
    pub keys: Vec<KeyDivergence>,
    /// How many keys first differ at `height`.
    pub keys_differing_there: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct KeyDivergence {
    pub key: String,
    /// Each node's entries up to the height (the last few) and the first after it: `[height, value]`.
    pub histories: [Vec<(u32, String)>; 2],
}

pub const SHOWN_KEYS: usize = 20;

/// Compares two nodes: first their block hashes per height, then every guest key's history,
/// up to the lower of their tips, in one pass over each database. One key's history at a time
/// is held.
pub fn compare(a: &MetashrewDb, b: &MetashrewDb) -> Result<Comparison> {
    let tip_of = |db: &MetashrewDb, name: &str| db.tip_height()?.with_context(|| format!("node {name} has no /__INTERNAL/tip-height"));
    let tips = [tip_of(a, "A")?, tip_of(b, "B")?];
    let common = tips[0].min(tips[1]);
    let mut comparison = Comparison {
        verdict: "identical",
        height: None,
        tips,
        block_hashes_compared: 0,
        block_hashes: None,
        keys_compared: 0,
        keys: Vec::new(),
        keys_differing_there: 0,
    };
    // The lowest height whose hashes differ, over A's recorded hashes (one pass, no map).
    for recorded in a.recorded_hashes() {
        let (height, hash_a) = recorded?;
        if height > common {
            continue;
        }
        let Some(hash_b) = b.block_hash(height)? else { continue };
        comparison.block_hashes_compared += 1;
        if *hash_a != hash_b[..] && comparison.height.is_none_or(|first| height < first) {
            comparison.height = Some(height);
            comparison.block_hashes = Some([hex::encode(&hash_a), hex::encode(&hash_b)]);
        }
    }
    if comparison.height.is_some() {
        comparison.verdict = "different_blocks";
        return Ok(comparison);
    }
    let (mut from_a, mut from_b) = (a.histories().peekable(), b.histories().peekable());
    loop {
        // Both come in the order of their `KEY/length` records: merge them by it.
        let order = |key: &[u8]| [key, LENGTH].concat();
        let (key, histories) = match (from_a.peek(), from_b.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) => return Err(from_a.next().expect("peeked").expect_err("an error")),
            (_, Some(Err(_))) => return Err(from_b.next().expect("peeked").expect_err("an error")),
            (Some(Ok((ka, _))), Some(Ok((kb, _)))) => match order(ka).cmp(&order(kb)) {
                std::cmp::Ordering::Less => only_in_a(from_a.next())?,
                std::cmp::Ordering::Greater => only_in_b(from_b.next())?,
                std::cmp::Ordering::Equal => {
                    let (key, history_a) = from_a.next().expect("peeked")?;
                    let (_, history_b) = from_b.next().expect("peeked")?;
                    (key, [history_a, history_b])
                }
            },
            (Some(_), None) => only_in_a(from_a.next())?,
            (None, Some(_)) => only_in_b(from_b.next())?,
        };
        comparison.keys_compared += 1;
        let Some(height) = first_difference(&histories, common) else { continue };
        match comparison.height {
            Some(first) if height > first => continue,
            Some(first) if height == first => {}
            _ => {
                comparison.height = Some(height);
                comparison.keys.clear();
                comparison.keys_differing_there = 0;
            }
        }
        comparison.keys_differing_there += 1;
        if comparison.keys.len() < SHOWN_KEYS {
            comparison.keys.push(KeyDivergence { key: quoted(&key), histories: histories.map(|h| around(&h, height)) });
        }
    }
    if comparison.height.is_some() {
        comparison.verdict = "different_state";
    }
    Ok(comparison)
}

type Keyed = (Vec<u8>, Vec<Entry>);

fn only_in_a(next: Option<Result<Keyed>>) -> Result<(Vec<u8>, [Vec<Entry>; 2])> {
    let (key, history) = next.expect("peeked")?;
    Ok((key, [history, Vec::new()]))
}

fn only_in_b(next: Option<Result<Keyed>>) -> Result<(Vec<u8>, [Vec<Entry>; 2])> {
    let (key, history) = next.expect("peeked")?;
    Ok((key, [Vec::new(), history]))
}

/// [`MetashrewDb::histories`]: each key and its history, checked.
pub struct Histories<'a> {
    records: rocksdb::DBIteratorWithThreadMode<'a, DB>,
    prefix: &'a [u8],
    /// Entries read whose length record is still ahead: owner → N → (raw key, raw entry).
    pending: HashMap<Vec<u8>, BTreeMap<u32, (Box<[u8]>, Box<[u8]>)>>,
    done: bool,
}

impl Iterator for Histories<'_> {
    type Item = Result<(Vec<u8>, Vec<Entry>)>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let record = match self.records.next() {
                Some(Ok(record)) => record,
                Some(Err(error)) => return Some(Err(self.stop(anyhow::Error::new(error).context("iterating the metashrew database")))),
                None => break,
            };
            let (raw, value) = record;
            let Some(key) = raw.strip_prefix(self.prefix) else { break };
            if Internal::of(key).is_some() {
                continue;
            }
            let slash = key.iter().rposition(|&b| b == b'/');
            let Some((owner, suffix)) = slash.map(|at| (&key[..at], &key[at + 1..])) else { return Some(Err(self.stop(stray(key)))) };
            if suffix == b"length" {
                let history = self.finish(owner, &value);
                return Some(history.map_err(|error| self.stop(error)).map(|history| (owner.to_vec(), history)));
            }
            let Some(n) = std::str::from_utf8(suffix).ok().and_then(canonical_u32) else { return Some(Err(self.stop(stray(key)))) };
            self.pending.entry(owner.to_vec()).or_default().insert(n, (key.into(), value));
        }
        self.done = true;
        // An entry no length record counted is damage, never skipped: the first such, by key.
        let raw = self.pending.drain().flat_map(|(_, entries)| entries.into_values().map(|(raw, _)| raw)).min()?;
        Some(Err(stray(&raw)))
    }
}

impl Histories<'_> {
    fn stop(&mut self, error: anyhow::Error) -> anyhow::Error {
        self.done = true;
        self.pending.clear();
        error
    }

    /// `owner`'s history, at its length record.
    fn finish(&mut self, owner: &[u8], length: &[u8]) -> Result<Vec<Entry>> {
        let damaged = |what: String| damaged(owner, what);
        let length = parse_length(owner, length)?;
        let mut entries = self.pending.remove(owner).unwrap_or_default();
        let mut history: Vec<Entry> = Vec::with_capacity(entries.len());
        for n in 0..length {
            let (_, entry) = entries.remove(&n).ok_or_else(|| damaged(format!("entry {n} of {length} is missing")))?;
            let (height, value) = parse_entry(&entry).map_err(|what| damaged(format!("entry {n}: {what}")))?;
            if let Some((previous, _)) = history.last() {
                if height < *previous {
                    return Err(damaged(format!("entry {n} is at height {height}, after entry {} at height {previous}", n - 1)));
                }
            }
            history.push((height, value));
        }
        match entries.into_values().next() {
            Some((raw, _)) => Err(stray(&raw)),
            None => Ok(history),
        }
    }
}

fn damaged(key: &[u8], what: String) -> anyhow::Error {
    anyhow::anyhow!("damaged history of {}: {what}", quoted(key))
}

/// A `KEY/length` record: ASCII decimal.
fn parse_length(key: &[u8], length: &[u8]) -> Result<u32> {
    std::str::from_utf8(length)
        .ok()
        .and_then(canonical_u32)
        .ok_or_else(|| damaged(key, format!("length {} is not a decimal number", quoted(length))))
}

fn stray(key: &[u8]) -> anyhow::Error {
    anyhow::anyhow!("damaged database: {} is neither a history entry counted by a length record nor one of metashrew's keys", quoted(key))
}

/// The first height, up to `last`, at which the two histories give different values: one walk
/// over both, in height order.
fn first_difference(histories: &[Vec<Entry>; 2], last: u32) -> Option<u32> {
    let [a, b] = histories;
    let (mut i, mut j) = (0, 0);
    let (mut value_a, mut value_b): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    loop {
        let height = match (a.get(i), b.get(j)) {
            (None, None) => return None,
            (Some((ha, _)), Some((hb, _))) => *ha.min(hb),
            (Some((h, _)), None) | (None, Some((h, _))) => *h,
        };
        if height > last {
            return None;
        }
        while let Some((_, value)) = a.get(i).filter(|(h, _)| *h == height) {
            value_a = Some(value);
            i += 1;
        }
        while let Some((_, value)) = b.get(j).filter(|(h, _)| *h == height) {
            value_b = Some(value);
            j += 1;
        }
        if value_a != value_b {
            return Some(height);
        }
    }
}

/// The last three entries at or below `height` and the first after it.
fn around(history: &[Entry], height: u32) -> Vec<(u32, String)> {
    let split = history.partition_point(|(h, _)| *h <= height);
    let shown = &history[split.saturating_sub(3)..(split + 1).min(history.len())];
    shown.iter().map(|(h, value)| (*h, crate::dump::value_text(value))).collect()
}

/// `{height}:{lowercase hex}`.
fn parse_entry(entry: &[u8]) -> std::result::Result<Entry, String> {
    let text = std::str::from_utf8(entry).map_err(|_| format!("{} is not text", quoted(entry)))?;
    let (height, hex_value) = text.split_once(':').ok_or_else(|| format!("{} has no `height:` prefix", quoted(entry)))?;
    let height = canonical_u32(height).ok_or_else(|| format!("height `{}` is not a decimal u32", short(height)))?;
    if hex_value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("value `{}` is not lowercase hex", short(hex_value)));
    }
    let value = hex::decode(hex_value).map_err(|_| format!("value `{}` is not hex", short(hex_value)))?;
    Ok((height, value))
}

fn short(text: &str) -> &str {
    text.char_indices().nth(40).map_or(text, |(at, _)| &text[..at])
}

/// The value a history gives as of `height`: its last entry at or below it.
pub fn value_as_of(history: &[Entry], height: u32) -> Option<&[u8]> {
    let after = history.partition_point(|(at, _)| *at <= height);
    after.checked_sub(1).map(|last| history[last].1.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_damage_is_named() {
        assert_eq!(parse_entry(b"5:68690a").unwrap(), (5, b"hi\n".to_vec()));
        assert_eq!(parse_entry(b"7:").unwrap(), (7, Vec::new()));
        assert_eq!(parse_entry(b"7").unwrap_err(), "\"7\" has no `height:` prefix");
        assert_eq!(parse_entry(b"x:00").unwrap_err(), "height `x` is not a decimal u32");
        assert_eq!(parse_entry(b"05:00").unwrap_err(), "height `05` is not a decimal u32");
        assert_eq!(parse_entry(b"5:AB").unwrap_err(), "value `AB` is not lowercase hex");
        assert_eq!(parse_entry(b"3:zz").unwrap_err(), "value `zz` is not hex");
    }

    #[test]
    fn the_value_as_of_a_height_is_the_last_entry_at_or_below_it() {
        let history = vec![(5, b"a".to_vec()), (9, b"b".to_vec()), (9, b"c".to_vec())];
        let as_of = |h| value_as_of(&history, h);
        assert_eq!([as_of(4), as_of(5), as_of(7), as_of(9), as_of(100)], [None, Some(&b"a"[..]), Some(b"a"), Some(b"c"), Some(b"c")]);
    }

    #[test]
    fn internal_keys_are_told_apart() {
        assert_eq!(Internal::of(b"smt:root:12"), Some(Internal::SmtRoot(12)));
        assert_eq!(Internal::of(b"/__INTERNAL/height-to-hash/3"), Some(Internal::HeightToHash(3)));
        assert_eq!(Internal::of(b"/__INTERNAL/tip-height"), Some(Internal::TipHeight));
        assert_eq!(Internal::of(b"__INTERNAL/height"), Some(Internal::SyncHeight));
        assert_eq!(Internal::of(b"alkanes:///__INTERNAL/tip-height"), Some(Internal::TipHeight));
        assert_eq!(Internal::of(b"/blocks/3"), None);
    }
}
