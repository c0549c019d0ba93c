//! The text form: lines of `HEIGHT [PAYLOAD_HEX]` (`#` starts a comment; a missing payload is an
//! empty block). Payloads are any bytes (the stress guest's are not Bitcoin blocks).

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::block::Block;

pub fn parse_hex(text: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    let text = text.strip_prefix("0x").unwrap_or(text);
    hex::decode(text).with_context(|| format!("`{}` is not hex", shorten(text)))
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.into(),
    }
}

pub fn read_file(path: &Path) -> Result<Vec<Block>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading blocks file {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "{} is neither `HEIGHT HEX` text nor a Bitcoin Core block file (no known network magic at its start)",
            path.display()
        )
    })?;
    parse(&text).with_context(|| format!("in blocks file {}", path.display()))
}

/// The blocks of a text, in ascending height order, each height once.
pub fn parse(text: &str) -> Result<Vec<Block>> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut last_line = 0;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let height = fields.next().unwrap_or_default();
        let height: u32 = height.parse().with_context(|| format!("line {number}: height `{}` is not a u32", shorten(height)))?;
        let payload = parse_hex(fields.next().unwrap_or("")).with_context(|| format!("line {number}"))?;
        if let Some(extra) = fields.next() {
            bail!("line {number}: unexpected `{}` after the payload", shorten(extra));
        }
        if let Some(previous) = blocks.last() {
            if height == previous.height {
                bail!("line {number}: height {height} given twice (also on line {last_line})");
            }
            if height < previous.height {
                bail!("line {number}: height {height} after {} (line {last_line}): blocks go in ascending height order", previous.height);
            }
        }
        last_line = number;
        blocks.push(Block { height, payload });
    }
    if blocks.is_empty() {
        bail!("no blocks: expected lines of `HEIGHT [PAYLOAD_HEX]`");
    }
    Ok(blocks)
}

/// The text form of `blocks`, which [`parse`] reads back.
pub fn write(blocks: &[Block], out: &mut impl std::io::Write) -> std::io::Result<()> {
    for block in blocks {
        writeln!(out, "{} {}", block.height, hex::encode(&block.payload))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heights_payloads_comments_and_empty_blocks() {
        let blocks = parse("# stress\n1 32000000 # 50 MB\n\n2\n3 0xff\n").unwrap();
        let expected = [(1, vec![0x32, 0, 0, 0]), (2, vec![]), (3, vec![0xff])];
        assert_eq!(blocks, expected.map(|(height, payload)| Block { height, payload }));
        let mut text = Vec::new();
        write(&blocks, &mut text).unwrap();
        assert_eq!(parse(std::str::from_utf8(&text).unwrap()).unwrap(), blocks);
    }

    #[test]
    fn names_the_bad_line() {
        let err = format!("{:#}", parse("1 00\nx 00\n").unwrap_err());
        assert!(err.contains("line 2: height `x` is not a u32"), "{err}");
        let err = format!("{:#}", parse("1 0g\n").unwrap_err());
        assert!(err.contains("line 1") && err.contains("not hex"), "{err}");
        assert!(parse("# nothing\n").is_err());
    }

    #[test]
    fn a_height_twice_or_out_of_order_is_refused() {
        let err = format!("{:#}", parse("1 00\n# c\n1 01\n").unwrap_err());
        assert_eq!(err, "line 3: height 1 given twice (also on line 1)");
        let err = format!("{:#}", parse("5\n3\n").unwrap_err());
        assert_eq!(err, "line 2: height 3 after 5 (line 1): blocks go in ascending height order");
    }
}
