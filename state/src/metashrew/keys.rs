//! metashrew's key spellings (its v9 layout), each written once: the histories of the guest's
//! keys, metashrew's own keys, and how an entry and a length are encoded.
//!
//! ```text
//! KEY/length = "3"                       (ASCII decimal: how many entries)
//! KEY/0      = "5:68656c6c6f"            ("{height}:{lowercase hex of the value}")
//! KEY/1      = "9:"                      (an empty value)
//! smt:root:{height}                      (32 bytes; see `writer::last_pair_hash`)
//! /__INTERNAL/tip-height                 (u32 LE)
//! __INTERNAL/height                      (u32 LE, the sync layer's, never labelled)
//! /__INTERNAL/height-to-hash/{height}    (the block hash, the sync layer's, never labelled)
//! ```
//!
//! With `--label LABEL` a node writes all but the sync layer's keys under `LABEL://`.

use anyhow::Result;
use schema::dump::quoted;

/// One entry of a history: the height it was written at and the value.
pub type Entry = (u32, Vec<u8>);

/// The suffix of a history's length record.
pub const LENGTH_SUFFIX: &[u8] = b"/length";
/// The last height indexed.
pub const TIP_HEIGHT: &str = "/__INTERNAL/tip-height";
/// The sync layer's last height.
pub const SYNC_HEIGHT: &str = "__INTERNAL/height";
/// The sync layer's block hash at a height: this prefix, then the height in decimal.
pub const HEIGHT_TO_HASH: &str = "/__INTERNAL/height-to-hash/";
/// metashrew's per-block root: this prefix, then the height in decimal.
pub const ROOT_PREFIX: &str = "smt:root:";

/// `prefix ++ key`: a key as a node run with a label (`LABEL://`, or nothing) stores it.
pub fn labelled(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    [prefix, key].concat()
}

/// `KEY/length`.
pub fn length_key(key: &[u8]) -> Vec<u8> {
    [key, LENGTH_SUFFIX].concat()
}

/// `KEY/N`: the history's entry `n`.
pub fn entry_key(key: &[u8], n: u32) -> Vec<u8> {
    [key, format!("/{n}").as_bytes()].concat()
}

/// `smt:root:{height}`.
pub fn root_key(height: u32) -> Vec<u8> {
    format!("{ROOT_PREFIX}{height}").into_bytes()
}

/// `/__INTERNAL/height-to-hash/{height}`.
pub fn height_to_hash_key(height: u32) -> Vec<u8> {
    format!("{HEIGHT_TO_HASH}{height}").into_bytes()
}

/// An entry's value: `{height}:{lowercase hex}`.
pub fn encode_entry(height: u32, value: &[u8]) -> String {
    format!("{height}:{}", hex::encode(value))
}

/// A length record's value: ASCII decimal.
pub fn encode_length(length: u32) -> String {
    length.to_string()
}

/// A decimal number as metashrew writes one: digits only, no leading zero.
pub fn canonical_u32(text: &str) -> Option<u32> {
    text.parse().ok().filter(|n: &u32| n.to_string() == text)
}

/// `{height}:{lowercase hex}`, checked.
pub fn parse_entry(entry: &[u8]) -> std::result::Result<Entry, String> {
    let text = std::str::from_utf8(entry).map_err(|_| format!("{} is not text", quoted(entry)))?;
    let (height, hex_value) = text.split_once(':').ok_or_else(|| format!("{} has no `height:` prefix", quoted(entry)))?;
    let height = canonical_u32(height).ok_or_else(|| format!("height `{}` is not a decimal u32", short(height)))?;
    if hex_value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("value `{}` is not lowercase hex", short(hex_value)));
    }
    let value = hex::decode(hex_value).map_err(|_| format!("value `{}` is not hex", short(hex_value)))?;
    Ok((height, value))
}

/// `key`'s length record: ASCII decimal.
pub fn parse_length(key: &[u8], length: &[u8]) -> Result<u32> {
    std::str::from_utf8(length)
        .ok()
        .and_then(canonical_u32)
        .ok_or_else(|| damaged(key, format!("length {} is not a decimal number", quoted(length))))
}

fn short(text: &str) -> &str {
    text.char_indices().nth(40).map_or(text, |(at, _)| &text[..at])
}

/// `key`'s history is damaged: `what`.
pub fn damaged(key: &[u8], what: String) -> anyhow::Error {
    anyhow::anyhow!("damaged history of {}: {what}", quoted(key))
}

/// `key` belongs to no history and is none of metashrew's own keys.
pub fn stray(key: &[u8]) -> anyhow::Error {
    anyhow::anyhow!("damaged database: {} is neither a history entry counted by a length record nor one of metashrew's keys", quoted(key))
}

/// metashrew's own keys, told apart from the guest's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Internal {
    /// `smt:root:{height}`: what metashrew calls its state root (a hash of the block's last pair).
    Root(u32),
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
        if let Some(rest) = key.strip_prefix(ROOT_PREFIX) {
            return height(rest).map(Self::Root);
        }
        if let Some(rest) = key.strip_prefix(HEIGHT_TO_HASH) {
            return height(rest).map(Self::HeightToHash);
        }
        match key {
            TIP_HEIGHT => Some(Self::TipHeight),
            SYNC_HEIGHT => Some(Self::SyncHeight),
            _ => None,
        }
    }
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
    fn what_is_written_parses_back() {
        assert_eq!(parse_entry(encode_entry(9, b"\x00ab").as_bytes()).unwrap(), (9, b"\x00ab".to_vec()));
        assert_eq!(parse_length(b"k", encode_length(12).as_bytes()).unwrap(), 12);
        assert_eq!(entry_key(b"/k", 3), b"/k/3");
        assert_eq!(length_key(b"/k"), b"/k/length");
        assert_eq!(Internal::of(&root_key(4)), Some(Internal::Root(4)));
        assert_eq!(Internal::of(&height_to_hash_key(4)), Some(Internal::HeightToHash(4)));
    }

    #[test]
    fn internal_keys_are_told_apart() {
        assert_eq!(Internal::of(b"smt:root:12"), Some(Internal::Root(12)));
        assert_eq!(Internal::of(b"/__INTERNAL/height-to-hash/3"), Some(Internal::HeightToHash(3)));
        assert_eq!(Internal::of(b"/__INTERNAL/tip-height"), Some(Internal::TipHeight));
        assert_eq!(Internal::of(b"__INTERNAL/height"), Some(Internal::SyncHeight));
        assert_eq!(Internal::of(b"alkanes:///__INTERNAL/tip-height"), Some(Internal::TipHeight));
        assert_eq!(Internal::of(b"/blocks/3"), None);
    }
}
