//! Sensor threads: read events and push them into the pipeline. The fanotify reader answers
//! muted and cached events itself, so a busy queue never delays them.

use crate::alerts::{Alert, EntryActivity, Reason};
use crate::cache::CacheKey;
use crate::protect::{Decision, SelfProtection};
use crate::shared::{Core, Pending};
use crate::stats::Stats;
use ringfence_protocol::{Action, Event, OpenEvent, Severity, Verdict};
use ringfence_sensor::{
    Access, EntryChange, EntryChangeKind, EntryWatch, FanEvent, Fanotify, ProcConnector, Ticket,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a reader blocks before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Reads fanotify until stopped, then unmarks and answers everything still queued; or, when
/// handing off, returns the group as it is, marks and queued events included.
pub fn fanotify(core: &Core, mut fan: Fanotify) -> Option<Fanotify> {
    while !core.sensors_stop() {
        read_once(core, &fan, POLL);
    }
    if core.handing_off() {
        // Our own threads open protected files (spool, alerts); with nobody reading until the
        // next image starts, those opens would wait on us for ever. So the protection marks
        // go now, and whatever they queued is answered in one last pass.
        if let Some(protection) = &core.protection {
            fan.unwatch_open(protection.paths());
        }
        read_once(core, &fan, Duration::ZERO);
        return Some(fan);
    }
    fan.unmark();
    // Events the kernel queued before the marks went are still ours to answer.
    loop {
        match fan.read(Duration::ZERO) {
            Ok(events) if !events.is_empty() => {
                for event in events {
                    Stats::add(&core.stats.events);
                    if let Some(ticket) = event.ticket {
                        let pending = pending_of(&event.access, event.pid, event.path);
                        core.answer_by_policy(&ticket, &pending, Reason::Shutdown, Instant::now());
                    }
                }
            }
            _ => break,
        }
    }
    None
}

fn read_once(core: &Core, fan: &Fanotify, timeout: Duration) {
    match fan.read(timeout) {
        Ok(events) => {
            // One clock read per batch: the events of a read arrived together as far as
            // anything after the kernel can tell.
            let arrived = Instant::now();
            events.into_iter().for_each(|e| fan_event(core, e, arrived));
        }
        Err(error) => {
            tracing::error!(%error, "fanotify read failed");
            std::thread::sleep(POLL);
        }
    }
}

fn pending_of(access: &Access, pid: u32, path: String) -> Pending {
    match access {
        Access::Open => Pending::Open { pid, path },
        _ => Pending::Exec { pid, path },
    }
}

fn fan_event(core: &Core, event: FanEvent, arrived: Instant) {
    Stats::add(&core.stats.events);
    if event.access == Access::Overflow {
        Stats::add(&core.stats.overflows);
        tracing::warn!("fanotify queue overflow");
    }
    let Some(ticket) = event.ticket.clone() else {
        return;
    };
    if core.mute.pid(event.pid) {
        Stats::add(&core.stats.muted);
        ticket.respond(true);
        return;
    }
    // Before the muted paths: the data directory is muted for execs and reads, not for
    // writes by strangers.
    if event.access == Access::Open
        && let Some(protection) = &core.protection
        && protection.covers(&event.path, event.file.map(|f| (f.dev, f.ino)))
    {
        protected_open(core, protection, &event, &ticket, arrived);
        return;
    }
    if core.mute.path(&event.path) {
        Stats::add(&core.stats.muted);
        ticket.respond(true);
        return;
    }
    if !matches!(event.access, Access::Exec | Access::Open) {
        ticket.respond(true);
        return;
    }
    // The cache is keyed by the file: with the BPF sensor, engines judge an exec by its argv
    // too, which the reader does not know, so one command line's verdict would answer another's.
    let key = match (&core.cache, event.file) {
        (Some(_), Some(file)) if event.access == Access::Exec && core.argv.is_none() => {
            Some(CacheKey {
                file,
                path: event.path.clone(),
                generation: core.engines.current().generation,
            })
        }
        _ => None,
    };
    if let (Some(cache), Some(key)) = (&core.cache, &key)
        && let Some(hit) = cache.get(key)
    {
        // The cache holds the verdict; audit mode allows a cached deny and reports it again.
        let carried = core
            .mode
            .carry(hit.allow)
            .or_audited(hit.verdict.action == Action::Deny);
        // Counted before the answer (one atomic add): whoever sees the process run also sees
        // the hit that let it.
        Stats::add(&core.stats.cache_hits);
        ticket.respond(carried.allow);
        core.answered(carried.allow, arrived);
        if carried.would_deny {
            Stats::add(&core.stats.would_deny);
        }
        // A cached allow the kernel asked about: the kernel answers the file's next execs
        // (unless it cannot, see `kcache`). Placed here, on the reader, never by a worker:
        // threads that run engine code may not call `fanotify_mark` (their seccomp list), so
        // the first exec of a file is the engines', the second the user-space cache's, and the
        // later ones the kernel's. Also after an entry was evicted or taken back by a writer
        // that left the content as it was.
        if hit.verdict.action == Action::Allow && core.kcache.is_some() {
            let set = core.engines.current();
            if set.generation == key.generation && set.execs_by_content() {
                core.kernel_cache(&ticket, key.file, key.generation);
            }
        }
        if hit.verdict.action == Action::Deny {
            let event = ringfence_sensor::resolve_exec(event.pid, &event.path);
            core.alert(&Alert {
                event: &event,
                verdict: &hit.verdict,
                allowed: Some(carried.allow),
                reason: Reason::Cache,
                engines: &[],
                failures: &[],
            });
        }
        return;
    }
    let pending = pending_of(&event.access, event.pid, event.path);
    core.submit(ticket, pending, key, arrived);
}

/// Answers an open of one of the agent's own files; a denial is a tamper alert.
fn protected_open(
    core: &Core,
    protection: &SelfProtection,
    event: &FanEvent,
    ticket: &Ticket,
    arrived: Instant,
) {
    match protection.decide(event.pid) {
        Decision::Allow => {
            ticket.respond(true);
            Stats::add(&core.stats.protected_opens_allowed);
        }
        Decision::Deny { exe, intent } => {
            ticket.respond(false);
            Stats::add(&core.stats.tamper_denied);
            core.answered(false, arrived);
            let info = ringfence_sensor::procfs::process(event.pid);
            let tampering = Event::Open(OpenEvent {
                pid: event.pid,
                uid: info.uid,
                gid: info.gid,
                path: event.path.clone(),
                exe: exe.clone(),
                write: true,
            });
            let verdict = Verdict {
                action: Action::Deny,
                rule_id: "ringfence-self-protection".into(),
                severity: Severity::High,
                message: format!(
                    "{exe} (pid {}) tried to open the agent's file {} ({intent:?}); denied",
                    event.pid, event.path
                ),
                tags: vec!["tamper".into()],
            };
            core.alert(&Alert {
                event: &tampering,
                verdict: &verdict,
                allowed: Some(false),
                reason: Reason::Tamper,
                engines: &[],
                failures: &[],
            });
        }
    }
}

/// Reads the entry watch until stopped; returns the group when handing off. Every change to
/// the agent's own entries by a process that may not make it is a tamper alert.
pub fn entry_watch(
    core: &Core,
    protection: &SelfProtection,
    mut watch: EntryWatch,
) -> Option<EntryWatch> {
    let own_pid = std::process::id();
    while !core.sensors_stop() {
        let changes = match watch.read(POLL) {
            Ok(changes) => changes,
            Err(error) => {
                tracing::error!(%error, "entry watch read failed");
                std::thread::sleep(POLL);
                continue;
            }
        };
        for change in changes {
            if change.pid != own_pid && !protection.trusted_pid(change.pid) {
                tamper_seen(core, &change);
            }
        }
        let lost = core.stats.entry_overflows.load(Ordering::Relaxed);
        if watch.overflows > lost {
            core.stats
                .entry_overflows
                .fetch_add(watch.overflows - lost, Ordering::Relaxed);
            changes_lost(core);
        }
    }
    core.handing_off().then_some(watch)
}

/// The queue is unlimited, so this takes the kernel running out of memory; whatever hid in the
/// lost events, an operator must hear that some were lost.
fn changes_lost(core: &Core) {
    let nothing = Event::Open(OpenEvent {
        pid: 0,
        uid: 0,
        gid: 0,
        path: String::new(),
        exe: String::new(),
        write: true,
    });
    let verdict = Verdict {
        action: Action::Observe,
        rule_id: "ringfence-self-protection".into(),
        severity: Severity::High,
        message: "the kernel dropped events of the watch on the agent's files: changes to them \
                  may have gone unseen"
            .into(),
        tags: vec!["tamper".into(), "entry".into(), "overflow".into()],
    };
    core.alert(&Alert {
        event: &nothing,
        verdict: &verdict,
        allowed: None,
        reason: Reason::Tamper,
        engines: &[],
        failures: &[],
    });
}

fn tamper_seen(core: &Core, change: &EntryChange) {
    Stats::add(&core.stats.tamper_seen);
    let exe = ringfence_sensor::procfs::exe(change.pid);
    let info = ringfence_sensor::procfs::process(change.pid);
    let who = if exe.is_empty() {
        format!("a process that has exited (pid {})", change.pid)
    } else {
        format!("{exe} (pid {})", change.pid)
    };
    let path = change.path.to_string_lossy().into_owned();
    let tampering = Event::Open(OpenEvent {
        pid: change.pid,
        uid: info.uid,
        gid: info.gid,
        path: path.clone(),
        exe,
        write: true,
    });
    let verdict = Verdict {
        action: Action::Observe,
        rule_id: "ringfence-self-protection".into(),
        severity: Severity::High,
        message: format!(
            "{who} {} {path}, one of the agent's files (changes to directory entries are reported, not refused)",
            change.kind.verb()
        ),
        tags: vec!["tamper".into(), "entry".into()],
    };
    core.alert(&Alert {
        event: &tampering,
        verdict: &verdict,
        allowed: None,
        reason: Reason::TamperEntry(match change.kind {
            EntryChangeKind::Created => EntryActivity::Create,
            EntryChangeKind::Deleted => EntryActivity::Delete,
            EntryChangeKind::MovedIn | EntryChangeKind::MovedOut => EntryActivity::Rename,
        }),
        engines: &[],
        failures: &[],
    });
}

/// Reads the process connector until stopped; returns the socket when handing off.
pub fn proc_connector(core: &Core, mut connector: ProcConnector) -> Option<ProcConnector> {
    let mut overflows = 0;
    while !core.sensors_stop() {
        match connector.read(POLL) {
            Ok(events) => {
                for event in events {
                    Stats::add(&core.stats.events);
                    if !core.mute.pid(event.pid()) {
                        core.notify(event);
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "process connector read failed");
                std::thread::sleep(POLL);
            }
        }
        if connector.overflows > overflows {
            overflows = connector.overflows;
            Stats::add(&core.stats.overflows);
        }
    }
    core.handing_off().then_some(connector)
}

/// Replays a corpus once; returns when every event has been answered or processed (or the
/// agent stops).
pub fn replay(core: &Core, events: Vec<Event>, notified: &AtomicU64) {
    let mut tickets = Vec::new();
    let mut notifications = 0u64;
    for event in events {
        if core.sensors_stop() {
            break;
        }
        Stats::add(&core.stats.events);
        if event.is_permission() {
            let ticket = Arc::new(Ticket::detached());
            core.submit_blocking(Arc::clone(&ticket), Pending::Ready(event));
            tickets.push(ticket);
        } else {
            notifications += 1;
            core.notify(event);
        }
    }
    // Wait for the answers; each is bounded by the permission deadline.
    let give_up = Instant::now() + Duration::from_secs(30);
    while Instant::now() < give_up && !core.stopping() {
        let answered = tickets.iter().all(|t| t.answer().is_some());
        let dropped = core.stats.notifications_dropped.load(Ordering::Relaxed);
        let processed = notified.load(Ordering::Acquire) + dropped >= notifications;
        if answered && processed {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
