//! Rule files: parsing with line-numbered errors, and first-match evaluation.

use crate::glob::{Glob, GlobError};
use std::fmt;

/// What a rule does with a matching path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Allow,
    Deny,
}

/// One `allow <glob>` or `deny <glob>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: RuleAction,
    pub glob: Glob,
    /// 1-based line in the content, used as the rule id.
    pub line: u32,
}

/// The outcome of evaluating a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    pub action: RuleAction,
    /// The rule that decided, or `None` when the default applied.
    pub rule: Option<&'a Rule>,
}

/// A parsed rule file.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    default: RuleAction,
    /// Line of the `default` directive, if any.
    default_line: Option<u32>,
}

/// Why content was rejected; always names the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: u32,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// The largest content we parse; bigger input is a mistake or an attack.
pub const MAX_CONTENT_BYTES: usize = 4 << 20;

impl RuleSet {
    /// Parses rule content. Without a `default` line, unmatched paths are allowed: an
    /// allow-list that denies by default has to say so.
    pub fn parse(content: &[u8]) -> Result<RuleSet, ParseError> {
        if content.len() > MAX_CONTENT_BYTES {
            return Err(ParseError {
                line: 0,
                reason: format!(
                    "content is {} bytes, more than the {} allowed",
                    content.len(),
                    MAX_CONTENT_BYTES
                ),
            });
        }
        let text = std::str::from_utf8(content).map_err(|e| {
            let line = content[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            ParseError {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                reason: "content is not valid UTF-8".into(),
            }
        })?;
        let mut set = RuleSet {
            rules: Vec::new(),
            default: RuleAction::Allow,
            default_line: None,
        };
        for (index, raw) in text.lines().enumerate() {
            let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let err = |reason: String| ParseError { line, reason };
            let stripped = match raw.find('#') {
                Some(at) if at == 0 || raw[..at].ends_with(char::is_whitespace) => &raw[..at],
                _ => raw,
            };
            let stripped = stripped.trim();
            if stripped.is_empty() {
                continue;
            }
            if let Some(default_line) = set.default_line {
                return Err(err(format!(
                    "rule after the `default` on line {default_line}; `default` must be the last rule"
                )));
            }
            let (keyword, rest) = stripped
                .split_once(char::is_whitespace)
                .map(|(k, r)| (k, r.trim()))
                .unwrap_or((stripped, ""));
            let action = match keyword {
                "allow" => RuleAction::Allow,
                "deny" => RuleAction::Deny,
                "default" => {
                    set.default = match rest {
                        "allow" => RuleAction::Allow,
                        "deny" => RuleAction::Deny,
                        other => {
                            return Err(err(format!(
                                "`default` takes `allow` or `deny`, not {other:?}"
                            )));
                        }
                    };
                    set.default_line = Some(line);
                    continue;
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {other:?}; expected `allow`, `deny` or `default`"
                    )));
                }
            };
            if rest.is_empty() {
                return Err(err(format!("`{keyword}` needs a path pattern")));
            }
            if rest.split_whitespace().count() > 1 && !rest.contains('\\') {
                return Err(err(format!(
                    "one pattern per rule; escape spaces in paths with '\\' ({rest:?})"
                )));
            }
            let glob = Glob::new(rest).map_err(|e: GlobError| err(format!("{e} in {rest:?}")))?;
            set.rules.push(Rule { action, glob, line });
        }
        Ok(set)
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What happens to paths no rule matches.
    pub fn default_action(&self) -> RuleAction {
        self.default
    }

    /// First matching rule wins; otherwise the default.
    pub fn evaluate(&self, path: &str) -> Decision<'_> {
        match self.rules.iter().find(|rule| rule.glob.matches(path)) {
            Some(rule) => Decision {
                action: rule.action,
                rule: Some(rule),
            },
            None => Decision {
                action: self.default,
                rule: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> RuleSet {
        RuleSet::parse(text.as_bytes()).expect("valid content")
    }

    #[test]
    fn first_match_wins() {
        let set = parse("allow /bin/ls\ndeny /bin/*\nallow /bin/sh\n");
        assert_eq!(set.evaluate("/bin/ls").action, RuleAction::Allow);
        let sh = set.evaluate("/bin/sh");
        assert_eq!(sh.action, RuleAction::Deny);
        assert_eq!(sh.rule.map(|r| r.line), Some(2));
    }

    #[test]
    fn default_is_allow_unless_stated() {
        assert_eq!(parse("deny /x").evaluate("/y").action, RuleAction::Allow);
        let set = parse("allow /usr/**\ndefault deny\n");
        assert_eq!(set.evaluate("/opt/x").action, RuleAction::Deny);
        assert!(set.evaluate("/opt/x").rule.is_none());
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let set = parse("# header\n\n  allow /a # trailing comment\n\t\n");
        assert_eq!(set.rules().len(), 1);
        assert_eq!(set.rules()[0].glob.as_str(), "/a");
        // A '#' inside a path is part of the path.
        assert_eq!(parse("deny /a#b").rules()[0].glob.as_str(), "/a#b");
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("allow /a\nfrobnicate /b\n", 2, "unknown keyword"),
            ("deny\n", 1, "needs a path pattern"),
            ("default maybe\n", 1, "takes `allow` or `deny`"),
            ("default deny\nallow /a\n", 2, "must be the last rule"),
            ("allow /a /b\n", 1, "one pattern per rule"),
            ("\n\nallow /a\\\n", 3, "lone"),
        ];
        for (text, line, needle) in cases {
            let err = RuleSet::parse(text.as_bytes()).expect_err(text);
            assert_eq!(err.line, line, "{text:?}");
            assert!(err.reason.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn rejects_invalid_utf8_and_oversized_content() {
        let err = RuleSet::parse(b"allow /a\n\xff\xfe").expect_err("not utf-8");
        assert_eq!(err.line, 2);
        let huge = vec![b'#'; MAX_CONTENT_BYTES + 1];
        assert!(RuleSet::parse(&huge).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = RuleSet::parse(&bytes);
        }

        #[test]
        fn evaluation_is_first_match(paths in proptest::collection::vec("/[ab]{1,3}", 1..6), probe in "/[ab]{1,3}") {
            let text: String = paths
                .iter()
                .enumerate()
                .map(|(i, p)| format!("{} {p}\n", if i % 2 == 0 { "allow" } else { "deny" }))
                .collect();
            let set = RuleSet::parse(text.as_bytes()).expect("generated content is valid");
            let expected = paths.iter().position(|p| p == &probe);
            let decision = set.evaluate(&probe);
            prop_assert_eq!(decision.rule.map(|r| r.line as usize - 1), expected);
        }
    }
}
