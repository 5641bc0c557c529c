//! Sigma rule parsing, compilation and matching; runs natively and inside the `sigma` wasm
//! engine, so benchmarks can compare the two on the same code.
//!
//! Content is a YAML stream of Sigma rules. [`load`] parses each document on its own (a bad
//! rule is skipped with a reason, the rest load), then compiles all rules into one
//! [`RuleSet`]: literals go into one Aho-Corasick automaton per field, so the cost of an event
//! grows with what matches, not with how many rules there are. See docs/sigma.md.
#![forbid(unsafe_code)]

mod ast;
mod compile;
mod condition;
mod error;
mod eval;
mod event;
mod load;
mod modifier;
pub mod reference;
mod rule;
mod string;
pub mod testgen;
mod verdict;

#[cfg(feature = "protocol")]
pub mod protocol;

pub use ast::{Cidr, Expr, FieldTest, Level, Pattern, RefKind, Rule, Search};
pub use compile::RuleSet;
pub use error::{ContentError, RuleError};
pub use eval::Scratch;
pub use event::{
    Categories, ConnectionView, EventFields, ExecView, FIELD_COUNT, Field, FileChange,
    FileChangeView, NetworkView, OpenView,
};
pub use load::{Skipped, parse_stream};
pub use string::{Piece, SigmaString};
pub use verdict::{Action, BLOCK_TAG, Config, ConfigError, Outcome, RuleInfo};

/// A loaded content: the compiled rules and the ones that were skipped.
#[derive(Debug, Default)]
pub struct Loaded {
    pub rules: RuleSet,
    pub skipped: Vec<Skipped>,
}

/// Parses and compiles a YAML stream of Sigma rules.
pub fn load(content: &[u8], config: &Config) -> Result<Loaded, ContentError> {
    let (rules, mut skipped) = parse_stream(content)?;
    let (rules, failed) = RuleSet::compile(rules, config);
    skipped.extend(failed);
    Ok(Loaded { rules, skipped })
}
