//! A component compiled once (or loaded from the compiled-engine cache), linked once, and proven
//! to accept its content.

use crate::bindings::{InterfaceVersion, Pre, v0_1, v0_2};
use crate::cache::CompileSource;
use crate::classify::load_failure;
use crate::instance::Instance;
use crate::limits::EngineSettings;
use crate::quarantine::{FailureWindow, QuarantineReport};
use crate::runtime::Runtime;
use crate::state::StoreState;
use crate::{MAX_COMPONENT_BYTES, MAX_CONTENT_BYTES};
use ringfence_protocol::{FailureKind, FailureRecord};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker};

/// Why an engine could not be loaded. The record says which kind of failure it was.
#[derive(Debug, Clone, thiserror::Error)]
#[error("engine {}: {}: {}", .record.engine, .record.kind, .record.message)]
pub struct LoadError {
    pub record: Box<FailureRecord>,
}

impl LoadError {
    pub fn kind(&self) -> FailureKind {
        self.record.kind
    }
}

impl From<FailureRecord> for LoadError {
    fn from(record: FailureRecord) -> Self {
        LoadError {
            record: Box::new(record),
        }
    }
}

/// What the engine said about its content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContentSummary {
    pub rules: u32,
    pub version: String,
    pub warnings: Vec<String>,
}

/// One engine with one content, ready to instantiate. Shared by all workers.
pub struct LoadedEngine {
    pub(crate) runtime: Runtime,
    pub(crate) settings: EngineSettings,
    pub(crate) pre: Pre<StoreState>,
    pub(crate) content: Arc<[u8]>,
    pub(crate) content_sha256: String,
    summary: ContentSummary,
    compiled: (CompileSource, Duration),
    failures: Mutex<FailureWindow>,
    quarantined: AtomicBool,
    quarantine_report: OnceLock<QuarantineReport>,
}

impl std::fmt::Debug for LoadedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedEngine")
            .field("name", &self.settings.name)
            .field("content_sha256", &self.content_sha256)
            .finish_non_exhaustive()
    }
}

/// Hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Recognises a core module so we can say so instead of a parser error.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..4] == b"\0asm" && bytes[6..8] == [0, 0]
}

impl LoadedEngine {
    /// Compiles `wasm`, links it against the host, and loads `content` into a first instance.
    ///
    /// Every way this can fail is a [`LoadError`] with the kind `invalid_component`,
    /// `content_rejected`, or the trap/deadline/memory failure of `init`/`load-content`.
    pub fn load(
        runtime: &Runtime,
        settings: EngineSettings,
        wasm: &[u8],
        content: &[u8],
    ) -> Result<Arc<LoadedEngine>, LoadError> {
        let content_sha256 = sha256_hex(content);
        let invalid = |message: String| {
            LoadError::from(load_failure(
                &settings.name,
                &content_sha256,
                FailureKind::InvalidComponent,
                message,
            ))
        };
        if wasm.len() > MAX_COMPONENT_BYTES {
            return Err(invalid(format!(
                "component is {} bytes, more than the {MAX_COMPONENT_BYTES} allowed",
                wasm.len()
            )));
        }
        if content.len() > MAX_CONTENT_BYTES {
            return Err(LoadError::from(load_failure(
                &settings.name,
                &content_sha256,
                FailureKind::ContentRejected,
                format!(
                    "content is {} bytes, more than the {MAX_CONTENT_BYTES} allowed",
                    content.len()
                ),
            )));
        }
        if is_core_module(wasm) {
            return Err(invalid(
                "this is a core wasm module, not a component; build the engine for \
                 wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
                    .to_owned(),
            ));
        }
        let compiling = Instant::now();
        let (component, source) = runtime
            .compile(wasm)
            .map_err(|e| invalid(format!("not a valid wasm component: {e:#}")))?;
        let compiled = (source, compiling.elapsed());
        tracing::info!(
            engine = %settings.name,
            "engine code ready in {:.1} ms ({source})",
            compiled.1.as_secs_f64() * 1e3
        );
        let mut linker = Linker::<StoreState>::new(runtime.wasmtime());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| v0_1::Engine::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .and_then(|()| v0_2::Engine::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .map_err(|e| invalid(format!("could not link the host interfaces: {e:#}")))?;
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
            invalid(format!(
                "component needs imports ringfence does not provide \
                 (engines may import only ringfence:engine/log and clock): {e:#}"
            ))
        })?;
        let pre = Pre::new(instance_pre).map_err(invalid)?;
        let quarantine = settings.quarantine;
        let mut engine = LoadedEngine {
            runtime: runtime.clone(),
            settings,
            pre,
            content: Arc::from(content),
            content_sha256,
            summary: ContentSummary::default(),
            compiled,
            failures: Mutex::new(FailureWindow::new(quarantine)),
            quarantined: AtomicBool::new(false),
            quarantine_report: OnceLock::new(),
        };
        let (_, summary) = Instance::new(&engine)?;
        engine.summary = summary;
        Ok(Arc::new(engine))
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The `ringfence:engine` interface the component implements.
    pub fn interface(&self) -> InterfaceVersion {
        self.pre.version()
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Hex sha256 of the content this engine runs.
    pub fn content_sha256(&self) -> &str {
        &self.content_sha256
    }

    /// What the engine said when it accepted the content.
    pub fn content_summary(&self) -> &ContentSummary {
        &self.summary
    }

    /// Whether the engine's machine code was compiled or came from the cache.
    pub fn compile_source(&self) -> CompileSource {
        self.compiled.0
    }

    /// How long compiling (or loading from the cache and verifying) the component took.
    pub fn compile_time(&self) -> Duration {
        self.compiled.1
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// A fresh instance with this content loaded.
    pub(crate) fn instantiate(&self) -> Result<Instance, FailureRecord> {
        Instance::new(self)
            .map(|(instance, _)| instance)
            .map_err(|e| *e.record)
    }

    /// True once the quarantine rule has tripped; checked on every event, so lock-free.
    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Acquire)
    }

    /// Why the engine is quarantined, once it is.
    pub fn quarantine_report(&self) -> Option<&QuarantineReport> {
        self.quarantine_report.get()
    }

    /// Counts a failure against the quarantine rule; returns the report if this one tripped it.
    pub(crate) fn note_failure(&self, failure: &FailureRecord) -> Option<QuarantineReport> {
        let tripped = match self.failures.lock() {
            Ok(mut window) => window.record(Instant::now(), failure),
            Err(poisoned) => poisoned.into_inner().record(Instant::now(), failure),
        }?;
        if self.quarantine_report.set(tripped.clone()).is_err() {
            // Another worker tripped it first; one report is enough.
            return None;
        }
        self.quarantined.store(true, Ordering::Release);
        tracing::error!(engine = %tripped.engine, "{}", tripped.message);
        Some(tripped)
    }
}
