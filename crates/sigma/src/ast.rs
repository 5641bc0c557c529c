//! A parsed Sigma rule before compilation: what the YAML says, with modifiers already
//! interpreted. Both the compiled matcher and the reference evaluator start from here.

use crate::event::{Categories, Field};
use crate::string::SigmaString;
use std::net::IpAddr;

/// Sigma `level`, mapped to ringfence severities one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    Informational,
    Low,
    /// Rules without a `level` count as medium: a match is still an alert worth reading.
    #[default]
    Medium,
    High,
    Critical,
}

impl Level {
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_lowercase().as_str() {
            "informational" | "info" => Some(Level::Informational),
            "low" => Some(Level::Low),
            "medium" => Some(Level::Medium),
            "high" => Some(Level::High),
            "critical" => Some(Level::Critical),
            _ => None,
        }
    }
}

/// How a `fieldref` compares two fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
}

/// An IP network from the `cidr` modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { network, prefix })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(a)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                prefix_eq(u128::from(net), u128::from(a), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    };
    a & mask == b & mask
}

/// One way a single value can match a field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// A Sigma string, `contains`/`startswith`/`endswith` already applied as wildcards.
    Str {
        value: SigmaString,
        cased: bool,
    },
    /// `re`: applied to the raw value, case-sensitive unless `re|i`.
    Regex {
        source: String,
        ignore_case: bool,
        multi_line: bool,
        dot_all: bool,
    },
    Cidr(Cidr),
    /// `exists: true|false`.
    Exists(bool),
    /// `null`: the field is absent or empty.
    Null,
    /// `fieldref`: compare with another field of the same event.
    FieldRef {
        other: Field,
        kind: RefKind,
        cased: bool,
    },
}

/// `Field|modifiers: values`. A value may expand (windash, base64offset) into alternatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTest {
    /// `None` for keyword searches, which look at every field.
    pub field: Option<Field>,
    /// One entry per value in the rule; each entry's alternatives are OR-ed.
    pub values: Vec<Vec<Pattern>>,
    /// `all`: every value must match; otherwise any one.
    pub all: bool,
}

/// A search identifier's body: maps are AND, lists are OR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    And(Vec<Search>),
    Or(Vec<Search>),
    Test(FieldTest),
}

/// The rule's condition with search identifiers resolved to indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Search(usize),
}

/// One loaded rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Sigma `id`, or the title for rules without one.
    pub id: String,
    pub title: String,
    /// Sigma `author`: shown with every match, as the Detection Rule License asks.
    pub author: Option<String>,
    pub level: Level,
    pub tags: Vec<String>,
    pub categories: Categories,
    /// Search identifiers in file order.
    pub searches: Vec<(String, Search)>,
    pub condition: Expr,
}
