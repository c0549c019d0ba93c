//! The storage dump's text, written by the runner and read by the xtask: the committed state,
//! one line per key in key order,
//!
//! ```text
//! "/memory-stress-result/1" = "SUCCESS:1000MB"
//! "/memory-stress-data/1/0" = len=52428800 sha256=4f1c…
//! ```
//!
//! Keys, and values of up to [`SHORT_VALUE`] bytes, are quoted: printable ASCII as is, `"` and
//! `\` escaped with a backslash, every other byte as `\xNN`. Longer values are summarised by
//! their length and SHA-256. This module is the only writer and the only reader of that text.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// Values up to this many bytes are shown in full; longer ones as length and SHA-256.
pub const SHORT_VALUE: usize = 64;

/// A value as a dump line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShownValue {
    /// A short value, in full.
    Bytes(Vec<u8>),
    /// A long value: its length and SHA-256 (hex).
    Summary { len: u64, sha256: String },
}

/// A line that is not in the dump format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine(pub String);

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadLine {}

/// The dump line of `key` = `value` (no newline).
pub fn line(key: &[u8], value: &[u8]) -> String {
    let mut line = String::with_capacity(key.len() + value.len().min(SHORT_VALUE) + 16);
    push_line(&mut line, key, value);
    line
}

/// Appends the dump line of `key` = `value` (no newline) to `out`.
pub fn push_line(out: &mut String, key: &[u8], value: &[u8]) {
    push_quoted(out, key);
    out.push_str(" = ");
    push_value(out, value);
}

/// A value as a dump line shows it: quoted, or its length and SHA-256 when long.
pub fn value_text(value: &[u8]) -> String {
    let mut text = String::new();
    push_value(&mut text, value);
    text
}

fn push_value(out: &mut String, value: &[u8]) {
    if value.len() <= SHORT_VALUE {
        push_quoted(out, value);
    } else {
        let _ = write!(out, "len={} sha256={}", value.len(), hex::encode(Sha256::digest(value)));
    }
}

/// `bytes` in double quotes, escaped as the dump escapes them.
pub fn quoted(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() + 2);
    push_quoted(&mut text, bytes);
    text
}

fn push_quoted(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for &byte in bytes {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(byte as char),
            _ => {
                out.push_str("\\x");
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 0xf)] as char);
            }
        }
    }
    out.push('"');
}

/// The bytes of the quoted string at the start of `text`, and where its closing quote ends.
pub fn unquote_prefix(text: &str) -> Result<(Vec<u8>, usize), BadLine> {
    let bad = |what: &str| BadLine(format!("{what}: {text:?}"));
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'"') {
        return Err(bad("not a dump line (no quoted key)"));
    }
    let mut out = Vec::new();
    let mut i = 1;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'"' => return Ok((out, i + 1)),
            b'\\' => {
                let (byte, escape_len) = match bytes.get(i + 1) {
                    Some(b'"') => (b'"', 2),
                    Some(b'\\') => (b'\\', 2),
                    Some(b'x') => {
                        let digits = text.get(i + 2..i + 4).filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
                        (digits.and_then(|d| u8::from_str_radix(d, 16).ok()).ok_or_else(|| bad("bad \\x escape in dump line"))?, 4)
                    }
                    _ => return Err(bad("bad escape in dump line")),
                };
                out.push(byte);
                i += escape_len;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Err(bad("not a dump line (unterminated quote)"))
}

/// The key of a dump line, unescaped.
pub fn key_of(line: &str) -> Result<Vec<u8>, BadLine> {
    unquote_prefix(line).map(|(key, _)| key)
}

/// The quoted key at the start of a dump line, as written (the whole line if it has none).
pub fn quoted_key_of(line: &str) -> &str {
    unquote_prefix(line).map_or(line, |(_, end)| &line[..end])
}

/// A dump line read back: its key and its value as shown.
pub fn parse_line(line: &str) -> Result<(Vec<u8>, ShownValue), BadLine> {
    let bad = |what: &str| BadLine(format!("{what}: {line:?}"));
    let (key, end) = unquote_prefix(line)?;
    let value = line[end..].strip_prefix(" = ").ok_or_else(|| bad("no ` = ` after the key"))?;
    if value.starts_with('"') {
        let (bytes, end) = unquote_prefix(value)?;
        return match end == value.len() {
            true => Ok((key, ShownValue::Bytes(bytes))),
            false => Err(bad("text after the quoted value")),
        };
    }
    let summary = value.strip_prefix("len=").and_then(|rest| rest.split_once(" sha256="));
    let (len, sha256) = summary.ok_or_else(|| bad("a value is quoted or `len=N sha256=HEX`"))?;
    let len = len.parse().map_err(|_| bad("the length is not a number"))?;
    match sha256.len() == 64 && sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        true => Ok((key, ShownValue::Summary { len, sha256: sha256.to_string() })),
        false => Err(bad("the SHA-256 is not 64 lowercase hex digits")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_values_are_quoted_and_escaped() {
        assert_eq!(line(b"/k\"1", b"\x05\x00ok\\"), r#""/k\"1" = "\x05\x00ok\\""#);
    }

    #[test]
    fn long_values_are_summarised_by_length_and_digest() {
        let line = line(b"k", &[7u8; SHORT_VALUE + 1]);
        assert!(line.starts_with("\"k\" = len=65 sha256="), "{line}");
        assert_eq!(line.len(), "\"k\" = len=65 sha256=".len() + 64);
    }

    #[test]
    fn a_value_of_exactly_the_short_limit_is_shown_in_full() {
        assert_eq!(line(b"k", &[b'a'; SHORT_VALUE]), format!("\"k\" = \"{}\"", "a".repeat(64)));
    }

    #[test]
    fn lines_that_are_not_dump_lines_are_refused_with_the_reason() {
        for (text, reason) in [
            ("key = \"v\"", "no quoted key"),
            ("\"k", "unterminated"),
            ("\"\\q\" = \"\"", "bad escape"),
            ("\"\\x4\" = \"\"", "bad \\x escape"),
            ("\"\\x+1\" = \"\"", "bad \\x escape"),
            ("\"k\" \"v\"", "no ` = `"),
            ("\"k\" = \"v\" x", "text after"),
            ("\"k\" = v", "quoted or `len=N"),
            ("\"k\" = len=x sha256=00", "not a number"),
            ("\"k\" = len=65 sha256=00", "64 lowercase hex"),
        ] {
            let error = parse_line(text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    proptest! {
        /// Every key and value round-trips: the key exactly, a short value exactly, a long one
        /// as its length and SHA-256.
        #[test]
        fn every_key_and_value_round_trips(key in proptest::collection::vec(any::<u8>(), 0..80), value in proptest::collection::vec(any::<u8>(), 0..130)) {
            let written = line(&key, &value);
            let shown = match value.len() <= SHORT_VALUE {
                true => ShownValue::Bytes(value.clone()),
                false => ShownValue::Summary { len: value.len() as u64, sha256: hex::encode(Sha256::digest(&value)) },
            };
            prop_assert_eq!(parse_line(&written).unwrap(), (key.clone(), shown));
            prop_assert_eq!(quoted_key_of(&written), quoted(&key));
            prop_assert!(written.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{}", written);
        }
    }
}
