//! Rules to a [`RuleSet`]: literal needles deduplicated into one Aho-Corasick automaton (and
//! one exact-match table) per field and case mode, regexes built once, and per rule the set
//! of needles at least one of which must hit before the rule is worth evaluating.

use crate::ast::{Cidr, Expr, FieldTest, Pattern, RefKind, Rule, Search};
use crate::error::RuleError;
use crate::event::{FIELD_COUNT, Field};
use crate::load::Skipped;
use crate::string::{Piece, SigmaString, fold};
use crate::verdict::{Config, RuleInfo};
use aho_corasick::AhoCorasick;
use regex::Regex;
use std::collections::HashMap;

/// Where a literal must sit in the field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Place {
    Exact,
    Prefix,
    Suffix,
    Contains,
}

/// What one leaf checks on one field.
#[derive(Debug)]
pub(crate) enum Test {
    /// A literal found (or not) by the field index; the id is a bit in the per-event hit set.
    Needle(u32),
    /// `*` alone: any value, as long as the field is there.
    Present,
    /// A wildcard pattern; `required` is a literal inside it that must hit first.
    Glob {
        regex: Regex,
        required: Option<u32>,
        cased: bool,
    },
    Regex(Regex),
    Cidr(Cidr),
    Exists(bool),
    Null,
    FieldRef {
        other: Field,
        kind: RefKind,
        cased: bool,
    },
}

#[derive(Debug)]
pub(crate) struct Leaf {
    pub field: Field,
    pub test: Test,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Leaf(u32),
}

/// Literals of one field in one case mode.
#[derive(Debug, Default)]
pub(crate) struct LiteralIndex {
    pub exact: HashMap<String, u32>,
    /// Non-exact needles: text → (needle, place) list, turned into `automaton` at the end.
    texts: HashMap<String, usize>,
    pub by_pattern: Vec<Vec<(u32, Place)>>,
    /// The texts of `by_pattern`, in pattern order; searched one by one only if the
    /// automaton could not be built.
    pub patterns: Vec<String>,
    pub automaton: Option<AhoCorasick>,
}

impl LiteralIndex {
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.by_pattern.is_empty()
    }
}

/// Compiled rules, ready to evaluate events.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub(crate) infos: Vec<RuleInfo>,
    pub(crate) conditions: Vec<Node>,
    pub(crate) leaves: Vec<Leaf>,
    /// `[field][cased as usize]`.
    pub(crate) literals: Vec<[LiteralIndex; 2]>,
    pub(crate) needles: u32,
    /// Needle → rules it may make true.
    pub(crate) triggers: Vec<Vec<u32>>,
    /// Rules with no literal they depend on; evaluated on every event of their category.
    pub(crate) always: Vec<u32>,
}

#[derive(Default)]
struct Builder {
    leaves: Vec<Leaf>,
    literals: Vec<[LiteralIndex; 2]>,
    needle_ids: HashMap<(Field, bool, Place, String), u32>,
    regexes: HashMap<String, Regex>,
}

impl Builder {
    fn needle(&mut self, field: Field, cased: bool, place: Place, text: String) -> u32 {
        let next = u32::try_from(self.needle_ids.len()).unwrap_or(u32::MAX);
        let key = (field, cased, place, text);
        if let Some(&id) = self.needle_ids.get(&key) {
            return id;
        }
        let (field, cased, place, text) = key.clone();
        self.needle_ids.insert(key, next);
        let index = &mut self.literals[field.index()][usize::from(cased)];
        if place == Place::Exact {
            index.exact.insert(text, next);
        } else {
            let slot = match index.texts.get(&text) {
                Some(&slot) => slot,
                None => {
                    index.by_pattern.push(Vec::new());
                    let slot = index.by_pattern.len() - 1;
                    index.texts.insert(text, slot);
                    slot
                }
            };
            index.by_pattern[slot].push((next, place));
        }
        next
    }

    fn leaf(&mut self, field: Field, test: Test) -> Node {
        self.leaves.push(Leaf { field, test });
        Node::Leaf(u32::try_from(self.leaves.len() - 1).unwrap_or(u32::MAX))
    }

    fn regex(&mut self, source: String, key: &str) -> Result<Regex, RuleError> {
        // The same glob appears in many rules; build it once.
        if let Some(re) = self.regexes.get(&source) {
            return Ok(re.clone());
        }
        let re = regex::RegexBuilder::new(&source)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| RuleError::Regex {
                key: key.to_owned(),
                why: e.to_string(),
            })?;
        self.regexes.insert(source, re.clone());
        Ok(re)
    }

    fn pattern(&mut self, field: Field, pattern: &Pattern) -> Result<Node, RuleError> {
        let test = match pattern {
            Pattern::Str { value, cased } => return self.string(field, value, *cased),
            Pattern::Regex {
                source,
                ignore_case,
                multi_line,
                dot_all,
            } => {
                let flags: String = [(*ignore_case, 'i'), (*multi_line, 'm'), (*dot_all, 's')]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, c)| *c)
                    .collect();
                let full = if flags.is_empty() {
                    source.clone()
                } else {
                    format!("(?{flags}){source}")
                };
                Test::Regex(self.regex(full, field.name())?)
            }
            Pattern::Cidr(cidr) => Test::Cidr(*cidr),
            Pattern::Exists(b) => Test::Exists(*b),
            Pattern::Null => Test::Null,
            Pattern::FieldRef { other, kind, cased } => Test::FieldRef {
                other: *other,
                kind: *kind,
                cased: *cased,
            },
        };
        Ok(self.leaf(field, test))
    }

    fn string(
        &mut self,
        field: Field,
        value: &SigmaString,
        cased: bool,
    ) -> Result<Node, RuleError> {
        let norm = |s: &str| if cased { s.to_owned() } else { fold(s) };
        let place = match value.pieces() {
            [] => Some((Place::Exact, String::new())),
            [Piece::Literal(s)] => Some((Place::Exact, norm(s))),
            [Piece::Literal(s), Piece::AnyMany] => Some((Place::Prefix, norm(s))),
            [Piece::AnyMany, Piece::Literal(s)] => Some((Place::Suffix, norm(s))),
            [Piece::AnyMany, Piece::Literal(s), Piece::AnyMany] => Some((Place::Contains, norm(s))),
            _ => None,
        };
        if let Some((place, text)) = place {
            let id = self.needle(field, cased, place, text);
            return Ok(self.leaf(field, Test::Needle(id)));
        }
        if value.pieces() == [Piece::AnyMany] {
            return Ok(self.leaf(field, Test::Present));
        }
        let mut source = String::from("(?s)^");
        let mut longest = "";
        for piece in value.pieces() {
            match piece {
                Piece::Literal(s) => {
                    source.push_str(&regex::escape(&norm(s)));
                    if s.len() > longest.len() {
                        longest = s;
                    }
                }
                Piece::AnyMany => source.push_str(".*"),
                Piece::AnyOne => source.push('.'),
            }
        }
        source.push('$');
        let required = (!longest.is_empty())
            .then(|| self.needle(field, cased, Place::Contains, norm(longest)));
        let regex = self.regex(source, field.name())?;
        Ok(self.leaf(
            field,
            Test::Glob {
                regex,
                required,
                cased,
            },
        ))
    }

    fn field_test(&mut self, test: &FieldTest) -> Result<Node, RuleError> {
        // Keyword searches look at every field: one branch per field keeps them indexable.
        let fields: Vec<Field> = match test.field {
            Some(field) => vec![field],
            None => Field::ALL.to_vec(),
        };
        let mut values = Vec::with_capacity(test.values.len());
        for alternatives in &test.values {
            let mut nodes = Vec::new();
            for &field in &fields {
                for pattern in alternatives {
                    nodes.push(self.pattern(field, pattern)?);
                }
            }
            values.push(one_or(nodes, false));
        }
        Ok(one_or(values, test.all))
    }

    fn search(&mut self, search: &Search) -> Result<Node, RuleError> {
        Ok(match search {
            Search::Test(test) => self.field_test(test)?,
            Search::And(parts) => one_or(
                parts
                    .iter()
                    .map(|p| self.search(p))
                    .collect::<Result<_, _>>()?,
                true,
            ),
            Search::Or(parts) => one_or(
                parts
                    .iter()
                    .map(|p| self.search(p))
                    .collect::<Result<_, _>>()?,
                false,
            ),
        })
    }
}

/// `And`/`Or` of `nodes`, or the node itself when there is one.
fn one_or(mut nodes: Vec<Node>, and: bool) -> Node {
    if nodes.len() == 1 {
        return nodes.remove(0);
    }
    if and {
        Node::And(nodes.into())
    } else {
        Node::Or(nodes.into())
    }
}

fn expr(expr: &Expr, searches: &[Node]) -> Node {
    match expr {
        Expr::Search(i) => searches[*i].clone(),
        Expr::Not(inner) => Node::Not(Box::new(self::expr(inner, searches))),
        Expr::And(parts) => Node::And(parts.iter().map(|p| self::expr(p, searches)).collect()),
        Expr::Or(parts) => Node::Or(parts.iter().map(|p| self::expr(p, searches)).collect()),
    }
}

/// Needles of which at least one must hit for `node` to be true; `None` when the node can be
/// true without any (negations, regexes, nulls).
fn trigger(node: &Node, leaves: &[Leaf]) -> Option<Vec<u32>> {
    match node {
        Node::Leaf(i) => match &leaves[*i as usize].test {
            Test::Needle(id) => Some(vec![*id]),
            Test::Glob {
                required: Some(id), ..
            } => Some(vec![*id]),
            _ => None,
        },
        Node::Not(_) => None,
        Node::And(parts) => parts
            .iter()
            .filter_map(|p| trigger(p, leaves))
            .min_by_key(Vec::len),
        Node::Or(parts) => {
            let mut all = Vec::new();
            for part in parts.iter() {
                all.extend(trigger(part, leaves)?);
            }
            Some(all)
        }
    }
}

impl RuleSet {
    /// Compiles parsed rules; a rule that fails to compile is skipped like a parse failure.
    pub fn compile(rules: Vec<Rule>, config: &Config) -> (RuleSet, Vec<Skipped>) {
        let mut builder = Builder {
            literals: (0..FIELD_COUNT).map(|_| Default::default()).collect(),
            ..Builder::default()
        };
        let mut set = RuleSet::default();
        let mut skipped = Vec::new();
        for rule in rules {
            let leaves_before = builder.leaves.len();
            let searches: Result<Vec<Node>, RuleError> = rule
                .searches
                .iter()
                .map(|(_, s)| builder.search(s))
                .collect();
            let searches = match searches {
                Ok(searches) => searches,
                Err(error) => {
                    // Needles a failed rule registered stay, unreferenced; harmless.
                    builder.leaves.truncate(leaves_before);
                    skipped.push(Skipped {
                        id: rule.id.clone(),
                        line: 0,
                        error,
                    });
                    continue;
                }
            };
            set.conditions.push(expr(&rule.condition, &searches));
            set.infos.push(RuleInfo {
                blocking: config.is_blocking(&rule.id, &rule.tags),
                id: rule.id,
                title: rule.title,
                author: rule.author,
                level: rule.level,
                tags: rule.tags,
                categories: rule.categories,
            });
        }
        set.needles = u32::try_from(builder.needle_ids.len()).unwrap_or(u32::MAX);
        set.triggers = vec![Vec::new(); builder.needle_ids.len()];
        for (index, condition) in set.conditions.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            match trigger(condition, &builder.leaves) {
                Some(needles) => {
                    for needle in needles {
                        let rules = &mut set.triggers[needle as usize];
                        if rules.last() != Some(&index) {
                            rules.push(index);
                        }
                    }
                }
                None => set.always.push(index),
            }
        }
        for pair in &mut builder.literals {
            for index in pair.iter_mut() {
                let mut texts: Vec<(String, usize)> =
                    std::mem::take(&mut index.texts).into_iter().collect();
                texts.sort_by_key(|(_, slot)| *slot);
                index.patterns = texts.into_iter().map(|(t, _)| t).collect();
                if !index.patterns.is_empty() {
                    // Building fails only past internal size limits; evaluation then searches
                    // each text on its own, slower but with the same answers.
                    index.automaton = AhoCorasick::new(&index.patterns).ok();
                }
            }
        }
        set.leaves = builder.leaves;
        set.literals = builder.literals;
        (set, skipped)
    }

    /// Rules now active.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.infos
    }

    /// Distinct literals across all rules (for reports and benchmarks).
    pub fn needle_count(&self) -> usize {
        self.needles as usize
    }
}
