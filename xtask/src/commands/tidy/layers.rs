//! Each crate's layers: its top-level modules ranked, lowest first. A file may import from its
//! own top-level module, from lower ranks and from its rank; never from a higher rank, and no
//! module from the crate root (`lib.rs`, `main.rs`), which is on top of them all.

use std::collections::BTreeSet;

use super::graph::Graph;

/// This file, for the messages that ask to change it.
pub const TABLE_FILE: &str = "xtask/src/commands/tidy/layers.rs";

/// A crate (by its folder) and its top-level modules by rank, lowest first.
pub struct Layers {
    pub folder: &'static str,
    pub ranks: &'static [&'static [&'static str]],
}

/// Every crate of the workspace. A crate whose folder does not exist yet is skipped.
pub const TABLE: &[Layers] = &[
    Layers { folder: "blocks", ranks: &[&["block", "bitcoin"], &["text", "bin_dir", "blk", "rpc", "generate"], &["map"], &["source", "stream"], &["args", "index", "mapping"], &["stand_in"]] },
    Layers { folder: "cgroup", ranks: &[] },
    Layers { folder: "chain-guest", ranks: &[] },
    Layers { folder: "guest", ranks: &[] },
    Layers { folder: "guest-abi", ranks: &[] },
    Layers { folder: "host-runner", ranks: &[&["process"], &["engine"], &["run"], &["node", "bench", "fuzzing"], &["cli"]] },
    Layers { folder: "schema", ranks: &[&["size", "policy", "dump", "log_files"], &["engine"]] },
    Layers { folder: "state", ranks: &[&["files", "parallel", "rocks", "value"], &["dump"], &["trie"], &["metashrew"], &["layout"], &["database"]] },
    Layers {
        folder: "xtask",
        ranks: &[
            &["interrupt"],
            &["exit", "units", "config", "run_dir", "progress", "artifacts", "plot"],
            &["input", "snapshot"],
            &["backend"],
            &["judge"],
            &["harness", "lab", "flags", "workspace"],
            &["commands"],
        ],
    },
];

/// What a crate's graph shows against its layers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Each upward import: the importing file, the imported one, and why it is upward.
    pub upward: Vec<(usize, usize, String)>,
    /// Top-level modules missing from the table, and names in it that are no module.
    pub table: Vec<String>,
}

pub fn check(graph: &Graph, ranks: &[&[&str]]) -> Findings {
    let rank = |module: &str| ranks.iter().position(|rank| rank.contains(&module));
    let modules: BTreeSet<&str> = (0..graph.files.len()).filter_map(|file| graph.top_module(file)).collect();
    let mut findings = Findings::default();
    for module in modules.iter().filter(|module| rank(module).is_none()) {
        findings.table.push(format!("module `{module}` has no layer: add it to the layer table in {TABLE_FILE}"));
    }
    for name in ranks.iter().flat_map(|rank| rank.iter()).filter(|name| !modules.contains(*name)) {
        findings.table.push(format!("the layer table names `{name}`, which is no module of this crate: remove it from {TABLE_FILE}"));
    }
    for &(from, to) in &graph.edges {
        let problem = match (graph.top_module(from), graph.top_module(to)) {
            (None, _) => None,
            (Some(_), None) => Some("the crate root is the top layer".to_string()),
            (Some(a), Some(b)) if a == b => None,
            (Some(a), Some(b)) => match (rank(a), rank(b)) {
                (Some(low), Some(high)) if low < high => Some(format!("`{a}` (layer {}) is below `{b}` (layer {})", low + 1, high + 1)),
                _ => None,
            },
        };
        if let Some(problem) = problem {
            findings.upward.push((from, to, problem));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::tidy::graph::tests::graph;

    #[test]
    fn an_import_from_a_higher_layer_is_found() {
        let graph = graph(&[
            ("main.rs", "mod low;\nmod high;\nmod same;\nfn main() { high::f(); low::g(); }"),
            ("low.rs", "pub fn g() { crate::high::f() }"),
            ("high.rs", "pub fn f() { crate::low::g(); crate::same::h() }"),
            ("same.rs", "pub fn h() {}"),
        ]);
        let findings = check(&graph, &[&["low"], &["high", "same"]]);
        let upward: Vec<(&str, &str, &str)> = findings.upward.iter().map(|(from, to, why)| (graph.files[*from].as_str(), graph.files[*to].as_str(), why.as_str())).collect();
        assert_eq!(upward, [("low.rs", "high.rs", "`low` (layer 1) is below `high` (layer 2)")]);
        assert!(findings.table.is_empty());
    }

    #[test]
    fn a_module_missing_from_the_table_and_a_name_no_module_has_are_found() {
        let graph = graph(&[("lib.rs", "mod a;\nmod b;"), ("a.rs", "use crate::Root;"), ("b/mod.rs", "")]);
        let findings = check(&graph, &[&["a"], &["gone"]]);
        assert_eq!(findings.upward, [(0, 2, "the crate root is the top layer".to_string())]);
        assert_eq!(
            findings.table,
            [
                format!("module `b` has no layer: add it to the layer table in {TABLE_FILE}"),
                format!("the layer table names `gone`, which is no module of this crate: remove it from {TABLE_FILE}"),
            ]
        );
    }
}
