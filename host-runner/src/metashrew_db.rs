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
//! running node) and nothing is written to it. Histories are read one key at a time and the
//! state is put in key order through a temporary RocksDB, so memory stays flat however many keys
//! there are. A damaged history is an error naming the key, never skipped.

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
    db: DB,
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
        let prefix = label.map(|label| format!("{label}://").into_bytes()).unwrap_or_default();
        Ok(Self { db, prefix })
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

    /// Every guest key (label removed), in the database's order of their `KEY/length` records.
    pub fn keys(&self) -> impl Iterator<Item = Result<Vec<u8>>> + '_ {
        let mut options = rocksdb::ReadOptions::default();
        options.fill_cache(false);
        let start = IteratorMode::From(&self.prefix, rocksdb::Direction::Forward);
        self.db
            .iterator_opt(start, options)
            .map(|entry| entry.context("iterating the metashrew database"))
            .take_while(|entry| entry.as_ref().map_or(true, |(raw, _)| raw.starts_with(&self.prefix)))
            .filter_map(|entry| match entry {
                Err(error) => Some(Err(error)),
                // Every length record is a history: metashrew's own keys have none, and a guest
                // key that looks like one of them is still the guest's.
                Ok((raw, _)) => raw[self.prefix.len()..].strip_suffix(LENGTH).map(|key| Ok(key.to_vec())),
            })
    }

    /// `key`'s whole history, checked: a length in ASCII decimal, every entry present, each
    /// `{height}:{hex}`, heights never going backwards. `None`: the key has no history here.
    pub fn history(&self, key: &[u8]) -> Result<Option<Vec<Entry>>> {
        let raw = [&self.prefix[..], key].concat();
        let damaged = |what: String| anyhow::anyhow!("damaged history of {}: {what}", quoted(key));
        let Some(length) = self.get(&[&raw[..], LENGTH].concat())? else { return Ok(None) };
        let length = std::str::from_utf8(&length)
            .ok()
            .and_then(canonical_u32)
            .ok_or_else(|| damaged(format!("length {} is not a decimal number", quoted(&length))))?;
        let mut entries: Vec<Entry> = Vec::with_capacity(length.min(1 << 16) as usize);
        for n in 0..length {
            let entry = self.get(&[&raw[..], format!("/{n}").as_bytes()].concat())?;
            let entry = entry.ok_or_else(|| damaged(format!("entry {n} of {length} is missing")))?;
            let (height, value) = parse_entry(&entry).map_err(|what| damaged(format!("entry {n}: {what}")))?;
            if let Some((previous, _)) = entries.last() {
                if height < *previous {
                    return Err(damaged(format!("entry {n} is at height {height}, after entry {} at height {previous}", n - 1)));
                }
            }
            entries.push((height, value));
        }
        Ok(Some(entries))
    }

    /// Every raw key is metashrew's own, a `KEY/length` record, or an entry `KEY/N` of a history
    /// that has a length record: an entry nobody's length counts would otherwise be skipped.
    pub fn check_no_stray_entries(&self) -> Result<()> {
        let mut options = rocksdb::ReadOptions::default();
        options.fill_cache(false);
        // The last entry's owner and its length record: absent, unreadable (the history read
        // names that), or a count.
        let mut last_owner: Option<(Vec<u8>, Option<Option<u32>>)> = None;
        for entry in self.db.iterator_opt(IteratorMode::From(&self.prefix, rocksdb::Direction::Forward), options) {
            let (raw, _) = entry.context("iterating the metashrew database")?;
            let Some(key) = raw.strip_prefix(&self.prefix[..]) else { break };
            if key.ends_with(LENGTH) || Internal::of(key).is_some() {
                continue;
            }
            let stray = || anyhow::anyhow!("damaged database: {} is neither a history entry counted by a length record nor one of metashrew's keys", quoted(key));
            let slash = key.iter().rposition(|&b| b == b'/').ok_or_else(stray)?;
            let (owner, n) = (&key[..slash], &key[slash + 1..]);
            let n: u32 = std::str::from_utf8(n).ok().and_then(canonical_u32).ok_or_else(stray)?;
            if last_owner.as_ref().is_none_or(|(last, _)| last != owner) {
                let length = self.get(&[&raw[..self.prefix.len() + owner.len()], LENGTH].concat())?;
                let length = length.map(|l| std::str::from_utf8(&l).ok().and_then(|t| t.parse().ok()));
                last_owner = Some((owner.to_vec(), length));
            }
            match last_owner.as_ref().and_then(|(_, length)| *length) {
                Some(Some(length)) if n < length => {}
                Some(None) => {}
                _ => return Err(stray()),
            }
        }
        Ok(())
    }

    /// Writes the guest's state as of `height` to `out` as a dump (key order), in flat memory:
    /// the values go through a temporary RocksDB in `scratch`, which sorts them.
    pub fn write_state(&self, height: u32, scratch: &Path, out: impl std::io::Write) -> Result<schema::DumpFile> {
        self.check_no_stray_entries()?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_write_buffer_size(16 << 20);
        let sorter = DB::open(&options, scratch.join("sorted")).context("opening the scratch database")?;
        let mut write = rocksdb::WriteOptions::default();
        write.disable_wal(true);
        for key in self.keys() {
            let key = key?;
            if let Some(value) = value_as_of(&self.history(&key)?.unwrap_or_default(), height) {
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
/// up to the lower of their tips. One key's history at a time is held.
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
    a.check_no_stray_entries()?;
    b.check_no_stray_entries()?;
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
    let (mut keys_a, mut keys_b) = (a.keys().peekable(), b.keys().peekable());
    loop {
        // Both lists come in the order of their `KEY/length` records: merge them by it.
        let order = |key: &[u8]| [key, LENGTH].concat();
        let key = match (keys_a.peek(), keys_b.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) => return Err(keys_a.next().expect("peeked").expect_err("an error")),
            (_, Some(Err(_))) => return Err(keys_b.next().expect("peeked").expect_err("an error")),
            (Some(Ok(ka)), Some(Ok(kb))) => match order(ka).cmp(&order(kb)) {
                std::cmp::Ordering::Less => keys_a.next(),
                std::cmp::Ordering::Greater => keys_b.next(),
                std::cmp::Ordering::Equal => {
                    keys_b.next();
                    keys_a.next()
                }
            },
            (Some(_), None) => keys_a.next(),
            (None, Some(_)) => keys_b.next(),
        };
        let key = key.expect("peeked")?;
        comparison.keys_compared += 1;
        let histories = [a.history(&key)?.unwrap_or_default(), b.history(&key)?.unwrap_or_default()];
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
