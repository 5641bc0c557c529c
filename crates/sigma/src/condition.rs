//! The `condition` language: `and`, `or`, `not`, parentheses, `1 of`/`all of` with name
//! wildcards or `them`. Aggregations (`| count() …`) are refused: they need state across
//! events, which a per-event engine does not keep.

use crate::ast::Expr;
use crate::error::RuleError;

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
}

fn is_keyword(word: &str, keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword)
}

impl Parser<'_> {
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
            return Ok(Expr::Not(Box::new(self.not()?)));
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
                let inner = self.or()?;
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

/// `*` and `?` over identifier names.
fn name_glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
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
}
