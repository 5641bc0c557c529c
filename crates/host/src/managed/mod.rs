//! The agent managed by a control plane (`ringfence agent --server URL`): the same lifecycle as
//! the standalone agent ([`crate::standalone`]: adopt or open the channels, confine, start,
//! [`crate::serve`], stop or upgrade), with the uplink around it.
//!
//! What the uplink adds: enroll (or load the identity), start on the release in the current
//! slot (or the last known good when the guard says so), let the uplink swap engines as
//! assignments arrive, ship engine failures (typed, from the agent's failure channel) and alerts
//! (from the alert file) through the spool, and start the crash monitor beside the agent.

mod agent_host;
mod alerts;
mod budget;
mod crash;
mod error;
mod failures;
mod traffic;

pub use error::ManagedError;

use crate::{Ending, HostError, SelfUpgrade};
use agent_host::{ManagedHost, engine_for};
use budget::ReportBudget;
use ringfence_agent::{Agent, AgentConfig};
use ringfence_engine_host::Runtime;
use ringfence_protocol::api::EnrollRequest;
use ringfence_protocol::corpus;
use ringfence_protocol::guard_link::{GuardLink, Slot};
use ringfence_protocol::report::{ReportBody, RestoreReport};
use ringfence_release::SlotStore;
use ringfence_sensor::Channels;
use ringfence_uplink::link::{report, trusted_keys};
use ringfence_uplink::{
    AgentKey, Fingerprint, Identity, Link, LinkConfig, ServerClient, Spool, tls,
};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The managed agent's last heartbeat, in its data directory (`ringfence status --host`).
pub const HEALTH_FILE: &str = "health.json";

/// Engine failures waiting for the shipper; beyond this they are dropped and counted (a storm
/// is cut to the report budget anyway).
const FAILURE_QUEUE: usize = 1024;

/// How a managed agent runs, besides its [`AgentConfig`]: the binary fills this from its
/// command line (`--server` and the flags given with it).
#[derive(Debug, Clone)]
pub struct ManagedOptions {
    /// The control plane's URL.
    pub server: String,
    /// The server's CA certificate (PEM), checked at enrollment and kept in the identity.
    pub server_ca: Option<PathBuf>,
    /// The server's CA fingerprint: at enrollment the CA is fetched and kept only if it matches.
    pub server_ca_fingerprint: Option<Fingerprint>,
    /// Single-use enrollment token, needed on the first start only.
    pub enroll_token: Option<String>,
    /// Tags for ring membership.
    pub tags: Vec<String>,
    /// Host name to enroll with (default: the kernel's).
    pub hostname: Option<String>,
    /// Which release slot to start on; the guard asks for the last known good after a crash loop.
    pub slot: Slot,
    /// Replay this corpus in a loop as permission traffic (demos and load tests).
    pub traffic: Option<PathBuf>,
    /// Events per second of replayed traffic.
    pub traffic_rate: u64,
    /// A release that ran this long without engine failures becomes the last known good.
    pub bless_after: Duration,
    /// Where to write the final counters on exit (JSON), for demos and tests.
    pub stats_out: Option<PathBuf>,
    /// Start the crash monitor (minidumps if the agent crashes).
    pub crash_monitor: bool,
    /// Fault injection for tests: abort the agent this long after start.
    pub crash_after: Option<Duration>,
    /// The agent's data directory: identity, spool, slots, alerts, engine cache.
    pub data_dir: PathBuf,
    /// Bound of the compiled-engine cache, in MiB; 0 turns it off.
    pub engine_cache_mib: u64,
    /// Confine the process (capabilities, seccomp, Landlock); `false` is `--no-harden`.
    pub harden: bool,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned())
}

/// Loads the saved identity, or enrolls with the token. The server's CA is settled here, once:
/// later runs trust what the identity recorded, whatever the flags say.
fn identity(
    args: &ManagedOptions,
    data_dir: &Path,
    server: &str,
) -> Result<Identity, ManagedError> {
    let path = data_dir.join("identity.json");
    if let Some(identity) = Identity::load(&path)? {
        return Ok(identity);
    }
    let token = args.enroll_token.clone().ok_or(ManagedError::NotEnrolled)?;
    let timeout = Duration::from_secs(30);
    let ca = tls::resolve(
        server,
        args.server_ca.as_deref(),
        args.server_ca_fingerprint,
        timeout,
    )
    .map_err(ManagedError::ServerUnverified)?;
    let mut client = ServerClient::new(server, timeout);
    if let Some(ca) = &ca {
        client = client.with_ca(ca);
    }
    // The key for mutual TLS is made here and stays here; the server sees its CSR only.
    let key = AgentKey::generate().map_err(ManagedError::Key)?;
    let response = client.enroll(&EnrollRequest {
        token,
        hostname: args.hostname.clone().unwrap_or_else(hostname),
        tags: args.tags.clone(),
        csr: Some(key.csr_pem().to_owned()),
    })?;
    let identity = Identity::from_enrollment(server, ca.as_ref(), key, response)
        .map_err(ManagedError::Enrollment)?;
    identity.save(&path)?;
    tracing::info!(
        agent = %identity.agent_id,
        client_certificate = identity.client_cert.is_some(),
        "enrolled"
    );
    Ok(identity)
}

/// Runs the managed agent until SIGTERM/SIGINT. The caller has blocked those signals before
/// any thread started (`ringfence_sys::signals::block_termination_signals`).
pub fn run(
    mut config: AgentConfig,
    args: ManagedOptions,
    upgrade: &SelfUpgrade,
) -> Result<(), ManagedError> {
    let started = Instant::now();
    let server = args.server.clone();
    let data_dir = args.data_dir.as_path();
    std::fs::create_dir_all(data_dir)
        .map_err(|e| HostError::io(format!("create {}", data_dir.display()), e))?;
    let identity = identity(&args, data_dir, &server)?;
    // A previous image of this agent may have handed its live channels over (self-upgrade).
    let inherited = Channels::adopt_from_env(&config.fanotify).map_err(HostError::from)?;
    let upgraded = inherited.is_some();
    // An image started by an in-place upgrade inherits its predecessor's confinement (no
    // capabilities, seccomp, Landlock): a crash monitor started now could neither ptrace us nor
    // write dumps, and we would wait for it in vain while execs queue for us.
    let crash_monitor = if !args.crash_monitor {
        None
    } else if upgraded {
        tracing::info!("upgraded in place: no crash monitor until the next fresh start");
        None
    } else {
        match crash::start_crash_monitor(data_dir) {
            Ok(monitor) => Some(monitor),
            Err(error) => {
                // Crash capture is evidence, not protection: run without it rather than not at all.
                tracing::warn!("running without minidump capture: {error}");
                None
            }
        }
    };
    let alerts_path = data_dir.join("alerts.jsonl");
    config.alerts = Some(alerts_path.clone());
    config.mute = config.mute.clone().with_path(data_dir.to_owned());
    allow_realtime_responder();
    // After the crash monitor started (it must stay free to ptrace us), before any thread.
    let view = crate::confine::view(Some(data_dir), None, upgrade.binary());
    let (channels, hardening) = crate::confine::confine(args.harden, &mut config, inherited, view)?;
    if let Some(after) = args.crash_after {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            tracing::error!("aborting on purpose (--crash-after)");
            std::process::abort();
        });
    }
    let spool = Arc::new(Spool::open(&data_dir.join("spool"), 64 << 20)?);
    let slots = SlotStore::open(data_dir.join("slots"))?;
    let keys = trusted_keys(&identity)?;
    let runtime = crate::confine::landlocked(hardening.as_ref(), "wasm runtime", Runtime::new)??;
    // Releases already installed, the next start and the next image of an in-place upgrade
    // load their compiled engines from here instead of compiling them again.
    let runtime = crate::with_engine_cache(runtime, data_dir, args.engine_cache_mib);

    // Start on what the slots say; the guard asks for the last known good after a crash loop.
    let mut engines = BTreeMap::new();
    for channel in slots.channels()? {
        if args.slot == Slot::Lkg {
            match slots.restore_lkg(&channel) {
                Ok(_) => {
                    tracing::warn!(%channel, "started on the last known good release at the guard's request");
                    let restore = ReportBody::Restore(RestoreReport {
                        channel: channel.clone(),
                        reason: "guard asked for the last known good slot".to_owned(),
                    });
                    if let Err(error) = spool.push(&report(restore)) {
                        tracing::warn!(%channel, "could not spool the restore report: {error}");
                    }
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

    // The compile of each channel's engine is over; its scratch memory goes back.
    ringfence_sys::process::release_free_heap();
    let host = Arc::new(
        ManagedHost::new(runtime, engines.clone(), started, Arc::clone(&spool))
            .saving_audited_channels(data_dir),
    );
    // Until the first heartbeat answer, the channels the server audited before the restart:
    // an audited release must not be enforced for that second. A damaged list audits every
    // engine until then.
    config.audited_engines = match agent_host::saved_audited_channels(data_dir) {
        Some(channels) => agent_host::audited_engines(&engines, &channels),
        None => engines.values().map(|e| e.name().to_owned()).collect(),
    };
    // Engine failures reach the spool as values; the agent holds the sending end while it runs.
    let (failure_tx, failure_rx) = ringfence_agent::failure_channel(FAILURE_QUEUE);
    config.failures = Some(failure_tx);
    let agent = Arc::new(Agent::start_with(
        config,
        engines.into_values().collect(),
        channels,
    )?);
    crate::report_visibility(&agent);
    let _ = host.agent.set(Arc::clone(&agent));

    let stop = Arc::new(AtomicBool::new(false));
    // Set only once the agent stopped or handed off: the failure shipper drains what is left.
    let failures_stop = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(ReportBudget::new(budget::REPORTS_PER_SECOND));
    let link_config = LinkConfig {
        bless_after: args.bless_after,
        interval: Duration::from_secs(1),
        identity_path: Some(data_dir.join("identity.json")),
        health_path: Some(data_dir.join(HEALTH_FILE)),
        ..LinkConfig::default()
    };
    // The network-facing threads write nothing but the data directory: Landlock holds them to it.
    let (shipper, failure_shipper, link) =
        crate::confine::landlocked(hardening.as_ref(), "uplink", || {
            let shipper = alerts::ship_alerts(
                alerts_path,
                Arc::clone(&spool),
                Arc::clone(&budget),
                Arc::clone(&stop),
            );
            let failure_shipper = failures::ship_failures(
                failure_rx,
                Arc::clone(&spool),
                Arc::clone(&budget),
                Arc::clone(&failures_stop),
            );
            let link = Link::start(
                &identity,
                Arc::clone(&spool),
                slots,
                Arc::clone(&host),
                link_config,
            );
            (shipper, failure_shipper, link)
        })?;
    let link = link?;
    let sent = Arc::new(AtomicU64::new(0));
    let unanswered = Arc::new(AtomicU64::new(0));
    let traffic_thread = match &args.traffic {
        Some(path) => Some(traffic::traffic(
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
        "ringfence agent: ready, managed by {server} as {}, mode {}{}",
        identity.agent_id,
        agent.enforcement(),
        if upgraded { ", upgraded in place" } else { "" }
    );
    // The uplink and the alert shipper run on threads of their own; this thread only waits.
    let ending = crate::serve(
        Some(upgrade),
        guard.as_ref(),
        Duration::from_millis(200),
        || ControlFlow::Continue(()),
    );

    stop.store(true, Ordering::Relaxed);
    if let Some(thread) = traffic_thread {
        let _ = thread.join();
    }
    let _ = shipper.join();
    link.stop();
    if let Ending::Upgrade(prepared) = ending {
        // The link and its host were the other owners of the agent; both are gone now.
        drop(host);
        let agent = Arc::try_unwrap(agent).map_err(|_| ManagedError::StillShared)?;
        // The next image starts its own monitor; this one would linger as a zombie.
        drop(crash_monitor);
        // The failures of the events decided during the handoff are spooled before the exec.
        let (channels, error) = upgrade.handoff_and_exec(agent, &prepared, || {
            failures_stop.store(true, Ordering::Relaxed);
            let _ = failure_shipper.join();
        });
        // Closing the group lets the kernel allow what waits; the guard starts a fresh agent.
        drop(channels);
        return Err(ManagedError::Upgrade(error));
    }
    let mode = agent.enforcement();
    let final_stats = match Arc::try_unwrap(agent) {
        Ok(agent) => agent.shutdown(),
        Err(agent) => agent.stats(),
    };
    // After the agent stopped: the failures of its last events are spooled too.
    failures_stop.store(true, Ordering::Relaxed);
    let _ = failure_shipper.join();
    eprintln!(
        "ringfence agent: stopped (mode {mode}): {} allowed, {} denied, {} would deny",
        final_stats.allowed, final_stats.denied, final_stats.would_deny
    );
    if let Some(path) = &args.stats_out {
        write_stats(
            path,
            &final_stats,
            sent.load(Ordering::Relaxed),
            unanswered.load(Ordering::Relaxed),
        )?;
    }
    Ok(())
}

/// Lets the agent's deadline responder take the lowest real-time priority after hardening has
/// dropped `CAP_SYS_NICE`: a limit of 1 allows exactly that and nothing above. Without it the
/// responder runs as a normal thread and logs so.
fn allow_realtime_responder() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let raised = getrlimit(Resource::RLIMIT_RTPRIO)
        .and_then(|(soft, hard)| setrlimit(Resource::RLIMIT_RTPRIO, soft.max(1), hard.max(1)));
    if let Err(error) = raised {
        tracing::warn!(%error, "could not allow real-time priority 1 (RLIMIT_RTPRIO)");
    }
}

fn write_stats(
    path: &Path,
    stats: &ringfence_agent::StatsSnapshot,
    sent: u64,
    unanswered: u64,
) -> Result<(), ManagedError> {
    let value = serde_json::json!({
        "traffic_sent": sent,
        "traffic_unanswered": unanswered,
        "events": stats.events,
        "allowed": stats.allowed,
        "denied": stats.denied,
        "would_deny": stats.would_deny,
        "engine_failures": stats.engine_failures,
        "deadline_answers": stats.deadline_answers,
    });
    std::fs::write(path, value.to_string())
        .map_err(|e| HostError::io(format!("write {}", path.display()), e).into())
}
