//! `cargo xtask tidy`: the repository's shape, checked for every crate of the workspace: no
//! circle between its source files ([`graph`]), no import from a lower layer to a higher one
//! ([`layers`], whose table ranks each crate's top-level modules), and no function longer than
//! 60 lines ([`long_functions`]).

mod graph;
mod layers;
mod long_functions;
mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::exit::Exit;
use crate::workspace::Workspace;
use graph::Graph;
use layers::{Layers, TABLE, TABLE_FILE};
use long_functions::long_functions;

/// The longest a function may be, in lines.
const LONGEST_FUNCTION: usize = 60;

pub fn run(ws: &Workspace) -> Result<Exit> {
    let mut problems = 0;
    for (name, dir) in ws.members() {
        let folder = dir.strip_prefix(&ws.root).unwrap_or(dir).display().to_string();
        if !TABLE.iter().any(|layers| layers.folder == folder) {
            println!("{folder:<11}  crate `{name}` has no layer table: add it to the layer table in {TABLE_FILE}");
            problems += 1;
        }
    }
    for layers in TABLE {
        let dir = ws.root.join(layers.folder);
        if !dir.join("src").is_dir() {
            println!("{:<11}  not a crate yet (no {}/src): skipped", layers.folder, layers.folder);
            continue;
        }
        let name = ws.members().into_iter().find(|(_, member)| *member == dir).map_or(layers.folder.to_string(), |(name, _)| name);
        let checked = check_crate(&ws.root, layers, &name)?;
        println!("{}", checked.summary());
        for detail in checked.details() {
            println!("    {detail}");
        }
        problems += checked.problems();
    }
    match problems {
        0 => println!("tidy: every check passes"),
        n => println!("tidy: {n} problems"),
    }
    Ok(Exit::passed(problems == 0))
}

/// What the checks found in one crate.
struct Checked {
    folder: &'static str,
    files: usize,
    /// Each circle: its files, and its imports.
    circles: Vec<String>,
    upward: Vec<String>,
    /// What is wrong with the crate's layer table.
    table: Vec<String>,
    long: Vec<String>,
}

impl Checked {
    /// `host-runner  34 files  0 circles  0 upward imports  0 functions over 60 lines`.
    fn summary(&self) -> String {
        format!(
            "{:<11}  {} files  {} circles  {} upward imports  {} functions over {LONGEST_FUNCTION} lines",
            self.folder,
            self.files,
            self.circles.len(),
            self.upward.len(),
            self.long.len()
        )
    }

    fn details(&self) -> impl Iterator<Item = &String> {
        self.circles.iter().chain(&self.upward).chain(&self.table).chain(&self.long)
    }

    fn problems(&self) -> usize {
        self.details().count()
    }
}

fn check_crate(root: &Path, layers: &Layers, name: &str) -> Result<Checked> {
    let dir = root.join(layers.folder);
    let src = dir.join("src");
    let mut sources = BTreeMap::new();
    for file in rust_files(&src)? {
        let relative = file.strip_prefix(&src).expect("under src").to_string_lossy().replace('\\', "/");
        sources.insert(relative, std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?);
    }
    let graph = Graph::new(&sources, name);
    let shown = |file: usize| format!("{}/src/{}", layers.folder, graph.files[file]);
    let circles = graph.circles().iter().map(|files| describe_circle(&graph, files, &shown)).collect();
    let found = layers::check(&graph, layers.ranks);
    let upward = found.upward.iter().map(|(from, to, why)| format!("upward import: {} imports {}: {why}", shown(*from), shown(*to))).collect();
    let mut long = Vec::new();
    for file in rust_files(&dir)? {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        for function in long_functions(&text, LONGEST_FUNCTION) {
            let path = file.strip_prefix(root).unwrap_or(&file).display();
            long.push(format!("function over {LONGEST_FUNCTION} lines: {path}:{} {} ({} lines)", function.line, function.name, function.lines));
        }
    }
    Ok(Checked { folder: layers.folder, files: graph.files.len(), circles, upward, table: found.table, long })
}

/// `circle: a.rs, b.rs (a.rs → b.rs, b.rs → a.rs)`.
fn describe_circle(graph: &Graph, files: &[usize], shown: &dyn Fn(usize) -> String) -> String {
    let names: Vec<String> = files.iter().map(|&file| shown(file)).collect();
    let imports: Vec<String> = graph
        .edges
        .iter()
        .filter(|(from, to)| files.contains(from) && files.contains(to))
        .map(|&(from, to)| format!("{} → {}", graph.files[from], graph.files[to]))
        .collect();
    format!("circle: {} ({})", names.join(", "), imports.join(", "))
}

/// The `.rs` files under `dir`, sorted; build output (`target/`), the fuzz targets (their own
/// workspace) and hidden folders left out.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !(name.starts_with('.') || name == "target" || name == "fuzz") {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
