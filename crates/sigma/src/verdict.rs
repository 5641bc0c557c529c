//! What a match means: observe or deny, how severe, and which rules an operator made blocking.
//!
//! Blocking is opt-in twice over: a rule blocks only if it carries the tag `ringfence.block`
//! or its id or one of its tags is listed in the `sigma.block` init key, and only on
//! `process_creation` events (an exec the kernel is waiting on). `sigma.blocking = off` turns
//! every block into an alert, for canaries and dry runs.

use crate::ast::Level;
use crate::event::Categories;

/// The tag that makes a rule blocking from inside the rule itself.
pub const BLOCK_TAG: &str = "ringfence.block";

/// What a matching rule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Observe,
    Deny,
}

/// Operator settings from the engine's `init` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Rule ids or tags whose rules deny exec (`sigma.block`, comma-separated).
    pub block: Vec<String>,
    /// `sigma.blocking`: `on` (default) or `off` (every match is only an alert).
    pub blocking: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            block: Vec::new(),
            blocking: true,
        }
    }
}

/// An init key the engine does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown setting `{0}` (known: sigma.block, sigma.blocking)")]
    UnknownKey(String),
    #[error("`sigma.blocking` must be on or off, not `{0}`")]
    Blocking(String),
}

impl Config {
    /// Reads `sigma.*` keys; keys of other prefixes belong to the host and are ignored.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for (key, value) in pairs {
            match key {
                "sigma.block" => config.block.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                "sigma.blocking" => {
                    config.blocking = match value.trim() {
                        "on" | "true" | "1" => true,
                        "off" | "false" | "0" => false,
                        other => return Err(ConfigError::Blocking(other.to_owned())),
                    }
                }
                other if other.starts_with("sigma.") => {
                    return Err(ConfigError::UnknownKey(other.to_owned()));
                }
                _ => {}
            }
        }
        Ok(config)
    }

    /// Whether a rule with this id and these tags denies exec.
    pub fn is_blocking(&self, id: &str, tags: &[String]) -> bool {
        self.blocking
            && (tags.iter().any(|t| t == BLOCK_TAG)
                || self
                    .block
                    .iter()
                    .any(|b| b == id || tags.iter().any(|t| t == b)))
    }
}

/// What the engine reports about a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub id: String,
    pub title: String,
    pub author: Option<String>,
    pub level: Level,
    pub tags: Vec<String>,
    pub categories: Categories,
    /// Denies exec when it matches (see the module docs).
    pub blocking: bool,
}

/// The decision for one event: the strongest matching rule and how many matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome<'a> {
    pub rule: &'a RuleInfo,
    pub action: Action,
    /// Number of rules that matched, including `rule`.
    pub matched: usize,
}

impl Outcome<'_> {
    /// The verdict message: the rule's title, and how many others matched too.
    /// The rule's title, its author when it names one (rules under the Detection Rule License,
    /// such as SigmaHQ's, must credit their author wherever a match is shown), and how many
    /// other rules matched.
    pub fn message(&self) -> String {
        let mut message = self.rule.title.clone();
        if let Some(author) = &self.rule.author {
            message.push_str(&format!(" (rule by {author})"));
        }
        match self.matched {
            0 | 1 => {}
            2 => message.push_str(" (and 1 more matching rule)"),
            n => message.push_str(&format!(" (and {} more matching rules)", n - 1)),
        }
        message
    }
}
