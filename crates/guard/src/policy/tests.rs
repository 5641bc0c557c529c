//! Unit and property tests of the crash-window / boot-counter state machine.

use super::*;
use proptest::prelude::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn machine(failures: u32, window: u64, tries: u32) -> Machine {
    let policy = Policy {
        failures,
        window: secs(window),
        boot_tries: tries,
    };
    Machine::new(policy, GuardState::fresh(tries), None)
}

#[test]
fn third_crash_in_window_restores_lkg() {
    let mut m = machine(3, 60, 10);
    assert_eq!(m.before_start(0).0, Slot::Current);
    assert_eq!(
        m.on_failure(secs(1), 1, &Failure::Exited(1)),
        Decision::Restart { attempt: 0 }
    );
    m.before_start(1);
    assert_eq!(
        m.on_failure(secs(2), 2, &Failure::Hung),
        Decision::Restart { attempt: 1 }
    );
    m.before_start(2);
    let d = m.on_failure(secs(3), 3, &Failure::Signaled("SIGSEGV".into()));
    let Decision::RestoreLkg(r) = d else {
        panic!("expected a restore, got {d:?}")
    };
    assert_eq!(r.reason, RestoreReason::CrashLoop);
    assert!(r.detail.contains("SIGSEGV"), "{}", r.detail);
    assert_eq!(m.before_start(3), (Slot::Lkg, None));
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    let mut m = machine(3, 60, 100);
    for i in 0..10 {
        m.before_start(0);
        let d = m.on_failure(secs(i * 31), 0, &Failure::Exited(1));
        assert!(matches!(d, Decision::Restart { .. }), "{d:?}");
    }
}

#[test]
fn boot_counter_runs_out_and_pins_lkg() {
    let mut m = machine(100, 60, 2);
    assert_eq!(m.before_start(0).0, Slot::Current);
    assert_eq!(m.before_start(0).0, Slot::Current);
    let (slot, restore) = m.before_start(7);
    assert_eq!(slot, Slot::Lkg);
    assert_eq!(restore.map(|r| r.reason), Some(RestoreReason::BootLoop));
    assert!(m.state().pinned_lkg.is_some());
}

#[test]
fn healthy_blesses_and_resets_tries() {
    let mut m = machine(3, 60, 3);
    m.before_start(0);
    m.before_start(0);
    assert_eq!(m.state().boot_tries_left, 1);
    m.on_healthy();
    assert_eq!(m.state().boot_tries_left, 3);
    assert!(m.state().blessed);
}

#[test]
fn a_new_release_lifts_the_pin() {
    let mut state = GuardState::safe_default(3, 0, "corrupt");
    state.release = Some("r1".into());
    let m = Machine::new(Policy::default(), state.clone(), Some("r1".into()));
    assert_eq!(m.slot(), Slot::Lkg);
    let m = Machine::new(Policy::default(), state, Some("r2".into()));
    assert_eq!(m.slot(), Slot::Current);
    assert_eq!(m.state().boot_tries_left, 3);
}

#[derive(Debug, Clone)]
enum Step {
    Start,
    Healthy,
    Fail(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Start),
        Just(Step::Healthy),
        (0u64..40).prop_map(Step::Fail),
    ]
}

proptest! {
    /// Whatever happens: tries-left stays within bounds; LKG, once chosen, stays; on the
    /// current slot there are never N failures inside one window without a restore; and the
    /// current release is never started more than `tries` times in a row without being healthy.
    #[test]
    fn state_machine_invariants(
        failures in 1u32..6,
        window in 1u64..120,
        tries in 0u32..6,
        steps in proptest::collection::vec(step(), 0..200),
    ) {
        let mut m = machine(failures, window, tries);
        let mut now = Duration::ZERO;
        let mut current_failures: Vec<Duration> = Vec::new();
        let mut unhealthy_starts = 0u32;
        let mut on_lkg = false;
        for s in steps {
            match s {
                Step::Start => {
                    let (slot, _) = m.before_start(now.as_secs());
                    if slot == Slot::Current {
                        prop_assert!(!on_lkg, "left LKG without a new release");
                        unhealthy_starts += 1;
                        prop_assert!(unhealthy_starts <= tries);
                    } else {
                        on_lkg = true;
                    }
                }
                Step::Healthy => {
                    m.on_healthy();
                    if !on_lkg {
                        unhealthy_starts = 0;
                    }
                }
                Step::Fail(dt) => {
                    now += Duration::from_secs(dt);
                    let was_lkg = m.slot() == Slot::Lkg;
                    let d = m.on_failure(now, now.as_secs(), &Failure::Exited(1));
                    if !was_lkg {
                        current_failures.push(now);
                        current_failures.retain(|t| now - *t < Duration::from_secs(window));
                        let expect_restore = current_failures.len() >= failures as usize;
                        prop_assert_eq!(matches!(d, Decision::RestoreLkg(_)), expect_restore);
                        if expect_restore {
                            on_lkg = true;
                        }
                    } else {
                        prop_assert!(matches!(d, Decision::Restart { .. }), "LKG has nowhere to go");
                    }
                }
            }
            prop_assert!(m.state().boot_tries_left <= tries);
            prop_assert_eq!(m.slot() == Slot::Lkg, on_lkg);
        }
    }
}

#[test]
fn requested_stops_are_told_from_crashes() {
    let requested = |e: &Ending| matches!(e, Ending::Requested(_));
    // The agent said `stopping` (a signal reached it), or the guard has a stop waiting.
    assert!(requested(&classify(Failure::Exited(0), true, false)));
    assert!(requested(&classify(Failure::Exited(0), false, true)));
    // Dying of a termination signal is obeying it.
    for signal in ["SIGTERM", "SIGINT", "SIGHUP"] {
        assert!(requested(&classify(
            Failure::Signaled(signal.into()),
            false,
            false
        )));
    }
    // Exit 0 nobody asked for leaves the host unprotected: a failure.
    assert_eq!(
        classify(Failure::Exited(0), false, false),
        Ending::Failed(Failure::ExitedUnasked)
    );
    // Non-zero exits, fatal signals and hangs are crashes whatever was asked.
    for outcome in [
        Failure::Exited(1),
        Failure::Signaled("SIGSEGV".into()),
        Failure::Signaled("SIGKILL".into()),
        Failure::Hung,
    ] {
        assert_eq!(
            classify(outcome.clone(), true, true),
            Ending::Failed(outcome)
        );
    }
}

#[test]
fn requested_stop_gives_the_boot_try_back_and_counts_nothing() {
    let mut m = machine(3, 60, 3);
    for _ in 0..10 {
        assert_eq!(m.before_start(0).0, Slot::Current);
        m.on_requested_stop();
    }
    assert_eq!(m.state().boot_tries_left, 3);
    assert_eq!(m.failures_in_window(), 0);
    assert_eq!(m.state().restarts, 0);
    // A blessed run already refilled the counter: nothing to give back beyond the maximum.
    m.before_start(0);
    m.on_healthy();
    m.on_requested_stop();
    assert_eq!(m.state().boot_tries_left, 3);
}

#[test]
fn requested_stop_on_lkg_keeps_the_pin() {
    let mut m = machine(100, 60, 1);
    m.before_start(0);
    let (slot, _) = m.before_start(0);
    assert_eq!(slot, Slot::Lkg);
    m.on_requested_stop();
    assert_eq!(m.before_start(0).0, Slot::Lkg);
    assert_eq!(m.state().boot_tries_left, 0);
}
