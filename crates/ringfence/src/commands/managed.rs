//! `ringfence agent --server URL`: the agent managed by a control plane.
//!
//! Glue between the agent core and the uplink: enroll (or load the identity), start on the
//! release in the current slot (or the last known good when the guard says so), let the uplink
//! swap engines as assignments arrive, ship engine failures and alerts through the spool, and
//! beat the guard's heartbeat while the agent answers.

use anyhow::Context;
use ringfence_agent::{Agent, AgentConfig};
use ringfence_engine_host::{EngineSettings, LoadedEngine, Runtime};
use ringfence_protocol::api::{EnrollRequest, HealthFigures};
use ringfence_protocol::guard_link::GuardLink;
use ringfence_protocol::{Event, corpus};
use ringfence_release::{LoadedRelease, SlotStore};
use ringfence_uplink::link::{report, trusted_keys};
use ringfence_uplink::{AgentHost, Identity, Link, LinkConfig, ServerClient, Spool};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Arguments of the managed mode (given together with `--server`).
#[derive(Debug, Clone, clap::Args)]
pub struct ManagedArgs {
    /// Control plane URL; without it the agent runs standalone.
    #[arg(long, env = "RINGFENCE_SERVER")]
    pub server: Option<String>,
    /// Single-use enrollment token, needed on the first start only.
    #[arg(long, env = "RINGFENCE_ENROLL_TOKEN", hide_env_values = true)]
    pub enroll_token: Option<String>,
    /// Tags for ring membership (e.g. `canary`); repeat.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to enroll with (default: the kernel's).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Which release slot to start on; the guard passes `lkg` after a crash loop.
    #[arg(long, env = "RINGFENCE_SLOT", default_value = "current")]
    pub slot: String,
    /// Replay this corpus in a loop as permission traffic (demos and load tests).
    #[arg(long)]
    pub traffic: Option<PathBuf>,
    /// Events per second of replayed traffic.
    #[arg(long, default_value_t = 200)]
    pub traffic_rate: u64,
    /// A release that ran this long without engine failures becomes the last known good.
    #[arg(long, default_value_t = 30)]
    pub bless_after_s: u64,
    /// Where to write the final counters on exit (JSON), for demos and tests.
    #[arg(long)]
    pub stats_out: Option<PathBuf>,
    /// Do not start the crash monitor (no minidumps if the agent crashes).
    #[arg(long)]
    pub no_crash_monitor: bool,
    /// Fault injection for tests: abort the agent this many milliseconds after start.
    #[arg(long, hide = true)]
    pub crash_after_ms: Option<u64>,
}

/// The crash monitor child and the handler that talks to it; the monitor exits on its own
/// when the agent disconnects, and is reaped here.
struct CrashMonitor {
    child: std::process::Child,
    _capture: ringfence_crash::CrashCapture,
}

impl Drop for CrashMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_crash_monitor(data_dir: &Path) -> anyhow::Result<CrashMonitor> {
    let socket = data_dir.join("crash-monitor.sock");
    let exe = std::env::current_exe().context("find the ringfence binary")?;
    let child = std::process::Command::new(exe)
        .arg("crash-monitor")
        .arg("--socket")
        .arg(&socket)
        .arg("--dumps")
        .arg(data_dir.join("crashes"))
        .arg("--spool")
        .arg(data_dir.join("spool"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("start the crash monitor")?;
    let capture =
        ringfence_crash::CrashCapture::install(&socket, child.id(), Duration::from_secs(5))?;
    Ok(CrashMonitor {
        child,
        _capture: capture,
    })
}

/// Swaps engines as releases arrive and reports health to the uplink.
struct ManagedHost {
    runtime: Runtime,
    agent: OnceLock<Arc<Agent>>,
    engines: Mutex<BTreeMap<String, Arc<LoadedEngine>>>,
    previous: Mutex<(ringfence_agent::StatsSnapshot, Instant, u64)>,
}

fn engine_for(runtime: &Runtime, release: &LoadedRelease) -> Result<Arc<LoadedEngine>, String> {
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
fn cpu_ticks() -> u64 {
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
        };
        *previous = (now, Instant::now(), ticks);
        figures
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned())
}

/// Loads the saved identity, or enrolls with the token.
fn identity(args: &ManagedArgs, data_dir: &Path, server: &str) -> anyhow::Result<Identity> {
    let path = data_dir.join("identity.json");
    if let Some(identity) = Identity::load(&path)? {
        return Ok(identity);
    }
    let token = args
        .enroll_token
        .clone()
        .context("this agent has not enrolled yet: pass --enroll-token (ringfence server enroll-token create)")?;
    let client = ServerClient::new(server, Duration::from_secs(30));
    let response = client.enroll(&EnrollRequest {
        token,
        hostname: args.hostname.clone().unwrap_or_else(hostname),
        tags: args.tags.clone(),
    })?;
    let identity = Identity::from_enrollment(server, response);
    identity.save(&path)?;
    tracing::info!(agent = %identity.agent_id, "enrolled");
    Ok(identity)
}

/// Follows the alert file and spools engine failures and alerts, at most `per_second` each,
/// counting what it had to leave out.
fn ship_alerts(
    path: PathBuf,
    spool: Arc<Spool>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        const PER_SECOND: u32 = 20;
        let mut offset = 0u64;
        let mut window = Instant::now();
        let mut sent = 0u32;
        let mut suppressed = 0u64;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let Ok(mut file) = std::fs::File::open(&path) else {
                continue;
            };
            if file.seek(SeekFrom::Start(offset)).is_err() {
                continue;
            }
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if !line.ends_with('\n') {
                    break;
                }
                offset += line.len() as u64;
                if window.elapsed() >= Duration::from_secs(1) {
                    if suppressed > 0 {
                        let _ = spool.push(&report(
                            "telemetry",
                            serde_json::json!({"suppressed_reports": suppressed}),
                        ));
                    }
                    window = Instant::now();
                    sent = 0;
                    suppressed = 0;
                }
                if let Ok(alert) = serde_json::from_str::<serde_json::Value>(&line) {
                    let failures = alert["unmapped"]["ringfence"]["failures"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    for failure in failures {
                        if sent < PER_SECOND {
                            sent += 1;
                            let _ = spool.push(&report("failure", failure));
                        } else {
                            suppressed += 1;
                        }
                    }
                    if sent < PER_SECOND {
                        sent += 1;
                        let _ = spool.push(&report("alert", alert));
                    } else {
                        suppressed += 1;
                    }
                }
                line.clear();
            }
        }
    })
}

/// Replays `events` in a loop at `rate` per second as permission traffic; counts what was
/// sent and what was answered.
fn traffic(
    agent: Arc<Agent>,
    events: Vec<Event>,
    rate: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    unanswered: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let mut pending: Vec<(Instant, Arc<ringfence_sensor::Ticket>)> = Vec::new();
        let mut next = Instant::now();
        for event in events.iter().filter(|e| e.is_permission()).cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let ticket = Arc::new(ringfence_sensor::Ticket::detached());
            agent.submit(event.clone(), Arc::clone(&ticket));
            sent.fetch_add(1, Ordering::Relaxed);
            pending.push((Instant::now(), ticket));
            // An answer is due within the permission deadline; one missing after 5 s is lost.
            pending.retain(|(at, ticket)| {
                if ticket.answer().is_some() {
                    return false;
                }
                if at.elapsed() > Duration::from_secs(5) {
                    unanswered.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                true
            });
            next += interval;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            } else if next + Duration::from_secs(1) < Instant::now() {
                next = Instant::now();
            }
        }
        // Every answer is due within the permission deadline; a second is plenty.
        let give_up = Instant::now() + Duration::from_secs(1);
        while !pending.is_empty() && Instant::now() < give_up {
            pending.retain(|(_, ticket)| ticket.answer().is_none());
            std::thread::sleep(Duration::from_millis(5));
        }
        unanswered.fetch_add(pending.len() as u64, Ordering::Relaxed);
    })
}

/// Runs the managed agent until SIGTERM/SIGINT. The caller has blocked those signals before
/// any thread started (`ringfence_sensor::sys::block_termination_signals`).
pub fn run(
    mut config: AgentConfig,
    args: ManagedArgs,
    data_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let server = args
        .server
        .clone()
        .context("--server is required in managed mode")?;
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let identity = identity(&args, data_dir, &server)?;
    let _crash_monitor = if args.no_crash_monitor {
        None
    } else {
        match start_crash_monitor(data_dir) {
            Ok(monitor) => Some(monitor),
            Err(error) => {
                // Crash capture is evidence, not protection: run without it rather than not at all.
                tracing::warn!("running without minidump capture: {error:#}");
                None
            }
        }
    };
    if let Some(after) = args.crash_after_ms {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(after));
            tracing::error!("aborting on purpose (--crash-after-ms)");
            std::process::abort();
        });
    }
    let spool = Arc::new(Spool::open(&data_dir.join("spool"), 64 << 20)?);
    let slots = SlotStore::open(data_dir.join("slots"))?;
    let keys = trusted_keys(&identity).map_err(anyhow::Error::msg)?;
    let runtime = Runtime::new()?;

    // Start on what the slots say; the guard asks for the last known good after a crash loop.
    let mut engines = BTreeMap::new();
    for channel in slots.channels()? {
        if args.slot == "lkg" {
            match slots.restore_lkg(&channel) {
                Ok(_) => {
                    tracing::warn!(%channel, "started on the last known good release at the guard's request");
                    let _ = spool.push(&report("restore", serde_json::json!({"channel": channel, "reason": "guard asked for the last known good slot"})));
                }
                Err(error) => {
                    tracing::warn!(%channel, "no last known good release to restore: {error}")
                }
            }
        }
        match slots.load_current(&channel, &keys) {
            Ok(release) => match engine_for(&runtime, &release) {
                Ok(engine) => {
                    engines.insert(channel, engine);
                }
                Err(error) => tracing::error!(%channel, "current release does not load: {error}"),
            },
            Err(error) => tracing::warn!(%channel, "no usable current release: {error}"),
        }
    }

    let alerts_path = data_dir.join("alerts.jsonl");
    config.alerts = Some(alerts_path.clone());
    config.mute = config.mute.clone().with_path(data_dir.to_owned());
    let host = Arc::new(ManagedHost {
        runtime,
        agent: OnceLock::new(),
        engines: Mutex::new(engines.clone()),
        previous: Mutex::new((
            ringfence_agent::StatsSnapshot::default(),
            Instant::now(),
            cpu_ticks(),
        )),
    });
    let agent = Arc::new(Agent::start(config, engines.into_values().collect())?);
    let _ = host.agent.set(Arc::clone(&agent));

    let stop = Arc::new(AtomicBool::new(false));
    let shipper = ship_alerts(alerts_path, Arc::clone(&spool), Arc::clone(&stop));
    let link_config = LinkConfig {
        bless_after: Duration::from_secs(args.bless_after_s),
        interval: Duration::from_secs(1),
        ..LinkConfig::default()
    };
    let link = Link::start(
        &identity,
        Arc::clone(&spool),
        slots,
        Arc::clone(&host),
        link_config,
    )
    .map_err(anyhow::Error::msg)?;
    let sent = Arc::new(AtomicU64::new(0));
    let unanswered = Arc::new(AtomicU64::new(0));
    let traffic_thread = match &args.traffic {
        Some(path) => Some(traffic(
            Arc::clone(&agent),
            corpus::read_file(path)?,
            args.traffic_rate,
            Arc::clone(&stop),
            Arc::clone(&sent),
            Arc::clone(&unanswered),
        )),
        None => None,
    };

    let guard = GuardLink::from_env();
    if let Some(guard) = &guard {
        guard.ready();
    }
    eprintln!(
        "ringfence agent: ready, managed by {server} as {}",
        identity.agent_id
    );
    loop {
        if let Some(signal) = ringfence_sensor::sys::wait_termination(Duration::from_millis(200)) {
            tracing::info!(signal, "stopping on signal");
            break;
        }
        if let Some(guard) = &guard {
            guard.beat();
        }
    }

    stop.store(true, Ordering::Relaxed);
    if let Some(thread) = traffic_thread {
        let _ = thread.join();
    }
    let _ = shipper.join();
    link.stop();
    let final_stats = match Arc::try_unwrap(agent) {
        Ok(agent) => agent.shutdown(),
        Err(agent) => agent.stats(),
    };
    if let Some(path) = &args.stats_out {
        write_stats(
            path,
            &final_stats,
            sent.load(Ordering::Relaxed),
            unanswered.load(Ordering::Relaxed),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_stats(
    path: &Path,
    stats: &ringfence_agent::StatsSnapshot,
    sent: u64,
    unanswered: u64,
) -> anyhow::Result<()> {
    let value = serde_json::json!({
        "traffic_sent": sent,
        "traffic_unanswered": unanswered,
        "events": stats.events,
        "allowed": stats.allowed,
        "denied": stats.denied,
        "engine_failures": stats.engine_failures,
        "deadline_answers": stats.deadline_answers,
    });
    std::fs::write(path, value.to_string()).with_context(|| format!("write {}", path.display()))
}
