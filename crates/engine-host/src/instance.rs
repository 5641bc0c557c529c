//! One live wasm instance of an engine, and calls into it under a deadline.

use crate::bindings::{ContentError, ContentInfo, Guest, InterfaceVersion};
use crate::classify::{CallContext, classify, load_failure};
use crate::loaded::{ContentSummary, LoadError, LoadedEngine};
use crate::state::StoreState;
use ringfence_protocol::{Event, FailureKind, FailureRecord, Verdict};
use std::time::{Duration, Instant};
use wasmtime::Store;

pub(crate) struct Instance {
    store: Store<StoreState>,
    guest: Guest,
    version: InterfaceVersion,
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
        let guest = match engine.pre.instantiate(&mut store) {
            Ok(guest) => guest,
            Err(error) => return Err(fail(&store, error)),
        };
        match guest.init(&mut store, &settings.init_config()) {
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
        let info = match guest.load_content(&mut store, &engine.content) {
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
            Instance {
                store,
                guest,
                version: engine.pre.version(),
            },
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

    /// One permission decision. On error the instance must not be called again. An event of
    /// a kind the engine's interface does not have is allowed without a call.
    pub(crate) fn on_event(
        &mut self,
        engine: &LoadedEngine,
        event: &Event,
    ) -> Result<Verdict, FailureRecord> {
        if !self.version.receives(event) {
            return Ok(Verdict::allow());
        }
        StoreState::arm(&mut self.store, engine.settings.deadline);
        let started = Instant::now();
        match self.guest.on_event(&mut self.store, event) {
            Ok(verdict) => Ok(verdict),
            Err(error) => Err(self.failure(engine, &error, Some(event.kind()), started.elapsed())),
        }
    }

    /// A batch of notifications; one verdict per event or one failure for the batch. Events
    /// of kinds the engine's interface does not have are allowed without being handed over,
    /// and a batch of nothing else makes no call at all.
    pub(crate) fn on_events(
        &mut self,
        engine: &LoadedEngine,
        events: &[Event],
    ) -> Result<Vec<Verdict>, FailureRecord> {
        let given: Vec<&Event> = events
            .iter()
            .filter(|event| self.version.receives(event))
            .collect();
        if given.is_empty() {
            return Ok(vec![Verdict::allow(); events.len()]);
        }
        let per_event = engine.settings.deadline;
        let budget = per_event
            .saturating_mul(u32::try_from(given.len()).unwrap_or(u32::MAX))
            .min(engine.settings.load_deadline.max(per_event));
        StoreState::arm(&mut self.store, budget);
        let started = Instant::now();
        let result = self.guest.on_events(&mut self.store, &given);
        match result {
            Ok(verdicts) if verdicts.len() == given.len() => {
                if given.len() == events.len() {
                    return Ok(verdicts);
                }
                let mut verdicts = verdicts.into_iter();
                Ok(events
                    .iter()
                    .map(|event| {
                        if self.version.receives(event) {
                            verdicts.next().unwrap_or_else(Verdict::allow)
                        } else {
                            Verdict::allow()
                        }
                    })
                    .collect())
            }
            Ok(verdicts) => Err(load_failure(
                &engine.settings.name,
                &engine.content_sha256,
                FailureKind::Trap,
                format!(
                    "on-events returned {} verdicts for {} events",
                    verdicts.len(),
                    given.len()
                ),
            )),
            Err(error) => {
                let kind = given.first().map(|event| event.kind());
                Err(self.failure(engine, &error, kind, started.elapsed()))
            }
        }
    }

    /// Largest linear memory this instance has had, in bytes.
    pub(crate) fn peak_memory(&self) -> usize {
        self.store.data().limiter.peak
    }
}
