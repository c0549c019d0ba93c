//! What a run indexes, handed over one block at a time: blocks held (the small inputs of text
//! and single blocks) or a [`BlockMap`] streamed by a reader thread that stays at most a few
//! blocks ahead, so a run's memory does not grow with its length.

use std::sync::mpsc::{sync_channel, Receiver};

use anyhow::Result;

use crate::block::Block;
use crate::map::{BlockMap, Extent};

/// How many blocks the reader thread may hold ready beyond the one being run.
pub const READ_AHEAD: usize = 4;

/// A run's blocks.
#[derive(Debug, Clone)]
pub enum BlockStream {
    Held(Vec<Block>),
    Mapped(BlockMap),
}

impl BlockStream {
    /// The heights and sizes the run is asked for.
    pub fn extent(&self) -> Extent {
        match self {
            Self::Held(blocks) => Extent {
                first: blocks.first().map(|b| b.height),
                last: blocks.last().map(|b| b.height),
                count: blocks.len() as u64,
                bytes: blocks.iter().map(|b| b.payload.len() as u64).sum(),
            },
            Self::Mapped(map) => map.extent,
        }
    }

    /// The blocks above `after` (all when `None`), in order; a mapped block is read when its
    /// turn is near.
    pub fn after(&self, after: Option<u32>) -> Result<Box<dyn Iterator<Item = Result<Block>> + '_>> {
        let above = move |height: u32| after.is_none_or(|after| height > after);
        Ok(match self {
            Self::Held(blocks) => Box::new(blocks.iter().filter(move |b| above(b.height)).cloned().map(Ok)),
            Self::Mapped(map) => Box::new(read_ahead(map.blocks(after)?, READ_AHEAD)),
        })
    }
}

/// `blocks` read by a thread of their own, at most `depth` ahead of the consumer; the thread
/// stops after the first error, or when the consumer drops the iterator.
pub fn read_ahead(blocks: impl Iterator<Item = Result<Block>> + Send + 'static, depth: usize) -> impl Iterator<Item = Result<Block>> {
    let (sender, receiver) = sync_channel(depth);
    std::thread::Builder::new()
        .name("read-ahead".into())
        .spawn(move || {
            for block in blocks {
                let failed = block.is_err();
                if sender.send(block).is_err() || failed {
                    break;
                }
            }
        })
        .expect("spawning the block reader");
    ReadAhead(receiver)
}

struct ReadAhead(Receiver<Result<Block>>);

impl Iterator for ReadAhead {
    type Item = Result<Block>;

    fn next(&mut self) -> Option<Result<Block>> {
        self.0.recv().ok()
    }
}
