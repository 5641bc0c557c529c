//! State shared by every agent thread, and the two ways a permission event enters the pipeline.

use crate::alerts::{Alert, AlertSink, EngineVerdict, Reason};
use crate::bpf::{ARGV_WAIT, ArgvBook};
use crate::cache::{CacheKey, DecisionCache};
use crate::engines::ServingSet;
use crate::enrich::AccountNames;
use crate::failures::FailureSender;
use crate::latency::LatencyRecorder;
use crate::mode::ModeSwitch;
use crate::mute::MuteSet;
use crate::protect::SelfProtection;
use crate::recent::RecentEvents;
use crate::stats::Stats;
use crate::watch::WatchQueue;
use ringfence_engine_host::QuarantineReport;
use ringfence_protocol::{Action, Event, FailureRecord, Severity, Verdict};
use ringfence_sensor::kcache::Placement;
use ringfence_sensor::{FileId, KernelCache, Ticket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A permission event not yet resolved from /proc (live) or already complete (replay).
#[derive(Debug, Clone)]
pub enum Pending {
    Exec { pid: u32, path: String },
    Open { pid: u32, path: String },
    Ready(Event),
}

impl Pending {
    /// The event engines see; an exec gets the argv the BPF sensor saw for it, when there is
    /// one (`argv`) and it comes in time (counted either way).
    pub fn resolve(
        self,
        argv: Option<&ArgvBook>,
        names: &AccountNames,
        stats: &Stats,
        arrived: Instant,
    ) -> Event {
        match self {
            Pending::Exec { pid, path } => {
                let mut event = ringfence_sensor::resolve_exec(pid, &path);
                if let Event::Exec(exec) = &mut event {
                    (exec.user, exec.group) = names.user_group(exec.uid, exec.gid);
                    // The kernel waits on this one: the parent only (ParentCommandLine).
                    exec.ancestors = crate::enrich::ancestry("/proc", exec.ppid, 1);
                }
                if let (Some(book), Event::Exec(exec)) = (argv, &mut event) {
                    match book.argv(pid, &exec.exe, arrived, ARGV_WAIT) {
                        Some(seen) => {
                            exec.argv = seen;
                            Stats::add(&stats.bpf_argv_matched);
                        }
                        None => Stats::add(&stats.bpf_argv_missed),
                    }
                }
                event
            }
            Pending::Open { pid, path } => ringfence_sensor::resolve_open(pid, &path),
            Pending::Ready(event) => event,
        }
    }

    /// A cheap event for alerts written by the responder (no /proc reads on its thread).
    pub fn summary(&self) -> Event {
        use ringfence_protocol::{ExecEvent, OpenEvent};
        match self {
            Pending::Exec { pid, path } => Event::Exec(ExecEvent {
                pid: *pid,
                ppid: 0,
                uid: 0,
                gid: 0,
                exe: path.clone(),
                argv: Vec::new(),
                cwd: String::new(),
                parent_exe: String::new(),
                user: String::new(),
                group: String::new(),
                ancestors: Vec::new(),
            }),
            Pending::Open { pid, path } => Event::Open(OpenEvent {
                pid: *pid,
                uid: 0,
                gid: 0,
                path: path.clone(),
                exe: String::new(),
                write: false,
            }),
            Pending::Ready(event) => event.clone(),
        }
    }
}

/// One permission event in the queue.
#[derive(Debug)]
pub struct Job {
    pub ticket: Arc<Ticket>,
    pub pending: Pending,
    pub key: Option<CacheKey>,
    /// When the agent read the event: verdict latency is measured from here.
    pub arrived: Instant,
    pub deadline: Instant,
}

/// What the deadline responder watches.
#[derive(Debug)]
pub struct Watch {
    pub ticket: Arc<Ticket>,
    pub pending: Pending,
    pub arrived: Instant,
    pub deadline: Instant,
}

/// Everything the threads share.
#[derive(Debug)]
pub struct Core {
    pub engines: ServingSet,
    pub cache: Option<DecisionCache>,
    /// Files whose allowed execs the kernel answers itself; `None` when off (see
    /// [`AgentConfig::kernel_cache`](crate::AgentConfig::kernel_cache)).
    pub kcache: Option<KernelCache>,
    pub mute: MuteSet,
    pub protection: Option<SelfProtection>,
    pub stats: Stats,
    /// Verdict latency of every answered permission event, for the health figures.
    pub latency: LatencyRecorder,
    /// Recent permission events, the sample a validated swap tries the new engines on.
    pub recent: RecentEvents,
    pub alerts: AlertSink,
    pub perm_deadline: Duration,
    /// Enforce or audit; read once per answer.
    pub mode: ModeSwitch,
    pub stopping: AtomicBool,
    /// Set for a self-upgrade: readers stop and give their channels back, unmarking nothing.
    pub handing_off: AtomicBool,
    /// Ends the kernel readers' waits at once when `stopping` or `handing_off` is set: every
    /// exec waits while an in-place upgrade hands over, so a reader must not sleep out its
    /// poll first. `None` when no eventfd could be made; the readers then notice within
    /// their poll timeout, as before.
    pub wake: Option<Arc<ringfence_sys::fd::Wake>>,
    pub queue: Mutex<Option<SyncSender<Job>>>,
    pub jobs: Mutex<Receiver<Job>>,
    /// Watches for the deadline responder.
    pub watches: WatchQueue,
    pub notify: Mutex<Option<SyncSender<Event>>>,
    /// Argv of recent execs from the BPF sensor; `None` without it.
    pub argv: Option<ArgvBook>,
    /// User and group names for exec events.
    pub names: AccountNames,
    /// Where every engine failure goes as a value (the managed agent's spool), besides the
    /// alert that mentions it.
    pub failures: Option<FailureSender>,
}

/// How a submission went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Queued for a worker, watched by the deadline responder.
    Queued,
    /// The queue was full (or closed): answered by policy already.
    AnsweredByPolicy,
}

impl Core {
    /// Lets the kernel answer later execs of the file of `ticket` (an exec just allowed from
    /// the cache, by every engine of generation `generation`, which judge by content alone),
    /// and counts what came of it. Called by the fanotify reader only.
    pub fn kernel_cache(&self, ticket: &Ticket, file: FileId, generation: u64) {
        let (Some(kcache), Some(fd)) = (&self.kcache, ticket.file()) else {
            return;
        };
        let (placement, evicted) = kcache.place(fd, file, generation);
        match placement {
            Placement::Placed => Stats::add(&self.stats.kernel_cache_placed),
            Placement::Refused(why) => {
                Stats::add(&self.stats.kernel_cache_refused);
                tracing::debug!(?why, "exec verdict not kernel-cached");
            }
            Placement::Present | Placement::Stale => {}
        }
        if evicted {
            Stats::add(&self.stats.kernel_cache_evicted);
        }
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// True when sensors must stop reading: shutting down or handing off.
    pub fn sensors_stop(&self) -> bool {
        self.stopping() || self.handing_off.load(Ordering::Acquire)
    }

    /// Ends the readers' current waits (and the kernel exec cache's lease thread's); call
    /// after setting `stopping` or `handing_off`.
    pub fn wake_readers(&self) {
        if let Some(wake) = &self.wake {
            wake.wake();
        }
        if let Some(kcache) = &self.kcache {
            kcache.wake();
        }
    }

    pub fn handing_off(&self) -> bool {
        self.handing_off.load(Ordering::Acquire)
    }

    /// Answers by the current engine set's failure policy, counts it and alerts.
    pub fn answer_by_policy(
        &self,
        ticket: &Ticket,
        pending: &Pending,
        reason: Reason,
        arrived: Instant,
    ) -> bool {
        // Not `engines.current()`: holding the set here could make this (real-time) thread
        // the one that drops a retired set.
        let fallback = self.engines.fallback();
        let carried = self
            .mode
            .carry(fallback.allows)
            .or_audited(fallback.would_deny);
        if !ticket.respond(carried.allow) {
            return false;
        }
        let counter = match reason {
            Reason::Deadline => &self.stats.deadline_answers,
            Reason::QueueFull => &self.stats.queue_full,
            _ => &self.stats.shutdown_answers,
        };
        Stats::add(counter);
        self.answered(carried.allow, arrived);
        if carried.would_deny {
            Stats::add(&self.stats.would_deny);
        }
        let why = match reason {
            Reason::Deadline => "no verdict within the permission deadline",
            Reason::QueueFull => "the decision queue was full",
            _ => "the agent was stopping",
        };
        // A would-deny of an audited fail-closed engine says so, as a deny allowed.
        let policy = if carried.would_deny {
            ringfence_protocol::FailurePolicy::FailClosed
        } else {
            fallback.policy()
        };
        let verdict = policy.verdict("ringfence", why);
        self.alert(&Alert {
            event: &pending.summary(),
            verdict: &verdict,
            allowed: Some(carried.allow),
            reason,
            engines: &[],
            failures: &[],
        });
        true
    }

    /// Counts an answer the agent decided (engines, cache, policy, self-protection) and
    /// records its latency from the event's arrival.
    pub fn answered(&self, allow: bool, arrived: Instant) {
        self.latency.record(arrived.elapsed());
        Stats::add(if allow {
            &self.stats.allowed
        } else {
            &self.stats.denied
        });
    }

    /// Says loudly, once per quarantine, that an engine stopped protecting this host: its
    /// failure policy answers for it from now on.
    pub fn quarantined(&self, report: &QuarantineReport, event: &Event) {
        Stats::add(&self.stats.quarantines);
        tracing::error!(engine = %report.engine, "protection is off: {}", report.message);
        let verdict = Verdict {
            action: Action::Observe,
            rule_id: "ringfence-quarantine".into(),
            severity: Severity::Critical,
            message: format!(
                "protection is off for engine {}: {}",
                report.engine, report.message
            ),
            tags: vec!["quarantine".into(), "protection-off".into()],
        };
        let engines = [EngineVerdict {
            engine: report.engine.clone(),
            verdict: verdict.clone(),
        }];
        self.alert(&Alert {
            event,
            verdict: &verdict,
            allowed: None,
            reason: Reason::Quarantine,
            engines: &engines,
            failures: &[],
        });
    }

    /// Counts one engine failure and hands it to the failure channel, once per failure (an
    /// alert may mention it too, but the channel is what ships it).
    pub fn engine_failed(&self, failure: &FailureRecord) {
        self.stats.failure(failure.kind);
        if let Some(failures) = &self.failures {
            failures.send(failure);
        }
    }

    pub fn alert(&self, alert: &Alert<'_>) {
        match self.alerts.write(alert, self.mode.get()) {
            Ok(()) => Stats::add(&self.stats.alerts),
            Err(error) => {
                Stats::add(&self.stats.alert_errors);
                tracing::error!(%error, "could not write alert");
            }
        }
    }

    /// Queues a permission event without ever blocking: a full queue is answered by policy.
    /// `arrived` is when the event was read: its deadline and latency count from there.
    pub fn submit(
        &self,
        ticket: Arc<Ticket>,
        pending: Pending,
        key: Option<CacheKey>,
        arrived: Instant,
    ) -> Submitted {
        Stats::add(&self.stats.permission_events);
        let deadline = arrived + self.perm_deadline;
        let watch = Watch {
            ticket: Arc::clone(&ticket),
            pending: pending.clone(),
            arrived,
            deadline,
        };
        let job = Job {
            ticket,
            pending,
            key,
            arrived,
            deadline,
        };
        let sent = match self.queue.lock() {
            Ok(queue) => match queue.as_ref() {
                Some(queue) => queue.try_send(job),
                None => Err(TrySendError::Disconnected(job)),
            },
            Err(_) => Err(TrySendError::Disconnected(job)),
        };
        // The watch goes to the responder only once the job is queued: an event the full queue
        // turned away is answered by policy here and must not be watched. A worker may answer
        // before the watch arrives; a ticket is answered once, whoever comes first.
        match sent {
            Ok(()) => {
                // Closed only while stopping: the workers answer what they hold by policy.
                self.watches.push(watch);
                Submitted::Queued
            }
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.answer_by_policy(&job.ticket, &job.pending, Reason::QueueFull, arrived);
                Submitted::AnsweredByPolicy
            }
        }
    }

    /// Like [`Core::submit`] but waits for room (replay: backpressure, not policy answers).
    pub fn submit_blocking(&self, ticket: Arc<Ticket>, pending: Pending) -> Submitted {
        let queue = match self.queue.lock() {
            Ok(queue) => queue.clone(),
            Err(_) => None,
        };
        let arrived = Instant::now();
        let Some(queue) = queue else {
            return self.submit(ticket, pending, None, arrived);
        };
        Stats::add(&self.stats.permission_events);
        let deadline = arrived + self.perm_deadline;
        // Here the watch goes first: the send below may wait for room, and the deadline must
        // hold while it waits. If the queue is gone the event is answered by policy and the
        // responder's later answer is a no-op (a ticket is answered once).
        self.watches.push(Watch {
            ticket: Arc::clone(&ticket),
            pending: pending.clone(),
            arrived,
            deadline,
        });
        let job = Job {
            ticket,
            pending,
            key: None,
            arrived,
            deadline,
        };
        match queue.send(job) {
            Ok(()) => Submitted::Queued,
            Err(err) => {
                let job = err.0;
                self.answer_by_policy(&job.ticket, &job.pending, Reason::Shutdown, arrived);
                Submitted::AnsweredByPolicy
            }
        }
    }

    /// Hands notification events to the notification thread; drops and counts when full.
    pub fn notify(&self, event: Event) {
        self.try_notify(event);
    }

    /// As [`Core::notify`], and says whether the event was queued; never waits. An exec
    /// notification gets its user and group names and its ancestry here.
    pub fn try_notify(&self, mut event: Event) -> bool {
        if let Event::Exec(exec) = &mut event
            && exec.user.is_empty()
        {
            (exec.user, exec.group) = self.names.user_group(exec.uid, exec.gid);
            exec.ancestors =
                crate::enrich::ancestry("/proc", exec.ppid, ringfence_protocol::MAX_ANCESTORS);
        }
        Stats::add(&self.stats.notifications);
        let sent = match self.notify.lock() {
            Ok(tx) => tx.as_ref().is_some_and(|tx| tx.try_send(event).is_ok()),
            Err(_) => false,
        };
        if !sent {
            Stats::add(&self.stats.notifications_dropped);
        }
        sent
    }
}

/// Combines engine verdicts: any deny wins, then observe (an alert), then allow.
pub fn combine(verdicts: &[EngineVerdict]) -> Verdict {
    verdicts
        .iter()
        .map(|v| v.verdict.clone())
        .fold(Verdict::allow(), Verdict::strongest)
}
