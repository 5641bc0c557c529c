//! The standalone agent (`ringfence agent --standalone`): the engines come from the command line
//! instead of a control plane, and an in-place upgrade that fails to execute resumes serving
//! on the same engines. Otherwise the managed agent's order of operations
//! ([`crate::managed`]): adopt or open the channels, confine, start, [`crate::serve`], stop or
//! upgrade.

use crate::{Ending, HostError, SelfUpgrade};
use ringfence_agent::{Agent, AgentConfig, StatsSnapshot};
use ringfence_engine_host::{LoadedEngine, Runtime};
use ringfence_protocol::Enforcement;
use ringfence_protocol::guard_link::GuardLink;
use ringfence_sensor::Channels;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How a standalone agent runs, besides its [`AgentConfig`].
#[derive(Debug, Clone)]
pub struct StandaloneOptions {
    /// The agent's data directory, if it has one: the engine cache lives there.
    pub data_dir: Option<PathBuf>,
    /// Bound of the compiled-engine cache, in MiB; 0 turns it off.
    pub engine_cache_mib: u64,
    /// Confine the process (capabilities, seccomp, Landlock); `false` is `--no-harden`.
    pub harden: bool,
}

/// How the agent ended: what a person or a test reads at exit.
#[derive(Debug)]
pub struct Stopped {
    /// The enforcement mode it ran in last.
    pub mode: Enforcement,
    /// Its final counters.
    pub stats: StatsSnapshot,
}

/// Engines the caller could not load, whatever its own error type: the binary reads engine
/// files and bundled names, which this crate knows nothing about.
pub type LoadEnginesError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the standalone agent until a termination signal, or until a replayed corpus is done.
/// `load_engines` runs once, after confinement, on the runtime the agent's engines live in.
/// The caller has blocked the termination signals before any thread started
/// (`ringfence_sys::signals::block_termination_signals`).
pub fn run(
    mut config: AgentConfig,
    options: &StandaloneOptions,
    upgrade: &SelfUpgrade,
    load_engines: impl FnOnce(&Runtime) -> Result<Vec<Arc<LoadedEngine>>, LoadEnginesError>,
) -> Result<Stopped, HostError> {
    // A previous image of this agent may have handed its live channels over (self-upgrade).
    let inherited = Channels::adopt_from_env(&config.fanotify)?;
    let upgraded = inherited.is_some();
    // Channels open, then privileges go, then the first thread (the wasm runtime's) starts.
    let view = crate::confine::view(
        options.data_dir.as_deref(),
        config.alerts.as_deref(),
        upgrade.binary(),
    );
    let (channels, hardening) =
        crate::confine::confine(options.harden, &mut config, inherited, view)?;
    let mut runtime = crate::confine::landlocked(hardening.as_ref(), "wasm runtime", Runtime::new)?
        .map_err(HostError::Runtime)?;
    if let Some(data_dir) = &options.data_dir {
        runtime = crate::with_engine_cache(runtime, data_dir, options.engine_cache_mib);
    }
    let engines = load_engines(&runtime).map_err(HostError::Engines)?;
    // The engines' compile is over; its scratch memory goes back to the kernel.
    ringfence_sys::process::release_free_heap();
    let mut agent = Agent::start_with(config.clone(), engines.clone(), channels)?;
    crate::report_visibility(&agent);
    eprintln!(
        "ringfence agent: ready (pid {}, mode {}, kernel audit log {}{})",
        std::process::id(),
        agent.enforcement(),
        if agent.audit_enabled() { "on" } else { "off" },
        if upgraded { ", upgraded in place" } else { "" }
    );
    // Under a guard, beat its heartbeat while the agent runs; a hung agent stops beating.
    let guard = GuardLink::from_env();
    if let Some(guard) = &guard {
        guard.ready();
    }
    // A replaying agent has no kernel channels to hand over: it does not upgrade in place.
    let upgrades = (!agent.has_replay()).then_some(upgrade);
    loop {
        let ending = crate::serve(upgrades, guard.as_ref(), Duration::from_millis(100), || {
            if agent.has_replay() && agent.wait_replay(Duration::ZERO) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        match ending {
            Ending::Stop => break,
            Ending::Upgrade(prepared) => {
                agent = upgrade.exec_or_resume(agent, &prepared, |channels| {
                    Ok(Agent::start_with(
                        config.clone(),
                        engines.clone(),
                        channels,
                    )?)
                })?;
                if let Some(guard) = &guard {
                    guard.ready();
                }
            }
        }
    }
    let mode = agent.enforcement();
    let stats = agent.shutdown();
    Ok(Stopped { mode, stats })
}
