//! Whole-run tests: a tiny fleet whose answers follow by hand from the model, determinism,
//! the headline comparisons, and agreement with the server's own `step` on a full fleet view.

use crate::{FaultKind, FaultModel, Outcome, SimConfig, Strategy, run_strategy, simulate};

/// Ten identical agents: heartbeat at 10 s, 20 s, ...; install 5 s after hearing; crash 20 s
/// after installing; reports visible 5 s later; restore takes 10 s.
fn tiny(fault_fraction: f64, restore_failure_fraction: f64) -> SimConfig {
    SimConfig {
        endpoints: 10,
        seed: 3,
        model: FaultModel {
            kind: FaultKind::Crash,
            fault_fraction,
            time_to_fault_ms: 20_000,
            heartbeat_ms: 10_000,
            report_delay_ms: 5_000,
            download_ms: 5_000,
            restore_ms: 10_000,
            restore_failure_fraction,
            crash_reports_per_loop: 3,
            jitter: false,
        },
        controller_tick_ms: 1_000,
        max_time_ms: 3_600_000,
    }
}

fn minutes(seconds: f64) -> Option<f64> {
    Some(seconds / 60.0)
}

#[test]
fn tiny_fleet_all_crash_and_restore_by_hand() {
    let config = tiny(1.0, 0.0);
    let r = run_strategy(&config, &Strategy::all_at_once(600_000), true).expect("runs");
    // Heard at 10 s, installed at 15 s, crashed at 35 s, reports seen at 40 s: halt at 40 s.
    // Restored at 45 s.
    assert_eq!(r.hosts_reached, 10);
    assert_eq!(r.blast_radius_pct, 100.0);
    assert_eq!(r.hosts_crashed, 10);
    assert_eq!(r.hands_on_hosts, 0);
    assert_eq!(r.outcome, Outcome::RolledBack);
    assert_eq!(r.time_to_halt_min, minutes(40.0));
    assert_eq!(r.time_to_recover_min, minutes(45.0));
    assert_eq!(r.recover_after_halt_min, minutes(5.0));
    assert_eq!(r.first_signal_min, minutes(40.0));
    assert_eq!(r.halt_after_signal_min, minutes(0.0));
    assert!(
        r.reason
            .as_deref()
            .is_some_and(|why| why.contains("failure reports per agent (30 reports from")),
        "{:?}",
        r.reason
    );
}

#[test]
fn tiny_fleet_whose_restores_fail_trips_the_heartbeat_gate() {
    let config = tiny(1.0, 1.0);
    let r = run_strategy(&config, &Strategy::all_at_once(600_000), true).expect("runs");
    // Crashed at 35 s with no reports; the last heartbeat was at 30 s and the timeout is three
    // intervals, so the hosts are silent from 61 s.
    assert_eq!(r.hands_on_hosts, 10);
    assert_eq!(r.time_to_halt_min, minutes(61.0));
    assert_eq!(r.time_to_recover_min, minutes(61.0));
    assert!(
        r.reason
            .as_deref()
            .is_some_and(|why| why.contains("now silent (10 of 10)")),
        "{:?}",
        r.reason
    );
}

#[test]
fn tiny_fleet_with_a_good_release_completes_after_every_bake() {
    let config = tiny(0.0, 0.0);
    let strategy = Strategy::parse("two=50,100", 60_000).expect("valid");
    let r = run_strategy(&config, &strategy, true).expect("runs");
    assert_eq!(r.outcome, Outcome::Completed);
    assert_eq!(r.hosts_reached, 10);
    assert_eq!(r.time_to_halt_min, None);
    assert_eq!(r.time_to_recover_min, None);
    assert_eq!(r.max_ring, 1);
}

#[test]
fn the_same_seed_gives_the_same_result_and_another_seed_does_not() {
    let mut config = SimConfig {
        endpoints: 20_000,
        seed: 11,
        ..SimConfig::default()
    };
    let strategies = [
        Strategy::all_at_once(600_000),
        Strategy::default_rings(600_000),
    ];
    let first = simulate(&config, &strategies).expect("runs");
    let again = simulate(&config, &strategies).expect("runs");
    assert_eq!(first, again);
    config.seed = 12;
    let other = simulate(&config, &strategies).expect("runs");
    assert_ne!(first.strategies[1].series, other.strategies[1].series);
}

#[test]
fn all_at_once_reaches_every_host() {
    let config = SimConfig {
        endpoints: 50_000,
        ..SimConfig::default()
    };
    let r = run_strategy(&config, &Strategy::all_at_once(600_000), false).expect("runs");
    assert_eq!(r.hosts_reached, 50_000);
    assert_eq!(r.outcome, Outcome::RolledBack);
}

#[test]
fn default_rings_keep_the_bad_release_in_the_canary_ring() {
    let config = SimConfig {
        endpoints: 100_000,
        ..SimConfig::default()
    };
    let r = run_strategy(&config, &Strategy::default_rings(600_000), false).expect("runs");
    assert_eq!(r.outcome, Outcome::RolledBack);
    assert_eq!(r.max_ring, 0);
    // The canary ring is 1% of the fleet, give or take hashing.
    assert!(
        (0.8..1.2).contains(&r.blast_radius_pct),
        "{}",
        r.blast_radius_pct
    );
    assert!(r.time_to_recover_min.is_some());
}

#[test]
fn totals_agree_with_the_controllers_own_step_on_a_jittered_fleet() {
    // Ring 0 of 2,000 agents is 20: small enough to build the full view every tick.
    let config = SimConfig {
        endpoints: 2_000,
        seed: 5,
        model: FaultModel {
            fault_fraction: 0.3,
            restore_failure_fraction: 0.2,
            restore_ms: 60_000,
            ..FaultModel::default()
        },
        ..SimConfig::default()
    };
    for strategy in [
        Strategy::default_rings(120_000),
        Strategy::all_at_once(120_000),
    ] {
        let r = run_strategy(&config, &strategy, true).expect("agrees");
        assert_eq!(r.outcome, Outcome::RolledBack, "{}", strategy.name);
    }
}

#[test]
fn totals_agree_with_the_controllers_own_step_for_every_fault_kind() {
    for kind in FaultKind::ALL {
        let config = SimConfig {
            endpoints: 2_000,
            seed: 9,
            model: FaultModel {
                kind,
                fault_fraction: 0.3,
                ..FaultModel::default()
            },
            ..SimConfig::default()
        };
        for strategy in [
            Strategy::parse("two=5,100", 120_000).expect("valid"),
            Strategy::all_at_once(120_000),
        ] {
            let r = run_strategy(&config, &strategy, true).expect("agrees");
            assert_eq!(r.outcome, Outcome::RolledBack, "{kind}: {}", strategy.name);
            assert_eq!(r.fault, kind);
        }
    }
}

/// Each non-crash fault on the tiny fleet: installed at 15 s, the fault begins at 35 s, the
/// heartbeat at 40 s carries it and the controller halts on that tick; the hosts hear it at
/// 50 s and are back on the previous release at 55 s.
#[test]
fn tiny_fleet_each_fault_halts_on_the_first_heartbeat_that_shows_it() {
    for (kind, gate) in [
        (FaultKind::Slow, "verdict latency p99"),
        (FaultKind::Quarantine, "protection off (10 of 10)"),
        (FaultKind::Deny, "deny rate"),
    ] {
        let mut config = tiny(1.0, 0.0);
        config.model.kind = kind;
        let r = run_strategy(&config, &Strategy::all_at_once(600_000), true).expect("runs");
        assert_eq!(r.outcome, Outcome::RolledBack, "{kind}");
        assert_eq!(r.hosts_crashed, 0, "{kind}");
        assert_eq!(r.first_signal_min, minutes(40.0), "{kind}");
        assert_eq!(r.time_to_halt_min, minutes(40.0), "{kind}");
        assert_eq!(r.time_to_recover_min, minutes(55.0), "{kind}");
        assert!(
            r.reason.as_deref().is_some_and(|why| why.contains(gate)),
            "{kind}: {:?}",
            r.reason
        );
    }
}

/// The goals, on a tenth of the million-host fleet (the release binary runs the full size for
/// bench/RESULTS.md): the exponential strategy stops every fault kind in its first ring, halts
/// within 2 minutes of the first sign and has every host back within 5 minutes of the halt.
#[test]
fn exponential_rings_contain_every_fault_kind() {
    for kind in FaultKind::ALL {
        let config = SimConfig {
            endpoints: 100_000,
            model: FaultModel {
                kind,
                ..FaultModel::default()
            },
            ..SimConfig::default()
        };
        let r = run_strategy(&config, &Strategy::exponential(600_000), false).expect("runs");
        assert_eq!(r.outcome, Outcome::RolledBack, "{kind}: {:?}", r.reason);
        assert_eq!(r.max_ring, 0, "{kind}");
        assert!(r.blast_radius_pct < 0.15, "{kind}: {}", r.blast_radius_pct);
        let signal_to_halt = r.halt_after_signal_min.expect("halted");
        assert!(signal_to_halt <= 2.0, "{kind}: {signal_to_halt}");
        let back = r.recover_after_halt_min.expect("recovered");
        assert!(back <= 5.0, "{kind}: {back}");
    }
}

#[test]
fn fault_kinds_parse_by_name() {
    for kind in FaultKind::ALL {
        assert_eq!(kind.name().parse::<FaultKind>(), Ok(kind));
    }
    assert!("explode".parse::<FaultKind>().is_err());
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let config = SimConfig {
        model: FaultModel {
            fault_fraction: 1.5,
            ..FaultModel::default()
        },
        ..SimConfig::default()
    };
    assert!(simulate(&config, &[]).is_err());
    assert!(Strategy::parse("no-equals", 1).is_err());
    assert!(Strategy::parse("=1,100", 1).is_err());
    assert!(Strategy::parse("x=50,10,100", 1).is_err());
}
