//! A YAML stream to rules, one document at a time, so that one malformed document costs one
//! rule and not the whole content.

use crate::ast::Rule;
use crate::error::{ContentError, RuleError};
use crate::rule;
use yaml_rust2::{Yaml, YamlLoader};

/// A rule that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The rule's `id` (or `title`); `document N` when neither could be read.
    pub id: String,
    /// 1-based line where the document starts in the stream.
    pub line: u32,
    pub error: RuleError,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (line {})", self.id, self.error, self.line)
    }
}

/// One document of the stream with where it starts.
struct Document<'a> {
    text: &'a str,
    line: u32,
}

/// Splits on `---` lines ourselves rather than letting the YAML parser do it: its errors are
/// fatal for the whole stream, ours are per document.
fn split(stream: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1u32;
    let mut offset = 0;
    for (index, line) in stream.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            docs.push(Document {
                text: &stream[start..offset],
                line: start_line,
            });
            start = offset + line.len();
            start_line = u32::try_from(index + 2).unwrap_or(u32::MAX);
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &stream[start..],
        line: start_line,
    });
    docs
}

/// Finds an `id:` (or `title:`) line by hand, for documents the YAML parser rejected.
fn sniff_name(text: &str) -> Option<String> {
    ["id:", "title:"].iter().find_map(|key| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// Parses every document; empty ones are ignored.
pub fn parse_stream(content: &[u8]) -> Result<(Vec<Rule>, Vec<Skipped>), ContentError> {
    let stream = std::str::from_utf8(content).map_err(|e| {
        let offset = e.valid_up_to();
        let line = content[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        ContentError::NotUtf8 {
            offset,
            line: u32::try_from(line).unwrap_or(u32::MAX),
        }
    })?;
    let mut rules: Vec<Rule> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut skipped = Vec::new();
    for (n, doc) in split(stream).into_iter().enumerate() {
        let fallback = || sniff_name(doc.text).unwrap_or_else(|| format!("document {}", n + 1));
        let yaml = match YamlLoader::load_from_str(doc.text) {
            Ok(mut docs) if docs.len() <= 1 => docs.pop(),
            Ok(_) => {
                skipped.push(Skipped {
                    id: fallback(),
                    line: doc.line,
                    error: RuleError::Yaml("more than one document".into()),
                });
                continue;
            }
            Err(e) => {
                skipped.push(Skipped {
                    id: fallback(),
                    line: doc.line,
                    error: RuleError::Yaml(e.to_string()),
                });
                continue;
            }
        };
        let Some(yaml) = yaml.filter(|y| !matches!(y, Yaml::Null)) else {
            continue;
        };
        let name = rule::rule_name(&yaml).unwrap_or_else(fallback);
        match rule::from_yaml(&yaml) {
            Ok(rule) if !ids.insert(rule.id.clone()) => skipped.push(Skipped {
                id: name,
                line: doc.line,
                error: RuleError::DuplicateId,
            }),
            Ok(rule) => rules.push(rule),
            Err(error) => skipped.push(Skipped {
                id: name,
                line: doc.line,
                error,
            }),
        }
    }
    Ok((rules, skipped))
}
