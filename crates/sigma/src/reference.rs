//! A slow, obviously-correct interpreter of parsed rules: the oracle the compiled matcher is
//! checked against. It folds case and matches wildcards by a textbook table over (piece,
//! position), with no indexes, no prefilters and no caches.

use crate::ast::{Expr, FieldTest, Pattern, RefKind, Rule, Search};
use crate::event::{EventFields, Field};
use crate::string::{Piece, fold};

/// Whether `rule` matches `event` (log source included).
pub fn matches(rule: &Rule, event: &EventFields<'_>) -> bool {
    rule.categories.intersects(event.categories) && expr(rule, &rule.condition, event)
}

fn expr(rule: &Rule, e: &Expr, event: &EventFields<'_>) -> bool {
    match e {
        Expr::And(parts) => parts.iter().all(|p| expr(rule, p, event)),
        Expr::Or(parts) => parts.iter().any(|p| expr(rule, p, event)),
        Expr::Not(inner) => !expr(rule, inner, event),
        Expr::Search(i) => search(&rule.searches[*i].1, event),
    }
}

fn search(s: &Search, event: &EventFields<'_>) -> bool {
    match s {
        Search::And(parts) => parts.iter().all(|p| search(p, event)),
        Search::Or(parts) => parts.iter().any(|p| search(p, event)),
        Search::Test(test) => field_test(test, event),
    }
}

fn field_test(test: &FieldTest, event: &EventFields<'_>) -> bool {
    let one = |alternatives: &Vec<Pattern>| {
        alternatives.iter().any(|p| match test.field {
            Some(field) => pattern(p, field, event),
            None => Field::ALL.iter().any(|&f| pattern(p, f, event)),
        })
    };
    if test.all {
        test.values.iter().all(one)
    } else {
        test.values.iter().any(one)
    }
}

/// Whether `pattern` matches `field` of `event`.
pub fn pattern(pattern: &Pattern, field: Field, event: &EventFields<'_>) -> bool {
    let value = event.get(field);
    match pattern {
        Pattern::Null => value.is_none_or(str::is_empty),
        Pattern::Exists(want) => value.is_some() == *want,
        Pattern::Str { value: s, cased } => value.is_some_and(|v| {
            let norm = |t: &str| if *cased { t.to_owned() } else { fold(t) };
            let pieces: Vec<Piece> = s
                .pieces()
                .iter()
                .map(|p| match p {
                    Piece::Literal(t) => Piece::Literal(norm(t)),
                    other => other.clone(),
                })
                .collect();
            let text: Vec<char> = norm(v).chars().collect();
            glob(&pieces, &text)
        }),
        Pattern::Regex {
            source,
            ignore_case,
            multi_line,
            dot_all,
        } => value.is_some_and(|v| {
            regex::RegexBuilder::new(source)
                .case_insensitive(*ignore_case)
                .multi_line(*multi_line)
                .dot_matches_new_line(*dot_all)
                .build()
                .is_ok_and(|re| re.is_match(v))
        }),
        Pattern::Cidr(cidr) => value
            .and_then(|v| v.trim().parse().ok())
            .is_some_and(|ip| cidr.contains(ip)),
        Pattern::FieldRef { other, kind, cased } => {
            let (Some(a), Some(b)) = (value, event.get(*other)) else {
                return false;
            };
            let (a, b) = if *cased {
                (a.to_owned(), b.to_owned())
            } else {
                (fold(a), fold(b))
            };
            match kind {
                RefKind::Equals => a == b,
                RefKind::Contains => a.contains(&b),
                RefKind::StartsWith => a.starts_with(&b),
                RefKind::EndsWith => a.ends_with(&b),
            }
        }
    }
}

/// Wildcard match over characters: whether `pieces[k..]` matches `text[i..]`, for every `k`
/// from the last piece back and every `i`. Plain backtracking would be as obvious but
/// exponential in the number of `*`s, which a fuzzer finds in seconds.
fn glob(pieces: &[Piece], text: &[char]) -> bool {
    let mut next = vec![false; text.len() + 1];
    next[text.len()] = true;
    for piece in pieces.iter().rev() {
        let lit: Vec<char> = match piece {
            Piece::Literal(lit) => lit.chars().collect(),
            _ => Vec::new(),
        };
        let mut here = vec![false; text.len() + 1];
        for i in (0..=text.len()).rev() {
            here[i] = match piece {
                Piece::AnyMany => next[i] || (i < text.len() && here[i + 1]),
                Piece::AnyOne => i < text.len() && next[i + 1],
                Piece::Literal(_) => text[i..].starts_with(&lit) && next[i + lit.len()],
            };
        }
        next = here;
    }
    next[0]
}
