//! The release manifest: what a bundle claims to be. Parsed strictly (unknown fields, duplicate
//! fields and oversized input are errors) because an agent must never act on a field it does
//! not understand.

use crate::digest::Sha256Digest;
use crate::{MAX_CONTENT_BYTES, MAX_ENGINE_BYTES, MAX_MANIFEST_BYTES};
use ringfence_protocol::FailurePolicy;
use semver::Version;
use serde::{Deserialize, Serialize};

/// The manifest format this code writes and the only one it reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// Longest free-text note kept in a manifest.
const MAX_NOTES_BYTES: usize = 4096;

/// Longest channel or engine name; they become directory names on hosts.
const MAX_NAME_BYTES: usize = 64;

/// Metadata of one release. `name` is the release channel (e.g. `exec-allowlist`): versions
/// are compared, and rollback protection applies, within one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`]; a later format is refused rather than half understood.
    pub format: u32,
    /// The release channel.
    pub name: String,
    /// Semantic version, without build metadata (it has no precedence, so it could not order
    /// releases for rollback protection).
    pub version: Version,
    /// The engine this release runs: the component in this bundle, or for a content-only
    /// release the engine already on the host (e.g. a bundled one).
    pub engine_name: String,
    /// The engine component, if the bundle carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Component>,
    /// The content, if the bundle carries any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Component>,
    /// How the agent answers when this engine cannot.
    pub failure_policy: FailurePolicy,
    /// Oldest agent that may run this release.
    pub min_agent_version: Version,
    /// When the release was built, in unix seconds.
    pub created_at: u64,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

/// A member's expected hash and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub sha256: Sha256Digest,
    pub size: u64,
}

impl Component {
    /// Describes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            sha256: Sha256Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }

    /// Whether `bytes` are what this component describes.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.size == bytes.len() as u64 && self.sha256 == Sha256Digest::of(bytes)
    }
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest is larger than any honest one.
    #[error("manifest is {size} bytes, more than the {limit} allowed")]
    TooLarge { size: u64, limit: u64 },
    /// The bytes are not a manifest (bad JSON, unknown or duplicate field, wrong type).
    #[error("manifest is not valid: {0}")]
    Syntax(#[from] serde_json::Error),
    /// The manifest parsed but says something impossible.
    #[error("manifest is not valid: {0}")]
    Invalid(String),
}

impl Manifest {
    /// Parses and validates manifest bytes exactly as signed.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let manifest: Manifest = serde_json::from_slice(bytes)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The bytes to sign and ship: pretty JSON, so operators can read bundles with `tar -xO`.
    /// Validates first so that nobody signs a manifest an agent would refuse.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        self.validate()?;
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Checks everything the types cannot.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |s: String| Err(ManifestError::Invalid(s));
        if self.format != MANIFEST_FORMAT {
            return invalid(format!(
                "format {} is not supported (this agent reads format {MANIFEST_FORMAT})",
                self.format
            ));
        }
        validate_channel(&self.name).map_err(|e| ManifestError::Invalid(format!("name: {e}")))?;
        validate_channel(&self.engine_name)
            .map_err(|e| ManifestError::Invalid(format!("engine_name: {e}")))?;
        validate_version(&self.version)
            .map_err(|e| ManifestError::Invalid(format!("version: {e}")))?;
        validate_version(&self.min_agent_version)
            .map_err(|e| ManifestError::Invalid(format!("min_agent_version: {e}")))?;
        if self.engine.is_none() && self.content.is_none() {
            return invalid("a release must carry an engine, content, or both".into());
        }
        if let Some(engine) = &self.engine
            && engine.size > MAX_ENGINE_BYTES
        {
            return invalid(format!(
                "engine is {} bytes, more than the {MAX_ENGINE_BYTES} allowed",
                engine.size
            ));
        }
        if let Some(content) = &self.content
            && content.size > MAX_CONTENT_BYTES
        {
            return invalid(format!(
                "content is {} bytes, more than the {MAX_CONTENT_BYTES} allowed",
                content.size
            ));
        }
        if self.notes.len() > MAX_NOTES_BYTES {
            return invalid(format!(
                "notes are {} bytes, more than the {MAX_NOTES_BYTES} allowed",
                self.notes.len()
            ));
        }
        Ok(())
    }
}

/// Why a channel or engine name, or a release version, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name (its first 80 characters) breaks the naming rule.
    #[error(
        "{0:?} is not a valid name (1-{max} of a-z, 0-9, '-', '_', starting with a letter or digit)",
        max = MAX_NAME_BYTES
    )]
    Name(String),
    #[error(
        "{0} has build metadata, which semver does not order; use a pre-release or a new patch version"
    )]
    BuildMetadata(Version),
}

/// Checks a channel or engine name: 1 to 64 of `a-z 0-9 - _`, starting with a letter or
/// digit. Names become directory names on every host, so this is also the path-traversal guard.
pub fn validate_channel(name: &str) -> Result<(), NameError> {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !first_ok || !rest_ok || name.len() > MAX_NAME_BYTES {
        return Err(NameError::Name(name.chars().take(80).collect()));
    }
    Ok(())
}

/// Checks a release version: no build metadata, because semver gives it no precedence and
/// rollback protection needs a total order that means something.
pub fn validate_version(version: &Version) -> Result<(), NameError> {
    if !version.build.is_empty() {
        return Err(NameError::BuildMetadata(version.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            name: "exec-allowlist".into(),
            version: Version::new(1, 2, 3),
            engine_name: "exec-allowlist".into(),
            engine: Some(Component::of(b"wasm")),
            content: Some(Component::of(b"allow /usr/bin/*\n")),
            failure_policy: FailurePolicy::FailClosed,
            min_agent_version: Version::new(0, 1, 0),
            created_at: 1_700_000_000,
            notes: "first".into(),
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        let bytes = m.to_bytes().expect("valid manifest");
        assert_eq!(Manifest::parse(&bytes).expect("parses"), m);
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(
            text.contains("\"failure_policy\": \"fail-closed\""),
            "{text}"
        );
    }

    #[test]
    fn refuses_unknown_and_duplicate_fields() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&sample().to_bytes().expect("valid")).expect("json");
        value["surprise"] = serde_json::json!(1);
        let err =
            Manifest::parse(&serde_json::to_vec(&value).expect("json")).expect_err("unknown field");
        assert!(err.to_string().contains("unknown field"), "{err}");

        let dup = br#"{"format":1,"format":1}"#;
        let err = Manifest::parse(dup).expect_err("duplicate field");
        assert!(err.to_string().contains("duplicate field"), "{err}");
    }

    #[test]
    fn refuses_bad_values() {
        type Mutation = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("format", Box::new(|m| m.format = 2)),
            ("name", Box::new(|m| m.name = "../etc".into())),
            ("name", Box::new(|m| m.name = String::new())),
            ("name", Box::new(|m| m.name = "A".into())),
            ("engine_name", Box::new(|m| m.engine_name = "x/y".into())),
            (
                "build metadata",
                Box::new(|m| m.version = Version::parse("1.0.0+abc").expect("semver")),
            ),
            (
                "engine, content",
                Box::new(|m| {
                    m.engine = None;
                    m.content = None
                }),
            ),
            (
                "engine is",
                Box::new(|m| {
                    m.engine = Some(Component {
                        sha256: Sha256Digest::of(b""),
                        size: MAX_ENGINE_BYTES + 1,
                    })
                }),
            ),
            ("notes", Box::new(|m| m.notes = "x".repeat(5000))),
        ];
        for (needle, mutate) in cases {
            let mut m = sample();
            mutate(&mut m);
            let err = m.validate().expect_err(needle);
            assert!(err.to_string().contains(needle), "{needle}: {err}");
            // The serialised form is refused by the parser as well.
            let json = serde_json::to_vec(&m).expect("json");
            assert!(Manifest::parse(&json).is_err(), "{needle}");
        }
    }

    #[test]
    fn refuses_oversized_and_garbage() {
        let big = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
        assert!(matches!(
            Manifest::parse(&big),
            Err(ManifestError::TooLarge { .. })
        ));
        for garbage in [&b""[..], b"\xff\xfe", b"[]", b"null", b"{\"format\":"] {
            assert!(Manifest::parse(garbage).is_err());
        }
    }
}
