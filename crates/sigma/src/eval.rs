//! Deciding one event: run each field's literal index once, wake only the rules whose
//! needles hit (plus the few that need no literal), evaluate their conditions, keep the
//! strongest match.

use crate::ast::RefKind;
use crate::compile::{LiteralIndex, Node, Place, RuleSet, Test};
use crate::event::{EventFields, FIELD_COUNT, Field};
use crate::string::fold_into;
use crate::verdict::{Action, Outcome};
use std::net::IpAddr;

/// Per-thread buffers reused across events so evaluation does not allocate.
#[derive(Debug, Default)]
pub struct Scratch {
    folded: [String; FIELD_COUNT],
    folded_ok: u16,
    hits: Vec<u64>,
    touched: Vec<u32>,
    stamps: Vec<u32>,
    epoch: u32,
    candidates: Vec<u32>,
    matched: Vec<u32>,
}

struct Ctx<'e, 's> {
    event: &'e EventFields<'e>,
    folded: &'s mut [String; FIELD_COUNT],
    folded_ok: &'s mut u16,
    hits: &'s [u64],
}

impl Ctx<'_, '_> {
    fn ensure_folded(&mut self, field: Field) -> bool {
        let bit = 1u16 << field.index();
        if *self.folded_ok & bit == 0 {
            let Some(raw) = self.event.get(field) else {
                return false;
            };
            fold_into(raw, &mut self.folded[field.index()]);
            *self.folded_ok |= bit;
        }
        true
    }

    fn value(&mut self, field: Field, cased: bool) -> Option<&str> {
        if cased {
            return self.event.get(field);
        }
        if !self.ensure_folded(field) {
            return None;
        }
        Some(&self.folded[field.index()])
    }

    fn hit(&self, needle: u32) -> bool {
        self.hits[(needle / 64) as usize] & (1 << (needle % 64)) != 0
    }
}

fn place_ok(place: Place, start: usize, end: usize, len: usize) -> bool {
    match place {
        Place::Exact => start == 0 && end == len,
        Place::Prefix => start == 0,
        Place::Suffix => end == len,
        Place::Contains => true,
    }
}

impl RuleSet {
    /// Decides one event: the strongest matching rule, or `None` when nothing matched.
    pub fn evaluate<'r>(
        &'r self,
        event: &EventFields<'_>,
        scratch: &mut Scratch,
    ) -> Option<Outcome<'r>> {
        self.collect(event, scratch);
        let best = scratch.matched.iter().copied().max_by_key(|&i| {
            let info = &self.infos[i as usize];
            // Deny beats observe, then severity; among equals the first rule in the content.
            (self.action(i, event), info.level, std::cmp::Reverse(i))
        })?;
        Some(Outcome {
            rule: &self.infos[best as usize],
            action: self.action(best, event),
            matched: scratch.matched.len(),
        })
    }

    /// Indices (into [`RuleSet::rules`]) of every rule that matches `event`, ascending.
    pub fn matching<'s>(&self, event: &EventFields<'_>, scratch: &'s mut Scratch) -> &'s [u32] {
        self.collect(event, scratch);
        scratch.matched.sort_unstable();
        &scratch.matched
    }

    fn action(&self, rule: u32, event: &EventFields<'_>) -> Action {
        if self.infos[rule as usize].blocking && event.categories.is_process_creation() {
            Action::Deny
        } else {
            Action::Observe
        }
    }

    fn collect(&self, event: &EventFields<'_>, scratch: &mut Scratch) {
        let words = (self.needles as usize).div_ceil(64);
        if scratch.hits.len() < words {
            scratch.hits.resize(words, 0);
        }
        if scratch.stamps.len() < self.infos.len() {
            scratch.stamps.resize(self.infos.len(), 0);
        }
        scratch.epoch = scratch.epoch.wrapping_add(1);
        if scratch.epoch == 0 {
            // Wrapped: old stamps could collide with the new epoch.
            scratch.stamps.fill(0);
            scratch.epoch = 1;
        }
        let Scratch {
            folded,
            folded_ok,
            hits,
            touched,
            stamps,
            epoch,
            candidates,
            matched,
        } = scratch;
        *folded_ok = 0;
        candidates.clear();
        matched.clear();

        let mut recorder = Hits {
            hits,
            touched,
            stamps,
            epoch: *epoch,
            candidates,
        };
        for field in Field::ALL {
            let [folded_index, cased_index] = &self.literals[field.index()];
            let Some(raw) = event.get(field) else {
                continue;
            };
            if !folded_index.is_empty() {
                let text = &mut folded[field.index()];
                fold_into(raw, text);
                *folded_ok |= 1 << field.index();
                self.scan(folded_index, text, &mut recorder);
            }
            if !cased_index.is_empty() {
                self.scan(cased_index, raw, &mut recorder);
            }
        }

        let Hits {
            hits,
            touched,
            candidates,
            ..
        } = recorder;
        let mut ctx = Ctx {
            event,
            folded,
            folded_ok,
            hits,
        };
        for &rule in self.always.iter().chain(candidates.iter()) {
            if self.infos[rule as usize]
                .categories
                .intersects(event.categories)
                && self.node(&self.conditions[rule as usize], &mut ctx)
            {
                matched.push(rule);
            }
        }
        for needle in touched.drain(..) {
            hits[(needle / 64) as usize] = 0;
        }
    }

    fn scan(&self, index: &LiteralIndex, text: &str, hits: &mut Hits<'_>) {
        if let Some(&needle) = index.exact.get(text) {
            hits.set(needle, self);
        }
        let len = text.len();
        match &index.automaton {
            Some(automaton) => {
                for m in automaton.find_overlapping_iter(text) {
                    for &(needle, place) in &index.by_pattern[m.pattern().as_usize()] {
                        if place_ok(place, m.start(), m.end(), len) {
                            hits.set(needle, self);
                        }
                    }
                }
            }
            None => {
                for (slot, pattern) in index.patterns.iter().enumerate() {
                    for (start, _) in text.match_indices(pattern.as_str()) {
                        for &(needle, place) in &index.by_pattern[slot] {
                            if place_ok(place, start, start + pattern.len(), len) {
                                hits.set(needle, self);
                            }
                        }
                    }
                }
            }
        }
    }

    fn node(&self, node: &Node, ctx: &mut Ctx<'_, '_>) -> bool {
        match node {
            Node::And(parts) => parts.iter().all(|p| self.node(p, ctx)),
            Node::Or(parts) => parts.iter().any(|p| self.node(p, ctx)),
            Node::Not(inner) => !self.node(inner, ctx),
            Node::Leaf(i) => self.leaf(*i, ctx),
        }
    }

    fn leaf(&self, index: u32, ctx: &mut Ctx<'_, '_>) -> bool {
        let leaf = &self.leaves[index as usize];
        let field = leaf.field;
        match &leaf.test {
            Test::Needle(needle) => ctx.hit(*needle),
            Test::Present => ctx.event.get(field).is_some(),
            Test::Glob {
                regex,
                required,
                cased,
            } => {
                if required.is_some_and(|n| !ctx.hit(n)) {
                    return false;
                }
                ctx.value(field, *cased).is_some_and(|v| regex.is_match(v))
            }
            Test::Regex(regex) => ctx.event.get(field).is_some_and(|v| regex.is_match(v)),
            Test::Cidr(cidr) => ctx
                .event
                .get(field)
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| cidr.contains(ip)),
            Test::Exists(want) => ctx.event.get(field).is_some() == *want,
            Test::Null => ctx.event.get(field).is_none_or(str::is_empty),
            Test::FieldRef { other, kind, cased } => {
                if *cased {
                    let (Some(a), Some(b)) = (ctx.event.get(field), ctx.event.get(*other)) else {
                        return false;
                    };
                    return compare(*kind, a, b);
                }
                if !(ctx.ensure_folded(field) && ctx.ensure_folded(*other)) {
                    return false;
                }
                compare(
                    *kind,
                    &ctx.folded[field.index()],
                    &ctx.folded[other.index()],
                )
            }
        }
    }
}

fn compare(kind: RefKind, value: &str, other: &str) -> bool {
    match kind {
        RefKind::Equals => value == other,
        RefKind::Contains => value.contains(other),
        RefKind::StartsWith => value.starts_with(other),
        RefKind::EndsWith => value.ends_with(other),
    }
}

/// The part of [`Scratch`] that records hits, split off so scanning can borrow a folded
/// field at the same time.
struct Hits<'s> {
    hits: &'s mut Vec<u64>,
    touched: &'s mut Vec<u32>,
    stamps: &'s mut Vec<u32>,
    epoch: u32,
    candidates: &'s mut Vec<u32>,
}

impl Hits<'_> {
    fn set(&mut self, needle: u32, set: &RuleSet) {
        let (word, bit) = ((needle / 64) as usize, 1u64 << (needle % 64));
        if self.hits[word] & bit != 0 {
            return;
        }
        self.hits[word] |= bit;
        self.touched.push(needle);
        for &rule in &set.triggers[needle as usize] {
            if self.stamps[rule as usize] != self.epoch {
                self.stamps[rule as usize] = self.epoch;
                self.candidates.push(rule);
            }
        }
    }
}
