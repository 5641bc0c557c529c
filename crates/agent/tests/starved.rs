//! The hard deadline on a host whose every core is busy: the responder runs under `SCHED_RR`,
//! so high-priority CPU hogs on all cores (and engine workers that cannot get a core) do not
//! delay its answers. Needs root (real-time priority, and hogs above normal priority).

mod common;

use common::{SCHED_RR, engine, policies_once_realtime, root_or_skip, within};
use ringfence_agent::{Agent, AgentConfig, MuteSet};
use ringfence_engine_host::Runtime;
use ringfence_protocol::FailurePolicy;
use ringfence_sensor::Ticket;
use ringfence_testkit::events::exec;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Makes thread `tid` the most favoured normal thread of the host (nice -20).
fn renice(tid: i32, nice: i32) {
    let status = std::process::Command::new("renice")
        .args(["-n", &nice.to_string(), "-p", &tid.to_string()])
        .output()
        .expect("renice runs");
    assert!(status.status.success(), "{status:?}");
}

#[test]
fn the_deadline_holds_with_a_cpu_hog_on_every_core() {
    if !root_or_skip("the_deadline_holds_with_a_cpu_hog_on_every_core") {
        return;
    }
    within(Duration::from_secs(120), || {
        let runtime = Runtime::new().expect("runtime");
        // Loops until its CPU budget is spent: the workers need a core the hogs hold.
        let looping = engine(
            &runtime,
            "faulty",
            FailurePolicy::FailOpen,
            Duration::from_millis(5),
            b"loop",
        );
        let perm_deadline = Duration::from_millis(20);
        let config = AgentConfig {
            sensors: Vec::new(),
            discard_alerts: true,
            mute: MuteSet::default(),
            perm_deadline,
            workers: 2,
            queue_capacity: 4096,
            ..AgentConfig::default()
        };
        let agent = Agent::start(config, vec![looping]).expect("agent starts");
        let policies = policies_once_realtime();
        assert_eq!(
            policies.iter().filter(|p| **p == SCHED_RR).count(),
            1,
            "the responder, and only it, runs under SCHED_RR: {policies:?}"
        );

        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let stop = Arc::new(AtomicBool::new(false));
        let hogs: Vec<_> = (0..cores * 2)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    renice(nix::unistd::gettid().as_raw(), -20);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // This thread plays the fanotify reader: it stamps each event's arrival and hands it
        // to the responder. Starved between the two, it would delay what no responder can
        // answer before it is told; so it runs at real-time priority too, and what is
        // measured is the responder.
        let chrt = std::process::Command::new("chrt")
            .args(["-r", "-p", "1", &nix::unistd::gettid().as_raw().to_string()])
            .output()
            .expect("chrt runs");
        assert!(chrt.status.success(), "{chrt:?}");
        let _ = agent.take_latency();
        let tickets: Vec<Arc<Ticket>> = (0..200).map(|_| Arc::new(Ticket::detached())).collect();
        for ticket in &tickets {
            agent.submit(exec("/usr/bin/ls"), Arc::clone(ticket));
            std::thread::sleep(Duration::from_millis(2));
        }
        let until = Instant::now() + Duration::from_secs(60);
        while tickets.iter().any(|t| t.answer().is_none()) {
            assert!(Instant::now() < until, "unanswered tickets");
            std::thread::sleep(Duration::from_millis(5));
        }
        let latency = agent.take_latency();
        stop.store(true, Ordering::Relaxed);
        for hog in hogs {
            hog.join().expect("hog");
        }
        let stats = agent.shutdown();
        assert_eq!(latency.count, 200, "{latency:?}");
        // Generous: the point is milliseconds, where a starved responder took a second.
        let slack = Duration::from_millis(100);
        assert!(
            latency.max_us <= (perm_deadline + slack).as_micros() as f64,
            "worst answer after {} µs, deadline {perm_deadline:?} + {slack:?}; {stats:?}",
            latency.max_us
        );
        assert!(
            stats.deadline_answers > 0,
            "the responder answered: {stats:?}"
        );
    });
}
