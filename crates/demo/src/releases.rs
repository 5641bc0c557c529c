//! The releases of the story, built and signed like an operator would with
//! `ringfence release build`, using the server's release key.

use crate::DemoError;
use ringfence_protocol::FailurePolicy;
use ringfence_release::{Bundle, Component, MANIFEST_FORMAT, Manifest, ReleaseKey, Version};
use std::path::Path;

pub const CHANNEL: &str = "detection";

/// A release of a bundled engine with `content`. For the `faulty` engine the content chooses its
/// behaviour: `ok` is a healthy detection content, `cf291` reads field 21 of a 20-field
/// template, `slow` stalls every call.
pub fn build(
    key_path: &Path,
    version: &str,
    engine: &str,
    content: &str,
    notes: &str,
) -> Result<Vec<u8>, DemoError> {
    let failed = |e: String| DemoError::Failed(format!("building release {version}: {e}"));
    let key = ReleaseKey::read_file(key_path).map_err(|e| failed(e.to_string()))?;
    let wasm = ringfence_bundled_engines::get(engine)
        .ok_or_else(|| failed(format!("no bundled engine {engine:?}")))?
        .wasm
        .to_vec();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        name: CHANNEL.to_owned(),
        version: Version::parse(version).map_err(|e| failed(e.to_string()))?,
        engine_name: engine.to_owned(),
        engine: Some(Component::of(&wasm)),
        content: Some(Component::of(content.as_bytes())),
        failure_policy: FailurePolicy::FailOpen,
        min_agent_version: Version::new(0, 1, 0),
        created_at: 0,
        notes: notes.to_owned(),
    };
    Bundle::build(
        &manifest,
        Some(wasm),
        Some(content.as_bytes().to_vec()),
        &key,
    )
    .and_then(|bundle| bundle.to_bytes())
    .map_err(|e| failed(e.to_string()))
}
