//! The `condition` language: `and`, `or`, `not`, parentheses, `1 of`/`all of` with name
//! wildcards or `them`. Aggregations (`| count() …`) are refused: they need state across
//! events, which a per-event engine does not keep.

use crate::ast::Expr;
use crate::error::RuleError;

/// Deepest nesting of parentheses and `not`s accepted. Real rules nest a handful of levels; the
/// parser, the compiler and both matchers recurse once per level, so unbounded nesting would
/// overflow the stack (natively, or trap the engine's 512 KiB wasm stack) instead of failing
/// the one rule.
const MAX_NESTING: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Word(String),
}

fn tokenize(condition: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<Token>| {
        if !word.is_empty() {
            tokens.push(Token::Word(std::mem::take(word)));
        }
    };
    for c in condition.chars() {
        match c {
            '(' | ')' => {
                flush(&mut word, &mut tokens);
                tokens.push(if c == '(' { Token::Open } else { Token::Close });
            }
            '|' => return Err("aggregations (`|`) are not supported".into()),
            c if c.is_whitespace() => flush(&mut word, &mut tokens),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut tokens);
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    names: &'a [String],
    /// Levels of parentheses and `not` around the current position.
    depth: usize,
}

fn is_keyword(word: &str, keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword)
}

impl Parser<'_> {
    /// Runs `inner` one nesting level deeper, refusing to go past [`MAX_NESTING`].
    fn nested(&mut self, inner: fn(&mut Self) -> Result<Expr, String>) -> Result<Expr, String> {
        if self.depth == MAX_NESTING {
            return Err(format!("nested more than {MAX_NESTING} levels deep"));
        }
        self.depth += 1;
        let result = inner(self);
        self.depth -= 1;
        result
    }

    fn peek_word(&self) -> Option<&str> {
        match self.tokens.get(self.at) {
            Some(Token::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.and()?];
        while self.peek_word().is_some_and(|w| is_keyword(w, "or")) {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut parts = vec![self.not()?];
        while self.peek_word().is_some_and(|w| is_keyword(w, "and")) {
            self.at += 1;
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.peek_word().is_some_and(|w| is_keyword(w, "not")) {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.nested(Self::not)?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        match token {
            None => Err("unexpected end".into()),
            Some(Token::Close) => Err("unexpected `)`".into()),
            Some(Token::Open) => {
                let inner = self.nested(Self::or)?;
                match self.tokens.get(self.at) {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    _ => Err("missing `)`".into()),
                }
            }
            Some(Token::Word(word)) => {
                if self.peek_word().is_some_and(|w| is_keyword(w, "of")) {
                    self.at += 1;
                    return self.quantified(&word);
                }
                if ["and", "or", "of", "them"]
                    .iter()
                    .any(|k| is_keyword(&word, k))
                {
                    return Err(format!("unexpected `{word}`"));
                }
                self.names
                    .iter()
                    .position(|n| *n == word)
                    .map(Expr::Search)
                    .ok_or_else(|| format!("unknown search identifier `{word}`"))
            }
        }
    }

    fn quantified(&mut self, quantifier: &str) -> Result<Expr, String> {
        let all = if is_keyword(quantifier, "all") {
            true
        } else if quantifier == "1" || is_keyword(quantifier, "any") {
            false
        } else {
            return Err(format!(
                "`{quantifier} of` is not supported; use `1 of` or `all of`"
            ));
        };
        let target = match self.tokens.get(self.at) {
            Some(Token::Word(w)) => w.clone(),
            _ => return Err("`of` needs a name pattern or `them`".into()),
        };
        self.at += 1;
        let them = is_keyword(&target, "them");
        let chosen: Vec<Expr> = self
            .names
            .iter()
            .enumerate()
            // `them` leaves out `_`-prefixed helpers, as pySigma does.
            .filter(|(_, n)| {
                if them {
                    !n.starts_with('_')
                } else {
                    name_glob(&target, n)
                }
            })
            .map(|(i, _)| Expr::Search(i))
            .collect();
        if chosen.is_empty() {
            return Err(format!("`{target}` matches no search identifier"));
        }
        Ok(if all {
            Expr::And(chosen)
        } else {
            Expr::Or(chosen)
        })
    }
}

/// `*` and `?` over identifier names, in O(pattern × name): only the latest `*` is ever
/// retried, because any match a retry of an earlier one finds, the latest one finds too.
fn name_glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut i, mut j) = (0, 0);
    // (pattern position after the latest `*`, name position that `*` has reached)
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        match p.get(i) {
            Some('*') => {
                star = Some((i + 1, j));
                i += 1;
            }
            Some(&c) if c == '?' || c == n[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((after, reached)) => {
                    star = Some((after, reached + 1));
                    i = after;
                    j = reached + 1;
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Parses one condition string against the rule's search identifiers.
pub fn parse(condition: &str, names: &[String]) -> Result<Expr, RuleError> {
    let fail = |why: String| RuleError::Condition {
        condition: condition.to_owned(),
        why,
    };
    let tokens = tokenize(condition).map_err(fail)?;
    if tokens.is_empty() {
        return Err(fail("empty".into()));
    }
    let mut parser = Parser {
        tokens,
        at: 0,
        names,
        depth: 0,
    };
    let expr = parser.or().map_err(fail)?;
    if parser.at != parser.tokens.len() {
        return Err(fail("trailing input".into()));
    }
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["selection_a", "selection_b", "filter", "_helper"]
            .map(str::to_owned)
            .to_vec()
    }

    #[test]
    fn precedence_not_and_or() {
        let e = parse("selection_a or selection_b and not filter", &names()).expect("parses");
        assert_eq!(
            e,
            Expr::Or(vec![
                Expr::Search(0),
                Expr::And(vec![Expr::Search(1), Expr::Not(Box::new(Expr::Search(2)))]),
            ])
        );
    }

    #[test]
    fn quantifiers() {
        assert_eq!(
            parse("1 of selection_*", &names()).expect("parses"),
            Expr::Or(vec![Expr::Search(0), Expr::Search(1)])
        );
        assert_eq!(
            parse("all of them", &names()).expect("parses"),
            Expr::And(vec![Expr::Search(0), Expr::Search(1), Expr::Search(2)])
        );
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "(selection_a",
            "nope",
            "selection_a |count() > 5",
            "2 of them",
            "x*y of",
        ] {
            assert!(parse(bad, &names()).is_err(), "{bad}");
        }
    }

    /// Found by feeding the `sigma_rules` fuzz target crafted rules: 200,000 nested parentheses
    /// or `not`s overflowed the stack (a few thousand do in the engine's wasm stack).
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = 200_000;
        let parens = format!("{}selection_a{}", "(".repeat(deep), ")".repeat(deep));
        let nots = format!("{}selection_a", "not ".repeat(deep));
        for condition in [parens, nots] {
            let err = parse(&condition, &names()).expect_err("too deep");
            assert!(err.to_string().contains("nested more than 64"), "{err}");
        }
        let limit = format!("{}selection_a", "not ".repeat(MAX_NESTING));
        assert!(parse(&limit, &names()).is_ok());
    }

    /// Found by feeding the `sigma_rules` fuzz target a crafted rule (its timeout fired): the
    /// recursive glob retried every `*` at every position, so a 180-byte rule
    /// (`1 of *a*a*a*a*a*a*a*a*a*a*a*a*b` over a 40-letter name) ran for hours.
    #[test]
    fn quantifier_globs_take_polynomial_time() {
        let names = vec!["a".repeat(4000)];
        let pattern = format!("{}*b", "*a".repeat(1000));
        assert!(!name_glob(&pattern, &names[0]));
        assert!(parse(&format!("1 of {pattern}"), &names).is_err());
        assert!(name_glob(&format!("{}*", "*a".repeat(1000)), &names[0]));
    }

    /// The old recursive matcher: obviously right, exponential at worst.
    fn glob_reference(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| glob_reference(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && glob_reference(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && glob_reference(rest, &n[1..]),
        }
    }

    proptest::proptest! {
        #[test]
        fn name_glob_agrees_with_reference(pattern in "[ab*?]{0,8}", name in "[ab*?]{0,10}") {
            let p: Vec<char> = pattern.chars().collect();
            let n: Vec<char> = name.chars().collect();
            proptest::prop_assert_eq!(name_glob(&pattern, &name), glob_reference(&p, &n));
        }
    }
}
