//! Where one metashrew-compatible node differs from another while both run the same indexer over
//! the same blocks: where it resumes after a restart, how it commits a block, and what a view
//! leaves behind. [`Honest`] is `host-runner node`'s conduct; the test tree's faulty nodes
//! (`host-runner/tests/faulty_node/`) each get exactly one of these wrong, so the lab can show it
//! catches each.

use anyhow::Result;
use blocks::Block;
use schema::BlockReport;
use state::Database;

use crate::engine::Execution;
use crate::run::index::commit_block;

/// A `metashrew_view` call as the node answered it.
pub struct ViewCall<'a> {
    pub name: &'a str,
    pub input: &'a [u8],
    pub height: u32,
}

pub trait Conduct: Send + Sync {
    /// The first height to index: the one after the database's tip, or `start_block` (default
    /// 0) on a new database.
    fn resume_at(&self, tip: Option<u32>, start_block: Option<u32>) -> u32 {
        tip.map_or(start_block.unwrap_or(0), |tip| tip.saturating_add(1))
    }

    /// Commits what the block's run flushed, the block hash and the tip, in one batch.
    fn commit(&self, db: &Database, block: &Block, execution: Execution<()>) -> Result<BlockReport> {
        commit_block(db, block, execution, &mut [0; 32])
    }

    /// Called after each view answered; a view writes nothing to the indexed state.
    fn after_view(&self, _db: &Database, _call: &ViewCall, _answer: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// `host-runner node`: every block in one batch, resumed after its tip, views read-only.
pub struct Honest;

impl Conduct for Honest {}
