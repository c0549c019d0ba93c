//! Comparing two runs' committed state: a unified diff of their storage dumps (read with
//! `schema::dump`, the dump text's one reader) and, for multi-block runs, where they first
//! diverged.
//!
//! Dumps are sorted by key (RocksDB's byte order), so two of them are compared in one streaming
//! pass, like a merge: memory holds only the differing lines and their context, never the dumps,
//! and `similar` lays out just those regions as hunks. A million-key state diffs in constant memory.

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use similar::udiff::UnifiedHunkHeader;
use similar::{ChangeTag, DiffOp, TextDiff};

use schema::{dump, BlockReport};

/// Lines of unchanged context around each change, as `diff -u`.
const CONTEXT: usize = 3;

/// What comparing two dumps found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DumpDiff {
    /// The unified diff, headed by the two names; empty when the dumps are identical.
    pub diff: String,
    /// The first key (quoted, as in the dump) whose line differs, in key order.
    pub first_key: Option<String>,
    /// Lines only in the old dump, only in the new one, or changed (counted once).
    pub differing_keys: u64,
}

/// Compares two dump files; `None` stands for an empty state (a run that committed nothing).
pub fn diff_dump_files(old: Option<&Path>, new: Option<&Path>, old_name: &str, new_name: &str) -> Result<DumpDiff> {
    let open = |path: Option<&Path>| -> Result<Box<dyn BufRead>> {
        match path {
            Some(path) => {
                let file = std::fs::File::open(path).with_context(|| format!("opening dump {}", path.display()))?;
                Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, file)))
            }
            None => Ok(Box::new(std::io::empty())),
        }
    };
    diff_dumps(open(old)?, open(new)?, old_name, new_name)
}

/// Compares two dumps (newline-terminated lines sorted by key) in one pass.
pub fn diff_dumps(old: impl BufRead, new: impl BufRead, old_name: &str, new_name: &str) -> Result<DumpDiff> {
    let mut old = Lines::new(old, "old")?;
    let mut new = Lines::new(new, "new")?;
    let mut result = DumpDiff::default();
    let mut hunks = String::new();
    // The last unchanged lines (buffers reused), the leading context of the next change.
    let mut context: VecDeque<String> = VecDeque::with_capacity(CONTEXT + 1);
    let mut region: Option<Region> = None;
    loop {
        let (take_old, take_new) = match (old.current(), new.current()) {
            (None, None) => break,
            (Some(a), Some(b)) if a == b => {
                if let Some(open) = &mut region {
                    open.push_unchanged(a);
                    if open.trailing_unchanged > 2 * CONTEXT {
                        region.take().expect("open").write_hunks(&mut hunks);
                    }
                }
                let mut slot = if context.len() == CONTEXT { context.pop_front().expect("full") } else { String::new() };
                slot.clear();
                slot.push_str(a);
                context.push_back(slot);
                old.advance()?;
                new.advance()?;
                continue;
            }
            // By the unescaped key bytes, as RocksDB orders them.
            (Some(a), Some(b)) => match dump::key_of(a)?.cmp(&dump::key_of(b)?) {
                Ordering::Less => (true, false),
                Ordering::Greater => (false, true),
                Ordering::Equal => (true, true),
            },
            (Some(_), None) => (true, false),
            (None, Some(_)) => (false, true),
        };
        if result.first_key.is_none() {
            let line = if take_old { old.current() } else { new.current() };
            result.first_key = line.map(|l| dump::quoted_key_of(l).to_string());
        }
        result.differing_keys += 1;
        let open = region.get_or_insert_with(|| Region::after(&context, old.number, new.number));
        context.clear();
        open.trailing_unchanged = 0;
        if take_old {
            open.old.push(old.current().expect("a line").to_string());
            old.advance()?;
        }
        if take_new {
            open.new.push(new.current().expect("a line").to_string());
            new.advance()?;
        }
    }
    if let Some(open) = region {
        open.write_hunks(&mut hunks);
    }
    if !hunks.is_empty() {
        result.diff = format!("--- {old_name}\n+++ {new_name}\n{hunks}");
    }
    Ok(result)
}

/// A stretch of both dumps holding changes no more than `2 × CONTEXT` unchanged lines apart,
/// with up to `CONTEXT` unchanged lines before and after.
struct Region {
    /// Where the region starts in each dump (0-based line numbers).
    old_start: usize,
    new_start: usize,
    old: Vec<String>,
    new: Vec<String>,
    /// Unchanged lines at the end of the region since its last change.
    trailing_unchanged: usize,
}

impl Region {
    /// A region starting with `context`, whose next lines are at `old_line` and `new_line`.
    fn after(context: &VecDeque<String>, old_line: usize, new_line: usize) -> Self {
        Region {
            old_start: old_line - context.len(),
            new_start: new_line - context.len(),
            old: context.iter().cloned().collect(),
            new: context.iter().cloned().collect(),
            trailing_unchanged: 0,
        }
    }

    fn push_unchanged(&mut self, line: &str) {
        self.old.push(line.to_string());
        self.new.push(line.to_string());
        self.trailing_unchanged += 1;
    }

    /// Lays the region out with `similar` and appends its hunks, numbered as in the whole dumps.
    fn write_hunks(mut self, out: &mut String) {
        let surplus = self.trailing_unchanged.saturating_sub(CONTEXT);
        self.old.truncate(self.old.len() - surplus);
        self.new.truncate(self.new.len() - surplus);
        let old: Vec<&str> = self.old.iter().map(String::as_str).collect();
        let new: Vec<&str> = self.new.iter().map(String::as_str).collect();
        let diff = TextDiff::configure().diff_slices(&old, &new);
        for group in diff.grouped_ops(CONTEXT) {
            let placed: Vec<DiffOp> = group.iter().map(|op| shifted(op, self.old_start, self.new_start)).collect();
            let _ = writeln!(out, "{}", UnifiedHunkHeader::new(&placed));
            for op in &group {
                for change in diff.iter_changes(op) {
                    let sign = match change.tag() {
                        ChangeTag::Delete => '-',
                        ChangeTag::Insert => '+',
                        ChangeTag::Equal => ' ',
                    };
                    let _ = writeln!(out, "{sign}{}", change.value());
                }
            }
        }
    }
}

/// `op` moved down by `old` and `new` lines.
fn shifted(op: &DiffOp, old: usize, new: usize) -> DiffOp {
    match *op {
        DiffOp::Equal { old_index, new_index, len } => DiffOp::Equal { old_index: old_index + old, new_index: new_index + new, len },
        DiffOp::Delete { old_index, old_len, new_index } => {
            DiffOp::Delete { old_index: old_index + old, old_len, new_index: new_index + new }
        }
        DiffOp::Insert { old_index, new_index, new_len } => {
            DiffOp::Insert { old_index: old_index + old, new_index: new_index + new, new_len }
        }
        DiffOp::Replace { old_index, old_len, new_index, new_len } => {
            DiffOp::Replace { old_index: old_index + old, old_len, new_index: new_index + new, new_len }
        }
    }
}

/// A dump read one line at a time into one reused buffer.
struct Lines<R> {
    reader: R,
    line: String,
    done: bool,
    /// Lines before the current one.
    number: usize,
    name: &'static str,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R, name: &'static str) -> Result<Self> {
        let mut lines = Lines { reader, line: String::new(), done: false, number: 0, name };
        lines.read()?;
        Ok(lines)
    }

    fn current(&self) -> Option<&str> {
        (!self.done).then_some(self.line.as_str())
    }

    fn advance(&mut self) -> Result<()> {
        self.number += 1;
        self.read()
    }

    fn read(&mut self) -> Result<()> {
        self.line.clear();
        let read = self.reader.read_line(&mut self.line).with_context(|| format!("reading the {} dump", self.name))?;
        self.done = read == 0;
        if self.line.ends_with('\n') {
            self.line.pop();
        }
        Ok(())
    }
}

/// Lines of a diff shown on the terminal and in summaries; the diff file has them all.
pub const SHOWN_LINES: usize = 200;

/// The first `max_lines` lines of `diff`, then how many more there are.
pub fn excerpt(diff: &str, max_lines: usize) -> String {
    let total = diff.lines().count();
    if total <= max_lines {
        return diff.to_string();
    }
    let shown: String = diff.lines().take(max_lines).flat_map(|line| [line, "\n"]).collect();
    format!("{shown}… {} more lines (see the .diff file)\n", total - max_lines)
}

/// The diff with removed lines red, added lines green and hunk headers cyan (ANSI).
pub fn colorize(diff: &str) -> String {
    diff.lines()
        .map(|line| {
            let color = if line.starts_with("---") || line.starts_with("+++") {
                "1"
            } else if line.starts_with('-') {
                "31"
            } else if line.starts_with('+') {
                "32"
            } else if line.starts_with("@@") {
                "36"
            } else {
                return format!("{line}\n");
            };
            format!("\x1b[{color}m{line}\x1b[0m\n")
        })
        .collect()
}

/// Where two runs first part ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Divergence {
    /// The first height whose state root differs (or that only one run committed); `None` when
    /// per-block roots are unknown (a killed run) or all agree.
    pub height: Option<u32>,
    /// The first key whose dump line differs, in key order.
    pub key: Option<String>,
}

/// The first height at which two runs' per-block state roots differ, or past which one run
/// stopped. Reports are matched by height: a height one run has no report for, below its last
/// report (a run killed between a block's commit and its report, then resumed), is not compared.
pub fn first_diverging_height(old: Option<&[BlockReport]>, new: Option<&[BlockReport]>) -> Option<u32> {
    let roots = |reports: &[BlockReport]| reports.iter().map(|r| (r.height, r.state_root.clone())).collect::<BTreeMap<u32, String>>();
    let (old, new) = (roots(old?), roots(new?));
    let differing = old.iter().find(|(height, root)| new.get(*height).is_some_and(|other| other != *root)).map(|(height, _)| *height);
    // The first height one run reported past the other's last report.
    let past_the_end = |run: &BTreeMap<u32, String>, other: &BTreeMap<u32, String>| {
        let last = other.keys().next_back().copied();
        run.keys().copied().find(|height| last.is_none_or(|last| *height > last))
    };
    [differing, past_the_end(&old, &new), past_the_end(&new, &old)].into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(old: &str, new: &str) -> DumpDiff {
        diff_dumps(old.as_bytes(), new.as_bytes(), "low", "high").unwrap()
    }

    #[test]
    fn identical_dumps_have_an_empty_diff_and_no_first_key() {
        let dump = "\"a\" = \"1\"\n\"b\" = \"2\"\n";
        assert_eq!(diff(dump, dump), DumpDiff::default());
        assert_eq!(diff("", ""), DumpDiff::default());
    }

    #[test]
    fn the_diff_names_both_sides_and_shows_the_changed_entry() {
        let low = "\"/memory-stress-failure\" = \"\\x01\\x00\\x00\\x00\"\n\"/memory-stress-result/1\" = \"ERROR:Failed at allocation 7 of 20: Failed to reserve 50MB\"\n\"/memory-stress-test\" = \"started\"\n";
        let high = "\"/memory-stress-result/1\" = \"SUCCESS:1000MB\"\n\"/memory-stress-success\" = \"\\x01\\x00\\x00\\x00\"\n\"/memory-stress-test\" = \"started\"\n";
        let found = diff(low, high);
        assert!(found.diff.starts_with("--- low\n+++ high\n@@ -1,3 +1,3 @@\n"), "{}", found.diff);
        assert!(found.diff.contains("\n-\"/memory-stress-result/1\" = \"ERROR:Failed at allocation 7"), "{}", found.diff);
        assert!(found.diff.contains("\n+\"/memory-stress-result/1\" = \"SUCCESS:1000MB\""), "{}", found.diff);
        assert!(found.diff.ends_with("\n \"/memory-stress-test\" = \"started\"\n"), "{}", found.diff);
        assert_eq!(found.first_key.as_deref(), Some("\"/memory-stress-failure\""));
        assert_eq!(found.differing_keys, 3);
    }

    #[test]
    fn an_empty_side_diffs_as_all_added() {
        let found = diff("", "\"a\" = \"1\"\n\"b\" = \"2\"\n");
        assert_eq!(found.diff, "--- low\n+++ high\n@@ -0,0 +1,2 @@\n+\"a\" = \"1\"\n+\"b\" = \"2\"\n");
        assert_eq!(found.first_key.as_deref(), Some("\"a\""));
    }

    /// The streaming diff of two big dumps equals `similar`'s diff of the whole texts.
    #[test]
    fn hunks_match_similar_on_the_whole_text() {
        let line = |i: usize, v: &str| format!("\"/k/{i:05}\" = \"{v}\"\n");
        let old: String = (0..2000).map(|i| line(i, "a")).collect();
        // Changed, removed and added keys: near each other (one hunk), far apart, at both ends.
        let new: String = (0..2000)
            .filter(|i| ![5, 700, 1999].contains(i))
            .map(|i| line(i, if [0, 9, 12, 400, 1500].contains(&i) { "b" } else { "a" }))
            .chain([format!("\"/k/{:05}x\" = \"new\"\n", 1000)])
            .collect::<Vec<_>>()
            .join("");
        let mut new_lines: Vec<&str> = new.lines().collect();
        new_lines.sort_by_key(|l| dump::key_of(l).unwrap());
        let new: String = new_lines.iter().map(|l| format!("{l}\n")).collect();
        let expected = TextDiff::from_lines(&old, &new).unified_diff().context_radius(CONTEXT).header("low", "high").to_string();
        let found = diff(&old, &new);
        assert_eq!(found.diff, expected);
        assert_eq!(found.first_key.as_deref(), Some("\"/k/00000\""));
        assert_eq!(found.differing_keys, 9);
    }

    #[test]
    fn lines_are_ordered_by_the_unescaped_key_bytes() {
        // `"` (0x22) sorts before `#` (0x23) though its escape `\"` starts with `\` (0x5c).
        let old = "\"a\\\"\" = \"1\"\n\"a#\" = \"2\"\n";
        let new = "\"a#\" = \"2\"\n";
        let found = diff(old, new);
        assert_eq!(found.diff, "--- low\n+++ high\n@@ -1,2 +1 @@\n-\"a\\\"\" = \"1\"\n \"a#\" = \"2\"\n");
        assert_eq!(dump::key_of("\"\\xff\\\\\" = \"v\"").unwrap(), b"\xff\\");
        assert_eq!(dump::quoted_key_of("\"a\\\" = b\" = \"v\""), "\"a\\\" = b\"");
    }

    #[test]
    fn a_line_that_is_not_a_dump_line_is_an_error() {
        let error = diff_dumps("garbage\n".as_bytes(), "\"a\" = \"1\"\n".as_bytes(), "a", "b").unwrap_err();
        assert!(error.to_string().contains("not a dump line"), "{error}");
    }

    fn block(height: u32, root: &str) -> BlockReport {
        BlockReport {
            height,
            outcome: schema::BlockOutcome::Completed,
            flushed_pairs: 0,
            flushed_bytes: 0,
            host_charged_bytes: 0,
            fuel_consumed: None,
            state_root: root.into(),
            wasm_memory_bytes: 0,
            refused_growths: 0,
            timings: Default::default(),
        }
    }

    #[test]
    fn multi_block_runs_diverge_at_the_first_differing_root_or_where_one_stopped() {
        let a = [block(1, "r1"), block(2, "r2"), block(3, "r3")];
        let b = [block(1, "r1"), block(2, "XX"), block(3, "r3")];
        assert_eq!(first_diverging_height(Some(&a), Some(&b)), Some(2));
        assert_eq!(first_diverging_height(Some(&a), Some(&a[..1])), Some(2));
        assert_eq!(first_diverging_height(Some(&a), Some(&a)), None);
        assert_eq!(first_diverging_height(None, Some(&a)), None);
        // A report lost to a kill and a resume is not a divergence; a later root still is.
        let lost = [block(1, "r1"), block(3, "r3")];
        assert_eq!(first_diverging_height(Some(&a), Some(&lost)), None);
        assert_eq!(first_diverging_height(Some(&lost), Some(&a)), None);
        assert_eq!(first_diverging_height(Some(&b), Some(&lost)), None);
        assert_eq!(first_diverging_height(Some(&[block(1, "r1"), block(3, "XX")]), Some(&a)), Some(3));
        // One run with no block reported stopped before the other's first.
        assert_eq!(first_diverging_height(Some(&a), Some(&[])), Some(1));
    }

    #[test]
    fn long_diffs_are_cut_with_a_count_of_what_is_left() {
        assert_eq!(excerpt("a\nb\n", 2), "a\nb\n");
        assert_eq!(excerpt("a\nb\nc\nd\n", 2), "a\nb\n… 2 more lines (see the .diff file)\n");
    }

    #[test]
    fn colorize_marks_removed_and_added_lines() {
        let colored = colorize("--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n z\n");
        assert!(colored.contains("\x1b[31m-x\x1b[0m") && colored.contains("\x1b[32m+y\x1b[0m"));
        assert!(colored.ends_with(" z\n"));
    }
}
