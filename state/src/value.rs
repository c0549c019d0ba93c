//! What a read hands the host: [`Value`], a value's bytes wherever they live, and [`Found`], what
//! a guest's read finds before it is charged.

use rocksdb::DBPinnableSlice;

/// A value read for the guest: pinned in RocksDB (this runner's layout) or decoded from a
/// history entry (metashrew's).
pub enum Value<'a> {
    Pinned(DBPinnableSlice<'a>),
    Decoded(Vec<u8>),
}

impl std::ops::Deref for Value<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Value::Pinned(slice) => slice,
            Value::Decoded(bytes) => bytes,
        }
    }
}

/// What a read finds under a key, in one lookup where the layout allows: the value itself, or,
/// for a value large enough that loading it must wait for the charge check, only its length.
pub enum Found<'a> {
    Value(Value<'a>),
    Large(u64),
}

impl Found<'_> {
    /// The value's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Found::Value(value) => value.len() as u64,
            Found::Large(len) => *len,
        }
    }
}
