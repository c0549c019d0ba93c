//! metashrew's database layouts (v9: histories as text; v10: in binary, with a manifest of the
//! keys each block wrote): their key spellings ([`keys`]), a node's
//! database read without writing to it ([`MetashrewDb`], [`Histories`]), a run committed in it
//! ([`MetashrewStore`]), rolled back to a height (a snapshot's copy, [`RolledBack`]) and two
//! nodes compared ([`compare`]). Reading holds one history at a
//! time and sorts the state through a temporary RocksDB, so memory stays flat however many keys
//! there are; a damaged history is an error naming the key, never skipped.

mod compare;
mod histories;
pub mod keys;
mod reader;
mod rollback;
mod state_at;
#[cfg(test)]
mod tests;
mod writer;

pub use compare::{compare, SHOWN_KEYS};
pub use histories::{value_as_of, Histories};
pub use keys::{Entry, Internal, Version};
pub use reader::MetashrewDb;
pub use rollback::RolledBack;
pub use writer::{last_pair_hash, MetashrewStore, TABLE_FORMAT_VERSION};
