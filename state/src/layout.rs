//! The database layouts a run can commit in, by name.

use crate::metashrew::keys::Version;

/// A database layout (`--layout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLayout {
    /// Ours ([`crate::trie`]): the pairs as flushed, the state lattice, the real state root.
    Trie,
    /// metashrew's ([`crate::metashrew`]) in one of its versions, its keys under `LABEL://`
    /// when the node ran with a label.
    Metashrew { label: Option<String>, version: Version },
}

impl DbLayout {
    /// The name results and `--layout` use: `trie`, `metashrew` (v9) or `metashrew-v10`.
    pub fn name(&self) -> &'static str {
        match self {
            DbLayout::Trie => "trie",
            DbLayout::Metashrew { version, .. } => version.layout_name(),
        }
    }
}
