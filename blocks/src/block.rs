//! A block as every source yields it, and the heights a run wants.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub height: u32,
    /// The block's bytes, without the height (the host prepends it).
    pub payload: Vec<u8>,
}

/// Heights wanted, both ends inclusive; a missing end is open.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeightRange {
    pub from: Option<u32>,
    pub to: Option<u32>,
}

impl HeightRange {
    pub fn contains(&self, height: u32) -> bool {
        self.from.is_none_or(|from| height >= from) && self.to.is_none_or(|to| height <= to)
    }
}

impl std::fmt::Display for HeightRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.from, self.to) {
            (Some(from), Some(to)) => write!(f, "--from {from} --to {to}"),
            (Some(from), None) => write!(f, "--from {from}"),
            (None, Some(to)) => write!(f, "--to {to}"),
            (None, None) => write!(f, "all heights"),
        }
    }
}
