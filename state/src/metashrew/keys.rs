//! metashrew's key spellings, each written once: the histories of the guest's keys, metashrew's
//! own keys, and how an entry and a length are encoded in each of its layouts ([`Version`]).
//!
//! ```text
//!                                        v9 (text)                   v10 (binary)
//! KEY/length                             "3" (ASCII decimal)         3u32 LE
//! KEY/N                                  "5:68656c6c6f"              5u32 LE ++ b"hello"
//! smt:root:{height}                      32 bytes (`writer::last_pair_hash`); none in v10
//! /__INTERNAL/keys-at-height/{height}    v10: the keys the block wrote (`encode_manifest`)
//! /__INTERNAL/tip-height                 u32 LE
//! __INTERNAL/height                      u32 LE, the sync layer's, never labelled
//! /__INTERNAL/height-to-hash/{height}    the block hash, the sync layer's, never labelled
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
/// metashrew's per-block root (v9): this prefix, then the height in decimal.
pub const ROOT_PREFIX: &str = "smt:root:";
/// The keys a block wrote (v10): this prefix, then the height in decimal.
pub const MANIFEST_PREFIX: &str = "/__INTERNAL/keys-at-height/";

/// Which of metashrew's layouts a database is in: how its histories are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Text entries and lengths, a root per block (metashrew b0f554c3 and before).
    V9,
    /// Binary entries and lengths, a manifest of the keys each block wrote, no root (what
    /// production nodes run now).
    V10,
}

impl Version {
    /// An entry's value: the height and the value.
    pub fn encode_entry(self, height: u32, value: &[u8]) -> Vec<u8> {
        match self {
            Version::V9 => format!("{height}:{}", hex::encode(value)).into_bytes(),
            Version::V10 => [&height.to_le_bytes()[..], value].concat(),
        }
    }

    /// An entry read back, checked.
    pub fn parse_entry(self, entry: &[u8]) -> std::result::Result<Entry, String> {
        match self {
            Version::V9 => parse_text_entry(entry),
            Version::V10 => match entry.split_first_chunk::<4>() {
                Some((height, value)) => Ok((u32::from_le_bytes(*height), value.to_vec())),
                None => Err(format!("{} bytes, fewer than a height's 4", entry.len())),
            },
        }
    }

    /// A length record's value.
    pub fn encode_length(self, length: u32) -> Vec<u8> {
        match self {
            Version::V9 => length.to_string().into_bytes(),
            Version::V10 => length.to_le_bytes().to_vec(),
        }
    }

    /// `key`'s length record read back, checked.
    pub fn parse_length(self, key: &[u8], length: &[u8]) -> Result<u32> {
        let parsed = match self {
            Version::V9 => std::str::from_utf8(length).ok().and_then(canonical_u32),
            Version::V10 => <[u8; 4]>::try_from(length).ok().map(u32::from_le_bytes),
        };
        let expected = match self {
            Version::V9 => "a decimal number",
            Version::V10 => "a u32 (4 bytes, little-endian)",
        };
        parsed.ok_or_else(|| damaged(key, format!("length {} is not {expected}", quoted(length))))
    }

    /// The layout's name (`--layout`, a result's `db_layout`).
    pub fn layout_name(self) -> &'static str {
        match self {
            Version::V9 => "metashrew",
            Version::V10 => "metashrew-v10",
        }
    }
}

/// `/__INTERNAL/keys-at-height/{height}`.
pub fn manifest_key(height: u32) -> Vec<u8> {
    format!("{MANIFEST_PREFIX}{height}").into_bytes()
}

/// The keys a block wrote, as v10 records them: sorted, each once, `[u32 LE count]` then
/// `[u32 LE length][key]` each.
pub fn encode_manifest<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut keys: Vec<&[u8]> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.dedup();
    let mut manifest = (keys.len() as u32).to_le_bytes().to_vec();
    for key in keys {
        manifest.extend_from_slice(&(key.len() as u32).to_le_bytes());
        manifest.extend_from_slice(key);
    }
    manifest
}

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

/// A decimal number as metashrew writes one: digits only, no leading zero.
pub fn canonical_u32(text: &str) -> Option<u32> {
    text.parse().ok().filter(|n: &u32| n.to_string() == text)
}

/// A v9 entry, `{height}:{lowercase hex}`, checked.
fn parse_text_entry(entry: &[u8]) -> std::result::Result<Entry, String> {
    let text = std::str::from_utf8(entry).map_err(|_| format!("{} is not text", quoted(entry)))?;
    let (height, hex_value) = text.split_once(':').ok_or_else(|| format!("{} has no `height:` prefix", quoted(entry)))?;
    let height = canonical_u32(height).ok_or_else(|| format!("height `{}` is not a decimal u32", short(height)))?;
    if hex_value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("value `{}` is not lowercase hex", short(hex_value)));
    }
    let value = hex::decode(hex_value).map_err(|_| format!("value `{}` is not hex", short(hex_value)))?;
    Ok((height, value))
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
    /// `/__INTERNAL/keys-at-height/{height}` (v10): the keys that block wrote.
    KeysAtHeight(u32),
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
        if let Some(rest) = key.strip_prefix(MANIFEST_PREFIX) {
            return height(rest).map(Self::KeysAtHeight);
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
        let parse = |entry: &[u8]| Version::V9.parse_entry(entry);
        assert_eq!(parse(b"5:68690a").unwrap(), (5, b"hi\n".to_vec()));
        assert_eq!(parse(b"7:").unwrap(), (7, Vec::new()));
        assert_eq!(parse(b"7").unwrap_err(), "\"7\" has no `height:` prefix");
        assert_eq!(parse(b"x:00").unwrap_err(), "height `x` is not a decimal u32");
        assert_eq!(parse(b"05:00").unwrap_err(), "height `05` is not a decimal u32");
        assert_eq!(parse(b"5:AB").unwrap_err(), "value `AB` is not lowercase hex");
        assert_eq!(parse(b"3:zz").unwrap_err(), "value `zz` is not hex");
        assert_eq!(Version::V10.parse_entry(b"\x05\x00\x00\x00hi").unwrap(), (5, b"hi".to_vec()));
        assert_eq!(Version::V10.parse_entry(b"\x05\x00").unwrap_err(), "2 bytes, fewer than a height's 4");
        let error = Version::V10.parse_length(b"k", b"12").unwrap_err().to_string();
        assert!(error.contains("\"k\"") && error.contains("not a u32"), "{error}");
    }

    #[test]
    fn what_is_written_parses_back() {
        for version in [Version::V9, Version::V10] {
            assert_eq!(version.parse_entry(&version.encode_entry(9, b"\x00ab")).unwrap(), (9, b"\x00ab".to_vec()));
            assert_eq!(version.parse_entry(&version.encode_entry(0, b"")).unwrap(), (0, Vec::new()));
            assert_eq!(version.parse_length(b"k", &version.encode_length(12)).unwrap(), 12);
        }
        assert_eq!(Version::V10.encode_entry(0x0102, b"v"), b"\x02\x01\x00\x00v");
        assert_eq!(Version::V10.encode_length(3), 3u32.to_le_bytes());
        assert_eq!(entry_key(b"/k", 3), b"/k/3");
        assert_eq!(length_key(b"/k"), b"/k/length");
        assert_eq!(Internal::of(&root_key(4)), Some(Internal::Root(4)));
        assert_eq!(Internal::of(&height_to_hash_key(4)), Some(Internal::HeightToHash(4)));
        assert_eq!(Internal::of(&manifest_key(4)), Some(Internal::KeysAtHeight(4)));
    }

    /// As metashrew's `serialize_key_manifest` lays it out, the keys sorted and each once.
    #[test]
    fn a_manifest_lists_each_key_once_in_order() {
        let manifest = encode_manifest([&b"/b"[..], b"/a", b"/b"]);
        assert_eq!(manifest, [&2u32.to_le_bytes()[..], &2u32.to_le_bytes(), b"/a", &2u32.to_le_bytes(), b"/b"].concat());
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
