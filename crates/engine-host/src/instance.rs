//! One live wasm instance of an engine, and calls into it under a deadline.

use crate::bindings::{self, ContentError, ContentInfo};
use crate::classify::{CallContext, classify, load_failure};
use crate::loaded::{ContentSummary, LoadError, LoadedEngine};
use crate::state::StoreState;
use ringfence_protocol::{Event, FailureKind, FailureRecord, Verdict};
use std::time::{Duration, Instant};
use wasmtime::Store;

pub(crate) struct Instance {
    store: Store<StoreState>,
    bindings: bindings::Engine,
}

impl Instance {
    /// Instantiates, calls `init` and `load-content` under the load deadline.
    pub(crate) fn new(engine: &LoadedEngine) -> Result<(Instance, ContentSummary), LoadError> {
        let settings = &engine.settings;
        let mut store = Store::new(
            engine.runtime.wasmtime(),
            StoreState::new(&settings.name, settings.memory_limit),
        );
        store.limiter(|state| &mut state.limiter);
        StoreState::install_deadline_check(&mut store);
        StoreState::arm(&mut store, settings.load_deadline);
        let started = Instant::now();
        let fail = |store: &Store<StoreState>, error: wasmtime::Error| {
            LoadError::from(classify(
                &error,
                CallContext {
                    engine: &settings.name,
                    content_sha256: &engine.content_sha256,
                    event_kind: None,
                    elapsed: started.elapsed(),
                    memory_exhausted: store.data().limiter.exhausted,
                    memory_grown: store.data().limiter.grown_in_call,
                    memory_limit: store.data().limiter.limit,
                    stderr: store.data().stderr_text(),
                },
            ))
        };
        let bindings = match engine.pre.instantiate(&mut store) {
            Ok(bindings) => bindings,
            Err(error) => return Err(fail(&store, error)),
        };
        let detector = bindings.ringfence_engine_detector();
        match detector.call_init(&mut store, &settings.init_config()) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(LoadError::from(load_failure(
                    &settings.name,
                    &engine.content_sha256,
                    FailureKind::ContentRejected,
                    format!("init refused its configuration: {message}"),
                )));
            }
            Err(error) => return Err(fail(&store, error)),
        }
        let info = match detector.call_load_content(&mut store, &engine.content) {
            Ok(Ok(info)) => info,
            Ok(Err(ContentError { message, line })) => {
                let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
                return Err(LoadError::from(load_failure(
                    &settings.name,
                    &engine.content_sha256,
                    FailureKind::ContentRejected,
                    format!("{at}{message}"),
                )));
            }
            Err(error) => return Err(fail(&store, error)),
        };
        let ContentInfo {
            rules,
            version,
            warnings,
        } = info;
        Ok((
            Instance { store, bindings },
            ContentSummary {
                rules,
                version,
                warnings,
            },
        ))
    }

    fn failure(
        &self,
        engine: &LoadedEngine,
        error: &wasmtime::Error,
        event_kind: Option<&str>,
        elapsed: Duration,
    ) -> FailureRecord {
        classify(
            error,
            CallContext {
                engine: &engine.settings.name,
                content_sha256: &engine.content_sha256,
                event_kind,
                elapsed,
                memory_exhausted: self.store.data().limiter.exhausted,
                memory_grown: self.store.data().limiter.grown_in_call,
                memory_limit: self.store.data().limiter.limit,
                stderr: self.store.data().stderr_text(),
            },
        )
    }

    /// One permission decision. On error the instance must not be called again.
    pub(crate) fn on_event(
        &mut self,
        engine: &LoadedEngine,
        event: &Event,
    ) -> Result<Verdict, FailureRecord> {
        let wit_event = bindings::event_to_wit(event);
        StoreState::arm(&mut self.store, engine.settings.deadline);
        let started = Instant::now();
        match self
            .bindings
            .ringfence_engine_detector()
            .call_on_event(&mut self.store, &wit_event)
        {
            Ok(verdict) => Ok(bindings::verdict_from_wit(verdict)),
            Err(error) => Err(self.failure(engine, &error, Some(event.kind()), started.elapsed())),
        }
    }

    /// A batch of notifications; one verdict per event or one failure for the batch.
    pub(crate) fn on_events(
        &mut self,
        engine: &LoadedEngine,
        events: &[Event],
    ) -> Result<Vec<Verdict>, FailureRecord> {
        let wit_events: Vec<_> = events.iter().map(bindings::event_to_wit).collect();
        let per_event = engine.settings.deadline;
        let budget = per_event
            .saturating_mul(u32::try_from(events.len()).unwrap_or(u32::MAX))
            .min(engine.settings.load_deadline.max(per_event));
        StoreState::arm(&mut self.store, budget);
        let started = Instant::now();
        let result = self
            .bindings
            .ringfence_engine_detector()
            .call_on_events(&mut self.store, &wit_events);
        match result {
            Ok(verdicts) if verdicts.len() == events.len() => Ok(verdicts
                .into_iter()
                .map(bindings::verdict_from_wit)
                .collect()),
            Ok(verdicts) => Err(load_failure(
                &engine.settings.name,
                &engine.content_sha256,
                FailureKind::Trap,
                format!(
                    "on-events returned {} verdicts for {} events",
                    verdicts.len(),
                    events.len()
                ),
            )),
            Err(error) => {
                let kind = events.first().map(Event::kind);
                Err(self.failure(engine, &error, kind, started.elapsed()))
            }
        }
    }

    /// Largest linear memory this instance has had, in bytes.
    pub(crate) fn peak_memory(&self) -> usize {
        self.store.data().limiter.peak
    }
}
