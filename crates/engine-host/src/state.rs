//! What each wasm store carries: the memory limiter, the guest's log budget, and a WASI context
//! that grants nothing.
//!
//! Rust guests built for `wasm32-wasip2` import a handful of WASI interfaces for their standard
//! library (stderr for panic messages, environment, exit). We link WASI so such guests load, but
//! the context has no preopened directories, no environment, no arguments, no sockets and no
//! name lookup; stdout is discarded and stderr is captured (bounded) so a panic message ends up in
//! the failure record.

use crate::bindings::{v0_1, v0_2};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Bytes of guest stderr kept per instance.
const STDERR_CAPACITY: usize = 4096;
/// Log lines a guest may write per instance before the host stops listening.
const LOG_BUDGET: u32 = 1000;
const MAX_LOG_LINE: usize = 512;

pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) limiter: MemoryLimiter,
    engine_name: String,
    log_budget: u32,
    origin: Instant,
    /// When the running call started and how long it may take: the epoch callback compares
    /// wall time against these, so a deadline never fires early after a burst of ticks.
    call_started: Instant,
    call_budget: std::time::Duration,
    /// This thread's CPU time at the running call's first epoch check. A call is interrupted
    /// only once it has used its budget in CPU time since then: a thread the host starved
    /// (other work, a loaded machine) is not the engine's fault, and the agent's responder
    /// answers the kernel on wall-clock time anyway. Calls shorter than a tick never read it.
    cpu_mark: Option<std::time::Duration>,
}

impl StoreState {
    pub(crate) fn new(engine_name: &str, memory_limit: usize) -> StoreState {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        StoreState {
            wasi,
            table: ResourceTable::new(),
            stderr,
            limiter: MemoryLimiter::new(memory_limit),
            engine_name: engine_name.to_owned(),
            log_budget: LOG_BUDGET,
            origin: Instant::now(),
            call_started: Instant::now(),
            call_budget: std::time::Duration::ZERO,
            cpu_mark: None,
        }
    }

    /// Arms the deadline for the next call into the guest.
    pub(crate) fn arm(store: &mut wasmtime::Store<StoreState>, budget: std::time::Duration) {
        let state = store.data_mut();
        state.call_started = Instant::now();
        state.call_budget = budget;
        state.cpu_mark = None;
        state.limiter.grown_in_call = 0;
        // Check at the next tick; the callback decides with the wall and CPU clocks.
        store.set_epoch_deadline(1);
    }

    /// Installs the epoch callback that turns "a tick passed" into "the deadline passed": the
    /// call's wall time and the CPU time its thread used since the first check have both
    /// reached the budget.
    pub(crate) fn install_deadline_check(store: &mut wasmtime::Store<StoreState>) {
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            let wall_spent = state.call_started.elapsed() >= state.call_budget;
            let cpu_spent = match (state.cpu_mark, wall_spent) {
                // Marked, and the wall budget is not spent yet: nothing to read.
                (Some(_), false) => false,
                _ => match thread_cpu_time() {
                    // Without a CPU clock, wall time alone decides.
                    None => true,
                    Some(cpu) => {
                        let mark = *state.cpu_mark.get_or_insert(cpu);
                        cpu.saturating_sub(mark) >= state.call_budget
                    }
                },
            };
            Ok(if wall_spent && cpu_spent {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Continue(1)
            })
        });
    }

    /// What the guest wrote to stderr, lossily decoded and trimmed.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_owned()
    }
}

/// CPU time the calling thread has used, or `None` when the clock cannot be read.
pub(crate) fn thread_cpu_time() -> Option<std::time::Duration> {
    use nix::time::{ClockId, clock_gettime};
    let now = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    let seconds = u64::try_from(now.tv_sec()).ok()?;
    let nanos = u32::try_from(now.tv_nsec()).ok()?;
    Some(std::time::Duration::new(seconds, nanos))
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Enforces the per-instance memory limit and remembers whether the guest hit it, so that the
/// trap that follows (a Rust guest aborts when allocation fails) is classified as memory.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) exhausted: bool,
    pub(crate) peak: usize,
    /// Bytes of linear memory the running call grew. A guest racing toward the limit can use
    /// its whole deadline on page faults before it reaches it; the classifier calls that
    /// interrupt what it is, a memory failure.
    pub(crate) grown_in_call: usize,
}

impl MemoryLimiter {
    fn new(limit: usize) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            exhausted: false,
            peak: 0,
            grown_in_call: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exhausted = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        self.grown_in_call = self
            .grown_in_call
            .saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a detection engine needs thousands, not millions.
        Ok(desired <= 1 << 20)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}

impl StoreState {
    /// A guest's log line, whichever interface version it came through.
    fn guest_log(&mut self, level: tracing::Level, mut message: String) {
        if self.log_budget == 0 {
            return;
        }
        self.log_budget -= 1;
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let engine = self.engine_name.as_str();
        match level {
            tracing::Level::TRACE => tracing::trace!(engine, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(engine, "{message}"),
            tracing::Level::INFO => tracing::info!(engine, "{message}"),
            tracing::Level::WARN => tracing::warn!(engine, "{message}"),
            tracing::Level::ERROR => tracing::error!(engine, "{message}"),
        }
        if self.log_budget == 0 {
            tracing::warn!(
                engine,
                "engine log budget spent; further messages are dropped"
            );
        }
    }

    fn monotonic_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

fn wall_ns() -> u64 {
    ringfence_protocol::clock::unix_ns()
}

/// The host interfaces are the same in every version; each version's generated traits get
/// the one implementation.
macro_rules! host_interfaces {
    ($v:ident) => {
        // The shared types interface has no functions, but the generated linker wants it.
        impl $v::ringfence::engine::types::Host for StoreState {}

        impl $v::ringfence::engine::log::Host for StoreState {
            fn write(&mut self, level: $v::ringfence::engine::log::Level, message: String) {
                use $v::ringfence::engine::log::Level;
                let level = match level {
                    Level::Trace => tracing::Level::TRACE,
                    Level::Debug => tracing::Level::DEBUG,
                    Level::Info => tracing::Level::INFO,
                    Level::Warn => tracing::Level::WARN,
                    Level::Error => tracing::Level::ERROR,
                };
                self.guest_log(level, message);
            }
        }

        impl $v::ringfence::engine::clock::Host for StoreState {
            fn monotonic_ns(&mut self) -> u64 {
                StoreState::monotonic_ns(self)
            }

            fn wall_ns(&mut self) -> u64 {
                wall_ns()
            }
        }
    };
}

host_interfaces!(v0_1);
host_interfaces!(v0_2);
