//! Why a rule (or the whole content) could not be loaded. Rule errors skip one rule; only
//! content that is not text at all is refused as a whole.

/// Why one rule was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("malformed YAML: {0}")]
    Yaml(String),
    #[error("a rule must be a YAML mapping")]
    NotAMapping,
    #[error("missing or non-string `{0}`")]
    Missing(&'static str),
    #[error("`{key}` must be {expected}")]
    WrongType { key: String, expected: &'static str },
    #[error("rule collections (`action: {0}`) are not supported; write each rule in full")]
    Collection(String),
    #[error("correlation rules are not supported")]
    Correlation,
    #[error(
        "log source {0} is not supported (linux process_creation, file_event, file_access, network_connection)"
    )]
    Logsource(String),
    #[error("field `{0}` is not available (see docs/sigma.md for the field table)")]
    UnknownField(String),
    #[error("unknown modifier `{0}`")]
    UnknownModifier(String),
    #[error("modifier `{0}` is not supported")]
    UnsupportedModifier(String),
    #[error("modifiers on `{key}` do not combine: {why}")]
    Modifiers { key: String, why: String },
    #[error("bad value for `{key}`: {why}")]
    Value { key: String, why: String },
    #[error("bad regex in `{key}`: {why}")]
    Regex { key: String, why: String },
    #[error("bad condition `{condition}`: {why}")]
    Condition { condition: String, why: String },
    #[error("duplicate rule id")]
    DuplicateId,
}

/// Why content was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("content is not UTF-8 (byte {offset})")]
    NotUtf8 { offset: usize, line: u32 },
}

impl ContentError {
    /// 1-based line of the problem.
    pub fn line(&self) -> u32 {
        match self {
            ContentError::NotUtf8 { line, .. } => *line,
        }
    }
}
