//! The storage dump: the committed state as stable text, one line per key in key order:
//!
//! ```text
//! "/memory-stress-result/1" = "SUCCESS:1000MB"
//! "/memory-stress-data/1/0" = len=52428800 sha256=4f1c…
//! ```
//!
//! Keys and values up to [`SHORT_VALUE`] bytes are quoted with non-printable bytes escaped as
//! `\xNN`; longer values are summarised by length and SHA-256. This is the text repro diffs.
//! Big states are streamed to a file ([`write_dump`]): memory stays flat however many keys.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::state_store::StateStore;

pub const SHORT_VALUE: usize = 64;

pub fn dump_lines(store: &StateStore) -> Result<Vec<String>> {
    store.entries().map(|entry| entry.map(|(key, value)| dump_line(&key, &value))).collect()
}

/// Writes the dump line by line to `out` and says how many lines it wrote and their SHA-256.
pub fn write_dump(store: &StateStore, out: impl Write) -> Result<schema::DumpFile> {
    write_entries(store.entries(), out)
}

/// The dump of key-sorted `entries`, line by line to `out`: how many lines and their SHA-256.
pub fn write_entries(entries: impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>)>>, out: impl Write) -> Result<schema::DumpFile> {
    let mut out = HashingWriter { inner: std::io::BufWriter::with_capacity(1 << 16, out), hasher: Sha256::new() };
    let mut lines = 0u64;
    let mut line = String::new();
    for entry in entries {
        let (key, value) = entry?;
        line.clear();
        push_line(&mut line, &key, &value);
        line.push('\n');
        out.write_all(line.as_bytes()).context("writing the dump")?;
        lines += 1;
    }
    out.inner.flush().context("writing the dump")?;
    Ok(schema::DumpFile { path: String::new(), lines, sha256: hex::encode(out.hasher.finalize()) })
}

/// [`write_dump`] into `path`, atomically (a temporary file beside it, then a rename).
pub fn write_dump_file(store: &StateStore, path: &Path) -> Result<schema::DumpFile> {
    let summary = crate::runner::write_atomically_with(path, |file| write_dump(store, file))?;
    Ok(schema::DumpFile { path: path.display().to_string(), ..summary })
}

/// The dump as a result carries it: inline lines, or streamed to `file` (then no lines).
pub fn dump_inline_or_to(store: &StateStore, file: Option<&Path>) -> Result<(Vec<String>, Option<schema::DumpFile>)> {
    match file {
        Some(path) => Ok((Vec::new(), Some(write_dump_file(store, path)?))),
        None => Ok((dump_lines(store)?, None)),
    }
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub fn dump_line(key: &[u8], value: &[u8]) -> String {
    let mut line = String::with_capacity(key.len() + value.len().min(SHORT_VALUE) + 16);
    push_line(&mut line, key, value);
    line
}

fn push_line(line: &mut String, key: &[u8], value: &[u8]) {
    push_quoted(line, key);
    line.push_str(" = ");
    push_value(line, value);
}

/// A value as the dump shows it: quoted, or its length and SHA-256 when long.
pub fn value_text(value: &[u8]) -> String {
    let mut text = String::new();
    push_value(&mut text, value);
    text
}

fn push_value(line: &mut String, value: &[u8]) {
    if value.len() <= SHORT_VALUE {
        push_quoted(line, value);
    } else {
        use std::fmt::Write;
        let _ = write!(line, "len={} sha256={}", value.len(), hex::encode(Sha256::digest(value)));
    }
}

/// `bytes` in double quotes, printable ASCII as is, `"` and `\` escaped, the rest as `\xNN`.
pub fn quoted(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() + 2);
    push_quoted(&mut text, bytes);
    text
}

fn push_quoted(text: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    text.push('"');
    for &byte in bytes {
        match byte {
            b'"' => text.push_str("\\\""),
            b'\\' => text.push_str("\\\\"),
            0x20..=0x7e => text.push(byte as char),
            _ => {
                text.push_str("\\x");
                text.push(HEX[usize::from(byte >> 4)] as char);
                text.push(HEX[usize::from(byte & 0xf)] as char);
            }
        }
    }
    text.push('"');
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
