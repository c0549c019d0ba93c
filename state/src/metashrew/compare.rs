//! Two metashrew nodes compared: where their databases first differ, as of the heights both
//! indexed. Block hashes per height first (nodes that indexed different blocks are not compared
//! further), then every guest key's history in one merged pass, one key's history at a time.

use std::iter::Peekable;

use anyhow::{Context, Result};
use schema::dump::{quoted, value_text};
use schema::{KeyDivergence, NodeComparison, NodeVerdict};

use super::histories::Histories;
use super::keys::{length_key, Entry};
use super::reader::MetashrewDb;

pub const SHOWN_KEYS: usize = 20;

/// Compares two nodes: first their block hashes per height, then every guest key's history,
/// up to the lower of their tips, in one pass over each database.
pub fn compare(a: &MetashrewDb, b: &MetashrewDb) -> Result<NodeComparison> {
    let tip_of = |db: &MetashrewDb, name: &str| db.tip_height()?.with_context(|| format!("node {name} has no /__INTERNAL/tip-height"));
    let tips = [tip_of(a, "A")?, tip_of(b, "B")?];
    let mut comparison = NodeComparison {
        verdict: NodeVerdict::Identical,
        height: None,
        tips,
        block_hashes_compared: 0,
        block_hashes: None,
        keys_compared: 0,
        keys: Vec::new(),
        keys_differing_there: 0,
    };
    let common = tips[0].min(tips[1]);
    compare_block_hashes(a, b, common, &mut comparison)?;
    if comparison.height.is_some() {
        comparison.verdict = NodeVerdict::DifferentBlocks;
        return Ok(comparison);
    }
    compare_histories(a, b, common, &mut comparison)?;
    if comparison.height.is_some() {
        comparison.verdict = NodeVerdict::DifferentState;
    }
    Ok(comparison)
}

/// Notes the lowest height up to `common` whose hashes differ, over A's recorded hashes (one
/// pass, no map).
fn compare_block_hashes(a: &MetashrewDb, b: &MetashrewDb, common: u32, comparison: &mut NodeComparison) -> Result<()> {
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
    Ok(())
}

/// Notes the first height up to `common` at which any key's value differs, and the keys that
/// differ there.
fn compare_histories(a: &MetashrewDb, b: &MetashrewDb, common: u32, comparison: &mut NodeComparison) -> Result<()> {
    let mut merged = Merged { a: a.histories().peekable(), b: b.histories().peekable() };
    while let Some((key, histories)) = merged.next_key()? {
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
    Ok(())
}

/// Both nodes' histories merged by key: each comes in the order of its `KEY/length` records.
struct Merged<'a> {
    a: Peekable<Histories<'a>>,
    b: Peekable<Histories<'a>>,
}

impl Merged<'_> {
    /// The next key of either node, with both histories (empty where a node has none).
    fn next_key(&mut self) -> Result<Option<(Vec<u8>, [Vec<Entry>; 2])>> {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let order = match (self.a.peek(), self.b.peek()) {
            (None, None) => return Ok(None),
            (Some(Err(_)), _) | (Some(_), None) => Less,
            (_, Some(Err(_))) | (None, Some(_)) => Greater,
            (Some(Ok((ka, _))), Some(Ok((kb, _)))) => length_key(ka).cmp(&length_key(kb)),
        };
        let next = |histories: &mut Peekable<Histories>| histories.next().expect("peeked");
        Ok(Some(match order {
            Less => next(&mut self.a).map(|(key, history)| (key, [history, Vec::new()]))?,
            Greater => next(&mut self.b).map(|(key, history)| (key, [Vec::new(), history]))?,
            Equal => {
                let (key, history_a) = next(&mut self.a)?;
                (key, [history_a, next(&mut self.b)?.1])
            }
        }))
    }
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
    shown.iter().map(|(h, value)| (*h, value_text(value))).collect()
}
