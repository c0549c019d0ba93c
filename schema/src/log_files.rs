//! Files carried in a log: how a run whose only way out is its output (a Kubernetes Job's pod,
//! read back with `kubectl logs`) hands over its result files. Each file is framed:
//!
//! ```text
//! === memrepro-file result.json 1234
//! 7b0a2020...          (the bytes as hex, lines of at most 8192 characters)
//! === memrepro-end result.json
//! ```
//!
//! Anything else in the log (the run's own output) is left alone. The writer is the runner's
//! `watch --export-to-log`, the reader xtask's `k8s collect`: this is the one definition.

use std::io::Write;

const START: &str = "=== memrepro-file ";
const END: &str = "=== memrepro-end ";
const LINE: usize = 8192;

/// Writes `bytes` as the file `name` into a log.
pub fn write_file(out: &mut impl Write, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    writeln!(out, "{START}{name} {}", bytes.len())?;
    for chunk in bytes.chunks(LINE / 2) {
        let line: String = chunk.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "{line}")?;
    }
    writeln!(out, "{END}{name}")
}

/// `log` without its framed files: the run's own output.
pub fn without_files(log: &str) -> String {
    let mut out = String::new();
    let mut inside: Option<String> = None;
    for line in log.lines() {
        match &inside {
            Some(name) if line == format!("{END}{name}") => inside = None,
            Some(_) => {}
            None => match line.strip_prefix(START).and_then(|header| header.rsplit_once(' ')) {
                Some((name, _)) => inside = Some(name.to_string()),
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            },
        }
    }
    out
}

/// The files framed in `log`, in order; an error names the first damaged frame.
pub fn read_files(log: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = Vec::new();
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        let Some(header) = line.strip_prefix(START) else { continue };
        let (name, len) = header.rsplit_once(' ').ok_or_else(|| format!("bad frame header `{line}`"))?;
        let len: usize = len.parse().map_err(|_| format!("bad length in `{line}`"))?;
        // The header's length is not trusted for the allocation: a damaged one must not abort.
        let mut bytes = Vec::with_capacity(len.min(1 << 20));
        loop {
            let line = lines.next().ok_or_else(|| format!("the log ends inside {name}"))?;
            if line == format!("{END}{name}") {
                break;
            }
            let pair = |i: usize| u8::from_str_radix(line.get(i..i + 2).unwrap_or("zz"), 16);
            for i in (0..line.len()).step_by(2) {
                bytes.push(pair(i).map_err(|_| format!("{name}: not hex: `{}`", line.chars().take(40).collect::<String>()))?);
            }
        }
        if bytes.len() != len {
            return Err(format!("{name}: {} bytes in the log, {len} announced (a truncated log?)", bytes.len()));
        }
        files.push((name.to_string(), bytes));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_survive_a_log_with_other_output_around_them() {
        let mut log = b"RESULT: WASM completed\n".to_vec();
        let big: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        write_file(&mut log, "result.json", b"{\"a\": 1}\n").unwrap();
        log.extend_from_slice(b"[guest] something\n");
        write_file(&mut log, "dump.txt", &big).unwrap();
        write_file(&mut log, "empty", b"").unwrap();
        let text = String::from_utf8(log).unwrap();
        assert_eq!(without_files(&text), "RESULT: WASM completed\n[guest] something\n");
        let files = read_files(&text).unwrap();
        assert_eq!(files, [("result.json".into(), b"{\"a\": 1}\n".to_vec()), ("dump.txt".into(), big), ("empty".into(), vec![])]);
    }

    #[test]
    fn a_truncated_or_damaged_log_is_an_error_naming_the_file() {
        let mut log = Vec::new();
        write_file(&mut log, "result.json", b"0123456789").unwrap();
        let text = String::from_utf8(log).unwrap();
        let cut = &text[..text.len() - 30];
        assert_eq!(read_files(cut).unwrap_err(), "the log ends inside result.json");
        let damaged = text.replace("3031", "zz31");
        assert!(read_files(&damaged).unwrap_err().starts_with("result.json: not hex"));
        let huge = "=== memrepro-file x 18446744073709551615\n3é\n=== memrepro-end x\n";
        assert!(read_files(huge).unwrap_err().starts_with("x: not hex"));
    }
}
