//! The BPF sensor's side of the agent: a reader that counts every record by kind, keeps the
//! argv of recent execs for the blocking exec decisions, hands every other record to the
//! engines as a notification, and says loudly when the ring buffer lost records, the
//! notification queue was full, or the sensor is not there at all (reduced visibility).
//!
//! Network, file and privilege records become protocol events ([`to_event`]) enriched in the
//! agent ([`Enricher`], on a thread of its own so that an exec's argv never waits behind it)
//! and go through the notification thread's batches: nobody waits on them, and neither the
//! reader nor the enricher ever waits on the engines: they only try bounded queues, and what
//! does not fit is counted (`bpf_dropped`) and raised as a High alert.
//!
//! fanotify asks about an exec before the process image changes, when `/proc` still shows the
//! caller's command line; the BPF program saw the new argv at `execve` entry, a few
//! microseconds earlier. So a worker deciding an exec looks here first, waiting at most
//! [`ARGV_WAIT`] for the reader to catch up.

use crate::alerts::{Alert, Reason};
use crate::enrich::Enricher;
use crate::shared::Core;
use crate::stats::Stats;
use ringfence_bpf_sensor::{BpfEvent, BpfSensor, FileOp, Hooks, ModuleLoad, NetKind, SetId};
use ringfence_protocol::{
    Action, Event, ExecEvent, FileChangeEvent, NetworkEvent, NetworkOp, PrivilegeEvent,
    PrivilegeOp, Process, Severity, Verdict,
};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a worker waits for the argv of the exec it decides. The BPF record was written
/// before fanotify queued the event; this only covers the reader's scheduling.
pub const ARGV_WAIT: Duration = Duration::from_millis(2);
/// Processes whose last exec's argv is kept; the oldest goes first.
const BOOK_CAPACITY: usize = 4096;
/// How much older than the fanotify event an exec record may be and still be its exec.
const MATCH_WINDOW: Duration = Duration::from_millis(500);
/// At most one ring buffer loss alert this often; it carries every loss since the last.
const LOSS_ALERT_EVERY: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);
/// Records waiting for the enricher; past it they are dropped, counted and alerted.
const ENRICH_QUEUE: usize = 16_384;

/// What the BPF sensor sees on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Visibility {
    /// Every hook this kernel has is attached.
    Full {
        attached: Vec<String>,
        /// Hooks for features this kernel lacks (e.g. module loading).
        absent: Vec<String>,
    },
    /// The sensor is off or part of it was refused; the agent serves on fanotify and the
    /// process connector. Not an error: reported in status, heartbeat and logs.
    Reduced { reason: String },
}

impl Visibility {
    pub fn of_hooks(hooks: &Hooks) -> Visibility {
        if hooks.refused.is_empty() {
            Visibility::Full {
                attached: hooks.attached.iter().map(|h| (*h).to_owned()).collect(),
                absent: hooks.absent.iter().map(|h| (*h).to_owned()).collect(),
            }
        } else {
            let refused: Vec<String> = hooks
                .refused
                .iter()
                .map(|(hook, why)| format!("{hook} ({why})"))
                .collect();
            Visibility::Reduced {
                reason: format!("BPF hooks refused by the kernel: {}", refused.join("; ")),
            }
        }
    }

    /// Why visibility is reduced, if it is.
    pub fn reduced(&self) -> Option<&str> {
        match self {
            Visibility::Full { .. } => None,
            Visibility::Reduced { reason } => Some(reason),
        }
    }
}

struct Seen {
    filename: String,
    argv: Vec<String>,
    at: Instant,
}

/// Whether `filename` as given to `execve` names `exe` as fanotify resolved it: the same last
/// component, or a link to it (`/bin/sh` -> `/usr/bin/dash`).
fn names(filename: &str, exe: &str) -> bool {
    let base = |p: &str| p.rsplit('/').next().unwrap_or_default().to_owned();
    base(filename) == base(exe)
        || (filename.starts_with('/')
            && std::fs::canonicalize(filename).is_ok_and(|p| p.as_os_str() == exe))
}

/// The argv of each process's last `execve`, bounded.
#[derive(Default)]
pub struct ArgvBook {
    inner: Mutex<(HashMap<u32, Seen>, VecDeque<u32>)>,
    added: Condvar,
}

impl std::fmt::Debug for ArgvBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgvBook").finish_non_exhaustive()
    }
}

impl ArgvBook {
    fn insert(&self, tgid: u32, filename: String, argv: Vec<String>, at: Instant) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let (by_tgid, order) = &mut *guard;
        if by_tgid.insert(tgid, Seen { filename, argv, at }).is_none() {
            order.push_back(tgid);
        }
        while order.len() > BOOK_CAPACITY {
            if let Some(old) = order.pop_front() {
                by_tgid.remove(&old);
            }
        }
        drop(guard);
        self.added.notify_all();
    }

    /// The argv of the exec of `exe` that `tgid` started at most [`MATCH_WINDOW`] before
    /// `arrived` (when fanotify's event for it was read), waiting up to `wait` for it. When no
    /// record names `exe` by then (a script's interpreter, a relative name through a link), the
    /// process's latest exec in the window is the one: the reader has caught up by then.
    pub fn argv(
        &self,
        tgid: u32,
        exe: &str,
        arrived: Instant,
        wait: Duration,
    ) -> Option<Vec<String>> {
        let until = Instant::now() + wait;
        let earliest = arrived.checked_sub(MATCH_WINDOW).unwrap_or(arrived);
        let mut guard = self.inner.lock().ok()?;
        loop {
            let recent = guard.0.get(&tgid).filter(|seen| seen.at >= earliest);
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return recent.map(|seen| seen.argv.clone());
            };
            if let Some(seen) = recent
                && names(&seen.filename, exe)
            {
                return Some(seen.argv.clone());
            }
            guard = self.added.wait_timeout(guard, left).ok()?.0;
        }
    }
}

/// A count the reader raises as an alert at most every [`LOSS_ALERT_EVERY`], each alert
/// carrying everything since the one before.
#[derive(Default)]
struct Raised {
    seen: u64,
    alerted: u64,
    last: Option<Instant>,
}

impl Raised {
    /// What to alert about now, if anything.
    fn due(&mut self) -> Option<u64> {
        if self.seen > self.alerted && self.last.is_none_or(|at| at.elapsed() >= LOSS_ALERT_EVERY) {
            let count = self.seen - self.alerted;
            self.alerted = self.seen;
            self.last = Some(Instant::now());
            return Some(count);
        }
        None
    }
}

/// What the reader hands the enricher thread.
enum ToEnrich {
    /// A process executed `filename`: the enricher notes its working directory now.
    Exec { tgid: u32, filename: String },
    /// A record for the engines.
    Event(BpfEvent),
}

/// Reads the sensor until the agent stops. Losses come in-band in the records (the confined
/// agent makes no `bpf()` call).
///
/// Two threads: the reader keeps the argv of execs (a worker deciding an exec waits at most
/// [`ARGV_WAIT`] for it) and hands everything else on; the enricher reads `/proc` and the
/// account files for the other records and queues them for the engines. Enrichment costs
/// hundreds of microseconds a record, and a busy host (a build renames and unlinks thousands
/// of files) would otherwise hold an exec's argv behind it past the workers' wait.
pub fn run(core: &Core, sensor: BpfSensor) {
    let (to_enricher, queued) = mpsc::sync_channel(ENRICH_QUEUE);
    std::thread::scope(|scope| {
        let enricher = std::thread::Builder::new()
            .name("rf-bpf-enrich".into())
            .spawn_scoped(scope, move || enrich(core, &queued));
        match enricher {
            Ok(_) => read(core, sensor, Some(to_enricher)),
            Err(error) => {
                tracing::error!(
                    %error,
                    "could not start the BPF enricher; only execs' argv is used (reduced visibility)"
                );
                read(core, sensor, None);
            }
        }
    });
}

/// Enriches and queues for the engines what the reader hands over, until it stops.
fn enrich(core: &Core, queued: &Receiver<ToEnrich>) {
    let mut enricher = Enricher::default();
    for item in queued {
        match item {
            ToEnrich::Exec { tgid, filename } => enricher.exec(tgid, &filename),
            ToEnrich::Event(event) => {
                let Some(event) = to_event(&event, &mut enricher) else {
                    continue;
                };
                Stats::add(&core.stats.bpf_notifications);
                if !core.try_notify(event) {
                    Stats::add(&core.stats.bpf_dropped);
                }
            }
        }
    }
}

fn read(core: &Core, mut sensor: BpfSensor, to_enricher: Option<SyncSender<ToEnrich>>) {
    let mut events = Vec::new();
    let mut lost = Raised::default();
    let mut dropped = Raised::default();
    while !core.sensors_stop() {
        events.clear();
        match sensor.read(POLL, &mut events) {
            Ok(outcome) => {
                if outcome.lost > 0 {
                    core.stats
                        .bpf_lost
                        .fetch_add(outcome.lost, Ordering::Relaxed);
                    lost.seen = lost.seen.saturating_add(outcome.lost);
                }
                if outcome.malformed > 0 {
                    core.stats
                        .bpf_malformed
                        .fetch_add(outcome.malformed, Ordering::Relaxed);
                    if let Some(error) = outcome.last_error {
                        tracing::warn!(%error, count = outcome.malformed, "malformed BPF records");
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "BPF ring buffer read failed");
                std::thread::sleep(POLL);
            }
        }
        let now = Instant::now();
        for event in events.drain(..) {
            record(core, to_enricher.as_ref(), event, now);
        }
        // Counted here and by the enricher (a full notification queue).
        dropped.seen = core.stats.bpf_dropped.load(Ordering::Relaxed);
        if let Some(count) = lost.due() {
            loss_alert(core, count);
        }
        if let Some(count) = dropped.due() {
            dropped_alert(core, count);
        }
    }
}

/// Counts `event`, keeps an exec's argv, and hands the rest to the enricher; a record the
/// enricher has no room for is counted as dropped.
fn record(core: &Core, to_enricher: Option<&SyncSender<ToEnrich>>, event: BpfEvent, now: Instant) {
    let stats = &core.stats;
    Stats::add(match &event {
        BpfEvent::Exec { .. } => &stats.bpf_exec,
        BpfEvent::Network { .. } => &stats.bpf_network,
        BpfEvent::File { .. } => &stats.bpf_file,
        BpfEvent::Privilege { .. } => &stats.bpf_privilege,
        BpfEvent::Ptrace { .. } => &stats.bpf_ptrace,
        BpfEvent::Module { .. } => &stats.bpf_module,
        BpfEvent::Bpf { .. } => &stats.bpf_bpf,
    });
    if let BpfEvent::Exec {
        process,
        filename,
        argv,
        ..
    } = event
    {
        // The argv first: a worker may be waiting for it.
        let tgid = process.tgid;
        if let Some(book) = &core.argv {
            book.insert(tgid, filename.clone(), argv, now);
        }
        if let Some(to_enricher) = to_enricher {
            // A full queue loses only this exec's working directory, not an event.
            let _ = to_enricher.try_send(ToEnrich::Exec { tgid, filename });
        }
        return;
    }
    let handed = to_enricher.is_some_and(|to| to.try_send(ToEnrich::Event(event)).is_ok());
    if !handed {
        Stats::add(&stats.bpf_dropped);
    }
}

/// The process of a record as engines see it, with names, exe and cgroup from this host.
fn process(process: &ringfence_bpf_sensor::Process, enricher: &mut Enricher) -> Process {
    let (user, group) = enricher.user_group(process.uid, process.gid);
    let seen = enricher.process(process.tgid, process.ppid, &process.comm);
    Process {
        pid: process.tgid,
        ppid: process.ppid,
        uid: process.uid,
        gid: process.gid,
        euid: process.euid,
        egid: process.egid,
        user,
        group,
        exe: seen.exe,
        comm: process.comm.clone(),
        cgroup: seen.cgroup,
        container_id: seen.container_id,
        ancestors: seen.ancestors,
    }
}

/// The protocol event for a non-exec record (execs feed the blocking decisions instead).
pub fn to_event(event: &BpfEvent, enricher: &mut Enricher) -> Option<Event> {
    let privilege = |op: PrivilegeOp, args: Vec<i64>, enricher: &mut Enricher| {
        Event::Privilege(Box::new(PrivilegeEvent {
            process: process(event.process(), enricher),
            op,
            args,
        }))
    };
    Some(match event {
        BpfEvent::Exec { .. } => return None,
        BpfEvent::Network {
            process: who,
            kind,
            local,
            remote,
        } => Event::Network(Box::new(NetworkEvent {
            process: process(who, enricher),
            op: match kind {
                NetKind::Connect => NetworkOp::Connect,
                NetKind::Listen => NetworkOp::Listen,
                NetKind::Accept => NetworkOp::Accept,
            },
            local_ip: local.ip().to_string(),
            local_port: local.port(),
            remote_ip: remote.ip().to_string(),
            remote_port: remote.port(),
        })),
        BpfEvent::File {
            process: who,
            op,
            dfd,
            path,
            target,
            mode,
            owner,
            ..
        } => Event::FileChange(Box::new(FileChangeEvent {
            process: process(who, enricher),
            op: match op {
                FileOp::Rename => ringfence_protocol::FileOp::Rename,
                FileOp::Unlink => ringfence_protocol::FileOp::Unlink,
                FileOp::Chmod => ringfence_protocol::FileOp::Chmod,
                FileOp::Chown => ringfence_protocol::FileOp::Chown,
                FileOp::Link => ringfence_protocol::FileOp::Link,
            },
            // renameat2 and linkat take a directory for each name, the record keeps the
            // first; both are relative to the working directory in every common caller.
            path: enricher.resolve(who.tgid, *dfd, path),
            target: target
                .as_deref()
                .map(|target| enricher.resolve(who.tgid, *dfd, target)),
            mode: (*op == FileOp::Chmod).then_some(*mode),
            owner_uid: (*op == FileOp::Chown).then_some(owner.0),
            owner_gid: (*op == FileOp::Chown).then_some(owner.1),
        })),
        BpfEvent::Privilege { process: _, call } => {
            let (op, ids) = match *call {
                SetId::SetUid { uid } => (PrivilegeOp::Setuid, vec![uid]),
                SetId::SetGid { gid } => (PrivilegeOp::Setgid, vec![gid]),
                SetId::SetReUid { ruid, euid } => (PrivilegeOp::Setreuid, vec![ruid, euid]),
                SetId::SetReGid { rgid, egid } => (PrivilegeOp::Setregid, vec![rgid, egid]),
                SetId::SetResUid { ruid, euid, suid } => {
                    (PrivilegeOp::Setresuid, vec![ruid, euid, suid])
                }
                SetId::SetResGid { rgid, egid, sgid } => {
                    (PrivilegeOp::Setresgid, vec![rgid, egid, sgid])
                }
            };
            privilege(op, ids.into_iter().map(i64::from).collect(), enricher)
        }
        BpfEvent::Ptrace {
            request, target, ..
        } => privilege(
            PrivilegeOp::Ptrace,
            vec![*request, i64::from(*target)],
            enricher,
        ),
        BpfEvent::Module { load, .. } => match *load {
            ModuleLoad::Image { len } => privilege(
                PrivilegeOp::InitModule,
                vec![i64::try_from(len).unwrap_or(i64::MAX)],
                enricher,
            ),
            ModuleLoad::File { fd } => {
                privilege(PrivilegeOp::FinitModule, vec![i64::from(fd)], enricher)
            }
        },
        BpfEvent::Bpf { cmd, .. } => privilege(PrivilegeOp::Bpf, vec![i64::from(*cmd)], enricher),
    })
}

/// One High alert for records the ring buffer could not take: what the engines did not see.
fn loss_alert(core: &Core, lost: u64) {
    tracing::error!(lost, "BPF ring buffer full: records lost");
    sensor_alert(
        core,
        "ringfence-bpf-loss",
        format!(
            "the BPF sensor lost {lost} record(s): its ring buffer was full, so exec, network, \
             file and privilege activity went unseen"
        ),
        "bpf-loss",
    );
}

/// One High alert for records read but not handed to the engines: the notification queue was
/// full (the engines are slower than the kernel's activity).
fn dropped_alert(core: &Core, dropped: u64) {
    tracing::error!(dropped, "notification queue full: BPF events not judged");
    sensor_alert(
        core,
        "ringfence-bpf-queue-full",
        format!(
            "{dropped} network, file or privilege event(s) from the BPF sensor never reached \
             the engines: the notification queue was full"
        ),
        "bpf-queue-full",
    );
}

fn sensor_alert(core: &Core, rule_id: &str, message: String, tag: &str) {
    let verdict = Verdict {
        action: Action::Observe,
        rule_id: rule_id.into(),
        severity: Severity::High,
        message,
        tags: vec![tag.into(), "reduced-visibility".into()],
    };
    // The agent itself is the process the alert is about.
    let event = Event::Exec(ExecEvent {
        pid: std::process::id(),
        ppid: 0,
        uid: 0,
        gid: 0,
        exe: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        argv: Vec::new(),
        cwd: String::new(),
        parent_exe: String::new(),
        user: String::new(),
        group: String::new(),
        ancestors: Vec::new(),
    });
    core.alert(&Alert {
        event: &event,
        verdict: &verdict,
        allowed: None,
        reason: Reason::SensorLoss,
        engines: &[],
        failures: &[],
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_waits_for_the_reader_and_ignores_stale_execs() {
        let book = std::sync::Arc::new(ArgvBook::default());
        let arrived = Instant::now();
        assert_eq!(book.argv(7, "/usr/bin/curl", arrived, Duration::ZERO), None);
        let writer = std::sync::Arc::clone(&book);
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(200));
            writer.insert(
                7,
                "curl".into(),
                vec!["curl".into(), "-s".into()],
                Instant::now(),
            );
        });
        let argv = book.argv(7, "/usr/bin/curl", arrived, Duration::from_secs(5));
        handle.join().expect("writer");
        assert_eq!(argv, Some(vec!["curl".to_owned(), "-s".to_owned()]));
        // An exec seen long before the event is another exec of the same process.
        let later = Instant::now() + MATCH_WINDOW + Duration::from_secs(1);
        assert_eq!(book.argv(7, "/usr/bin/curl", later, Duration::ZERO), None);
    }

    #[test]
    fn another_program_waits_then_takes_the_latest_exec() {
        let book = ArgvBook::default();
        let now = Instant::now();
        book.insert(9, "./run.sh".into(), vec!["./run.sh".into()], now);
        // The script's interpreter is asked about too: no record names it.
        let started = Instant::now();
        let argv = book.argv(9, "/usr/bin/bash", now, Duration::from_millis(20));
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(argv, Some(vec!["./run.sh".to_owned()]));
        assert_eq!(
            book.argv(9, "/tmp/x/run.sh", now, Duration::from_secs(5)),
            Some(vec!["./run.sh".to_owned()])
        );
    }

    #[test]
    fn the_book_is_bounded() {
        let book = ArgvBook::default();
        let now = Instant::now();
        for tgid in 0..u32::try_from(BOOK_CAPACITY * 2).expect("small") {
            book.insert(tgid, "x".into(), vec![tgid.to_string()], now);
        }
        assert_eq!(book.argv(0, "/x", now, Duration::ZERO), None);
        let last = u32::try_from(BOOK_CAPACITY * 2 - 1).expect("small");
        assert_eq!(
            book.argv(last, "/x", now, Duration::ZERO),
            Some(vec![last.to_string()])
        );
        let guard = book.inner.lock().expect("lock");
        assert_eq!(
            (guard.0.len(), guard.1.len()),
            (BOOK_CAPACITY, BOOK_CAPACITY)
        );
    }

    fn who(tgid: u32) -> ringfence_bpf_sensor::Process {
        ringfence_bpf_sensor::Process {
            pid: tgid,
            tgid,
            ppid: 1,
            uid: 0,
            gid: 0,
            euid: 0,
            egid: 0,
            comm: "gone".into(),
            ktime_ns: 0,
        }
    }

    #[test]
    fn records_become_the_documented_events() {
        let mut enricher = Enricher::default();
        // A pid no process has: nothing to read, names still resolved.
        let gone = u32::MAX;
        let connect = BpfEvent::Network {
            process: who(gone),
            kind: NetKind::Connect,
            local: "10.0.0.5:0".parse().expect("addr"),
            remote: "[::1]:4444".parse().expect("addr"),
        };
        let Some(Event::Network(net)) = to_event(&connect, &mut enricher) else {
            panic!("not a network event")
        };
        assert_eq!(
            (net.op, net.remote_ip.as_str(), net.remote_port),
            (NetworkOp::Connect, "::1", 4444)
        );
        assert_eq!((net.process.user.as_str(), net.process.pid), ("root", gone));
        assert_eq!(net.process.comm, "gone");
        assert_eq!(
            (net.process.exe.as_str(), net.process.cgroup.as_str()),
            ("", "")
        );

        let chown = BpfEvent::File {
            process: who(gone),
            op: FileOp::Chown,
            dfd: -100,
            path: "/etc/shadow".into(),
            target: None,
            mode: 0,
            owner: (1000, u32::MAX),
            flags: 0,
        };
        let Some(Event::FileChange(file)) = to_event(&chown, &mut enricher) else {
            panic!("not a file change")
        };
        assert_eq!(file.path, "/etc/shadow");
        assert_eq!(
            (file.mode, file.owner_uid, file.owner_gid),
            (None, Some(1000), Some(u32::MAX))
        );

        let setres = BpfEvent::Privilege {
            process: who(gone),
            call: SetId::SetResUid {
                ruid: 0,
                euid: 0,
                suid: u32::MAX,
            },
        };
        let Some(Event::Privilege(privilege)) = to_event(&setres, &mut enricher) else {
            panic!("not a privilege event")
        };
        assert_eq!(privilege.op, PrivilegeOp::Setresuid);
        assert_eq!(privilege.args, [0, 0, i64::from(u32::MAX)]);
        let ptrace = BpfEvent::Ptrace {
            process: who(gone),
            request: 16,
            target: 42,
        };
        let Some(Event::Privilege(privilege)) = to_event(&ptrace, &mut enricher) else {
            panic!("not a privilege event")
        };
        assert_eq!(
            (privilege.op, privilege.args.as_slice()),
            (PrivilegeOp::Ptrace, &[16, 42][..])
        );
        let exec = BpfEvent::Exec {
            process: who(gone),
            filename: "/bin/true".into(),
            argv: Vec::new(),
            truncated: false,
        };
        assert_eq!(to_event(&exec, &mut enricher), None);
    }

    #[test]
    fn drops_and_losses_are_raised_at_most_every_interval_with_all_since_the_last() {
        let mut raised = Raised::default();
        assert_eq!(raised.due(), None);
        raised.seen = 3;
        assert_eq!(raised.due(), Some(3));
        raised.seen = 5;
        assert_eq!(raised.due(), None, "too soon after the last");
        raised.last = Instant::now().checked_sub(LOSS_ALERT_EVERY);
        assert_eq!(raised.due(), Some(2));
    }

    #[test]
    fn refused_hooks_are_reduced_visibility() {
        let hooks = Hooks {
            attached: vec!["sys_enter_execve"],
            absent: vec!["sys_enter_init_module"],
            refused: vec![("inet_sock_set_state", "EPERM".into())],
        };
        let visibility = Visibility::of_hooks(&hooks);
        assert!(
            visibility
                .reduced()
                .is_some_and(|why| why.contains("inet_sock_set_state (EPERM)")),
            "{visibility:?}"
        );
        let full = Visibility::of_hooks(&Hooks {
            refused: Vec::new(),
            ..hooks
        });
        assert_eq!(full.reduced(), None);
    }
}
