//! Live engine swaps under load, without the kernel: every ticket answered exactly once while
//! the set is swapped many times; a validated swap refuses an engine that traps or is too slow
//! on recent events and the previous set keeps serving; an unvalidated swap to a slow engine
//! keeps every permission event within the agent's deadline. Runs anywhere, root or not.

mod common;

use common::{engine, stats_once_counted, within};
use ringfence_agent::{Agent, AgentConfig, MuteSet, SwapError};
use ringfence_engine_host::{EngineSettings, LoadedEngine, Runtime};
use ringfence_protocol::{Event, FailureKind, FailurePolicy};
use ringfence_sensor::Ticket;
use ringfence_testkit::events::exec;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(perm_deadline: Duration) -> AgentConfig {
    AgentConfig {
        sensors: Vec::new(),
        discard_alerts: true,
        mute: MuteSet::default(),
        perm_deadline,
        workers: 2,
        queue_capacity: 4096,
        ..AgentConfig::default()
    }
}

/// Exec and open events from the corpus: the ones a kernel would wait on.
fn permission_events(count: usize, seed: u64) -> Vec<Event> {
    ringfence_protocol::corpus::generate(count * 3, seed)
        .into_iter()
        .filter(|e| matches!(e, Event::Exec(_) | Event::Open(_)))
        .take(count)
        .collect()
}

fn wait_all(tickets: &[Arc<Ticket>], limit: Duration) {
    let until = Instant::now() + limit;
    while tickets.iter().any(|t| t.answer().is_none()) {
        assert!(Instant::now() < until, "tickets left unanswered");
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Engines {
    allowlist: Arc<LoadedEngine>,
    allowlist_v2: Arc<LoadedEngine>,
    ok: Arc<LoadedEngine>,
}

fn engines(runtime: &Runtime) -> Engines {
    let d = Duration::from_millis(100);
    Engines {
        allowlist: engine(
            runtime,
            "exec-allowlist",
            FailurePolicy::FailClosed,
            d,
            b"deny /usr/bin/curl\nallow /**\n",
        ),
        allowlist_v2: engine(
            runtime,
            "exec-allowlist",
            FailurePolicy::FailClosed,
            d,
            b"deny /usr/bin/curl\ndeny /usr/bin/wget\nallow /**\n",
        ),
        ok: engine(runtime, "faulty", FailurePolicy::FailOpen, d, b"ok"),
    }
}

#[test]
fn swap_under_load_answers_every_ticket_exactly_once() {
    within(Duration::from_secs(300), || {
        let runtime = Runtime::new().expect("runtime");
        let e = engines(&runtime);
        let agent = Arc::new(
            Agent::start(
                config(Duration::from_secs(2)),
                vec![Arc::clone(&e.allowlist)],
            )
            .expect("agent starts"),
        );
        let events = permission_events(20_000, 11);
        let submitted = events.len() as u64;
        let tickets: Vec<Arc<Ticket>> = events
            .iter()
            .map(|_| Arc::new(Ticket::detached()))
            .collect();
        let feeder = {
            let agent = Arc::clone(&agent);
            let tickets = tickets.clone();
            std::thread::spawn(move || {
                for (i, (event, ticket)) in events.into_iter().zip(tickets).enumerate() {
                    agent.submit(event, ticket);
                    // A steady stream rather than one burst: the swaps land mid-traffic.
                    if i % 200 == 199 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        };
        let sets = [
            vec![Arc::clone(&e.allowlist_v2)],
            vec![Arc::clone(&e.allowlist), Arc::clone(&e.ok)],
            vec![Arc::clone(&e.allowlist)],
        ];
        let mut swaps = 0u64;
        let mut last = agent.generation();
        while !feeder.is_finished() || swaps < 30 {
            let set = sets[swaps as usize % sets.len()].clone();
            // Alternate the two entry points: both must hand workers over.
            let generation = if swaps.is_multiple_of(2) {
                agent.swap_engines(set)
            } else {
                agent
                    .swap_engines_checked(set, &agent.recent_events())
                    .expect("a healthy set passes validation")
            };
            assert_eq!(generation, last + 1);
            last = generation;
            swaps += 1;
            std::thread::sleep(Duration::from_millis(3));
        }
        feeder.join().expect("feeder");
        wait_all(&tickets, Duration::from_secs(60));
        let stats = stats_once_counted(&agent, submitted);
        assert_eq!(stats.permission_events, submitted, "{stats:?}");
        assert_eq!(stats.allowed + stats.denied, submitted, "{stats:?}");
        assert_eq!(stats.swaps, swaps, "{stats:?}");
        assert_eq!(stats.swaps_refused, 0, "{stats:?}");
        assert_eq!(
            stats.lazy_engine_builds, 0,
            "no worker instantiated on the event path: {stats:?}"
        );
        assert_eq!(agent.generation(), 1 + swaps);
        assert!(
            agent.wait_serving(last, Duration::from_secs(5)),
            "every worker switched to the last set"
        );
        assert!(agent.recent_events().len() <= ringfence_agent::RECENT_EVENTS);
        let answered = tickets.iter().filter(|t| t.answer().is_some()).count() as u64;
        assert_eq!(answered, submitted);
        let agent = Arc::try_unwrap(agent).expect("feeder done");
        let stats = agent.shutdown();
        assert_eq!(stats.allowed + stats.denied, submitted, "{stats:?}");
    });
}

#[test]
fn validated_swap_refuses_an_engine_that_traps_and_the_previous_keeps_serving() {
    within(Duration::from_secs(120), || {
        let runtime = Runtime::new().expect("runtime");
        let e = engines(&runtime);
        let agent = Agent::start(config(Duration::from_secs(2)), vec![Arc::clone(&e.ok)])
            .expect("agent starts");
        // Traffic so the agent has a sample, including the one exec the new content trips on.
        let mut tickets = Vec::new();
        for event in permission_events(50, 3)
            .into_iter()
            .chain([exec("/usr/bin/crashme")])
        {
            let ticket = Arc::new(Ticket::detached());
            agent.submit(event, Arc::clone(&ticket));
            tickets.push(ticket);
        }
        wait_all(&tickets, Duration::from_secs(30));
        let sample = agent.recent_events();
        assert!(!sample.is_empty());

        // Content the component refuses never gets as far as a swap.
        let settings = EngineSettings::new("faulty");
        let refused = LoadedEngine::load(
            &runtime,
            settings,
            ringfence_bundled_engines::faulty(),
            b"explode",
        )
        .expect_err("unknown mode refused by load-content");
        assert_eq!(refused.kind(), FailureKind::ContentRejected);

        for content in [&b"trap"[..], b"trap /usr/bin/crashme"] {
            let trap = engine(
                &runtime,
                "faulty",
                FailurePolicy::FailClosed,
                Duration::from_millis(100),
                content,
            );
            let error = agent
                .swap_engines_checked(vec![Arc::clone(&e.ok), trap], &sample)
                .expect_err("trap refused");
            assert!(matches!(error, SwapError::Validation { .. }), "{error}");
            assert_eq!(error.record().kind, FailureKind::Trap, "{error}");
            assert_eq!(error.record().engine, "faulty");
            let message = error.to_string();
            assert!(
                message.contains("faulty") && message.contains("trap"),
                "{message}"
            );
        }
        assert_eq!(agent.generation(), 1, "previous set still installed");
        assert_eq!(agent.stats().swaps_refused, 2);

        // The previous (fail-open, allow-everything) set still answers, with no failures.
        let failures_before = agent.stats().engine_failures;
        let after: Vec<Arc<Ticket>> = (0..200).map(|_| Arc::new(Ticket::detached())).collect();
        for ticket in &after {
            agent.submit(exec("/usr/bin/crashme"), Arc::clone(ticket));
        }
        wait_all(&after, Duration::from_secs(30));
        assert!(after.iter().all(|t| t.answer() == Some(true)));
        let stats = agent.shutdown();
        assert_eq!(stats.engine_failures, failures_before, "{stats:?}");
        assert_eq!(stats.deadline_answers, 0, "{stats:?}");
        assert_eq!(stats.allowed + stats.denied, stats.permission_events);
    });
}

#[test]
fn slow_engine_is_refused_when_validated_and_within_deadline_when_forced() {
    within(Duration::from_secs(180), || {
        let runtime = Runtime::new().expect("runtime");
        let e = engines(&runtime);
        let perm_deadline = Duration::from_millis(50);
        let agent = Arc::new(
            Agent::start(config(perm_deadline), vec![Arc::clone(&e.ok)]).expect("agent starts"),
        );
        let warmup: Vec<Arc<Ticket>> = (0..20).map(|_| Arc::new(Ticket::detached())).collect();
        for ticket in &warmup {
            agent.submit(exec("/usr/bin/ls"), Arc::clone(ticket));
        }
        wait_all(&warmup, Duration::from_secs(10));
        let slow = engine(
            &runtime,
            "faulty",
            FailurePolicy::FailOpen,
            Duration::from_millis(5),
            b"slow",
        );
        let error = agent
            .swap_engines_checked(vec![Arc::clone(&slow)], &agent.recent_events())
            .expect_err("slow engine refused");
        assert_eq!(error.record().kind, FailureKind::Deadline, "{error}");
        assert_eq!(agent.generation(), 1);

        // Forced in under load: nothing may wait past the agent's deadline (plus scheduling
        // slack on a shared CI machine), and every event is answered once. The wait is the
        // agent's own measurement, from each event's submission to its answer: this thread
        // noticing an answer late (it sleeps, and is starved like any other) says nothing
        // about when the answer was given.
        let events = permission_events(3000, 5);
        let submitted = events.len() as u64 + warmup.len() as u64;
        let tickets: Vec<Arc<Ticket>> = events
            .iter()
            .map(|_| Arc::new(Ticket::detached()))
            .collect();
        let _ = agent.take_latency();
        let mut swapped = false;
        for (i, (event, ticket)) in events.into_iter().zip(&tickets).enumerate() {
            if i == tickets.len() / 3 && !swapped {
                agent.swap_engines(vec![Arc::clone(&slow)]);
                swapped = true;
            }
            agent.submit(event, Arc::clone(ticket));
            // ~3000 events/s.
            if i % 10 == 9 {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        wait_all(&tickets, Duration::from_secs(60));
        let latency = agent.take_latency();
        assert_eq!(latency.count, tickets.len() as u64, "{latency:?}");
        let worst = Duration::from_micros(latency.max_us as u64);
        let slack = Duration::from_millis(250);
        assert!(
            worst <= perm_deadline + slack,
            "worst wait {worst:?} past deadline {perm_deadline:?} + {slack:?}"
        );
        let stats = stats_once_counted(&agent, submitted);
        assert_eq!(agent.generation(), 2);
        assert_eq!(stats.allowed + stats.denied, submitted, "{stats:?}");
        assert!(
            stats.engine_failures > 0 || stats.deadline_answers > 0,
            "the slow engine was answered for by policy: {stats:?}"
        );
        assert_eq!(stats.denied, 0, "fail-open policy allows: {stats:?}");
        assert_eq!(stats.lazy_engine_builds, 0, "{stats:?}");
        let agent = Arc::try_unwrap(agent).expect("single owner");
        agent.shutdown();
    });
}
