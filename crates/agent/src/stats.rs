//! Counters the agent keeps so that operators (and the health gates of a rollout) can see what
//! it did: every event in, every answer out, and every time policy answered instead of engines.

use ringfence_protocol::FailureKind;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters, shared by every agent thread.
        #[derive(Debug, Default)]
        pub struct Stats { $($(#[$doc])* pub $name: AtomicU64,)* }

        /// A copy of the counters at one moment.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        pub struct StatsSnapshot { $($(#[$doc])* pub $name: u64,)* }

        impl Stats {
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Events read from every sensor.
    events,
    /// Permission events (the kernel or a replay waits for an answer).
    permission_events,
    /// Notification events (fork, exec and exit notifications, and BPF network, file and
    /// privilege events).
    notifications,
    /// Permission answers: allowed.
    allowed,
    /// Permission answers: denied.
    denied,
    /// Permission answers that were allowed only because the agent audits: the verdict
    /// (engines, cache or policy) denied. Also counted in `allowed`.
    would_deny,
    /// Answered by the engines' failure policy because the deadline passed first.
    deadline_answers,
    /// Answered by policy at once because the queue was full.
    queue_full,
    /// Answered from the decision cache.
    cache_hits,
    /// Files whose allowed execs the kernel answers from now on (kernel exec cache entries
    /// placed).
    kernel_cache_placed,
    /// Verdicts that could have been kernel-cached but were not (a writer had the file open,
    /// a filesystem without leases or with changes behind its back, a changed file).
    kernel_cache_refused,
    /// Kernel exec cache entries removed because someone opened the file for writing.
    kernel_cache_invalidated,
    /// Kernel exec cache entries removed because the file lost its last name.
    kernel_cache_unlinked,
    /// Kernel exec cache entries evicted, oldest first, to stay within the bound.
    kernel_cache_evicted,
    /// Kernel exec cache entries removed all at once because another engine set was about to
    /// answer, or the agent stopped or handed over.
    kernel_cache_cleared,
    /// Permission events of muted processes or paths, allowed without a look.
    muted,
    /// Engine calls made (one per engine per event, one per engine per batch).
    engine_calls,
    /// Engine calls that failed (trap, deadline, memory, quarantine), the sum of the
    /// `failures_*` counters below.
    engine_failures,
    /// Engine calls that trapped.
    failures_trap,
    /// Engine calls that tried to grow memory past the limit.
    failures_memory,
    /// Engine calls interrupted after using their whole CPU budget (a call starved by the host
    /// is never one: the responder answers for it and `deadline_answers` counts it).
    failures_deadline,
    /// Calls refused because the engine+content is quarantined.
    failures_quarantine,
    /// Engine instances that could not be built (component or content refused at load).
    failures_load,
    /// Permission events where a quarantined engine's part of the verdict came from policy.
    quarantine_answers,
    /// Permission events where a failed engine call's part of the verdict came from policy.
    failure_answers,
    /// Engines quarantined (each wrote one "protection off" alert).
    quarantines,
    /// Worker verdicts that came after the deadline responder had answered.
    late_verdicts,
    /// Alerts written.
    alerts,
    /// Alerts that could not be written.
    alert_errors,
    /// Notifications dropped because the notification queue was full.
    notifications_dropped,
    /// Kernel queue overflows (fanotify or process connector).
    overflows,
    /// Permission events answered by policy during shutdown.
    shutdown_answers,
    /// Engine sets installed by a swap.
    swaps,
    /// Swaps refused: the new engines could not be instantiated or failed the sample.
    swaps_refused,
    /// Times a thread had to instantiate engines itself on the event path (a set installed
    /// without pre-built workers); zero when every swap hands its workers over.
    lazy_engine_builds,
    /// Opens of the agent's own files by others, allowed (reads, execs, trusted processes).
    protected_opens_allowed,
    /// Opens of the agent's own files for writing by untrusted processes, denied.
    tamper_denied,
    /// Entries of the agent's own files created, deleted or renamed by untrusted processes
    /// (reported: such changes cannot be refused).
    tamper_seen,
    /// Times the entry watch queue overflowed.
    entry_overflows,
    /// BPF sensor records, by kind: `execve` entries (argv for exec decisions).
    bpf_exec,
    /// TCP connects, listens and accepts.
    bpf_network,
    /// File renames, unlinks, chmods, chowns and links.
    bpf_file,
    /// Set-id calls.
    bpf_privilege,
    /// `ptrace` calls.
    bpf_ptrace,
    /// Module load calls.
    bpf_module,
    /// `bpf()` calls by other processes.
    bpf_bpf,
    /// BPF network, file and privilege records handed to the engines as notifications.
    bpf_notifications,
    /// BPF records not handed to the engines because the notification queue was full (each
    /// raise is a High alert; also counted in `notifications_dropped`).
    bpf_dropped,
    /// BPF records that did not decode (a bug, never expected).
    bpf_malformed,
    /// BPF records lost because the ring buffer was full (each raise is a High alert).
    bpf_lost,
    /// Exec decisions whose engines got the argv the BPF sensor saw.
    bpf_argv_matched,
    /// Exec decisions made with the BPF sensor on but no argv from it in time.
    bpf_argv_missed,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one engine failure, in the total and in its class.
    pub(crate) fn failure(&self, kind: FailureKind) {
        Stats::add(&self.engine_failures);
        Stats::add(match kind {
            FailureKind::Trap => &self.failures_trap,
            FailureKind::Memory => &self.failures_memory,
            FailureKind::Deadline => &self.failures_deadline,
            FailureKind::Quarantined => &self.failures_quarantine,
            FailureKind::InvalidComponent | FailureKind::ContentRejected => &self.failures_load,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_kind_lands_in_one_class_and_the_total() {
        let stats = Stats::default();
        for kind in [
            FailureKind::Trap,
            FailureKind::Memory,
            FailureKind::Deadline,
            FailureKind::Quarantined,
            FailureKind::InvalidComponent,
            FailureKind::ContentRejected,
        ] {
            stats.failure(kind);
        }
        let s = stats.snapshot();
        assert_eq!(s.engine_failures, 6);
        assert_eq!(
            (s.failures_trap, s.failures_memory, s.failures_deadline),
            (1, 1, 1)
        );
        assert_eq!((s.failures_quarantine, s.failures_load), (1, 2));
    }
}
