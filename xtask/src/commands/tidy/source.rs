//! Reading Rust source just far enough to find its paths: comments blanked, literals emptied,
//! then every path (`crate::a::b`, `super::x`, use trees with braces expanded) with the inline
//! modules (`mod tests { … }`) it is written in.

/// `text` with comments blanked and string and char literals emptied (their quotes kept), so
/// what is left is code. Newlines stay where they were.
pub fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let skipped = if rest.starts_with(&['/', '/']) {
            line_comment(rest)
        } else if rest.starts_with(&['/', '*']) {
            block_comment(rest)
        } else if let Some(len) = raw_string(rest, starts_token(&chars, i)) {
            len
        } else if rest[0] == '"' {
            string(rest)
        } else if rest[0] == '\'' {
            char_literal(rest).unwrap_or(0)
        } else {
            0
        };
        if skipped == 0 {
            code.push(rest[0]);
            i += 1;
            continue;
        }
        // Keep the line structure, and a literal's quotes so it still reads as an expression.
        let literal = rest[0] != '/';
        code.extend(rest[..skipped].iter().enumerate().map(|(j, &c)| match c {
            '\n' => '\n',
            '"' | '\'' if literal && (j == 0 || j == skipped - 1) => c,
            _ => ' ',
        }));
        i += skipped;
    }
    code
}

fn starts_token(chars: &[char], i: usize) -> bool {
    i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

fn line_comment(rest: &[char]) -> usize {
    rest.iter().position(|&c| c == '\n').unwrap_or(rest.len())
}

/// `/* … */`, nested as Rust nests them.
fn block_comment(rest: &[char]) -> usize {
    let (mut depth, mut i) = (0, 0);
    while i < rest.len() {
        if rest[i..].starts_with(&['/', '*']) {
            depth += 1;
            i += 2;
        } else if rest[i..].starts_with(&['*', '/']) {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    rest.len()
}

/// `"…"` with its escapes.
fn string(rest: &[char]) -> usize {
    let mut i = 1;
    while i < rest.len() {
        match rest[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    rest.len()
}

/// `r"…"`, `r#"…"#`, `br"…"` at the start of a token.
fn raw_string(rest: &[char], at_token_start: bool) -> Option<usize> {
    if !at_token_start {
        return None;
    }
    let start = match rest {
        ['r', ..] => 1,
        ['b', 'r', ..] => 2,
        _ => return None,
    };
    let hashes = rest[start..].iter().take_while(|&&c| c == '#').count();
    if rest.get(start + hashes) != Some(&'"') {
        return None;
    }
    let body = start + hashes + 1;
    let closing: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
    let end = (body..rest.len()).find(|&i| rest[i..].starts_with(&closing)).map_or(rest.len(), |i| i + closing.len());
    Some(end)
}

/// `'x'` or `'\n'`, `'\u{..}'`; `None` for a lifetime (`'a`).
fn char_literal(rest: &[char]) -> Option<usize> {
    match rest {
        ['\'', '\\', ..] => rest[2..].iter().position(|&c| c == '\'').map(|end| end + 3),
        ['\'', _, '\'', ..] => Some(3),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Star,
    Dot,
    Other(char),
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let end = (i..chars.len()).find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_')).unwrap_or(chars.len());
            tokens.push(Token::Ident(chars[i..end].iter().collect()));
            i = end;
            continue;
        }
        let token = match c {
            ':' if chars.get(i + 1) == Some(&':') => {
                i += 1;
                Token::PathSep
            }
            '{' => Token::Open,
            '}' => Token::Close,
            ',' => Token::Comma,
            '*' => Token::Star,
            '.' => Token::Dot,
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            c => Token::Other(c),
        };
        tokens.push(token);
        i += 1;
    }
    tokens
}

/// A path written in code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRef {
    /// As written: `crate`, `super`, `self` or a name first; a use tree's `self` dropped.
    pub segments: Vec<String>,
    /// The inline modules it is written in (`mod tests { … }`), outermost first.
    pub inline: Vec<String>,
    /// The name it brings into the file's own scope, for a `use` at the file's top level (where
    /// other files can reach it through this one: `crate::Name` for a `pub use x::Name` in lib.rs).
    pub binds: Option<String>,
}

/// Every path in `code` (from [`code_only`]), use trees expanded.
pub fn paths(code: &str) -> Vec<PathRef> {
    let tokens = tokens(code);
    let mut found = Vec::new();
    // Inline modules open, with the brace depth inside each.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Open => depth += 1,
            Token::Close => {
                if inline.last().is_some_and(|(_, inside)| *inside == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some(Token::Ident(name)), Some(Token::Open)) = (tokens.get(i + 1), tokens.get(i + 2)) {
                    inline.push((name.clone(), depth + 1));
                }
            }
            Token::Ident(_) if starts_path(&tokens, i) => {
                let file_use = depth == 0 && matches!(tokens[..i].last(), Some(Token::Ident(word)) if word == "use");
                let mut trees = Vec::new();
                i = use_tree(&tokens, i, Vec::new(), &mut trees);
                let inline: Vec<String> = inline.iter().map(|(name, _)| name.clone()).collect();
                found.extend(trees.into_iter().map(|(segments, binds)| PathRef { segments, inline: inline.clone(), binds: binds.filter(|_| file_use) }));
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Whether a path starts at `i`: a name followed by `::`, not after `::` or `.`, and not the
/// module of a visibility (`pub(in crate::a)`), which imports nothing.
fn starts_path(tokens: &[Token], i: usize) -> bool {
    let before = |n: usize| i.checked_sub(n).map(|j| &tokens[j]);
    let visibility = matches!(before(1), Some(Token::Ident(word)) if word == "in")
        && before(2) == Some(&Token::Other('('))
        && matches!(before(3), Some(Token::Ident(word)) if word == "pub");
    tokens.get(i + 1) == Some(&Token::PathSep) && !matches!(before(1), Some(Token::PathSep | Token::Dot)) && !visibility
}

/// The paths of the use tree (or plain path) at `i`, each after `path`, with the name each
/// binds (its last segment, or its `as` name); where the tree ends.
fn use_tree(tokens: &[Token], mut i: usize, mut path: Vec<String>, found: &mut Vec<(Vec<String>, Option<String>)>) -> usize {
    let mut binds: Option<String>;
    loop {
        match tokens.get(i) {
            Some(Token::Ident(name)) => {
                binds = Some(if name == "self" { path.last().unwrap_or(name).clone() } else { name.clone() });
                if name != "self" || path.is_empty() {
                    path.push(name.clone());
                }
                i += 1;
                if tokens.get(i) == Some(&Token::PathSep) {
                    i += 1;
                    continue;
                }
                if let (Some(Token::Ident(word)), Some(Token::Ident(alias))) = (tokens.get(i), tokens.get(i + 1)) {
                    if word == "as" {
                        binds = Some(alias.clone());
                        i += 2;
                    }
                }
            }
            Some(Token::Open) => {
                i += 1;
                while i < tokens.len() && tokens[i] != Token::Close {
                    i = use_tree(tokens, i, path.clone(), found);
                    if tokens.get(i) == Some(&Token::Comma) {
                        i += 1;
                    } else if tokens.get(i) != Some(&Token::Close) {
                        return i;
                    }
                }
                return i + 1;
            }
            Some(Token::Star) => {
                binds = None;
                i += 1;
            }
            _ => binds = None,
        }
        found.push((path, binds));
        return i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(code: &str) -> Vec<String> {
        paths(&code_only(code)).iter().map(|p| p.segments.join("::")).collect()
    }

    #[test]
    fn comments_and_literals_hold_no_paths() {
        let code = "// crate::a::x\n/* crate::b /* crate::c */ */ let s = \"crate::d\"; let r = r#\"crate::e\"#; let c = '{'; fn f<'a>() { crate::f::g() }";
        assert_eq!(segments(code), ["crate::f::g"]);
        assert_eq!(code_only("a // b\nc").lines().count(), 2);
        assert_eq!(code_only("let s = \"x\\\"y\";"), "let s = \"    \";");
    }

    #[test]
    fn use_trees_are_expanded() {
        assert_eq!(
            segments("use crate::a::{self, b::{C, D as E}, f::*};"),
            ["crate::a", "crate::a::b::C", "crate::a::b::D", "crate::a::f"]
        );
        assert_eq!(segments("x.collect::<Vec<_>>(); Outcome::Completed; super::super::y"), ["Outcome::Completed", "super::super::y"]);
        assert_eq!(segments("Vec::<u8>::new()"), ["Vec"]);
        assert_eq!(segments("pub(in crate::a) fn f() { for x in crate::b::all() {} }"), ["crate::b::all"]);
    }

    #[test]
    fn paths_know_their_inline_module_and_what_a_file_level_use_binds() {
        let code = "pub use a::B;\nuse c::{D as E, self};\nmod tests {\n    use super::*;\n    fn f() { super::g::h(); }\n}\nfn k() { crate::x::y(); }";
        let seen: Vec<(String, Vec<String>, Option<String>)> = paths(&code_only(code)).into_iter().map(|p| (p.segments.join("::"), p.inline, p.binds)).collect();
        let string = |s: &str| s.to_string();
        assert_eq!(
            seen,
            [
                (string("a::B"), vec![], Some(string("B"))),
                (string("c::D"), vec![], Some(string("E"))),
                (string("c"), vec![], Some(string("c"))),
                (string("super"), vec![string("tests")], None),
                (string("super::g::h"), vec![string("tests")], None),
                (string("crate::x::y"), vec![], None),
            ]
        );
    }
}
