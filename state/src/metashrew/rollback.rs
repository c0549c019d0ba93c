//! A metashrew-layout database rolled back to a height, as a snapshot taken at that height would
//! be: every history entry written above it removed (each history's length set again), with
//! metashrew's own per-height keys above it, and the tips set to it. Only ever done to a copy
//! (`host-runner snapshot`): the database a node wrote is never written.

use anyhow::{ensure, Context, Result};
use rocksdb::WriteBatch;

use super::keys::{self, Internal};
use super::writer::MetashrewStore;

/// What a rollback removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RolledBack {
    /// The tip before.
    pub from: u32,
    /// History entries removed, and histories left empty (their length records removed).
    pub entries: u64,
    pub emptied: u64,
}

impl MetashrewStore {
    /// Rolls back to `height` (at most the tip), in one batch. Every history is read once: the
    /// cost is a pass over the database, whatever the distance rolled back.
    pub fn roll_back_to(&self, height: u32) -> Result<RolledBack> {
        let node = &self.node;
        let tip = node.tip_height()?.context("the database has no tip height: no block was indexed into it")?;
        ensure!(height <= tip, "the database's tip is height {tip}: it holds no state as of {height}");
        let mut rolled = RolledBack { from: tip, ..RolledBack::default() };
        let mut batch = WriteBatch::default();
        for history in node.histories() {
            let (key, entries) = history?;
            let kept = entries.iter().take_while(|(at, _)| *at <= height).count();
            if kept == entries.len() {
                continue;
            }
            let stored = node.labelled(&key);
            for n in kept..entries.len() {
                batch.delete(keys::entry_key(&stored, n as u32));
            }
            rolled.entries += (entries.len() - kept) as u64;
            match kept {
                0 => {
                    batch.delete(keys::length_key(&stored));
                    rolled.emptied += 1;
                }
                kept => batch.put(keys::length_key(&stored), node.version().encode_length(kept as u32)),
            }
        }
        for record in node.db.iterator(rocksdb::IteratorMode::Start) {
            let (raw, _) = record?;
            if let Some(Internal::Root(at) | Internal::HeightToHash(at) | Internal::KeysAtHeight(at)) = Internal::of(&raw) {
                if at > height {
                    batch.delete(&raw);
                }
            }
        }
        batch.put(node.labelled(keys::TIP_HEIGHT.as_bytes()), height.to_le_bytes());
        batch.put(keys::SYNC_HEIGHT, height.to_le_bytes());
        node.db.write(batch).context("writing the rollback")?;
        node.db.flush().context("flushing the rollback")?;
        Ok(rolled)
    }
}
