//! Comparing two profiles' committed state: a unified diff of their storage dumps (made with
//! `similar`) and, for multi-block runs, where they first diverged.

use serde::Serialize;
use similar::TextDiff;

use schema::BlockReport;

/// A unified diff of two dumps (one entry per line), headed by the two profile names.
/// Empty when the dumps are identical.
pub fn unified_diff(old: &[String], new: &[String], old_name: &str, new_name: &str) -> String {
    let old_text = lines_text(old);
    let new_text = lines_text(new);
    if old_text == new_text {
        return String::new();
    }
    TextDiff::from_lines(&old_text, &new_text)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

fn lines_text(lines: &[String]) -> String {
    lines.iter().flat_map(|line| [line.as_str(), "\n"]).collect()
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// The first height whose state root differs (or that only one run committed); `None` when
    /// per-block roots are unknown (a killed run) or all agree.
    pub height: Option<u32>,
    /// The first key whose dump line differs, in key order.
    pub key: Option<String>,
}

pub fn first_divergence(
    old_blocks: Option<&[BlockReport]>,
    new_blocks: Option<&[BlockReport]>,
    old_dump: &[String],
    new_dump: &[String],
) -> Divergence {
    let height = match (old_blocks, new_blocks) {
        (Some(old), Some(new)) => {
            let differing = old.iter().zip(new).find(|(a, b)| a.height != b.height || a.state_root != b.state_root);
            match differing {
                Some((a, _)) => Some(a.height),
                // One run went further than the other.
                None if old.len() != new.len() => old.get(new.len()).or(new.get(old.len())).map(|b| b.height),
                None => None,
            }
        }
        _ => None,
    };
    Divergence { height, key: first_differing_key(old_dump, new_dump) }
}

/// The smaller of the two keys at the first position where the sorted dumps differ.
fn first_differing_key(old: &[String], new: &[String]) -> Option<String> {
    let position = old.iter().zip(new).position(|(a, b)| a != b);
    let (a, b) = match position {
        Some(i) => (old.get(i), new.get(i)),
        None if old.len() == new.len() => return None,
        None => (old.get(new.len()), new.get(old.len())),
    };
    [a, b].into_iter().flatten().map(|line| key_of(line)).min()
}

/// The quoted key at the start of a dump line (`"key" = value`).
fn key_of(line: &str) -> String {
    line.split_once(" = ").map_or(line, |(key, _)| key).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn identical_dumps_have_an_empty_diff_and_no_divergence() {
        let dump = lines("\"a\" = \"1\"\n\"b\" = \"2\"");
        assert_eq!(unified_diff(&dump, &dump, "low", "high"), "");
        assert_eq!(first_divergence(None, None, &dump, &dump), Divergence { height: None, key: None });
    }

    #[test]
    fn the_diff_names_both_profiles_and_shows_the_changed_entry() {
        let low = lines("\"/memory-stress-failure\" = \"\\x01\\x00\\x00\\x00\"\n\"/memory-stress-result/1\" = \"ERROR:Failed at allocation 7 of 20: Failed to reserve 50MB\"\n\"/memory-stress-test\" = \"started\"");
        let high = lines("\"/memory-stress-result/1\" = \"SUCCESS:1000MB\"\n\"/memory-stress-success\" = \"\\x01\\x00\\x00\\x00\"\n\"/memory-stress-test\" = \"started\"");
        let diff = unified_diff(&low, &high, "low (512m)", "high (4g)");
        assert!(diff.starts_with("--- low (512m)\n+++ high (4g)\n@@ -1,3 +1,3 @@\n"), "{diff}");
        assert!(diff.contains("\n-\"/memory-stress-result/1\" = \"ERROR:Failed at allocation 7"), "{diff}");
        assert!(diff.contains("\n+\"/memory-stress-result/1\" = \"SUCCESS:1000MB\""), "{diff}");
        assert!(diff.contains("\n \"/memory-stress-test\" = \"started\""), "{diff}");
        assert_eq!(first_divergence(None, None, &low, &high).key.as_deref(), Some("\"/memory-stress-failure\""));
    }

    #[test]
    fn a_shorter_dump_diverges_at_its_first_missing_key() {
        let full = lines("\"a\" = \"1\"\n\"b\" = \"2\"");
        let partial = lines("\"a\" = \"1\"");
        assert_eq!(first_divergence(None, None, &partial, &full).key.as_deref(), Some("\"b\""));
        assert!(unified_diff(&partial, &full, "x", "y").contains("+\"b\" = \"2\""));
    }

    fn block(height: u32, root: &str) -> BlockReport {
        BlockReport {
            height,
            outcome: schema::BlockOutcome::Completed,
            flushed_pairs: 0,
            flushed_bytes: 0,
            state_root: root.into(),
            wasm_memory_bytes: 0,
            refused_growths: 0,
            timings: Default::default(),
        }
    }

    #[test]
    fn multi_block_runs_diverge_at_the_first_differing_root_or_missing_block() {
        let a = [block(1, "r1"), block(2, "r2"), block(3, "r3")];
        let b = [block(1, "r1"), block(2, "XX"), block(3, "r3")];
        assert_eq!(first_divergence(Some(&a), Some(&b), &[], &[]).height, Some(2));
        assert_eq!(first_divergence(Some(&a), Some(&a[..1]), &[], &[]).height, Some(2));
        assert_eq!(first_divergence(Some(&a), Some(&a), &[], &[]).height, None);
    }

    #[test]
    fn colorize_marks_removed_and_added_lines() {
        let colored = colorize("--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n z\n");
        assert!(colored.contains("\x1b[31m-x\x1b[0m") && colored.contains("\x1b[32m+y\x1b[0m"));
        assert!(colored.ends_with(" z\n"));
    }
}
