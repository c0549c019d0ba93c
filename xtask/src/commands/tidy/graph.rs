//! A crate's source files as a graph: an edge from a file to each file whose module it names
//! (`use crate::a::b`, `super::x::f()`, `a::b` for a child module `a`), resolved through the
//! layout (`a.rs`, `a/mod.rs`, `a/b.rs`) to the deepest module that is a file, and through the
//! `use`s of that file to where a name it brings in is defined. Circles are its strongly
//! connected components of more than one file.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;

use super::source::{code_only, paths, PathRef};

/// How many `use`s a name may be followed through before giving up.
const MAX_HOPS: usize = 8;

pub struct Graph {
    /// The files, relative to the crate's `src/`, in order.
    pub files: Vec<String>,
    /// Each file's module path (`[]` for the crate root).
    modules: Vec<Vec<String>>,
    /// Every file's paths.
    paths: Vec<Vec<PathRef>>,
    /// From a file to each file it imports (by index into `files`).
    pub edges: BTreeSet<(usize, usize)>,
    /// The crate's own name, as its binaries write it (`host_runner::…`).
    crate_name: String,
}

impl Graph {
    /// The graph of `sources` (path relative to `src/`, its text) of the crate `crate_name`.
    pub fn new(sources: &BTreeMap<String, String>, crate_name: &str) -> Self {
        let files: Vec<String> = sources.keys().cloned().collect();
        let modules = files.iter().map(|file| module_of(file)).collect();
        let paths = sources.values().map(|text| paths(&code_only(text))).collect();
        let mut graph = Self { files, modules, paths, edges: BTreeSet::new(), crate_name: crate_name.replace('-', "_") };
        for from in 0..graph.files.len() {
            for path in &graph.paths[from] {
                if let Some(to) = graph.resolve(from, &path.segments, &path.inline, 0) {
                    if to != from {
                        graph.edges.insert((from, to));
                    }
                }
            }
        }
        graph
    }

    /// The top-level module a file belongs to; `None` for the crate root (`lib.rs`, `main.rs`).
    pub fn top_module(&self, file: usize) -> Option<&str> {
        self.modules[file].first().map(String::as_str)
    }

    /// Every group of files that import each other in a circle, each sorted, in file order.
    pub fn circles(&self) -> Vec<Vec<usize>> {
        let mut graph = DiGraph::<usize, ()>::new();
        let nodes: Vec<_> = (0..self.files.len()).map(|file| graph.add_node(file)).collect();
        for &(from, to) in &self.edges {
            graph.add_edge(nodes[from], nodes[to], ());
        }
        let mut circles: Vec<Vec<usize>> = tarjan_scc(&graph)
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let mut files: Vec<usize> = component.into_iter().map(|node| graph[node]).collect();
                files.sort();
                files
            })
            .collect();
        circles.sort();
        circles
    }

    /// The file `segments` (written in `file`, inside its inline modules `inline`) names.
    fn resolve(&self, file: usize, segments: &[String], inline: &[String], hops: usize) -> Option<usize> {
        let here: Vec<String> = self.modules[file].iter().chain(inline).cloned().collect();
        let first = segments.first()?.as_str();
        let absolute: Vec<String> = if first == "crate" || first == self.crate_name {
            segments[1..].to_vec()
        } else if first == "self" {
            here.into_iter().chain(segments[1..].iter().cloned()).collect()
        } else if first == "super" {
            let supers = segments.iter().take_while(|s| *s == "super").count();
            let base = here.len().checked_sub(supers)?;
            here[..base].iter().chain(&segments[supers..]).cloned().collect()
        } else if self.file_of(&[here.as_slice(), &segments[..1]].concat()).is_some() {
            here.into_iter().chain(segments.iter().cloned()).collect()
        } else {
            return None;
        };
        let (target, depth) = (0..=absolute.len()).rev().find_map(|depth| Some((self.file_of(&absolute[..depth])?, depth)))?;
        // A name the target file brings in with a `use`: the file that defines it.
        let Some(name) = absolute.get(depth) else { return Some(target) };
        let imported = self.paths[target].iter().find(|p| p.binds.as_deref() == Some(name.as_str()));
        match imported {
            Some(path) if hops < MAX_HOPS => {
                let rest: Vec<String> = path.segments.iter().chain(&absolute[depth + 1..]).cloned().collect();
                self.resolve(target, &rest, &[], hops + 1).or(Some(target))
            }
            _ => Some(target),
        }
    }

    /// The file of module `path`: `lib.rs` (else `main.rs`) for the root.
    fn file_of(&self, path: &[String]) -> Option<usize> {
        if path.is_empty() {
            return ["lib.rs", "main.rs"].iter().find_map(|root| self.files.iter().position(|f| f == root));
        }
        self.modules.iter().position(|module| module == path)
    }
}

/// The module a file (relative to `src/`) holds: `a/b.rs` and `a/b/mod.rs` are `a::b`.
pub fn module_of(file: &str) -> Vec<String> {
    let without = file.strip_suffix(".rs").unwrap_or(file);
    let mut segments: Vec<String> = without.split('/').map(String::from).collect();
    if matches!(segments.last().map(String::as_str), Some("mod")) || (segments.len() == 1 && matches!(segments[0].as_str(), "lib" | "main")) {
        segments.pop();
    }
    segments
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::commands::tidy) fn graph(files: &[(&str, &str)]) -> Graph {
        let sources = files.iter().map(|(path, text)| (path.to_string(), text.to_string())).collect();
        Graph::new(&sources, "demo")
    }

    fn edges(graph: &Graph) -> Vec<(&str, &str)> {
        graph.edges.iter().map(|&(from, to)| (graph.files[from].as_str(), graph.files[to].as_str())).collect()
    }

    #[test]
    fn a_circle_is_found_and_named_by_its_files() {
        let graph = graph(&[
            ("main.rs", "mod a;\nmod b;\nmod c;\nfn main() { a::run() }"),
            ("a.rs", "use crate::b::B;\npub fn run() {}"),
            ("b.rs", "pub struct B;\nfn f() { super::a::run(); crate::c::g() }"),
            ("c.rs", "pub fn g() {}"),
        ]);
        assert_eq!(edges(&graph), [("a.rs", "b.rs"), ("b.rs", "a.rs"), ("b.rs", "c.rs"), ("main.rs", "a.rs")]);
        let circles: Vec<Vec<&str>> = graph.circles().iter().map(|c| c.iter().map(|&f| graph.files[f].as_str()).collect()).collect();
        assert_eq!(circles, [["a.rs", "b.rs"]]);
    }

    #[test]
    fn a_mod_rs_layout_and_a_file_beside_its_folder_resolve_to_the_deepest_file() {
        let graph = graph(&[
            ("lib.rs", "pub mod judge;\npub mod backend;\nuse judge::verdict::decide;"),
            ("judge/mod.rs", "pub mod outcome;\npub mod verdict;"),
            ("judge/outcome.rs", "use crate::backend::local::run::Exit;"),
            ("judge/verdict.rs", "use super::outcome::Outcome;\nmod tests { use super::super::outcome::tests::fixture; }"),
            ("backend.rs", "pub mod local;"),
            ("backend/local.rs", "pub mod run;"),
            ("backend/local/run.rs", "pub struct Exit;"),
        ]);
        assert_eq!(module_of("judge/mod.rs"), ["judge"]);
        assert_eq!(module_of("backend/local/run.rs"), ["backend", "local", "run"]);
        assert_eq!(
            edges(&graph),
            [("judge/outcome.rs", "backend/local/run.rs"), ("judge/verdict.rs", "judge/outcome.rs"), ("lib.rs", "judge/verdict.rs")]
        );
    }

    #[test]
    fn a_name_brought_in_by_a_use_resolves_to_the_file_that_defines_it() {
        let graph = graph(&[
            ("lib.rs", "mod block;\nmod text;\npub use block::{Block, Height as H};"),
            ("block.rs", "pub struct Block;\npub struct Height;"),
            ("text.rs", "use crate::{Block, H};\nfn f() -> demo::Block { demo::Block }"),
        ]);
        assert_eq!(edges(&graph), [("lib.rs", "block.rs"), ("text.rs", "block.rs")]);
        assert!(graph.circles().is_empty());
        let defined_in_root = self::graph(&[("lib.rs", "mod text;\npub struct Block;\nfn f() { text::g() }"), ("text.rs", "use crate::Block;\npub fn g() {}")]);
        assert_eq!(defined_in_root.circles(), [[0, 1]]);
    }
}
