//! A flood of permission events that only the deadline responder answers (the engine is too
//! slow for any of them): deadlines a few tens of microseconds apart, for seconds. The responder
//! runs under `SCHED_RR` with an `RLIMIT_RTTIME` budget, and the kernel kills the whole process
//! (SIGXCPU, then SIGKILL) when a real-time thread runs past that budget without blocking. So
//! the flood runs in a child process of its own, and the test fails if the child dies by a
//! signal: the responder must rest on its own, however close together the deadlines come.
//!
//! The same flood runs a second time with the whole agent on one core. There the responder
//! preempts the threads that queue its watches, wherever they are, and must never wait for one
//! by spinning: a real-time thread that yields in a loop never lets a normal thread run on its
//! core (the responder's old lock-free channel did exactly that, and `ringfence demo` agents
//! died of `SIGXCPU`). Root only (real-time priority); it says why it skips otherwise.

mod common;

use common::{SCHED_RR, engine, policies_once_realtime, root_or_skip};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use ringfence_agent::{Agent, AgentConfig, MuteSet};
use ringfence_engine_host::Runtime;
use ringfence_protocol::FailurePolicy;
use ringfence_sensor::Ticket;
use ringfence_testkit::events::exec;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD: &str = "RINGFENCE_DEADLINE_FLOOD_CHILD";
/// The flood's child runs every agent thread on one core.
const ONE_CORE: &str = "one-core";

/// Events submitted, and how many per millisecond: 20,000 a second for four seconds, eight
/// times the real-time budget the flood's agent runs with.
const EVENTS: usize = 80_000;
const PER_MS: usize = 20;

fn flood(one_core: bool) {
    if one_core {
        // Threads inherit their creator's affinity: every agent thread starts on this core.
        let allowed = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
        let first = (0..CpuSet::count())
            .find(|&cpu| allowed.is_set(cpu).unwrap_or(false))
            .expect("a core");
        let mut one = CpuSet::new();
        one.set(first).expect("core");
        sched_setaffinity(Pid::from_raw(0), &one).expect("pin to one core");
    }
    let runtime = Runtime::new().expect("runtime");
    let slow = engine(
        &runtime,
        "faulty",
        FailurePolicy::FailOpen,
        Duration::from_millis(5),
        b"slow",
    );
    let config = AgentConfig {
        sensors: Vec::new(),
        discard_alerts: true,
        mute: MuteSet::default(),
        perm_deadline: Duration::from_millis(20),
        // The budget agents ran with when this was found: a responder that rests as it should
        // never comes near even this.
        realtime_budget: Duration::from_millis(500),
        workers: 2,
        queue_capacity: 4096,
        ..AgentConfig::default()
    };
    let agent = Agent::start(config, vec![slow]).expect("agent starts");
    let policies = policies_once_realtime();
    assert!(
        policies.contains(&SCHED_RR),
        "the responder runs under SCHED_RR, or this proves nothing: {policies:?}"
    );
    let tickets: Vec<Arc<Ticket>> = (0..EVENTS).map(|_| Arc::new(Ticket::detached())).collect();
    let started = Instant::now();
    for (i, ticket) in tickets.iter().enumerate() {
        agent.submit(exec("/usr/bin/ls"), Arc::clone(ticket));
        if i % PER_MS == PER_MS - 1 {
            // Paced by the clock, not by sleeps that may oversleep: the deadlines stay dense.
            let due = started + Duration::from_millis((i / PER_MS) as u64 + 1);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    let until = Instant::now() + Duration::from_secs(60);
    while tickets.iter().any(|t| t.answer().is_none()) {
        assert!(Instant::now() < until, "unanswered tickets");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = agent.shutdown();
    assert_eq!(
        stats.allowed, EVENTS as u64,
        "fail-open answers allow: {stats:?}"
    );
    assert!(
        stats.deadline_answers > EVENTS as u64 / 2,
        "the responder answered most of the flood: {stats:?}"
    );
}

#[test]
fn a_deadline_flood_never_runs_the_responder_past_its_real_time_budget() {
    run_flood(
        "a_deadline_flood_never_runs_the_responder_past_its_real_time_budget",
        false,
    );
}

#[test]
fn a_deadline_flood_on_one_core_never_leaves_the_responder_spinning() {
    run_flood(
        "a_deadline_flood_on_one_core_never_leaves_the_responder_spinning",
        true,
    );
}

/// Runs the flood in a child process (the kernel's kill takes the whole process).
fn run_flood(name: &str, one_core: bool) {
    if let Some(child) = std::env::var_os(CHILD) {
        flood(child == ONE_CORE);
        return;
    }
    if !root_or_skip(name) {
        return;
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, if one_core { ONE_CORE } else { "all" })
        .spawn()
        .expect("start the flood");
    let until = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the flood did not finish in 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.signal(),
        None,
        "the flood died by a signal (24 and 9 are the kernel's RLIMIT_RTTIME kills: the \
         responder ran past its real-time budget without blocking)"
    );
    assert!(status.success(), "the flood failed: {status}");
}
