//! Block inputs: one from the command line, or a blocks file of `HEIGHT [PAYLOAD_HEX]` lines
//! (`#` starts a comment; a missing payload is an empty block).

use std::path::Path;

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub height: u32,
    pub payload: Vec<u8>,
}

pub fn parse_hex(text: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    let text = text.strip_prefix("0x").unwrap_or(text);
    hex::decode(text).with_context(|| format!("`{text}` is not hex"))
}

pub fn read_blocks_file(path: &Path) -> Result<Vec<Block>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading blocks file {}", path.display()))?;
    parse_blocks(&text).with_context(|| format!("in blocks file {}", path.display()))
}

pub fn parse_blocks(text: &str) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let height = fields.next().unwrap_or_default();
        let height: u32 = height
            .parse()
            .with_context(|| format!("line {}: height `{height}` is not a u32", number + 1))?;
        let payload = parse_hex(fields.next().unwrap_or("")).with_context(|| format!("line {}", number + 1))?;
        if let Some(extra) = fields.next() {
            bail!("line {}: unexpected `{extra}` after the payload", number + 1);
        }
        blocks.push(Block { height, payload });
    }
    if blocks.is_empty() {
        bail!("no blocks: expected lines of `HEIGHT [PAYLOAD_HEX]`");
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heights_payloads_comments_and_empty_blocks() {
        let blocks = parse_blocks("# stress\n1 32000000 # 50 MB\n\n2\n3 0xff\n").unwrap();
        let expected = [(1, vec![0x32, 0, 0, 0]), (2, vec![]), (3, vec![0xff])];
        assert_eq!(blocks, expected.map(|(height, payload)| Block { height, payload }));
    }

    #[test]
    fn names_the_bad_line() {
        let err = format!("{:#}", parse_blocks("1 00\nx 00\n").unwrap_err());
        assert!(err.contains("line 2: height `x` is not a u32"), "{err}");
        let err = format!("{:#}", parse_blocks("1 0g\n").unwrap_err());
        assert!(err.contains("line 1") && err.contains("not hex"), "{err}");
        assert!(parse_blocks("# nothing\n").is_err());
    }
}
