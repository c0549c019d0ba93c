//! The committed state as the dump text (`schema::dump`), one line per key in key order,
//! streamed: memory stays flat however many keys there are.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::files::write_atomically_with;

/// One key and its value, as a state's entries come in key order.
pub type Entry = Result<(Box<[u8]>, Box<[u8]>)>;

/// The dump of key-sorted `entries`, line by line to `out`: how many lines and their SHA-256.
pub fn write_entries(entries: impl Iterator<Item = Entry>, out: impl Write) -> Result<schema::DumpFile> {
    let mut out = HashingWriter { inner: std::io::BufWriter::with_capacity(1 << 16, out), hasher: Sha256::new() };
    let mut lines = 0u64;
    let mut line = String::new();
    for entry in entries {
        let (key, value) = entry?;
        line.clear();
        schema::dump::push_line(&mut line, &key, &value);
        line.push('\n');
        out.write_all(line.as_bytes()).context("writing the dump")?;
        lines += 1;
    }
    out.inner.flush().context("writing the dump")?;
    Ok(schema::DumpFile { path: String::new(), lines, sha256: hex::encode(out.hasher.finalize()) })
}

/// The dump of `entries` written into `path` atomically (a temporary file beside it, a rename).
pub fn write_file(entries: impl Iterator<Item = Entry>, path: &Path) -> Result<schema::DumpFile> {
    let written = write_atomically_with(path, |file| write_entries(entries, file))?;
    Ok(schema::DumpFile { path: path.display().to_string(), ..written })
}

/// The dump of `entries` as lines, for a result that carries its dump inline.
pub fn lines(entries: impl Iterator<Item = Entry>) -> Result<Vec<String>> {
    entries.map(|entry| entry.map(|(key, value)| schema::dump::line(&key, &value))).collect()
}

/// The dump as a result carries it: inline lines, or streamed to `file` (then no lines).
pub fn inline_or_to(entries: impl Iterator<Item = Entry>, file: Option<&Path>) -> Result<(Vec<String>, Option<schema::DumpFile>)> {
    match file {
        Some(path) => Ok((Vec::new(), Some(write_file(entries, path)?))),
        None => Ok((lines(entries)?, None)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_dump_counts_its_lines_and_hashes_what_it_wrote() {
        let entries = [(&b"a"[..], &b"1"[..]), (b"b\n", b"")].map(|(k, v)| Ok((Box::from(k), Box::from(v))));
        let mut out = Vec::new();
        let written = write_entries(entries.into_iter(), &mut out).unwrap();
        assert_eq!(String::from_utf8(out.clone()).unwrap(), "\"a\" = \"1\"\n\"b\\x0a\" = \"\"\n");
        assert_eq!((written.lines, written.sha256), (2, hex::encode(Sha256::digest(&out))));
    }
}
