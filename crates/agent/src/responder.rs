//! The hard deadline responder: fanotify has no timeout of its own, so this thread answers
//! every permission event whose deadline passes before a worker's verdict, by policy.
//!
//! It does nothing else: no /proc reads, no engine calls, no blocking I/O except the alert
//! line. Its heap holds every watched ticket until answered, so at shutdown it can answer all of
//! them at once.
//!
//! A deadline is only as good as the thread that keeps it: on a host whose cores are all busy
//! (a build, a runaway engine, another agent's flood) a normal thread can wait a second for a
//! core. So the responder asks for `SCHED_RR` at the lowest real-time priority, under an
//! `RLIMIT_RTTIME` budget so that a bug in it can never hold a core: the kernel stops a
//! real-time thread that runs longer than that without blocking (it kills the whole process). So it
//! blocks (sleeps briefly) at least every [`MAX_BUSY`] of its own accord, counted from when it
//! last certainly blocked: a wait for the next watch that times out at once, as it does when a
//! flood brings deadlines microseconds apart, is not a rest. Nor does it ever wait for a normal
//! thread by spinning: a real-time thread's yield never lets a normal thread run on its core, so
//! its watches come through a mutex and a condition variable ([`crate::watch`]), where it sleeps
//! until the thread it interrupted lets go. Without the privilege it runs as a normal thread and
//! says so in the log.

use crate::alerts::Reason;
use crate::shared::{Core, Watch};
use crate::watch::Taken;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

struct Entry(Watch);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.deadline == other.0.deadline
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.deadline.cmp(&other.0.deadline)
    }
}

/// The default real-time CPU time the responder may use without blocking
/// (`AgentConfig::realtime_budget`) before the kernel sends the process `SIGXCPU` (the soft
/// limit; twice this, the hard limit, is SIGKILL) and the guard restarts the agent: 25 times
/// what the responder works between rests ([`MAX_BUSY`]).
pub(crate) const RT_BUDGET: Duration = Duration::from_millis(500);

/// Most watches taken from the queue at once; the rest wait for the next turn of the loop.
const BURST: usize = 4096;

/// Longest stretch the responder works without blocking, even under a flood.
const MAX_BUSY: Duration = Duration::from_millis(20);

/// How long the responder rests when it has been busy for [`MAX_BUSY`].
const REST: Duration = Duration::from_micros(50);

/// A wait for the next watch that lasted this long slept: the kernel resets the real-time
/// budget only when the thread blocks, and a wait that returns at once (a watch already queued,
/// or the next deadline already due, as in a flood) never did.
const PARKED: Duration = Duration::from_millis(1);

/// Lowest real-time priority: above every normal thread, below anything the host's own
/// real-time work uses.
const RT_PRIORITY: i32 = 1;

/// Budget first, then the policy: a real-time thread without a budget could hold a core.
fn go_realtime(budget: Duration) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let budget = u64::try_from(budget.as_micros()).unwrap_or(u64::MAX);
    let limited = getrlimit(Resource::RLIMIT_RTTIME).and_then(|(soft, hard)| {
        let hard = hard.min(budget.saturating_mul(2));
        setrlimit(Resource::RLIMIT_RTTIME, soft.min(budget).min(hard), hard)
    });
    if let Err(error) = limited {
        tracing::warn!(
            %error,
            "no real-time budget (RLIMIT_RTTIME) for the deadline responder; it runs as a \
             normal thread, and a starved host may delay its answers"
        );
        return;
    }
    match ringfence_sys::process::set_realtime_round_robin(RT_PRIORITY) {
        Ok(()) => tracing::info!("deadline responder runs under SCHED_RR"),
        Err(error) => tracing::warn!(
            %error,
            "the deadline responder could not get real-time priority (it needs CAP_SYS_NICE or \
             RLIMIT_RTPRIO); it runs as a normal thread, and a starved host may delay its answers"
        ),
    }
}

/// Runs until the watch queue is closed; then answers whatever is left.
pub fn run(core: &Core, budget: Duration) {
    go_realtime(budget);
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    // When this thread last blocked for certain. Every loop below stops once it has been busy
    // for MAX_BUSY since then, however much work is left, so the rest comes in time.
    let mut rested = Instant::now();
    loop {
        if rested.elapsed() >= MAX_BUSY {
            // Under a flood the channel is never empty, deadlines come microseconds apart and
            // nothing here blocks; a short sleep resets the real-time budget's count and lets
            // the host breathe.
            std::thread::sleep(REST);
            rested = Instant::now();
        }
        let now = Instant::now();
        while let Some(Reverse(entry)) = heap.peek() {
            if rested.elapsed() >= MAX_BUSY {
                break;
            } else if entry.0.ticket.answer().is_some() {
                heap.pop();
            } else if entry.0.deadline <= now {
                if let Some(Reverse(Entry(watch))) = heap.pop() {
                    core.answer_by_policy(
                        &watch.ticket,
                        &watch.pending,
                        Reason::Deadline,
                        watch.arrived,
                    );
                }
            } else {
                break;
            }
        }
        let wait = heap
            .peek()
            .map(|Reverse(e)| e.0.deadline.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100));
        let waiting = Instant::now();
        let taken = core
            .watches
            .take(wait, BURST, |watch| heap.push(Reverse(Entry(watch))));
        if taken == Taken::Closed {
            break;
        }
        if waiting.elapsed() >= PARKED {
            rested = Instant::now();
        }
        if core.stopping() {
            answer_all(core, &mut heap);
        }
    }
    answer_all(core, &mut heap);
}

fn answer_all(core: &Core, heap: &mut BinaryHeap<Reverse<Entry>>) {
    let mut rested = Instant::now();
    for Reverse(Entry(watch)) in heap.drain() {
        if rested.elapsed() >= MAX_BUSY {
            std::thread::sleep(REST);
            rested = Instant::now();
        }
        core.answer_by_policy(
            &watch.ticket,
            &watch.pending,
            Reason::Shutdown,
            watch.arrived,
        );
    }
}
