//! Fault injection against the real wasm host: every `faulty` mode, quarantine, policies,
//! and every kind of bad engine input. Each test checks that the host survives, the event is
//! answered by policy within the deadline plus slack, and the failure is classified.

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use ringfence_bundled_engines as bundled;
use ringfence_engine_host::{EngineSettings, EngineWorker, LoadedEngine, QuarantineRule, Runtime};
use ringfence_protocol::{Action, Event, FailureKind, FailurePolicy, ForkEvent};
use ringfence_testkit::events::exec;
use std::sync::Arc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_millis(5);
/// A call is interrupted once it used its deadline in CPU time, so on a loaded 2-core CI
/// machine its wall time stretches by the share of a core its thread gets; the epoch tick
/// itself is 0.5 ms.
const SLACK: Duration = Duration::from_millis(250);

fn settings(policy: FailurePolicy) -> EngineSettings {
    EngineSettings::new("faulty")
        .with_policy(policy)
        .with_deadline(DEADLINE)
        .with_memory_limit(16 << 20)
        .with_quarantine(QuarantineRule {
            failures: 1000,
            window: Duration::from_secs(60),
        })
}

fn faulty(runtime: &Runtime, mode: &str, policy: FailurePolicy) -> Arc<LoadedEngine> {
    LoadedEngine::load(
        runtime,
        settings(policy),
        bundled::faulty(),
        mode.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("faulty {mode} loads: {e}"))
}

fn worker(engine: &Arc<LoadedEngine>) -> EngineWorker {
    let mut worker = EngineWorker::new(Arc::clone(engine)).expect("instantiates");
    assert!(
        worker.wait_for_spare(Duration::from_secs(10)),
        "spare is built"
    );
    worker
}

/// Runs one failing event and checks the common contract; returns the failure record.
fn assert_contained(mode: &str, kind: FailureKind) -> ringfence_protocol::FailureRecord {
    assert_contained_with(mode, kind, settings(FailurePolicy::FailOpen))
}

fn assert_contained_with(
    mode: &str,
    kind: FailureKind,
    settings: EngineSettings,
) -> ringfence_protocol::FailureRecord {
    let deadline = settings.deadline;
    let runtime = Runtime::new().expect("runtime");
    let engine = LoadedEngine::load(&runtime, settings, bundled::faulty(), mode.as_bytes())
        .unwrap_or_else(|e| panic!("faulty {mode} loads: {e}"));
    let mut worker = worker(&engine);

    let first = worker.decide(&exec("/usr/bin/ls"));
    let record = first
        .failure
        .clone()
        .unwrap_or_else(|| panic!("{mode} fails"));
    assert_eq!(record.kind, kind, "{mode}: {record:?}");
    assert_eq!(
        first.verdict.action,
        Action::Observe,
        "fail-open allows with an alert"
    );
    assert!(
        first.elapsed <= deadline + SLACK,
        "{mode}: answered after {:?}",
        first.elapsed
    );
    assert_eq!(record.event_kind.as_deref(), Some("exec"));
    assert_eq!(record.content_sha256.len(), 64);

    // The next event reaches a fresh instance (it fails the same way, not as a poisoned one).
    let second = worker.decide(&exec("/usr/bin/id"));
    assert_eq!(worker.respawns(), 2);
    let again = second
        .failure
        .expect("fresh instance runs the same content");
    assert_eq!(again.kind, kind);
    record
}

#[test]
fn ok_mode_allows_without_failures() {
    let runtime = Runtime::new().expect("runtime");
    let engine = faulty(&runtime, "ok", FailurePolicy::FailOpen);
    let mut worker = worker(&engine);
    for _ in 0..100 {
        let decision = worker.decide(&exec("/usr/bin/ls"));
        assert!(decision.failure.is_none());
        assert_eq!(decision.verdict.action, Action::Allow);
    }
    assert_eq!(worker.respawns(), 0);
}

#[test]
fn trap_is_contained_and_symbolised() {
    let record = assert_contained("trap", FailureKind::Trap);
    assert_eq!(
        record.trap_code.as_deref(),
        Some("unreachable_code_reached")
    );
    assert!(record.top_function().is_some(), "{:?}", record.backtrace);
}

#[test]
fn infinite_loop_hits_the_deadline() {
    let record = assert_contained("loop", FailureKind::Deadline);
    assert!(record.elapsed_us >= DEADLINE.as_micros() as u64);
}

#[test]
fn slow_engine_hits_the_deadline() {
    assert_contained("slow", FailureKind::Deadline);
}

/// Pins the calling thread to CPU 0.
fn pin_to_cpu0() {
    let mut cpus = CpuSet::new();
    cpus.set(0).expect("cpu 0");
    sched_setaffinity(Pid::from_raw(0), &cpus).expect("pin to cpu 0");
}

#[test]
fn a_call_starved_by_the_host_is_not_the_engines_fault() {
    let runtime = Runtime::new().expect("runtime");
    // `slow` spins for twenty times its deadline of wall time.
    let engine = faulty(&runtime, "slow", FailurePolicy::FailOpen);
    let mut worker = worker(&engine);
    let control = worker.decide(&exec("/usr/bin/ls"));
    assert_eq!(
        control.failure.map(|f| f.kind),
        Some(FailureKind::Deadline),
        "given a core, slow uses its whole budget"
    );

    // Now share CPU 0 with three busy threads at the lowest priority: the engine's thread
    // gets a sliver of the core, so its 100 ms of wall time hold far less than its 5 ms
    // budget of its own CPU time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs: Vec<_> = (0..3)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                pin_to_cpu0();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            })
        })
        .collect();
    let starved = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                pin_to_cpu0();
                let tid = nix::unistd::gettid().to_string();
                let reniced = std::process::Command::new("renice")
                    .args(["-n", "19", "-p", &tid])
                    .output()
                    .expect("renice runs");
                assert!(reniced.status.success(), "{reniced:?}");
                (0..3)
                    .map(|_| worker.decide(&exec("/usr/bin/ls")))
                    .collect::<Vec<_>>()
            })
            .join()
            .expect("starved caller")
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for hog in hogs {
        hog.join().expect("hog");
    }
    let blamed: Vec<_> = starved.iter().filter_map(|d| d.failure.as_ref()).collect();
    assert!(
        blamed.is_empty(),
        "a starved call is the host's doing, not a deadline failure: {blamed:?}"
    );
    assert!(
        starved.iter().any(|d| d.elapsed >= DEADLINE),
        "the calls were starved past their deadline: {:?}",
        starved.iter().map(|d| d.elapsed).collect::<Vec<_>>()
    );
}

#[test]
fn unbounded_allocation_under_the_default_deadline_is_memory() {
    // The agent's defaults: 5 ms per call, 64 MiB per instance.
    let settings = settings(FailurePolicy::FailOpen).with_memory_limit(64 << 20);
    let record = assert_contained_with("oom", FailureKind::Memory, settings);
    assert!(record.message.contains("memory"), "{}", record.message);
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    // Touching 16 MiB can take longer than 5 ms on a busy machine; this test is about memory.
    let settings = settings(FailurePolicy::FailOpen).with_deadline(Duration::from_millis(500));
    let record = assert_contained_with("oom", FailureKind::Memory, settings);
    assert!(record.message.contains("memory"), "{}", record.message);
}

#[test]
fn panic_is_a_trap_with_the_panic_message() {
    let record = assert_contained("panic", FailureKind::Trap);
    assert!(
        record.message.contains("deliberate panic"),
        "stderr is captured: {}",
        record.message
    );
}

#[test]
fn channel_file_291_traps_in_parse_template() {
    let record = assert_contained("cf291", FailureKind::Trap);
    assert_eq!(record.trap_code.as_deref(), Some("memory_out_of_bounds"));
    let names: Vec<_> = record
        .backtrace
        .iter()
        .filter_map(|f| f.function.as_deref())
        .collect();
    assert!(
        names.iter().any(|n| n == &"faulty::parse_template"),
        "backtrace names the faulting function: {names:?}"
    );
}

#[test]
fn next_event_after_a_trap_is_served_by_a_fresh_instance() {
    let runtime = Runtime::new().expect("runtime");
    let engine = faulty(&runtime, "trap /usr/bin/crashme", FailurePolicy::FailOpen);
    let mut worker = worker(&engine);
    assert_eq!(
        worker.decide(&exec("/usr/bin/ls")).verdict.action,
        Action::Allow
    );
    let crashed = worker.decide(&exec("/usr/bin/crashme"));
    assert_eq!(crashed.failure.map(|f| f.kind), Some(FailureKind::Trap));
    let next = worker.decide(&exec("/usr/bin/ls"));
    assert!(next.failure.is_none(), "the spare serves the next event");
    assert_eq!(next.verdict.action, Action::Allow);
    assert_eq!(worker.respawns(), 1);
}

#[test]
fn fail_closed_denies() {
    let runtime = Runtime::new().expect("runtime");
    let engine = faulty(&runtime, "trap", FailurePolicy::FailClosed);
    let mut worker = worker(&engine);
    let decision = worker.decide(&exec("/usr/bin/ls"));
    assert_eq!(decision.verdict.action, Action::Deny);
    assert!(decision.verdict.message.contains("fail-closed"));
}

#[test]
fn quarantine_after_k_failures_stops_calling_the_engine() {
    let runtime = Runtime::new().expect("runtime");
    let settings = settings(FailurePolicy::FailClosed).with_quarantine(QuarantineRule {
        failures: 3,
        window: Duration::from_secs(60),
    });
    let engine = LoadedEngine::load(&runtime, settings, bundled::faulty(), b"loop").expect("loads");
    let mut worker = worker(&engine);
    let mut report = None;
    for _ in 0..3 {
        let decision = worker.decide(&exec("/usr/bin/ls"));
        assert_eq!(
            decision.failure.map(|f| f.kind),
            Some(FailureKind::Deadline)
        );
        report = report.or(decision.quarantined);
    }
    let report = report.expect("third failure quarantines");
    assert_eq!(report.failures, 3);
    assert!(report.message.contains("quarantined"), "{}", report.message);
    assert!(engine.is_quarantined());

    // No more calls: answered by policy at once, no new instance.
    let decision = worker.decide(&exec("/usr/bin/ls"));
    assert_eq!(decision.verdict.action, Action::Deny);
    assert_eq!(
        decision.failure.map(|f| f.kind),
        Some(FailureKind::Quarantined)
    );
    assert!(decision.elapsed < DEADLINE, "{:?}", decision.elapsed);
    assert_eq!(worker.respawns(), 3);
}

#[test]
fn batch_failure_answers_every_event_and_counts_once() {
    let runtime = Runtime::new().expect("runtime");
    let engine = faulty(&runtime, "trap", FailurePolicy::FailOpen);
    let mut worker = worker(&engine);
    let events: Vec<Event> = (0..10)
        .map(|i| {
            Event::Fork(ForkEvent {
                parent_pid: 1,
                child_pid: 100 + i,
            })
        })
        .collect();
    let decisions = worker.decide_batch(&events);
    assert_eq!(decisions.len(), 10);
    assert_eq!(decisions.iter().filter(|d| d.failure.is_some()).count(), 1);
    assert!(
        decisions
            .iter()
            .all(|d| d.verdict.action == Action::Observe)
    );
}

#[test]
fn allowlist_denies_by_rule() {
    let runtime = Runtime::new().expect("runtime");
    let content = b"# test\nallow /usr/bin/*\ndeny /bin/sh\ndefault deny\n";
    let engine = LoadedEngine::load(
        &runtime,
        EngineSettings::new("exec-allowlist"),
        bundled::exec_allowlist(),
        content,
    )
    .expect("loads");
    assert_eq!(engine.content_summary().rules, 2);
    let mut worker = worker(&engine);
    assert_eq!(
        worker.decide(&exec("/usr/bin/ls")).verdict.action,
        Action::Allow
    );
    let denied = worker.decide(&exec("/bin/sh")).verdict;
    assert_eq!(denied.action, Action::Deny);
    assert_eq!(denied.rule_id, "exec-allowlist:3");
    assert!(denied.message.contains("/bin/sh"), "{}", denied.message);
    let by_default = worker.decide(&exec("/opt/x")).verdict;
    assert_eq!(by_default.action, Action::Deny);
    assert_eq!(by_default.rule_id, "exec-allowlist:default");
}

mod bad_input {
    use super::*;

    fn load_error(wasm: &[u8], content: &[u8]) -> ringfence_engine_host::LoadError {
        let runtime = Runtime::new().expect("runtime");
        LoadedEngine::load(&runtime, EngineSettings::new("x"), wasm, content)
            .expect_err("must not load")
    }

    #[test]
    fn garbage_bytes() {
        let err = load_error(b"this is not wasm at all", b"");
        assert_eq!(err.kind(), FailureKind::InvalidComponent);
        assert!(
            err.to_string().contains("not a valid wasm component"),
            "{err}"
        );
    }

    #[test]
    fn core_module_instead_of_component() {
        let err = load_error(b"\0asm\x01\0\0\0", b"");
        assert_eq!(err.kind(), FailureKind::InvalidComponent);
        assert!(err.to_string().contains("core wasm module"), "{err}");
    }

    #[test]
    fn component_of_the_wrong_world() {
        // The smallest valid component: header only, exporting nothing.
        let err = load_error(b"\0asm\x0d\0\x01\0", b"");
        assert_eq!(err.kind(), FailureKind::InvalidComponent);
        assert!(err.to_string().contains("ringfence:engine@0.1.0"), "{err}");
    }

    #[test]
    fn huge_component() {
        let mut huge = vec![0u8; ringfence_engine_host::MAX_COMPONENT_BYTES + 1];
        huge[..8].copy_from_slice(b"\0asm\x0d\0\x01\0");
        let err = load_error(&huge, b"");
        assert_eq!(err.kind(), FailureKind::InvalidComponent);
        assert!(err.to_string().contains("more than"), "{err}");
    }

    #[test]
    fn content_the_engine_rejects() {
        let err = load_error(
            bundled::exec_allowlist(),
            b"allow /usr/bin/*\nfrobnicate /x\n",
        );
        assert_eq!(err.kind(), FailureKind::ContentRejected);
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = load_error(bundled::faulty(), b"explode");
        assert_eq!(err.kind(), FailureKind::ContentRejected);
    }
}
