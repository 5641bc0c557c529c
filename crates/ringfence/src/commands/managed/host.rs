//! The agent as the uplink sees it: swap engines when a release arrives, drop them when a plan
//! disables a channel, and report health figures.

use ringfence_agent::Agent;
use ringfence_engine_host::{EngineSettings, LoadedEngine, Runtime};
use ringfence_protocol::api::HealthFigures;
use ringfence_release::LoadedRelease;
use ringfence_uplink::AgentHost;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Swaps engines as releases arrive and reports health to the uplink.
pub(super) struct ManagedHost {
    pub(super) runtime: Runtime,
    pub(super) agent: OnceLock<Arc<Agent>>,
    pub(super) engines: Mutex<BTreeMap<String, Arc<LoadedEngine>>>,
    pub(super) previous: Mutex<(ringfence_agent::StatsSnapshot, Instant, u64)>,
}

pub(super) fn engine_for(
    runtime: &Runtime,
    release: &LoadedRelease,
) -> Result<Arc<LoadedEngine>, String> {
    let manifest = release.manifest();
    let wasm = match release.engine() {
        Some(bytes) => bytes.to_vec(),
        None => ringfence_bundled_engines::get(&manifest.engine_name)
            .map(|e| e.wasm.to_vec())
            .ok_or_else(|| {
                format!(
                    "release names engine {:?}, which is not bundled",
                    manifest.engine_name
                )
            })?,
    };
    let settings =
        EngineSettings::new(manifest.engine_name.clone()).with_policy(manifest.failure_policy);
    LoadedEngine::load(
        runtime,
        settings,
        &wasm,
        release.content().unwrap_or_default(),
    )
    .map_err(|e| e.to_string())
}

/// CPU time of this process in clock ticks, from /proc.
pub(super) fn cpu_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

impl AgentHost for ManagedHost {
    fn activate(&self, channel: &str, release: &LoadedRelease) -> Result<(), String> {
        let engine = engine_for(&self.runtime, release)?;
        let mut engines = self
            .engines
            .lock()
            .map_err(|_| "engine table poisoned".to_owned())?;
        engines.insert(channel.to_owned(), engine);
        if let Some(agent) = self.agent.get() {
            agent.swap_engines(engines.values().cloned().collect());
        }
        Ok(())
    }

    fn disable(&self, channel: &str) -> Result<(), String> {
        let mut engines = self
            .engines
            .lock()
            .map_err(|_| "engine table poisoned".to_owned())?;
        if engines.remove(channel).is_some()
            && let Some(agent) = self.agent.get()
        {
            agent.swap_engines(engines.values().cloned().collect());
        }
        Ok(())
    }

    fn health(&self) -> HealthFigures {
        let Some(agent) = self.agent.get() else {
            return HealthFigures::default();
        };
        let now = agent.stats();
        let ticks = cpu_ticks();
        let Ok(mut previous) = self.previous.lock() else {
            return HealthFigures::default();
        };
        let (before, at, before_ticks) = &*previous;
        let decided = (now.allowed + now.denied).saturating_sub(before.allowed + before.denied);
        let denies = now.denied.saturating_sub(before.denied);
        let elapsed = at.elapsed().as_secs_f64().max(0.001);
        // Linux reports CPU time in clock ticks of 1/100 s.
        let cpu_pct = (ticks.saturating_sub(*before_ticks) as f64 / 100.0) / elapsed * 100.0;
        let figures = HealthFigures {
            events: now.events.saturating_sub(before.events),
            denies,
            deny_rate: if decided == 0 {
                0.0
            } else {
                denies as f64 / decided as f64
            },
            p99_us: 0.0,
            engine_failures: now.engine_failures.saturating_sub(before.engine_failures),
            cpu_pct,
            rss_bytes: rss_bytes(),
            uptime_s: 0,
            spool_pending: 0,
            spool_dropped: 0,
            ..HealthFigures::default()
        };
        *previous = (now, Instant::now(), ticks);
        figures
    }
}
