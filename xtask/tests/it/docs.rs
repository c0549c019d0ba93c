//! The docs: every `console` block of README.md and docs/*.md is run and must print what it shows
//! (the convention is at the top of docs/testing.md); every relative link of the repository's
//! Markdown leads to a file and, with `#anchor`, to one of its headings; the README stays short.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Fewer checked commands than this and the check would be checking next to nothing.
const MIN_CHECKED_COMMANDS: usize = 5;
const README_MAX_LINES: usize = 120;
const QUICK_START_WITHIN: usize = 40;
/// Long enough for a cold build of the runner by a command that builds it; a hang still ends.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1800);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `path` relative to the repository root (`..` resolved as written), for messages.
fn shown(path: &Path) -> String {
    let mut normal = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                normal.pop();
            }
            std::path::Component::CurDir => {}
            part => normal.push(part),
        }
    }
    normal.strip_prefix(root()).unwrap_or(&normal).display().to_string()
}

/// README.md and docs/*.md: the files whose `console` blocks are run.
fn documentation() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ is missing")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Every Markdown file of the repository (`target/` and hidden directories aside).
fn markdown_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                markdown_files(&path, found);
            }
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading Markdown

/// A fenced block: its info string, the line of its opening fence (1-based) and its lines, each
/// with its own line number, the fence's indentation removed.
struct Fence {
    info: String,
    line: usize,
    lines: Vec<(usize, String)>,
}

/// The fenced blocks of `text`, and the text with every fenced line blanked (line numbers kept).
fn fences(text: &str) -> (Vec<Fence>, String) {
    let mut blocks = Vec::new();
    let mut prose = String::with_capacity(text.len());
    let mut open: Option<(usize, usize, Fence)> = None; // (indent, fence length, block)
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let ticks = trimmed.chars().take_while(|&c| c == '`').count();
        match &mut open {
            None if ticks >= 3 => {
                open = Some((indent, ticks, Fence { info: trimmed[ticks..].trim().to_string(), line: number, lines: Vec::new() }));
                prose.push('\n');
            }
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
            Some((_, length, _)) if ticks >= *length && trimmed[ticks..].trim().is_empty() => {
                blocks.push(open.take().unwrap().2);
                prose.push('\n');
            }
            Some((indent, _, block)) => {
                let strip = line.len() - line.trim_start().len();
                block.lines.push((number, line[strip.min(*indent)..].to_string()));
                prose.push('\n');
            }
        }
    }
    if let Some((_, _, block)) = open {
        blocks.push(block);
    }
    (blocks, prose)
}

/// `text` with every inline code span (backtick strings of equal length) blanked, newlines kept.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    let run = |at: usize| chars[at..].iter().take_while(|&&c| c == '`').count();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let length = run(i);
        let mut j = i + length;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let other = run(j);
                if other == length {
                    close = Some(j);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                for c in &mut out[i..end + length] {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = end + length;
            }
            None => i += length,
        }
    }
    out.into_iter().collect()
}

/// GitHub's anchor of a heading: lowercase, punctuation other than `-` and `_` dropped, spaces to
/// `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings; a repeated one gets `-1`, `-2`, … as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let (_, prose) = fences(text);
    let mut found = BTreeSet::new();
    for line in prose.lines() {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim().trim_end_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while found.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        found.insert(anchor);
    }
    found
}

/// The targets of the inline links `[text](target)` outside code, with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let (_, prose) = fences(text);
    let prose = without_code_spans(&prose);
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = prose[from..].find("](") {
        let start = from + at + 2;
        let target: String = prose[start..].chars().take_while(|&c| c != ')' && !c.is_whitespace()).collect();
        let line = prose[..start].matches('\n').count() + 1;
        found.push((line, target.trim_start_matches('<').trim_end_matches('>').to_string()));
        from = start;
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Checked commands

/// One `$ ` line of a `console` block, what it must print and its exit code.
struct Example {
    line: usize,
    command: String,
    expected: Vec<String>,
    code: i32,
}

/// The commands of a `console` block.
fn examples(file: &Path, block: &Fence) -> Vec<Example> {
    let mut found: Vec<Example> = Vec::new();
    for (line, text) in &block.lines {
        if let Some(command) = text.strip_prefix("$ ") {
            found.push(Example { line: *line, command: command.trim().to_string(), expected: Vec::new(), code: 0 });
        } else {
            let example = found
                .last_mut()
                .unwrap_or_else(|| panic!("{}:{line}: a `console` block must start with a `$ ` command", shown(file)));
            example.expected.push(text.clone());
        }
    }
    for example in &mut found {
        if let Some(code) = example.expected.last().and_then(|last| last.strip_prefix("? ")) {
            example.code = code
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{}:{}: `? {code}` is not an exit code", shown(file), example.line));
            example.expected.pop();
        }
    }
    found
}

/// The words of a command: split at whitespace, `'…'` and `"…"` keeping spaces together.
fn words(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in command.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err("an unclosed quote".into());
    }
    words.extend(word);
    Ok(words)
}

/// `$VARIABLE` in a documented command: its value for this block.
struct Variables {
    tmp: PathBuf,
}

impl Variables {
    const NAMES: [&str; 3] = ["$CHAIN_GUEST_WASM", "$GUEST_WASM", "$TMP"];

    fn value(&self, name: &str) -> PathBuf {
        match name {
            "$TMP" => self.tmp.clone(),
            "$GUEST_WASM" => guest(&GUEST, "GUEST_WASM", "guest").to_path_buf(),
            "$CHAIN_GUEST_WASM" => guest(&CHAIN_GUEST, "CHAIN_GUEST_WASM", "chain-guest").to_path_buf(),
            _ => unreachable!(),
        }
    }

    /// The variables' values known so far (a guest not yet needed is not built for this).
    fn known(&self) -> Vec<(String, &'static str)> {
        let mut known = vec![(self.tmp.display().to_string(), "$TMP")];
        for (cell, name) in [(&CHAIN_GUEST, "$CHAIN_GUEST_WASM"), (&GUEST, "$GUEST_WASM")] {
            known.extend(cell.get().map(|path| (path.display().to_string(), name)));
        }
        known
    }

    fn expand(&self, word: &str) -> Result<String, String> {
        let mut out = word.to_string();
        for name in Self::NAMES {
            if out.contains(name) {
                out = out.replace(name, &self.value(name).display().to_string());
            }
        }
        match out.find('$') {
            Some(at) => Err(format!("unknown variable in `{}` (known: {})", &out[at..], Self::NAMES.join(", "))),
            None => Ok(out),
        }
    }

    /// The output with each variable's path written back as its name.
    fn unexpand(&self, output: &str) -> String {
        let mut paths = self.known();
        paths.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        let mut out = output.to_string();
        for (path, name) in paths {
            out = out.replace(&path, name);
        }
        out
    }
}

/// `$ cargo xtask …` is the xtask binary, `$ host-runner …` the static release runner.
fn command_for(words: &[String]) -> Command {
    let (mut command, args) = match words {
        [cargo, xtask, args @ ..] if cargo == "cargo" && xtask == "xtask" => (crate::support::xtask_command(), args),
        [runner_name, args @ ..] if runner_name == "host-runner" => (Command::new(runner()), args),
        [program, args @ ..] => (Command::new(program), args),
        [] => unreachable!(),
    };
    command.args(args).current_dir(root());
    command
}

/// Runs `command` with stdout and stderr into one pipe, as a terminal shows them: (exit code,
/// output), or why it could not be run.
fn run(mut command: Command) -> Result<(Option<i32>, String), String> {
    let (mut reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
    command.stdin(Stdio::null()).stdout(writer.try_clone().map_err(|e| e.to_string())?).stderr(writer);
    let mut child = command.spawn().map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
    drop(command); // its copies of the pipe's writing end, so the reader sees the end
    let reading = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        bytes
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {} s: killed", COMMAND_TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let bytes = reading.join().unwrap();
    Ok((status.code(), String::from_utf8_lossy(&bytes).into_owned()))
}

/// Whether `actual` is what `expected` shows: `...` on a line of its own is any number of lines,
/// `[..]` in a line any text; trailing spaces do not count.
fn matches(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "..." => (0..=actual.len()).any(|skip| matches(rest, &actual[skip..])),
        Some((first, rest)) => actual.split_first().is_some_and(|(line, more)| line_matches(first, line) && matches(rest, more)),
    }
}

fn line_matches(pattern: &str, line: &str) -> bool {
    let (pattern, line) = (pattern.trim_end(), line.trim_end());
    let parts: Vec<&str> = pattern.split("[..]").collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == line;
    }
    if line.len() < first.len() + last.len() || !line.starts_with(first) || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Runs one example; a description of what went wrong when it does not print what it shows.
fn check(file: &Path, example: &Example, variables: &Variables) -> Result<(), String> {
    let place = format!("{}:{}: $ {}", shown(file), example.line, example.command);
    let words = words(&example.command).map_err(|e| format!("{place}\n  {e}"))?;
    if words.is_empty() {
        return Err(format!("{place}\n  an empty command"));
    }
    let expanded: Vec<String> = words.iter().map(|w| variables.expand(w)).collect::<Result<_, _>>().map_err(|e| format!("{place}\n  {e}"))?;
    let (code, output) = run(command_for(&expanded)).map_err(|e| format!("{place}\n  {e}"))?;
    let output = variables.unexpand(&output);
    let actual: Vec<&str> = output.lines().collect();
    let same_output = matches(&example.expected, &actual);
    if same_output && code == Some(example.code) {
        return Ok(());
    }
    let quote = |lines: &mut dyn Iterator<Item = &str>| lines.map(|l| format!("    | {l}\n")).collect::<String>();
    let mut message = format!("{place}\n");
    if code != Some(example.code) {
        message += &format!("  exit code: expected {}, got {}\n", example.code, code.map_or("a signal".into(), |c| c.to_string()));
    }
    if !same_output {
        message += &format!("  the output differs{}\n", first_difference(file, example, &actual));
    }
    message += &format!("  expected output:\n{}", quote(&mut example.expected.iter().map(String::as_str)));
    message += &format!("  actual output:\n{}", quote(&mut actual.iter().copied()));
    Err(message)
}

/// Where the output first differs, when no `...` comes before it: the docs' line and both texts.
fn first_difference(file: &Path, example: &Example, actual: &[&str]) -> String {
    for (index, expected) in example.expected.iter().enumerate() {
        if expected.trim() == "..." {
            return String::new();
        }
        let line = example.line + 1 + index;
        match actual.get(index) {
            Some(got) if line_matches(expected, got) => continue,
            Some(got) => return format!(" first at {}:{line}: expected `{expected}`, got `{got}`", shown(file)),
            None => return format!(" first at {}:{line}: expected `{expected}`, got the end of the output", shown(file)),
        }
    }
    match actual.get(example.expected.len()) {
        Some(got) => format!(" after the last expected line: got `{got}` too"),
        None => String::new(),
    }
}

static GUEST: OnceLock<PathBuf> = OnceLock::new();
static CHAIN_GUEST: OnceLock<PathBuf> = OnceLock::new();

/// `$VARIABLE` when set (`cargo xtask test` sets the guests), else the guest built here.
fn guest(cell: &'static OnceLock<PathBuf>, variable: &str, package: &str) -> &'static Path {
    cell.get_or_init(|| match std::env::var_os(variable) {
        Some(path) => PathBuf::from(path),
        None => cargo_build(&["--release", "--target", "wasm32-unknown-unknown", "-p", package], None, &package.replace('-', "_")),
    })
}

/// The static release runner, built as `cargo xtask repro` builds it (so it is the same build).
fn runner() -> &'static Path {
    static RUNNER: OnceLock<PathBuf> = OnceLock::new();
    RUNNER.get_or_init(|| {
        let version = Command::new("rustc").arg("-vV").output().expect("running rustc -vV");
        let version = String::from_utf8_lossy(&version.stdout).into_owned();
        let triple = version.lines().find_map(|line| line.strip_prefix("host: ")).expect("rustc -vV printed no host triple");
        cargo_build(&["--release", "--target", triple, "-p", "host-runner"], Some("-C target-feature=+crt-static"), "host-runner")
    })
}

/// `cargo build ARGS` (with RUSTFLAGS set, or removed): the artifact of `target` it reported.
fn cargo_build(args: &[&str], rustflags: Option<&str>, target: &str) -> PathBuf {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.arg("build").args(args).arg("--message-format=json-render-diagnostics").current_dir(root());
    match rustflags {
        Some(flags) => command.env("RUSTFLAGS", flags),
        None => command.env_remove("RUSTFLAGS"),
    };
    let output = command.stderr(Stdio::inherit()).output().expect("running cargo build");
    assert!(output.status.success(), "cargo build {} failed", args.join(" "));
    let mut found = None;
    for message in cargo_metadata::Message::parse_stream(output.stdout.as_slice()) {
        if let Ok(cargo_metadata::Message::CompilerArtifact(artifact)) = message {
            if artifact.target.name == target {
                found = artifact.executable.or_else(|| artifact.filenames.into_iter().find(|f| f.extension() == Some("wasm")));
            }
        }
    }
    found.unwrap_or_else(|| panic!("cargo build {} reported no artifact for {target}", args.join(" "))).into_std_path_buf()
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn every_console_example_prints_what_the_docs_show() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in documentation() {
        let (blocks, _) = fences(&read(&file));
        for block in blocks.iter().filter(|block| block.info == "console") {
            let examples = examples(&file, block);
            assert!(!examples.is_empty(), "{}:{}: a `console` block without a `$ ` command", shown(&file), block.line);
            let tmp = tempfile::tempdir().unwrap();
            let variables = Variables { tmp: tmp.path().to_path_buf() };
            for example in &examples {
                checked += 1;
                if let Err(failure) = check(&file, example, &variables) {
                    failures.push(failure);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} documented commands do not print what the docs show:\n\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= MIN_CHECKED_COMMANDS, "the docs check only {checked} commands (`console` blocks): at least {MIN_CHECKED_COMMANDS} expected");
}

#[test]
fn every_relative_link_leads_to_a_file_and_a_heading() {
    let mut files = Vec::new();
    markdown_files(&root(), &mut files);
    assert!(files.len() > documentation().len(), "{files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        for (line, target) in links(&read(file)) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            if !linked.exists() {
                broken.push(format!("{}:{line}: ({target}): no file {}", shown(file), shown(&linked)));
                continue;
            }
            if let Some(anchor) = anchor {
                let headings = if linked.is_file() { anchors(&read(&linked)) } else { BTreeSet::new() };
                if !headings.contains(anchor) {
                    broken.push(format!("{}:{line}: ({target}): no heading `#{anchor}` in {} (its anchors: {headings:?})", shown(file), shown(&linked)));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 20, "only {checked} relative links found: is the link reader broken?");
}

#[test]
fn the_readme_is_a_front_door_with_the_quick_start_first_and_a_link_to_every_page() {
    let readme = read(&root().join("README.md"));
    let lines: Vec<&str> = readme.lines().collect();
    assert!(lines.len() <= README_MAX_LINES, "README.md has {} lines: at most {README_MAX_LINES}, the rest belongs in docs/", lines.len());
    for command in ["ci/install-prereqs.sh && cargo xtask repro", "ci/install-prereqs.sh && cargo xtask test"] {
        let at = lines.iter().position(|line| line.contains(command)).map(|index| index + 1);
        assert!(at.is_some_and(|line| line <= QUICK_START_WITHIN), "README.md: `{command}` must be within its first {QUICK_START_WITHIN} lines (found at line {at:?})");
    }
    let linked: BTreeSet<String> = links(&readme).into_iter().map(|(_, target)| target.split('#').next().unwrap().to_string()).collect();
    for page in documentation().iter().skip(1).chain([&root().join("ARCHITECTURE.md")]) {
        let page = shown(page);
        assert!(linked.contains(&page), "README.md does not link to {page}");
    }
}

/// The checker itself: it must be able to fail, and its wildcards mean what docs/testing.md says.
#[test]
fn the_checker_matches_wildcards_and_can_fail() {
    let lines = |text: &str| text.lines().map(str::to_string).collect::<Vec<_>>();
    let actual = ["RESULT: completed in 0.31 s", "a", "b", "STATE ROOT: 0e46"];
    assert!(matches(&lines("RESULT: completed in [..] s\n...\nSTATE ROOT: 0e46"), &actual));
    assert!(matches(&lines("RESULT: [..]\na\nb\n[..]: 0e46\n..."), &actual));
    assert!(!matches(&lines("RESULT: completed in [..] s\nSTATE ROOT: 0e46"), &actual));
    assert!(!matches(&lines("RESULT: completed in [..] s\n...\nSTATE ROOT: ffff"), &actual));
    assert!(!matches(&lines("[..]x[..]"), &["abc"]));
    assert!(!matches(&[], &["unexpected"]));

    assert_eq!(words("host-runner view --name 'a b' \"c\"").unwrap(), ["host-runner", "view", "--name", "a b", "c"]);
    assert!(words("x 'open").is_err());

    let fence = Fence { info: "console".into(), line: 1, lines: vec![(2, "$ cargo xtask diff a b".into()), (3, "  x".into()), (4, "? 1".into()), (5, "$ true".into())] };
    let found = examples(Path::new("t.md"), &fence);
    assert_eq!((found[0].line, found[0].code, found[0].expected.clone(), found[1].code), (2, 1, vec!["  x".to_string()], 0));

    let text = "# A `b`: c — d's\n```sh\n# not a heading [x](nowhere.md)\n```\n## A `b`: c — d's\nsee [e](x.md#y) and `[f](g.md)`\nand [multi\nline](z.md)\n";
    assert_eq!(anchors(text), BTreeSet::from(["a-b-c--ds".to_string(), "a-b-c--ds-1".to_string()]));
    assert_eq!(links(text), [(6, "x.md#y".to_string()), (8, "z.md".to_string())]);
}
