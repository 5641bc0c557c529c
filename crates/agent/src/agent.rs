//! Starting and stopping an agent: opens the sensors, starts the threads, and on shutdown
//! stops reading, unmarks, and answers every pending permission event before returning.

use crate::alerts::AlertSink;
use crate::bpf::{ArgvBook, Visibility};
use crate::cache::DecisionCache;
use crate::config::{AgentConfig, AgentError, Sensor};
use crate::engines::{self as engine_set, ServingSet, SwapError};
use crate::enrich::AccountNames;
use crate::latency::{LatencyRecorder, LatencySummary};
use crate::mode::ModeSwitch;
use crate::protect::SelfProtection;
use crate::recent::RecentEvents;
use crate::shared::{Core, Pending, Submitted};
use crate::stats::{Stats, StatsSnapshot};
use crate::watch::WatchQueue;
use crate::worker::Engines;
use crate::{confine, notify, responder, sensors, worker};
use ringfence_engine_host::LoadedEngine;
use ringfence_protocol::{Enforcement, Event};
use ringfence_sensor::{Channels, EntryWatch, Fanotify, KernelCache, ProcConnector, Ticket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running agent. Dropping it shuts it down.
#[derive(Debug)]
pub struct Agent {
    core: Arc<Core>,
    fanotify_reader: Option<JoinHandle<Option<Fanotify>>>,
    proc_reader: Option<JoinHandle<Option<ProcConnector>>>,
    entry_reader: Option<JoinHandle<Option<EntryWatch>>>,
    sensors: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    responder: Option<JoinHandle<()>>,
    /// Hears lease breaks of the kernel exec cache.
    kernel_cache: Option<JoinHandle<()>>,
    notifier: Option<JoinHandle<()>>,
    replay_done: Arc<AtomicBool>,
    has_replay: bool,
    audit: bool,
    workers_started: usize,
    visibility: Option<Visibility>,
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, AgentError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(AgentError::Thread)
}

impl Agent {
    /// Opens every sensor, builds the engine workers, and starts answering.
    ///
    /// Sensors are opened first so that a missing privilege or mount fails here, before any
    /// thread runs.
    pub fn start(
        config: AgentConfig,
        engines: Vec<Arc<LoadedEngine>>,
    ) -> Result<Agent, AgentError> {
        Agent::start_with(config, engines, Channels::default())
    }

    /// Like [`Agent::start`], but takes over live channels handed from a previous image of
    /// the agent (self-upgrade, see [`ringfence_sensor::handoff`]) instead of opening new ones;
    /// a sensor with no channel handed over is opened as usual.
    pub fn start_with(
        config: AgentConfig,
        engines: Vec<Arc<LoadedEngine>>,
        mut inherited: Channels,
    ) -> Result<Agent, AgentError> {
        if config.workers == 0 || config.queue_capacity == 0 {
            return Err(AgentError::Config(
                "workers and queue capacity must be at least 1".into(),
            ));
        }
        let alerts = if config.discard_alerts {
            AlertSink::Discard
        } else {
            match &config.alerts {
                Some(path) => AlertSink::file(path).map_err(|source| AgentError::Alerts {
                    path: path.clone(),
                    source,
                })?,
                None => AlertSink::Stdout,
            }
        };
        let mut mute = config.mute.clone();
        if let Some(path) = &config.alerts {
            mute = mute.with_path(path.clone());
        }
        let mut fanotify = None;
        let mut connector = None;
        let mut replays = Vec::new();
        let mut bpf = None;
        for sensor in &config.sensors {
            match sensor {
                Sensor::Fanotify => {
                    fanotify = Some(match inherited.fanotify.take() {
                        Some(fan) => fan,
                        None => Fanotify::open(&config.fanotify)?,
                    });
                }
                Sensor::Proc => {
                    connector = Some(match inherited.proc.take() {
                        Some(connector) => connector,
                        None => ProcConnector::open()?,
                    });
                }
                Sensor::Replay(events) => replays.push(events.clone()),
                Sensor::Bpf(bpf_config) => {
                    bpf = Some(match inherited.bpf.take() {
                        Some(loaded) => loaded,
                        None => ringfence_bpf_sensor::BpfSensor::load(bpf_config),
                    });
                }
            }
        }
        let (bpf, visibility) = match bpf {
            None => (None, None),
            Some(Ok(sensor)) => {
                let visibility = Visibility::of_hooks(sensor.hooks());
                (Some(sensor), Some(visibility))
            }
            Some(Err(error)) => (
                None,
                Some(Visibility::Reduced {
                    reason: error.to_string(),
                }),
            ),
        };
        match &visibility {
            Some(Visibility::Reduced { reason }) => {
                tracing::warn!(%reason, "reduced visibility: serving on fanotify and the process connector");
            }
            Some(Visibility::Full { attached, .. }) => {
                tracing::info!(hooks = attached.len(), "BPF sensor attached");
            }
            None => {}
        }
        let mut protection = None;
        let mut entries = None;
        if let Some(fan) = &mut fanotify {
            // Left by a previous image for its own exec (self-upgrade); execs of those files
            // are asked about again from here on.
            fan.clear_ignores();
            if !config.protect.is_empty() {
                let protect = SelfProtection::new(&config.protect);
                fan.watch_open(protect.paths())?;
                tracing::info!(paths = ?protect.paths(), "self-protection marks placed");
                entries = entry_watch(&protect, inherited.entries.take());
                protection = Some(protect);
            }
        } else if !config.protect.is_empty() {
            tracing::warn!(
                "self-protection needs the fanotify sensor; the agent's files are not protected"
            );
        }
        // One set of pre-built workers per worker thread plus the notification thread (index
        // `workers`).
        let slot = ServingSet::audited(engines, config.workers + 1, config.audited_engines.clone());
        // Build every worker's engines before the first event: a worker that cannot
        // instantiate must fail the start, not the first exec.
        let mut worker_engines = Vec::new();
        for index in 0..config.workers {
            worker_engines.push(Engines::build(slot.current(), index)?);
        }
        let notify_engines = Engines::build(slot.current(), config.workers)?;
        let (queue_tx, queue_rx) = mpsc::sync_channel(config.queue_capacity);
        let (notify_tx, notify_rx) = mpsc::sync_channel(16_384);
        // With the BPF sensor exec verdicts may turn on argv, which the kernel cannot see.
        let kcache = match &fanotify {
            Some(fan) if config.cache && config.kernel_cache > 0 && bpf.is_none() => {
                let devices = config
                    .kernel_cache_filesystems
                    .iter()
                    .map(|path| {
                        std::fs::metadata(path)
                            .map(|meta| std::os::unix::fs::MetadataExt::dev(&meta))
                            .map_err(|_| ringfence_sensor::SensorError::NoSuchPath(path.clone()))
                    })
                    .collect::<Result<Vec<u64>, _>>()?;
                Some(fan.kernel_cache(config.kernel_cache, slot.current().generation, devices))
            }
            _ => None,
        };
        let core = Arc::new(Core {
            engines: slot,
            cache: config.cache.then(DecisionCache::default),
            kcache,
            mute,
            protection,
            stats: Stats::default(),
            latency: LatencyRecorder::default(),
            recent: RecentEvents::default(),
            alerts,
            perm_deadline: config.perm_deadline,
            mode: ModeSwitch::new(config.enforcement),
            stopping: AtomicBool::new(false),
            handing_off: AtomicBool::new(false),
            wake: match ringfence_sys::fd::Wake::new() {
                Ok(wake) => Some(Arc::new(wake)),
                Err(error) => {
                    tracing::warn!(%error, "no eventfd to wake the readers; a stop waits out their poll");
                    None
                }
            },
            queue: Mutex::new(Some(queue_tx)),
            jobs: Mutex::new(queue_rx),
            watches: WatchQueue::new(),
            notify: Mutex::new(Some(notify_tx)),
            argv: bpf.as_ref().map(|_| ArgvBook::default()),
            names: AccountNames::default(),
            failures: config.failures.clone(),
        });
        let audit = fanotify.as_ref().is_some_and(Fanotify::audit_enabled);
        let mut agent = Agent {
            core: Arc::clone(&core),
            fanotify_reader: None,
            proc_reader: None,
            entry_reader: None,
            sensors: Vec::new(),
            workers: Vec::new(),
            responder: None,
            kernel_cache: None,
            notifier: None,
            replay_done: Arc::new(AtomicBool::new(replays.is_empty())),
            has_replay: !replays.is_empty(),
            audit,
            workers_started: 0,
            visibility,
        };
        let c = Arc::clone(&core);
        let budget = config.realtime_budget;
        agent.responder = Some(spawn("rf-responder", move || responder::run(&c, budget))?);
        // Engine threads confine themselves before their first guest call; the sensors start
        // only once all of them have.
        let mut confined = confine::Gate::new(config.engine_threads.clone());
        for (i, engines) in worker_engines.into_iter().enumerate() {
            let c = Arc::clone(&core);
            let entry = confined.entry();
            agent
                .workers
                .push(spawn(&format!("rf-worker-{i}"), move || {
                    entry.enter();
                    worker::run(&c, engines)
                })?);
        }
        let notified = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&core);
        let n = Arc::clone(&notified);
        let entry = confined.entry();
        agent.notifier = Some(spawn("rf-notify", move || {
            entry.enter();
            notify::run(&c, notify_engines, &notify_rx, &n);
        })?);
        confined.wait()?;
        if core.kcache.is_some() {
            let c = Arc::clone(&core);
            let (ready, started) = mpsc::channel();
            agent.kernel_cache = Some(spawn("rf-kcache", move || {
                kernel_cache(&c, move || {
                    let _ = ready.send(());
                });
            })?);
            // Before the first event: an allow decided before the thread listens for lease
            // breaks could not be kernel-cached.
            let _ = started.recv_timeout(Duration::from_secs(1));
        }
        if let Some(mut fan) = fanotify {
            if let Some(wake) = &core.wake {
                fan.wake_on(Arc::clone(wake));
            }
            let c = Arc::clone(&core);
            agent.fanotify_reader = Some(spawn("rf-fanotify", move || sensors::fanotify(&c, fan))?);
        }
        if let (Some(mut watch), Some(protection)) = (entries, core.protection.clone()) {
            if let Some(wake) = &core.wake {
                watch.wake_on(Arc::clone(wake));
            }
            let c = Arc::clone(&core);
            agent.entry_reader = Some(spawn("rf-entries", move || {
                sensors::entry_watch(&c, &protection, watch)
            })?);
        }
        if let Some(mut connector) = connector {
            if let Some(wake) = &core.wake {
                connector.wake_on(Arc::clone(wake));
            }
            let c = Arc::clone(&core);
            agent.proc_reader = Some(spawn("rf-proc", move || {
                sensors::proc_connector(&c, connector)
            })?);
        }
        if let Some(sensor) = bpf {
            let c = Arc::clone(&core);
            agent
                .sensors
                .push(spawn("rf-bpf", move || crate::bpf::run(&c, sensor))?);
        }
        if !replays.is_empty() {
            let c = Arc::clone(&core);
            let done = Arc::clone(&agent.replay_done);
            agent.sensors.push(spawn("rf-replay", move || {
                for events in replays {
                    sensors::replay(&c, events, &notified);
                }
                done.store(true, Ordering::Release);
            })?);
        }
        agent.workers_started = config.workers;
        tracing::info!(audit, mode = %config.enforcement, "agent started");
        Ok(agent)
    }

    /// What the BPF sensor sees: `None` when it was not asked for, reduced when it was
    /// refused or is partly missing (the agent then serves on its other sensors).
    pub fn visibility(&self) -> Option<&Visibility> {
        self.visibility.as_ref()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.core.stats.snapshot()
    }

    /// Verdict latency of the permission events answered since the previous call (from the
    /// event's arrival to its answer, whoever gave it), and a fresh interval from now. Meant
    /// for one caller: the health figures of a heartbeat.
    pub fn take_latency(&self) -> LatencySummary {
        self.core.latency.take()
    }

    /// Engines of the serving set that are quarantined now: their failure policy answers for
    /// them, so their protection is off.
    pub fn quarantined(&self) -> Vec<String> {
        self.core
            .engines
            .current()
            .engines
            .iter()
            .filter(|engine| engine.is_quarantined())
            .map(|engine| engine.name().to_owned())
            .collect()
    }

    /// Enforce or audit, now.
    pub fn enforcement(&self) -> Enforcement {
        self.core.mode.get()
    }

    /// Switches between enforcing and auditing without a restart: the next answer uses the
    /// new mode (events being decided right now may still use the old one). Returns the
    /// previous mode. The decision cache holds verdicts, not answers, so it stays valid.
    pub fn set_enforcement(&self, mode: Enforcement) -> Enforcement {
        let previous = self.core.mode.set(mode);
        if previous != mode {
            tracing::warn!(from = %previous, to = %mode, "enforcement mode switched");
        }
        previous
    }

    /// Audits the verdicts of the engines named `names` (a channel in an audit rollout), and
    /// enforces every other engine's: a deny of an audited engine alone is answered allow and
    /// reported as a would-deny. Applies to the serving set at once (installed again, as a new
    /// generation, without validation: its engines already serve) and to every later swap.
    /// Returns the generation serving afterwards. Engines are told apart by name.
    pub fn set_audited_engines(
        &self,
        names: std::collections::BTreeSet<String>,
    ) -> Result<u64, SwapError> {
        if !self.core.engines.set_audited(names) {
            return Ok(self.generation());
        }
        let engines = self.core.engines.current().engines.clone();
        let handoffs = engine_set::prebuild(&engines, self.core.engines.threads())?;
        let generation = self.install(engines, handoffs);
        tracing::warn!(generation, "audited engines changed");
        Ok(generation)
    }

    /// Names of the serving engines whose verdicts are audited.
    pub fn audited_engines(&self) -> Vec<String> {
        let set = self.core.engines.current();
        set.engines
            .iter()
            .enumerate()
            .filter(|(index, _)| set.is_audited(*index))
            .map(|(_, engine)| engine.name().to_owned())
            .collect()
    }

    /// True when denials go to the Linux audit log too (`FAN_AUDIT`; not audit *mode*).
    pub fn audit_enabled(&self) -> bool {
        self.audit
    }

    /// The engine-set generation now serving.
    pub fn generation(&self) -> u64 {
        self.core.engines.current().generation
    }

    /// Replaces every engine at once; new events go to the new set, events already being
    /// decided finish on the old one. Invalidates the decision cache. Returns the generation.
    ///
    /// Each thread's engine instances are built here, on the caller's thread, and handed over
    /// with the switch, so no event waits for an instantiation. If they cannot be built the
    /// previous set keeps serving, the refusal is logged and counted, and the returned
    /// generation is the unchanged current one; use [`Agent::swap_engines_checked`] to see why.
    pub fn swap_engines(&self, engines: Vec<Arc<LoadedEngine>>) -> u64 {
        match self.swap_engines_checked(engines, &[]) {
            Ok(generation) => generation,
            Err(error) => {
                tracing::error!(%error, "engine swap refused; the previous engines keep serving");
                self.generation()
            }
        }
    }

    /// Like [`Agent::swap_engines`], but first runs every engine that is not serving already
    /// over `sample` (typically [`Agent::recent_events`]) on this thread; if any call fails (trap, deadline, memory,
    /// quarantine) or an engine cannot be instantiated, the previous set keeps serving and the
    /// error says which engine failed how. Refusals are counted in `swaps_refused`.
    pub fn swap_engines_checked(
        &self,
        engines: Vec<Arc<LoadedEngine>>,
        sample: &[Event],
    ) -> Result<u64, SwapError> {
        // Engines already serving have proven themselves on this traffic (and a quarantined
        // one would refuse every swap): only the new ones are tried.
        let serving = self.core.engines.current();
        let new: Vec<Arc<LoadedEngine>> = engines
            .iter()
            .filter(|engine| !serving.engines.iter().any(|e| Arc::ptr_eq(e, engine)))
            .cloned()
            .collect();
        drop(serving);
        let prepared = engine_set::validate(&new, sample)
            .and_then(|()| engine_set::prebuild(&engines, self.core.engines.threads()));
        let handoffs = match prepared {
            Ok(handoffs) => handoffs,
            Err(error) => {
                Stats::add(&self.core.stats.swaps_refused);
                return Err(error);
            }
        };
        let generation = self.install(engines, handoffs);
        Stats::add(&self.core.stats.swaps);
        tracing::info!(generation, "engine set swapped");
        Ok(generation)
    }

    /// Makes `engines` the serving set. Every kernel exec cache entry goes first, and none is
    /// placed until the new set serves: the kernel must never answer with the old set's
    /// verdict once the new one could answer differently.
    fn install(
        &self,
        engines: Vec<Arc<LoadedEngine>>,
        handoffs: Vec<Vec<ringfence_engine_host::EngineWorker>>,
    ) -> u64 {
        if let Some(kcache) = &self.core.kcache {
            let cleared = kcache.suspend();
            self.core
                .stats
                .kernel_cache_cleared
                .fetch_add(cleared as u64, Ordering::Relaxed);
        }
        let generation = self.core.engines.install(engines, handoffs);
        if let Some(cache) = &self.core.cache {
            cache.clear();
        }
        if let Some(kcache) = &self.core.kcache {
            kcache.resume(generation);
        }
        generation
    }

    /// Files whose allowed execs the kernel answers now (kernel exec cache entries).
    pub fn kernel_cached(&self) -> usize {
        self.core.kcache.as_ref().map_or(0, KernelCache::len)
    }

    /// The last permission events decided (at most [`crate::RECENT_EVENTS`]), oldest first:
    /// the sample for [`Agent::swap_engines_checked`].
    pub fn recent_events(&self) -> Vec<Event> {
        self.core.recent.snapshot()
    }

    /// Waits until every permission worker has switched to `generation` (or newer): true, or
    /// false after `timeout`. Workers switch before their next event, so this needs traffic
    /// (or up to the idle poll per worker).
    pub fn wait_serving(&self, generation: u64, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if self
                .core
                .engines
                .all_serving(self.workers_started, generation)
            {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Submits a permission event as if a sensor had read it (tests, embedders); never
    /// blocks: a full queue answers by policy.
    pub fn submit(&self, event: Event, ticket: Arc<Ticket>) -> Submitted {
        Stats::add(&self.core.stats.events);
        self.core
            .submit(ticket, Pending::Ready(event), None, Instant::now())
    }

    /// Submits a notification event.
    pub fn notify(&self, event: Event) {
        Stats::add(&self.core.stats.events);
        self.core.notify(event);
    }

    /// Number of cached decisions.
    pub fn cached(&self) -> usize {
        self.core.cache.as_ref().map_or(0, DecisionCache::len)
    }

    /// Waits until every replay sensor has finished (true) or `timeout` passed (false).
    pub fn wait_replay(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while !self.replay_done.load(Ordering::Acquire) {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// True when this agent replays a corpus (and so has an end).
    pub fn has_replay(&self) -> bool {
        self.has_replay
    }

    /// Stops reading, unmarks, answers every pending permission event by policy, joins every
    /// thread, and returns the final counters.
    pub fn shutdown(mut self) -> StatsSnapshot {
        self.stop();
        self.core.stats.snapshot()
    }

    /// Stops for a self-upgrade and returns the live channels for the next image: the readers
    /// stop without unmarking, every event already read is decided by the engines (not by
    /// policy) and answered, and every thread is joined. Events the kernel queues from now on
    /// wait for whoever adopts the channels; if nobody does, dropping them closes the group and
    /// the kernel allows those events.
    pub fn handoff(mut self) -> (Channels, StatsSnapshot) {
        self.core.handing_off.store(true, Ordering::Release);
        self.core.wake_readers();
        let channels = Channels {
            fanotify: self
                .fanotify_reader
                .take()
                .and_then(|h| h.join().ok().flatten()),
            proc: self
                .proc_reader
                .take()
                .and_then(|h| h.join().ok().flatten()),
            entries: self
                .entry_reader
                .take()
                .and_then(|h| h.join().ok().flatten()),
            // The next image loads its own (see `Channels::bpf`).
            bpf: None,
        };
        // Every kernel exec cache entry is gone once it ends: the next image may run other
        // engines, and it does not know these marks.
        if let Some(handle) = self.kernel_cache.take() {
            let _ = handle.join();
        }
        for handle in self.sensors.drain(..) {
            let _ = handle.join();
        }
        // Workers still decide with the engines: `stopping` is not set until they are done.
        self.drain_workers();
        self.stop();
        (channels, self.core.stats.snapshot())
    }

    fn drain_workers(&mut self) {
        // Closing the queue lets workers drain and exit.
        if let Ok(mut queue) = self.core.queue.lock() {
            queue.take();
        }
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }

    fn stop(&mut self) {
        self.core.stopping.store(true, Ordering::Release);
        self.core.wake_readers();
        // Sensors first: they stop reading, unmark and answer what the kernel still queued.
        if let Some(handle) = self.fanotify_reader.take() {
            let _ = handle.join();
        }
        if let Some(handle) = self.proc_reader.take() {
            let _ = handle.join();
        }
        if let Some(handle) = self.entry_reader.take() {
            let _ = handle.join();
        }
        if let Some(handle) = self.kernel_cache.take() {
            let _ = handle.join();
        }
        for handle in self.sensors.drain(..) {
            let _ = handle.join();
        }
        // Workers answer what is still queued by policy.
        self.drain_workers();
        self.core.watches.close();
        if let Some(handle) = self.responder.take() {
            let _ = handle.join();
        }
        if let Ok(mut notify) = self.core.notify.lock() {
            notify.take();
        }
        if let Some(handle) = self.notifier.take() {
            let _ = handle.join();
        }
        tracing::info!(stats = ?self.core.stats.snapshot(), "agent stopped");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.responder.is_some() {
            self.stop();
        }
    }
}

/// The kernel exec cache's lease thread: hears every break of a lease (a writer opening a
/// kernel-cached file) and removes that file's entry before the writer may go on; at stop or
/// handoff it removes every entry.
fn kernel_cache(core: &Core, ready: impl FnOnce()) {
    let Some(kcache) = &core.kcache else {
        ready();
        return;
    };
    let stats = &core.stats;
    let cleared = kcache.serve_breaks(
        || !core.sensors_stop(),
        ready,
        |removed| {
            stats
                .kernel_cache_invalidated
                .fetch_add(removed.broken, Ordering::Relaxed);
            stats
                .kernel_cache_unlinked
                .fetch_add(removed.unlinked, Ordering::Relaxed);
        },
    );
    stats
        .kernel_cache_cleared
        .fetch_add(cleared as u64, Ordering::Relaxed);
}

/// The entry watch of a protected agent: the one handed over, or a new one. Without it the
/// agent still runs (its files are still protected from writes), but renames and deletions
/// of them go unseen, so that is logged loudly.
fn entry_watch(protection: &SelfProtection, inherited: Option<EntryWatch>) -> Option<EntryWatch> {
    let mut watch = match inherited.map_or_else(EntryWatch::open, Ok) {
        Ok(watch) => watch,
        Err(error) => {
            tracing::error!(
                %error,
                "renames and deletions of the agent's files will go unseen"
            );
            return None;
        }
    };
    protection.watch_entries(&mut watch);
    Some(watch)
}
