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
const PATHS: &[&str] = &["/usr/bin/ls", "/tmp/x/run.sh", "/", "", "a/b"];
/// The reference is quadratic; longer globs and paths add time but no new behaviour.
const MAX_LEN: usize = 256;

#[derive(Clone, Copy)]
enum Token {
    Byte(u8),
    AnyChar,
    Star,
    GlobStar,
}

/// Tokenises a glob as `ringfence_allowlist::Glob` documents it, independently of its compiler.
fn tokens(pattern: &str) -> Vec<Token> {
    let bytes = pattern.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        out.push(match bytes[i] {
            b'\\' if i + 1 < bytes.len() => {
                i += 1;
                Token::Byte(bytes[i])
            }
            b'*' if bytes.get(i + 1) == Some(&b'*') => {
                i += 1;
                Token::GlobStar
            }
            b'*' => Token::Star,
            b'?' => Token::AnyChar,
            b => Token::Byte(b),
        });
        i += 1;
    }
    out
}

/// Whether `tokens` match all of `path`, by dynamic programming over (token, byte) suffixes.
fn reference(tokens: &[Token], path: &[u8]) -> bool {
    let width = path.len() + 1;
    let mut next = vec![false; width];
    next[path.len()] = true;
    for token in tokens.iter().rev() {
        let mut here = vec![false; width];
        for j in (0..width).rev() {
            let byte = path.get(j).copied();
            here[j] = match token {
                Token::Byte(b) => byte == Some(*b) && next[j + 1],
                Token::AnyChar => byte.is_some_and(|c| c != b'/') && next[j + 1],
                Token::Star => next[j] || (byte.is_some_and(|c| c != b'/') && here[j + 1]),
                Token::GlobStar => next[j] || (byte.is_some() && here[j + 1]),
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
            let expected = reference(glob, path.as_bytes());
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
