//! `exec-allowlist` content as a content author (or whoever got a release signed) writes it:
//! the line parser, then every glob checked against a slow reference matcher on paths the
//! fuzzer also chooses, because a glob that matches the wrong paths allows or denies the wrong
//! programs on every host.
//!
//! Input: the content, then optionally a NUL byte and newline-separated paths to evaluate.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_allowlist::RuleSet;

/// Paths tried when the input names none.
const PATHS: &[&str] = &[
    "/usr/bin/ls",
    "/tmp/x/run.sh",
    "/",
    "",
    "a/b",
    "/tmp/é",
    "/opt/€𝄞/x",
];
/// The reference is quadratic; longer globs and paths add time but no new behaviour.
const MAX_LEN: usize = 256;

#[derive(Clone, Copy)]
enum Token {
    Char(char),
    AnyChar,
    Star,
    GlobStar,
}

/// Tokenises a glob as `ringfence_allowlist::Glob` documents it, in characters, independently
/// of its compiler (which works in bytes).
fn tokens(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        out.push(match chars[i] {
            '\\' if i + 1 < chars.len() => {
                i += 1;
                Token::Char(chars[i])
            }
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                Token::GlobStar
            }
            '*' => Token::Star,
            '?' => Token::AnyChar,
            c => Token::Char(c),
        });
        i += 1;
    }
    out
}

/// Whether `tokens` match all of `path`, by dynamic programming over (token, character)
/// suffixes.
fn reference(tokens: &[Token], path: &str) -> bool {
    let path: Vec<char> = path.chars().collect();
    let width = path.len() + 1;
    let mut next = vec![false; width];
    next[path.len()] = true;
    for token in tokens.iter().rev() {
        let mut here = vec![false; width];
        for j in (0..width).rev() {
            let c = path.get(j).copied();
            here[j] = match token {
                Token::Char(want) => c == Some(*want) && next[j + 1],
                Token::AnyChar => c.is_some_and(|c| c != '/') && next[j + 1],
                Token::Star => next[j] || (c.is_some_and(|c| c != '/') && here[j + 1]),
                Token::GlobStar => next[j] || (c.is_some() && here[j + 1]),
            };
        }
        next = here;
    }
    next[0]
}

fuzz_target!(|data: &[u8]| {
    let (content, paths) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(String::from_utf8_lossy(&data[at + 1..]))),
        None => (data, None),
    };
    let Ok(set) = RuleSet::parse(content) else {
        return;
    };
    let paths: Vec<&str> = match &paths {
        Some(text) => text.split('\n').collect(),
        None => PATHS.to_vec(),
    };
    let globs: Vec<Vec<Token>> = set
        .rules()
        .iter()
        .map(|rule| tokens(rule.glob.as_str()))
        .collect();
    for path in paths.into_iter().filter(|p| p.len() <= MAX_LEN) {
        let mut first = None;
        for (rule, glob) in set.rules().iter().zip(&globs) {
            if rule.glob.as_str().len() > MAX_LEN {
                continue;
            }
            let expected = reference(glob, path);
            assert_eq!(
                rule.glob.matches(path),
                expected,
                "glob {:?} on {path:?}",
                rule.glob.as_str()
            );
            if expected && first.is_none() {
                first = Some(rule.line);
            }
        }
        let decision = set.evaluate(path);
        if set.rules().iter().all(|r| r.glob.as_str().len() <= MAX_LEN) {
            assert_eq!(decision.rule.map(|r| r.line), first);
            if first.is_none() {
                assert_eq!(decision.action, set.default_action());
            }
        }
    }
});
