//! The `exec-allowlist` content language: one rule a line, first match wins.
//!
//! ```text
//! # comments start with '#'
//! allow /usr/bin/*
//! deny  /tmp/**
//! default deny        # optional, only as the last rule
//! ```
//!
//! This crate has no dependencies so that the same code runs inside the wasm engine and
//! natively in benchmarks: the wasm-vs-native ratio then measures the sandbox, not two
//! implementations.
#![forbid(unsafe_code)]

mod glob;
mod rules;

pub use glob::{Glob, GlobError};
pub use rules::{Decision, ParseError, Rule, RuleAction, RuleSet};
