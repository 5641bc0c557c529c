//! The agent as the uplink sees it: swap engines when a release arrives (only through the
//! agent's checked swap, so a release that fails on this host's own traffic never runs), drop
//! them when a plan disables a channel, and report health figures.

use ringfence_agent::Agent;
use ringfence_engine_host::{EngineSettings, LoadedEngine, Runtime};
use ringfence_protocol::Enforcement;
use ringfence_protocol::api::{FailureCounts, HealthFigures, LatencyFigures, PolicyAnswers};
use ringfence_protocol::report::{FailurePhase, FailureReport, ReportBody};
use ringfence_release::LoadedRelease;
use ringfence_uplink::{AgentHost, HostError, Spool};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Swaps engines as releases arrive and reports health to the uplink.
pub(super) struct ManagedHost {
    runtime: Runtime,
    pub(super) agent: OnceLock<Arc<Agent>>,
    /// The engine of each channel that runs now; changed only by a swap the agent accepted.
    engines: Mutex<BTreeMap<String, Arc<LoadedEngine>>>,
    /// Where the previous heartbeat's interval ended: figures are per interval.
    previous: Mutex<IntervalStart>,
    /// Channels a remediation plan disabled, until a release runs on them again.
    disabled: Mutex<BTreeSet<String>>,
    started: Instant,
    /// Releases whose engine or content did not load, since the previous heartbeat.
    load_failures: AtomicU64,
    /// CPU spent installing releases, kept out of the CPU figure the gates judge.
    install_cpu: Mutex<InstallCpu>,
    /// Where the failure that made a swap refuse goes: it is crash data like any other.
    spool: Arc<Spool>,
    /// Channels the server wants audited now (an audit rollout or plan); their engines' denies
    /// are allowed and reported as would-deny. The agent's own `--mode audit` is separate and
    /// host-wide, and the server never changes it.
    audited: Mutex<BTreeSet<String>>,
    /// Where the audited channels are kept: a restart must not enforce an audited release for
    /// the second before the first heartbeat answer.
    audited_file: Option<PathBuf>,
}

/// The channels the server wanted audited last, one per line, in the data directory.
pub(super) const AUDITED_CHANNELS_FILE: &str = "audited-channels";

/// The channels the server wanted audited before the agent last stopped (none without the
/// file); `None` when the file cannot be read as text: then, unsure, audit everything until
/// the server says.
pub(super) fn saved_audited_channels(data_dir: &Path) -> Option<BTreeSet<String>> {
    match std::fs::read(data_dir.join(AUDITED_CHANNELS_FILE)) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Some(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            Err(_) => {
                tracing::warn!("{AUDITED_CHANNELS_FILE} is damaged; auditing every channel");
                None
            }
        },
        Err(_) => Some(BTreeSet::new()),
    }
}

/// The engine names of the audited channels in an engine table: the agent tells engines apart
/// by name, so two channels running one engine name are audited together.
pub(super) fn audited_engines(
    engines: &BTreeMap<String, Arc<LoadedEngine>>,
    channels: &BTreeSet<String>,
) -> BTreeSet<String> {
    engines
        .iter()
        .filter(|(channel, _)| channels.contains(*channel))
        .map(|(_, engine)| engine.name().to_owned())
        .collect()
}

/// CPU time of installs (compiling an engine, checking it against recent events), in clock
/// ticks: the gates judge what a release costs to run, and a one-off compile of a large engine
/// would otherwise read as a release that eats the host's CPU.
#[derive(Debug, Default)]
struct InstallCpu {
    /// Ticks of installs that have finished.
    finished: u64,
    /// The thread installing now, read from `/proc` while it runs.
    live: Option<u64>,
}

impl InstallCpu {
    /// Ticks spent installing so far, the running install included.
    fn total(&self) -> u64 {
        let live = self.live.map_or(0, |tid| {
            cpu_ticks_of(&format!("/proc/self/task/{tid}/stat"))
        });
        self.finished + live
    }
}

/// The kernel's id of the calling thread, from `/proc/thread-self` (`<pid>/task/<tid>`).
fn current_tid() -> Option<u64> {
    std::fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

impl ManagedHost {
    pub(super) fn new(
        runtime: Runtime,
        engines: BTreeMap<String, Arc<LoadedEngine>>,
        started: Instant,
        spool: Arc<Spool>,
    ) -> ManagedHost {
        ManagedHost {
            runtime,
            agent: OnceLock::new(),
            engines: Mutex::new(engines),
            previous: Mutex::new(IntervalStart {
                stats: ringfence_agent::StatsSnapshot::default(),
                at: Instant::now(),
                serving_ticks: serving_ticks(0),
                cpu_stall_us: cpu_stall_us(),
            }),
            disabled: Mutex::new(BTreeSet::new()),
            started,
            load_failures: AtomicU64::new(0),
            install_cpu: Mutex::new(InstallCpu::default()),
            spool,
            audited: Mutex::new(BTreeSet::new()),
            audited_file: None,
        }
    }

    /// Keeps the audited channels in `data_dir` (see [`saved_audited_channels`]), starting
    /// from the ones kept there.
    pub(super) fn saving_audited_channels(mut self, data_dir: &Path) -> ManagedHost {
        if let Ok(mut audited) = self.audited.lock() {
            *audited = saved_audited_channels(data_dir).unwrap_or_default();
        }
        self.audited_file = Some(data_dir.join(AUDITED_CHANNELS_FILE));
        self
    }

    /// Writes the audited channels (temporary file and rename, so a reader never sees half a
    /// list). A failure is logged: the next heartbeat answer says them again.
    fn save_audited(&self, channels: &BTreeSet<String>) {
        let Some(path) = &self.audited_file else {
            return;
        };
        let text: String = channels.iter().map(|c| format!("{c}\n")).collect();
        let temporary = path.with_extension("tmp");
        if let Err(error) =
            std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path))
        {
            tracing::warn!(%error, "could not keep the audited channels");
        }
    }

    /// Tells the agent which engines of `table` to audit, before `table` serves.
    fn audit_engines_of(&self, table: &BTreeMap<String, Arc<LoadedEngine>>) {
        let Some(agent) = self.agent.get() else {
            return;
        };
        let channels = self.audited.lock().map(|a| a.clone()).unwrap_or_default();
        if let Err(error) = agent.set_audited_engines(audited_engines(table, &channels)) {
            tracing::error!(%error, "could not change which engines are audited");
        }
    }

    /// Runs `install` on this thread with its CPU time counted as installing, not serving.
    fn installing<T>(&self, install: impl FnOnce() -> T) -> T {
        let tid = current_tid();
        let start = tid.map_or(0, |_| cpu_ticks_of("/proc/thread-self/stat"));
        if let Ok(mut cpu) = self.install_cpu.lock() {
            cpu.live = tid;
        }
        let outcome = install();
        // Compiling leaves tens of MiB freed but kept by the allocator; an install, taken or
        // refused, is when to hand them back.
        ringfence_sys::process::release_free_heap();
        let spent = tid.map_or(0, |_| {
            cpu_ticks_of("/proc/thread-self/stat").saturating_sub(start)
        });
        if let Ok(mut cpu) = self.install_cpu.lock() {
            cpu.live = None;
            cpu.finished += spent;
        }
        outcome
    }

    /// Spools the failure behind a refused swap as a `failure` report marked `during:
    /// install`: the release never served, but the vendor gets its crash data (and the
    /// server a crash group) as from any other failure.
    fn report_refusal(&self, error: &ringfence_agent::SwapError) {
        let failure = ReportBody::Failure(FailureReport {
            record: error.record().clone(),
            during: Some(FailurePhase::Install),
        });
        if let Err(spool_error) = self.spool.push(&ringfence_uplink::link::report(failure)) {
            tracing::warn!("could not spool the failure that refused a release: {spool_error}");
        }
    }

    /// Process CPU ticks not spent installing.
    fn serving(&self) -> u64 {
        let installing = self.install_cpu.lock().map_or(0, |cpu| cpu.total());
        serving_ticks(installing)
    }

    /// Runs `engine` on `channel` from now on, if the agent accepts it (see [`Self::switch`]).
    fn run_on(&self, channel: &str, engine: Arc<LoadedEngine>) -> Result<(), HostError> {
        let mut engines = self
            .engines
            .lock()
            .map_err(|_| HostError::Internal("engine table poisoned"))?;
        let mut next = engines.clone();
        next.insert(channel.to_owned(), engine);
        self.switch(&mut engines, next)?;
        if let Ok(mut disabled) = self.disabled.lock() {
            disabled.remove(channel);
        }
        Ok(())
    }

    /// Makes `next` the running engine table, through the agent's checked swap: the new
    /// engines first decide this host's recent events, and any failure keeps the old ones
    /// (and the old table).
    fn switch(
        &self,
        engines: &mut BTreeMap<String, Arc<LoadedEngine>>,
        next: BTreeMap<String, Arc<LoadedEngine>>,
    ) -> Result<(), HostError> {
        // The new table's audited engines are named before it serves: a release installed for
        // an audited channel never enforces, not even for its first event.
        self.audit_engines_of(&next);
        if let Some(agent) = self.agent.get() {
            agent
                .swap_engines_checked(next.values().cloned().collect(), &agent.recent_events())
                .map_err(|error| {
                    self.report_refusal(&error);
                    HostError::Refused(Box::new(error))
                })?;
        }
        *engines = next;
        Ok(())
    }
}

/// Why a release's engine does not load on this host.
#[derive(Debug, thiserror::Error)]
pub(super) enum EngineLoadError {
    /// The release carries no engine and names one this binary does not bundle.
    #[error("release names engine {0:?}, which is not bundled")]
    NotBundled(String),
    #[error(transparent)]
    Load(#[from] ringfence_engine_host::LoadError),
}

pub(super) fn engine_for(
    runtime: &Runtime,
    release: &LoadedRelease,
) -> Result<Arc<LoadedEngine>, EngineLoadError> {
    let manifest = release.manifest();
    let wasm = match release.engine() {
        Some(bytes) => bytes.to_vec(),
        None => ringfence_bundled_engines::get(&manifest.engine_name)
            .map(|e| e.wasm.to_vec())
            .ok_or_else(|| EngineLoadError::NotBundled(manifest.engine_name.clone()))?,
    };
    let settings =
        EngineSettings::new(manifest.engine_name.clone()).with_policy(manifest.failure_policy);
    LoadedEngine::load(
        runtime,
        settings,
        &wasm,
        release.content().unwrap_or_default(),
    )
    .map_err(EngineLoadError::from)
}

/// CPU ticks of this process less `installing`.
fn serving_ticks(installing: u64) -> u64 {
    cpu_ticks_of("/proc/self/stat").saturating_sub(installing)
}

/// User and system CPU time in clock ticks from a `stat` file of `/proc` (a process or one of
/// its threads).
fn cpu_ticks_of(path: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
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

/// Where a heartbeat interval starts: the counters, clock, serving CPU ticks and host CPU
/// stall time then.
struct IntervalStart {
    stats: ringfence_agent::StatsSnapshot,
    at: Instant,
    serving_ticks: u64,
    cpu_stall_us: Option<u64>,
}

/// Microseconds in which some task on the host waited for a CPU since boot (PSI), or `None`
/// where the kernel does not account pressure.
fn cpu_stall_us() -> Option<u64> {
    let pressure = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    psi_some_total_us(&pressure)
}

/// The `total=` of the `some` line of a PSI file.
fn psi_some_total_us(pressure: &str) -> Option<u64> {
    pressure
        .lines()
        .find(|line| line.starts_with("some "))?
        .split_whitespace()
        .find_map(|field| field.strip_prefix("total="))?
        .parse()
        .ok()
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
    fn activate(
        &self,
        channel: &str,
        release: &LoadedRelease,
        deadline: Instant,
    ) -> Result<(), HostError> {
        self.installing(|| {
            let engine = engine_for(&self.runtime, release).map_err(|error| {
                self.load_failures.fetch_add(1, Ordering::Relaxed);
                HostError::Load(error.to_string())
            })?;
            if Instant::now() >= deadline {
                return Err(HostError::TimedOut);
            }
            self.run_on(channel, engine)
        })
    }

    fn disable(&self, channel: &str) -> Result<(), HostError> {
        let mut engines = self
            .engines
            .lock()
            .map_err(|_| HostError::Internal("engine table poisoned"))?;
        let mut next = engines.clone();
        if next.remove(channel).is_some() {
            self.switch(&mut engines, next)?;
        }
        if let Ok(mut disabled) = self.disabled.lock() {
            disabled.insert(channel.to_owned());
        }
        Ok(())
    }

    fn assign_audited_channels(&self, channels: &BTreeSet<String>) {
        let changed = match self.audited.lock() {
            Ok(mut audited) if *audited != *channels => {
                *audited = channels.clone();
                true
            }
            _ => false,
        };
        if changed {
            self.save_audited(channels);
        }
        // Under the engine table's lock, so a swap in progress cannot interleave.
        if let Ok(engines) = self.engines.lock() {
            self.audit_engines_of(&engines);
        }
    }

    fn health(&self) -> HealthFigures {
        let Some(agent) = self.agent.get() else {
            return HealthFigures::default();
        };
        let Ok(mut previous) = self.previous.lock() else {
            return HealthFigures::default();
        };
        let now = agent.stats();
        let latency = agent.take_latency();
        let ticks = self.serving();
        let stall_us = cpu_stall_us();
        let IntervalStart {
            stats: before,
            at,
            serving_ticks: before_ticks,
            cpu_stall_us: before_stall_us,
        } = &*previous;
        let delta = |now: u64, before: u64| now.saturating_sub(before);
        let decided = delta(now.allowed + now.denied, before.allowed + before.denied);
        let denies = delta(now.denied, before.denied);
        let elapsed = at.elapsed().as_secs_f64().max(0.001);
        // Linux reports CPU time in clock ticks of 1/100 s. Installs are left out (see
        // `InstallCpu`); the install's own figures are its duration and outcome.
        let cpu_pct = (ticks.saturating_sub(*before_ticks) as f64 / 100.0) / elapsed * 100.0;
        let cpu_pressure_pct = match (stall_us, before_stall_us) {
            (Some(now), Some(before)) => {
                (now.saturating_sub(*before) as f64 / 1e6 / elapsed * 100.0).min(100.0)
            }
            _ => 0.0,
        };
        let failures = FailureCounts {
            trap: delta(now.failures_trap, before.failures_trap),
            memory: delta(now.failures_memory, before.failures_memory),
            deadline: delta(now.failures_deadline, before.failures_deadline),
            quarantine: delta(now.failures_quarantine, before.failures_quarantine),
            load: delta(now.failures_load, before.failures_load)
                + self.load_failures.swap(0, Ordering::Relaxed),
        };
        let figures = HealthFigures {
            events: delta(now.events, before.events),
            permission_events: decided,
            denies,
            would_deny: delta(now.would_deny, before.would_deny),
            mode: if agent.audited_engines().is_empty() {
                agent.enforcement()
            } else {
                Enforcement::Audit
            },
            audited: if agent.enforcement().is_audit() {
                self.engines
                    .lock()
                    .map(|engines| engines.keys().cloned().collect())
                    .unwrap_or_default()
            } else {
                self.audited
                    .lock()
                    .map(|audited| audited.iter().cloned().collect())
                    .unwrap_or_default()
            },
            deny_rate: if decided == 0 {
                0.0
            } else {
                denies as f64 / decided as f64
            },
            p99_us: latency.p99_us,
            latency: LatencyFigures {
                p50_us: latency.p50_us,
                p99_us: latency.p99_us,
                max_us: latency.max_us,
            },
            engine_failures: failures.total(),
            failures,
            policy_answers: PolicyAnswers {
                deadline: delta(now.deadline_answers, before.deadline_answers),
                quarantine: delta(now.quarantine_answers, before.quarantine_answers),
                queue_full: delta(now.queue_full, before.queue_full),
                failure: delta(now.failure_answers, before.failure_answers),
            },
            quarantined: agent.quarantined(),
            reduced_visibility: agent
                .visibility()
                .and_then(|v| v.reduced())
                .map(str::to_owned),
            bpf_lost: delta(now.bpf_lost, before.bpf_lost),
            disabled: self
                .disabled
                .lock()
                .map(|disabled| disabled.iter().cloned().collect())
                .unwrap_or_default(),
            cpu_pct,
            cpu_pressure_pct,
            rss_bytes: rss_bytes(),
            uptime_s: self.started.elapsed().as_secs(),
            // The uplink fills what it owns: the spool's figures and the install under way.
            ..HealthFigures::default()
        };
        *previous = IntervalStart {
            stats: now,
            at: Instant::now(),
            serving_ticks: ticks,
            cpu_stall_us: stall_us,
        };
        figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_agent::{AgentConfig, MuteSet};
    use ringfence_sensor::Ticket;
    use ringfence_testkit::events::exec;
    use std::time::Duration;

    fn faulty(runtime: &Runtime, mode: &str) -> Arc<LoadedEngine> {
        let settings = EngineSettings::new("faulty").with_deadline(Duration::from_millis(50));
        LoadedEngine::load(
            runtime,
            settings,
            ringfence_bundled_engines::faulty(),
            mode.as_bytes(),
        )
        .expect("faulty loads")
    }

    #[test]
    fn cpu_stall_is_read_from_the_some_line_of_psi() {
        let pressure = "some avg10=1.14 avg60=1.10 avg300=0.72 total=10305159051\n\
                        full avg10=0.00 avg60=0.00 avg300=0.00 total=7\n";
        assert_eq!(psi_some_total_us(pressure), Some(10_305_159_051));
        assert_eq!(psi_some_total_us("full avg10=0.00 total=7\n"), None);
        assert_eq!(psi_some_total_us("some avg10=1 total=x\n"), None);
    }

    /// A host whose agent serves `ok` on channel `detection` and has decided a few events.
    fn host_serving(runtime: &Runtime, ok: &Arc<LoadedEngine>) -> (ManagedHost, Arc<Agent>) {
        let engines = BTreeMap::from([("detection".to_owned(), Arc::clone(ok))]);
        let spool = Arc::new(Spool::open(&spool_dir(), 1 << 20).expect("spool"));
        let host = ManagedHost::new(runtime.clone(), engines, Instant::now(), spool);
        let config = AgentConfig {
            sensors: Vec::new(),
            discard_alerts: true,
            mute: MuteSet::default(),
            perm_deadline: Duration::from_secs(5),
            ..AgentConfig::default()
        };
        let agent = Arc::new(Agent::start(config, vec![Arc::clone(ok)]).expect("agent starts"));
        let _ = host.agent.set(Arc::clone(&agent));
        for _ in 0..5 {
            let ticket = Arc::new(Ticket::detached());
            agent.submit(exec("/usr/bin/ls"), Arc::clone(&ticket));
            let until = Instant::now() + Duration::from_secs(10);
            while ticket.answer().is_none() {
                assert!(Instant::now() < until, "unanswered");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        (host, agent)
    }

    /// A fresh spool directory that outlives the test's host (removed with the process's temp).
    fn spool_dir() -> std::path::PathBuf {
        tempfile::tempdir().expect("tempdir").keep()
    }

    fn serving(host: &ManagedHost, channel: &str) -> Option<Arc<LoadedEngine>> {
        host.engines.lock().expect("table").get(channel).cloned()
    }

    #[test]
    fn an_engine_that_fails_on_this_hosts_events_is_refused_and_nothing_changes() {
        let runtime = Runtime::new().expect("runtime");
        let ok = faulty(&runtime, "ok");
        let (host, agent) = host_serving(&runtime, &ok);
        let error = host
            .run_on("detection", faulty(&runtime, "trap"))
            .expect_err("a trapping engine is refused");
        assert!(matches!(error, HostError::Refused(_)), "{error}");
        assert!(error.to_string().contains("trap"), "{error}");
        let spooled = host.spool.peek(10);
        assert!(
            spooled.iter().any(|(_, report)| matches!(
                &report.body,
                ReportBody::Failure(FailureReport {
                    record,
                    during: Some(FailurePhase::Install),
                }) if record.kind == ringfence_protocol::FailureKind::Trap
            )),
            "the failure behind the refusal is crash data: {spooled:?}"
        );
        assert_eq!(agent.generation(), 1, "the old engines keep serving");
        assert!(
            serving(&host, "detection").is_some_and(|e| Arc::ptr_eq(&e, &ok)),
            "the engine table still holds what runs"
        );

        let good = faulty(&runtime, "ok");
        host.run_on("detection", Arc::clone(&good))
            .expect("a good engine goes live");
        assert_eq!(agent.generation(), 2);
        assert!(serving(&host, "detection").is_some_and(|e| Arc::ptr_eq(&e, &good)));
    }

    #[test]
    fn health_figures_are_measured_not_zero() {
        let runtime = Runtime::new().expect("runtime");
        let ok = faulty(&runtime, "ok");
        let (host, agent) = host_serving(&runtime, &ok);
        host.disable("detection").expect("disable");
        let figures = host.health();
        assert_eq!(figures.permission_events, 5, "{figures:?}");
        assert!(figures.latency.max_us > 0.0, "{figures:?}");
        assert!(
            figures.latency.p50_us <= figures.latency.p99_us,
            "{figures:?}"
        );
        assert_eq!(figures.p99_us, figures.latency.p99_us);
        assert_eq!(figures.engine_failures, 0, "{figures:?}");
        assert_eq!(figures.disabled, vec!["detection".to_owned()]);
        assert!(figures.quarantined.is_empty());
        assert!(figures.rss_bytes > 0);
        assert_eq!(figures.mode, ringfence_protocol::Enforcement::Enforce);
        assert_eq!(figures.would_deny, 0);
        // The next interval starts empty, and says the mode the agent answers in now.
        agent.set_enforcement(ringfence_protocol::Enforcement::Audit);
        let next = host.health();
        assert_eq!(next.permission_events, 0, "{next:?}");
        assert_eq!(next.latency.max_us, 0.0, "{next:?}");
        assert_eq!(next.mode, ringfence_protocol::Enforcement::Audit);
    }

    #[test]
    fn an_audited_channel_audits_its_engine_and_never_the_local_mode() {
        let runtime = Runtime::new().expect("runtime");
        let ok = faulty(&runtime, "ok");
        let (host, agent) = host_serving(&runtime, &ok);
        let channels = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        host.assign_audited_channels(&channels(&["detection"]));
        assert_eq!(agent.audited_engines(), vec!["faulty".to_owned()]);
        assert_eq!(
            agent.enforcement(),
            Enforcement::Enforce,
            "host-wide mode untouched"
        );
        let figures = host.health();
        assert_eq!(figures.mode, Enforcement::Audit);
        assert_eq!(figures.audited, vec!["detection".to_owned()]);
        host.assign_audited_channels(&channels(&[]));
        assert!(agent.audited_engines().is_empty());

        // An operator's --mode audit is host-wide; the server's channels never end it.
        agent.set_enforcement(Enforcement::Audit);
        host.assign_audited_channels(&channels(&[]));
        assert_eq!(agent.enforcement(), Enforcement::Audit, "local audit stays");
    }

    #[test]
    fn the_audited_channels_outlive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(saved_audited_channels(dir.path()), Some(BTreeSet::new()));
        let runtime = Runtime::new().expect("runtime");
        let ok = faulty(&runtime, "ok");
        let (host, _agent) = host_serving(&runtime, &ok);
        let host = host.saving_audited_channels(dir.path());
        let detection: BTreeSet<String> = ["detection".to_owned()].into();
        host.assign_audited_channels(&detection);
        assert_eq!(saved_audited_channels(dir.path()), Some(detection));
        host.assign_audited_channels(&BTreeSet::new());
        assert_eq!(saved_audited_channels(dir.path()), Some(BTreeSet::new()));
        std::fs::write(dir.path().join(AUDITED_CHANNELS_FILE), [0xff, 0xfe]).expect("write");
        assert_eq!(
            saved_audited_channels(dir.path()),
            None,
            "unsure: block nothing until the server says"
        );
    }
}
