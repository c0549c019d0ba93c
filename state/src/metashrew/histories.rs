//! Every guest key's history in one forward pass over a metashrew database, checked.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use rocksdb::{IteratorMode, DB};

use super::keys::{canonical_u32, damaged, stray, Entry, Internal, Version};
use super::reader::MetashrewDb;

/// Each guest key (label removed) and its history, in the order of their `KEY/length` records,
/// in either of metashrew's layouts.
/// A key's entries `KEY/N` sort before its `KEY/length` (digits before `l`), so a history is
/// whole when its length record is reached: only histories whose length record is still ahead
/// are held (one, unless keys nest). Checked: a length in ASCII decimal, every entry present,
/// each `{height}:{hex}`, heights never going backwards, and every record metashrew's own, a
/// length record, or an entry a length record counts (anything else would otherwise be skipped).
pub struct Histories<'a> {
    records: rocksdb::DBIteratorWithThreadMode<'a, DB>,
    prefix: &'a [u8],
    version: Version,
    /// Entries read whose length record is still ahead: owner → N → (raw key, raw entry).
    pending: HashMap<Vec<u8>, BTreeMap<u32, (Box<[u8]>, Box<[u8]>)>>,
    done: bool,
}

impl MetashrewDb {
    /// Every guest key's history, checked, in one forward pass ([`Histories`]).
    pub fn histories(&self) -> Histories<'_> {
        Histories::of(self)
    }
}

impl<'a> Histories<'a> {
    fn of(node: &'a MetashrewDb) -> Self {
        let mut options = rocksdb::ReadOptions::default();
        // One pass over everything: keep its blocks out of the cache (memory stays flat) and
        // read ahead.
        options.fill_cache(false);
        options.set_readahead_size(2 << 20);
        let records = node.db.iterator_opt(IteratorMode::From(&node.prefix, rocksdb::Direction::Forward), options);
        Histories { records, prefix: &node.prefix, version: node.version, pending: HashMap::new(), done: false }
    }
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
        let length = self.version.parse_length(owner, length)?;
        let mut entries = self.pending.remove(owner).unwrap_or_default();
        let mut history: Vec<Entry> = Vec::with_capacity(entries.len());
        for n in 0..length {
            let (_, entry) = entries.remove(&n).ok_or_else(|| damaged(format!("entry {n} of {length} is missing")))?;
            let (height, value) = self.version.parse_entry(&entry).map_err(|what| damaged(format!("entry {n}: {what}")))?;
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

/// The value a history gives as of `height`: its last entry at or below it.
pub fn value_as_of(history: &[Entry], height: u32) -> Option<&[u8]> {
    let after = history.partition_point(|(at, _)| *at <= height);
    after.checked_sub(1).map(|last| history[last].1.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_as_of_a_height_is_the_last_entry_at_or_below_it() {
        let history = vec![(5, b"a".to_vec()), (9, b"b".to_vec()), (9, b"c".to_vec())];
        let as_of = |h| value_as_of(&history, h);
        assert_eq!([as_of(4), as_of(5), as_of(7), as_of(9), as_of(100)], [None, Some(&b"a"[..]), Some(b"a"), Some(b"c"), Some(b"c")]);
    }
}
