//! The storage dump: the committed state as stable text, one line per key in key order:
//!
//! ```text
//! "/memory-stress-result/1" = "SUCCESS:1000MB"
//! "/memory-stress-data/1/0" = len=52428800 sha256=4f1c…
//! ```
//!
//! Keys and values up to [`SHORT_VALUE`] bytes are quoted with non-printable bytes escaped as
//! `\xNN`; longer values are summarised by length and SHA-256. This is the text repro diffs.

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::state_store::StateStore;

pub const SHORT_VALUE: usize = 64;

pub fn dump_lines(store: &StateStore) -> Result<Vec<String>> {
    store.entries().map(|entry| entry.map(|(key, value)| dump_line(&key, &value))).collect()
}

pub fn dump_line(key: &[u8], value: &[u8]) -> String {
    let value = if value.len() <= SHORT_VALUE {
        quoted(value)
    } else {
        format!("len={} sha256={}", value.len(), hex::encode(Sha256::digest(value)))
    };
    format!("{} = {value}", quoted(key))
}

/// `bytes` in double quotes, printable ASCII as is, `"` and `\` escaped, the rest as `\xNN`.
pub fn quoted(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() + 2);
    text.push('"');
    for &byte in bytes {
        match byte {
            b'"' => text.push_str("\\\""),
            b'\\' => text.push_str("\\\\"),
            0x20..=0x7e => text.push(byte as char),
            _ => text.push_str(&format!("\\x{byte:02x}")),
        }
    }
    text.push('"');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_and_escaped() {
        assert_eq!(dump_line(b"/k\"1", b"\x05\x00ok\\"), r#""/k\"1" = "\x05\x00ok\\""#);
    }

    #[test]
    fn long_values_are_summarised_by_length_and_digest() {
        let line = dump_line(b"k", &[7u8; SHORT_VALUE + 1]);
        assert!(line.starts_with("\"k\" = len=65 sha256="), "{line}");
        assert_eq!(line.len(), "\"k\" = len=65 sha256=".len() + 64);
    }

    #[test]
    fn a_value_of_exactly_the_short_limit_is_shown_in_full() {
        assert_eq!(dump_line(b"k", &[b'a'; SHORT_VALUE]), format!("\"k\" = \"{}\"", "a".repeat(64)));
    }
}
