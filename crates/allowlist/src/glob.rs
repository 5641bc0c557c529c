//! Path globs: `*` matches within one path component, `**` across components, `?` one
//! character other than `/`, and `\` escapes the next character.
//!
//! Matching is the classic two-pointer algorithm with one backtrack point per star kind, so it
//! runs in O(pattern × path) at worst and needs no allocation per match. It works on bytes but
//! only ever stops on character boundaries, so `?` takes a whole UTF-8 character.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Box<[u8]>),
    AnyChar,
    /// `*`: any run of bytes without `/`.
    Star,
    /// `**`: any run of bytes.
    GlobStar,
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
    /// Bytes every match must start with; lets most non-matching rules fail on a prefix compare.
    prefix: Box<[u8]>,
}

/// Why a glob could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobError {
    /// The pattern ends with a lone `\`.
    TrailingEscape,
    /// The pattern is empty.
    Empty,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobError::TrailingEscape => f.write_str("pattern ends with a lone '\\'"),
            GlobError::Empty => f.write_str("empty pattern"),
        }
    }
}

impl std::error::Error for GlobError {}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        let mut tokens = Vec::new();
        let mut literal = Vec::new();
        let bytes = pattern.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let token = match bytes[i] {
                b'\\' => {
                    let escaped = *bytes.get(i + 1).ok_or(GlobError::TrailingEscape)?;
                    literal.push(escaped);
                    i += 2;
                    continue;
                }
                b'*' if bytes.get(i + 1) == Some(&b'*') => {
                    i += 2;
                    Token::GlobStar
                }
                b'*' => {
                    i += 1;
                    Token::Star
                }
                b'?' => {
                    i += 1;
                    Token::AnyChar
                }
                other => {
                    literal.push(other);
                    i += 1;
                    continue;
                }
            };
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal).into()));
            }
            // Adjacent stars collapse: `***` is `**`, `* **` is `**`.
            match (tokens.last_mut(), &token) {
                (Some(last @ Token::Star), Token::GlobStar) => *last = Token::GlobStar,
                (Some(Token::GlobStar), Token::Star | Token::GlobStar) => {}
                (Some(Token::Star), Token::Star) => {}
                _ => tokens.push(token),
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal.into()));
        }
        let prefix = match tokens.first() {
            Some(Token::Literal(bytes)) => bytes.clone(),
            _ => Box::default(),
        };
        Ok(Glob {
            source: pattern.to_owned(),
            tokens,
            prefix,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when `path` matches the whole pattern.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.as_bytes();
        if !path.starts_with(&self.prefix) {
            return false;
        }
        matches_tokens(&self.tokens, path)
    }
}

fn matches_tokens(tokens: &[Token], path: &[u8]) -> bool {
    // Backtracking points: (token after the star, path position the star has reached). A `*`
    // may only be retried within its component; when it cannot grow, the most recent `**` takes
    // one more byte and everything after it is matched again.
    let mut t = 0;
    let mut p = 0;
    let mut star: Option<(usize, usize)> = None;
    let mut globstar: Option<(usize, usize)> = None;
    loop {
        if t < tokens.len() {
            match &tokens[t] {
                Token::Literal(lit) => {
                    if path[p..].starts_with(lit) {
                        t += 1;
                        p += lit.len();
                        continue;
                    }
                }
                Token::AnyChar => {
                    if p < path.len() && path[p] != b'/' {
                        t += 1;
                        p += char_len(path[p]);
                        continue;
                    }
                }
                Token::Star => {
                    t += 1;
                    star = Some((t, p));
                    continue;
                }
                Token::GlobStar => {
                    t += 1;
                    globstar = Some((t, p));
                    star = None;
                    continue;
                }
            }
        } else if p == path.len() {
            return true;
        }
        match star {
            Some((next, reached)) if reached < path.len() && path[reached] != b'/' => {
                let reached = reached + char_len(path[reached]);
                star = Some((next, reached));
                t = next;
                p = reached;
                continue;
            }
            _ => star = None,
        }
        match globstar {
            Some((next, reached)) if reached < path.len() => {
                let reached = reached + char_len(path[reached]);
                globstar = Some((next, reached));
                t = next;
                p = reached;
            }
            _ => return false,
        }
    }
}

/// Length of the UTF-8 character starting with `lead`. Paths are `str` and literals are whole
/// characters of the pattern, so every position the matcher stops at starts a character.
fn char_len(lead: u8) -> usize {
    match lead {
        0xf0.. => 4,
        0xe0.. => 3,
        0xc0.. => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(pattern: &str, path: &str) -> bool {
        Glob::new(pattern).expect("valid pattern").matches(path)
    }

    #[test]
    fn literal_needs_whole_path() {
        assert!(m("/bin/sh", "/bin/sh"));
        assert!(!m("/bin/sh", "/bin/sha"));
        assert!(!m("/bin/sh", "/bin/s"));
    }

    #[test]
    fn star_stays_in_one_component() {
        assert!(m("/usr/bin/*", "/usr/bin/ls"));
        assert!(m("/usr/bin/*", "/usr/bin/"));
        assert!(!m("/usr/bin/*", "/usr/bin/x/ls"));
        assert!(m("/usr/*/ls", "/usr/bin/ls"));
        assert!(m("*.sh", "run.sh"));
        assert!(!m("*.sh", "/tmp/run.sh"));
    }

    #[test]
    fn globstar_crosses_components() {
        assert!(m("/tmp/**", "/tmp/a/b/c"));
        assert!(m("/**/sh", "/usr/bin/sh"));
        assert!(m("**", "/anything/at/all"));
        assert!(!m("/tmp/**", "/var/tmp/x"));
    }

    #[test]
    fn question_mark_is_one_non_slash_byte() {
        assert!(m("/bin/?s", "/bin/ls"));
        assert!(!m("/bin/?s", "/bin/s"));
        assert!(!m("/bin?ls", "/bin/ls"));
    }

    /// Found while writing the `allowlist_content` fuzz target's reference matcher to the
    /// documented semantics: `?` took one byte, so `deny /tmp/?` let `/tmp/é` run and
    /// `allow /tmp/??` matched it, and a `*` that stopped inside a character let `?`s match
    /// the character's remaining bytes.
    #[test]
    fn question_mark_is_one_character_not_one_byte() {
        assert!(m("/tmp/?", "/tmp/é"));
        assert!(!m("/tmp/??", "/tmp/é"));
        assert!(!m("/tmp/*??", "/tmp/€"));
        assert!(!m("/**??", "/€"));
        assert!(m("/tmp/?€?", "/tmp/é€𝄞"));
        assert!(m("/**/?", "/a/b/𝄞"));
    }

    #[test]
    fn escapes_make_metacharacters_literal() {
        assert!(m(r"/opt/a\*b", "/opt/a*b"));
        assert!(!m(r"/opt/a\*b", "/opt/axb"));
        assert_eq!(Glob::new("abc\\"), Err(GlobError::TrailingEscape));
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
    }

    #[test]
    fn star_backtracks_past_false_starts() {
        assert!(m("/a*b*c", "/aXbYbZc"));
        assert!(!m("/a*b*c", "/aXbYbZ"));
        assert!(m("/**/x/*.so", "/usr/lib/x/libc.so"));
    }

    /// A slow, obviously-correct recursive matcher to check the fast one against.
    fn reference(tokens: &[Token], path: &[u8]) -> bool {
        match tokens.split_first() {
            None => path.is_empty(),
            Some((Token::Literal(lit), rest)) => {
                path.starts_with(lit) && reference(rest, &path[lit.len()..])
            }
            Some((Token::AnyChar, rest)) => {
                !path.is_empty() && path[0] != b'/' && reference(rest, &path[1..])
            }
            Some((Token::Star, rest)) => (0..=path.len())
                .take_while(|&n| n == 0 || path[n - 1] != b'/')
                .any(|n| reference(rest, &path[n..])),
            Some((Token::GlobStar, rest)) => (0..=path.len()).any(|n| reference(rest, &path[n..])),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_reference(pattern in "[ab/*?]{1,8}", path in "[ab/]{0,10}") {
            let glob = Glob::new(&pattern).expect("alphabet has no escapes");
            prop_assert_eq!(glob.matches(&path), reference(&glob.tokens, path.as_bytes()));
        }
    }
}
