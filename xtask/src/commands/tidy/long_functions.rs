//! Functions longer than a limit: a line starting (after its indentation) with `fn`, `pub fn`,
//! `pub(crate) fn`, `const`/`async`/`unsafe fn`, up to the first later line that is a `}` at
//! the same indentation. A declaration without a body (`;`) or on one line is no function here.

/// A function over the limit.
#[derive(Debug, PartialEq, Eq)]
pub struct LongFunction {
    /// Where its `fn` line is, counted from 1.
    pub line: usize,
    pub name: String,
    /// Lines from its `fn` line to its closing brace, both counted.
    pub lines: usize,
}

/// Every function in `text` longer than `limit` lines.
pub fn long_functions(text: &str, limit: usize) -> Vec<LongFunction> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some((indent, name)) = function_start(line) else { continue };
        if !has_body(&lines[start..]) {
            continue;
        }
        let closing = format!("{indent}}}");
        let Some(end) = lines[start + 1..].iter().position(|l| *l == closing) else { continue };
        let length = end + 2;
        if length > limit {
            found.push(LongFunction { line: start + 1, name: name.to_string(), lines: length });
        }
    }
    found
}

/// The indentation and name of a line that starts a function.
fn function_start(line: &str) -> Option<(&str, &str)> {
    let indent = &line[..line.len() - line.trim_start().len()];
    let mut rest = line.trim_start();
    if let Some(after) = rest.strip_prefix("pub") {
        rest = match after.strip_prefix('(') {
            Some(scoped) => {
                let (scope, after) = scoped.split_once(')')?;
                if scope.is_empty() || !scope.chars().all(|c| c.is_ascii_lowercase()) {
                    return None;
                }
                after.strip_prefix(' ')?
            }
            None => after.strip_prefix(' ')?,
        };
    }
    for qualifier in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(qualifier).unwrap_or(rest);
    }
    let name = rest.strip_prefix("fn ")?;
    let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(name.len());
    (end > 0).then(|| (indent, &name[..end]))
}

/// Whether the function starting at `lines[0]` has a body on more than one line: its signature
/// reaches a `{` before a line ending in `;`, and does not close on its first line.
fn has_body(lines: &[&str]) -> bool {
    for (i, line) in lines.iter().enumerate() {
        if let Some(open) = line.find('{') {
            let one_line = i == 0 && line.trim_end().ends_with('}') && line[open..].contains('}');
            return !one_line;
        }
        if line.trim_end().ends_with(';') {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(indent: &str, signature: &str, body_lines: usize) -> String {
        let body: String = (0..body_lines).map(|i| format!("{indent}    let x{i} = {i};\n")).collect();
        format!("{indent}{signature} {{\n{body}{indent}}}\n")
    }

    #[test]
    fn a_function_over_the_limit_is_found_with_its_line_and_length() {
        let text = [
            function("", "fn short()", 58),
            function("", "pub(crate) fn long()", 59),
            "impl X {\n    fn declared(&self);\n    fn one_line(&self) -> u8 { 1 }\n".into(),
            function("    ", "pub async fn nested(&self)", 60),
            "}\n".into(),
        ]
        .concat();
        assert_eq!(
            long_functions(&text, 60),
            [
                LongFunction { line: 61, name: "long".into(), lines: 61 },
                LongFunction { line: 125, name: "nested".into(), lines: 62 },
            ]
        );
        assert_eq!(long_functions(&function("", "fn exactly()", 58), 60), []);
        assert_eq!(function_start("    pub(in crate::x) fn f() {"), None);
        assert_eq!(function_start("// fn f() {"), None);
    }
}
