//! The process-wide wasm runtime: one wasmtime engine, one epoch ticker, one spare builder, and
//! optionally the compiled-engine cache every load of this runtime goes through.

use crate::cache::{CompileSource, EngineCache};
use crate::instance::Instance;
use crate::loaded::LoadedEngine;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a running guest is interrupted to compare its call's wall time with its deadline
/// (see `StoreState::install_deadline_check`): a call stops within about one tick after its
/// deadline, and never before it. Small enough for a 5 ms deadline to mean 5–5.5 ms, large
/// enough that the ticker costs nothing measurable.
pub const EPOCH_TICK: Duration = Duration::from_micros(500);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused our configuration (a bug, or an unsupported platform).
    #[error("could not configure the wasm runtime: {0}")]
    Config(String),
    /// The OS would not give us a thread.
    #[error("could not start a runtime thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A request for a fresh instance, built off the hot path.
pub(crate) struct SpareRequest {
    pub(crate) engine: Arc<LoadedEngine>,
    pub(crate) reply: mpsc::SyncSender<Instance>,
}

/// Cheap to clone; the threads stop when the last clone is dropped.
#[derive(Clone)]
pub struct Runtime {
    engine: wasmtime::Engine,
    /// The spare builder thread runs until every sender is gone.
    spare_requests: mpsc::Sender<SpareRequest>,
    _ticker: Arc<Ticker>,
    /// Where compiled engines are kept between processes; `None` compiles every load.
    cache: Option<Arc<EngineCache>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// The epoch ticker thread; stopped and joined when dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = match self.thread.get_mut() {
            Ok(thread) => thread.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// Runtime switches. Only benchmarks change the default.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeConfig {
    /// Enforce call deadlines with epoch interruption. Turning this off exists only to measure
    /// what deadlines cost; a guest that loops would then hang its caller.
    pub deadlines: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { deadlines: true }
    }
}

impl Runtime {
    /// Configures wasmtime for untrusted guests and starts the ticker and spare builder.
    pub fn new() -> Result<Runtime, RuntimeError> {
        Runtime::with_config(RuntimeConfig::default())
    }

    /// [`Runtime::new`] with explicit switches.
    pub fn with_config(runtime_config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(runtime_config.deadlines)
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(32))
            .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            // One thread compiles, in the caller's allocator arena: the agent hands the
            // compiler's scratch memory back right after (`release_free_heap`), which glibc can
            // do only for arenas it trims, and Cranelift's worker threads would each keep one.
            // A compile runs once per release per host (the compiled-engine cache serves every
            // later start), so resident memory on every host outweighs its speed.
            .parallel_compilation(false)
            // A guest that recurses without bound hits this, not our stack.
            .max_wasm_stack(512 << 10);
        let engine =
            wasmtime::Engine::new(&config).map_err(|e| RuntimeError::Config(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("ringfence-epoch".into())
                .spawn(move || {
                    // Ticks follow the wall clock, not the number of sleeps: a ticker that
                    // oversleeps on a loaded machine catches up, so deadlines stay deadlines.
                    let start = std::time::Instant::now();
                    let mut ticks: u128 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        let due = start.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                        while ticks < due {
                            engine.increment_epoch();
                            ticks += 1;
                        }
                    }
                })?
        };

        let (spare_requests, requests) = mpsc::channel::<SpareRequest>();
        std::thread::Builder::new()
            .name("ringfence-spares".into())
            .spawn(move || {
                for request in requests {
                    match request.engine.instantiate() {
                        Ok(instance) => {
                            // The worker may have gone; then the spare is simply dropped.
                            let _ = request.reply.send(instance);
                        }
                        Err(record) => tracing::warn!(
                            engine = %record.engine,
                            kind = %record.kind,
                            "could not build a spare instance: {}",
                            record.message
                        ),
                    }
                }
            })?;
        Ok(Runtime {
            engine,
            spare_requests,
            _ticker: Arc::new(Ticker {
                stop,
                thread: Mutex::new(Some(ticker)),
            }),
            cache: None,
        })
    }

    /// This runtime, keeping compiled engines in `dir` (at most `max_bytes` of them).
    ///
    /// A directory that cannot be used safely (not ours, writable by others) is refused with a
    /// warning that says why, and the runtime compiles every engine as without a cache.
    pub fn with_cache(self, dir: impl Into<PathBuf>, max_bytes: u64) -> Runtime {
        let dir = dir.into();
        match EngineCache::open(&dir, max_bytes) {
            Ok(cache) => Runtime {
                cache: Some(Arc::new(cache)),
                ..self
            },
            Err(error) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "not using the compiled-engine cache, every engine will be compiled: {error}"
                );
                self
            }
        }
    }

    /// The compiled-engine cache in use, if any.
    pub fn cache(&self) -> Option<&EngineCache> {
        self.cache.as_deref()
    }

    /// `wasm` compiled for this runtime, through the cache when there is one.
    pub(crate) fn compile(
        &self,
        wasm: &[u8],
    ) -> wasmtime::Result<(wasmtime::component::Component, CompileSource)> {
        match &self.cache {
            Some(cache) => cache.component(&self.engine, wasm),
            None => wasmtime::component::Component::new(&self.engine, wasm)
                .map(|component| (component, CompileSource::Compiled)),
        }
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// Asks the builder thread for a fresh instance of `engine`, delivered on the returned
    /// channel.
    pub(crate) fn request_spare(&self, engine: Arc<LoadedEngine>) -> mpsc::Receiver<Instance> {
        let (reply, receiver) = mpsc::sync_channel(1);
        // If the builder is gone the receiver reports disconnection and the worker builds
        // synchronously instead.
        let _ = self.spare_requests.send(SpareRequest { engine, reply });
        receiver
    }
}
