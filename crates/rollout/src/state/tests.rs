//! State machine tests: a healthy rollout walks every ring; a crash in the first ring rolls
//! everything back; operators can pause, resume, halt and roll back; and properties that must
//! hold for any sequence of health inputs.

use super::*;
use crate::gates::HealthSummary;
use crate::spec::{GateSpec, RolloutSpec};
use proptest::prelude::*;

fn fleet(n: usize, version: &str, now: i64) -> Vec<AgentHealth> {
    (0..n)
        .map(|i| AgentHealth {
            agent_id: format!("agent-{i}"),
            tags: if i == 0 {
                vec!["canary".to_owned()]
            } else {
                Vec::new()
            },
            version: Some(version.to_owned()),
            last_heartbeat_ms: now,
            crashes_ms: Vec::new(),
            p99_us: 50.0,
            deny_rate: 0.01,
            cpu_pct: 1.0,
            rss_bytes: 20e6,
            permission_events: 1_000,
            ..AgentHealth::default()
        })
        .collect()
}

/// Agents adopt whatever the state says they should run.
fn adopt(spec: &RolloutSpec, state: &RolloutState, fleet: &mut [AgentHealth], id: &str, now: i64) {
    for agent in fleet.iter_mut() {
        let ring = ring_of(&agent.agent_id, &agent.tags, id, spec);
        agent.version = Some(match target_for(state, ring) {
            Target::New => "2".to_owned(),
            Target::Previous => "1".to_owned(),
        });
        agent.last_heartbeat_ms = now;
    }
}

#[test]
fn healthy_rollout_walks_every_ring() {
    let spec = RolloutSpec::default_rings(1_000);
    let mut agents = fleet(200, "1", 0);
    let mut state = RolloutState::start(0, &agents, &GateSpec::default());
    let mut now = 0;
    while !state.phase.is_final() && now < 100_000 {
        now += 250;
        adopt(&spec, &state, &mut agents, "r", now);
        if let Some(t) = step(&spec, &mut state, "r", "2", now, &agents) {
            assert!(state.apply(t, &spec));
        }
    }
    assert_eq!(state.phase, Phase::Completed);
    assert_eq!(
        state
            .history
            .iter()
            .filter(|t| matches!(t, Transition::Promote { .. }))
            .count(),
        3
    );
    assert!(agents.iter().all(|a| a.version.as_deref() == Some("2")));
}

#[test]
fn crash_in_canary_rolls_back_before_ring_one() {
    let spec = RolloutSpec::default_rings(10_000);
    let mut agents = fleet(200, "1", 0);
    let mut state = RolloutState::start(0, &agents, &GateSpec::default());
    let mut now = 0;
    while !state.phase.is_final() && now < 100_000 {
        now += 250;
        adopt(&spec, &state, &mut agents, "r", now);
        for agent in agents
            .iter_mut()
            .filter(|a| a.version.as_deref() == Some("2"))
        {
            if agent.crashes_ms.is_empty() {
                agent.crashes_ms.push(now);
            }
        }
        if let Some(t) = step(&spec, &mut state, "r", "2", now, &agents) {
            assert!(state.apply(t, &spec));
        }
    }
    assert_eq!(state.phase, Phase::RolledBack);
    assert_eq!(state.ring, 0, "never promoted past the first ring");
    assert!(
        state
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("failure reports per agent")
    );
    adopt(&spec, &state, &mut agents, "r", now);
    assert!(
        agents.iter().all(|a| a.version.as_deref() == Some("1")),
        "everyone back"
    );
}

#[test]
fn operators_pause_resume_halt_and_roll_back() {
    let spec = RolloutSpec::default_rings(1_000);
    let agents = fleet(10, "1", 0);
    let mut state = RolloutState::start(0, &agents, &GateSpec::default());
    assert!(state.apply(
        Transition::Pause {
            at_ms: 1,
            reason: "maintenance".into()
        },
        &spec
    ));
    assert_eq!(
        step(&spec, &mut state, "r", "2", 5_000, &agents),
        None,
        "paused: no promotion"
    );
    assert!(state.apply(
        Transition::Resume {
            at_ms: 2,
            reason: "done".into()
        },
        &spec
    ));
    assert!(state.apply(
        Transition::Halt {
            at_ms: 3,
            reason: "looks odd".into()
        },
        &spec
    ));
    assert!(
        !state.apply(
            Transition::Pause {
                at_ms: 4,
                reason: "x".into()
            },
            &spec
        ),
        "halted cannot pause"
    );
    assert!(state.apply(
        Transition::Rollback {
            at_ms: 5,
            reason: "bad".into(),
            disable_channel: false,
        },
        &spec
    ));
    assert_eq!(state.phase, Phase::RolledBack);
    assert!(!state.apply(
        Transition::Rollback {
            at_ms: 6,
            reason: "again".into(),
            disable_channel: false,
        },
        &spec
    ));
    assert_eq!(state.reason.as_deref(), Some("bad"));
}

#[test]
fn ring_that_never_adopts_fails_after_the_timeout() {
    let spec = RolloutSpec::default_rings(1_000);
    let agents = fleet(50, "1", 0);
    let mut state = RolloutState::start(0, &agents, &GateSpec::default());
    let mut fresh = agents.clone();
    for a in &mut fresh {
        a.last_heartbeat_ms = spec.gates.adoption_timeout_ms + 1;
    }
    let transition = step(
        &spec,
        &mut state,
        "r",
        "2",
        spec.gates.adoption_timeout_ms + 1,
        &fresh,
    );
    assert!(
        matches!(transition, Some(Transition::GateFailure { .. })),
        "{transition:?}"
    );
}

proptest! {
    /// Whatever the crashes, the rollout never reaches a ring past the first crash's ring plus
    /// one step, and a final state never changes.
    #[test]
    fn final_states_are_final(crash_at in proptest::option::of(0usize..40), steps in 1usize..60) {
        let spec = RolloutSpec::default_rings(500);
        let mut agents = fleet(100, "1", 0);
        let mut state = RolloutState::start(0, &agents, &GateSpec::default());
        let mut now = 0;
        for i in 0..steps {
            now += 250;
            adopt(&spec, &state, &mut agents, "p", now);
            if crash_at == Some(i) {
                for agent in agents.iter_mut().filter(|a| a.version.as_deref() == Some("2")) {
                    agent.crashes_ms.push(now);
                }
            }
            let before = state.clone();
            if let Some(t) = step(&spec, &mut state, "p", "2", now, &agents) {
                state.apply(t, &spec);
            }
            if before.phase.is_final() {
                prop_assert_eq!(before.phase, state.phase);
                prop_assert_eq!(before.history.len(), state.history.len());
            }
        }
    }
}

/// The simulator feeds `step_with_health` running totals instead of a fleet; the same totals
/// must lead to the same transition and the same operator-visible state as `step`.
#[test]
fn step_with_health_on_totals_matches_step() {
    let spec = RolloutSpec::default_rings(10_000);
    let mut agents = fleet(300, "1", 0);
    let start = RolloutState::start(0, &agents, &GateSpec::default());
    assert_eq!(
        start,
        RolloutState::start_with_baseline(0, start.baseline.clone())
    );
    adopt(&spec, &start, &mut agents, "r", 1_000);
    let ring0: Vec<usize> = (0..agents.len())
        .filter(|&i| ring_of(&agents[i].agent_id, &agents[i].tags, "r", &spec) == 0)
        .collect();
    // Every ring-0 agent crashes once; the first also goes silent.
    for &i in &ring0 {
        agents[i].crashes_ms.push(2_000);
    }
    agents[ring0[0]].last_heartbeat_ms = -10_000;
    let now = 10_000;
    let mut by_step = start.clone();
    let expected = step(&spec, &mut by_step, "r", "2", now, &agents);
    let mut touched = HealthSummary {
        agents: ring0.len(),
        adopted: ring0.len(),
        crashes: ring0.len(),
        crashed_agents: ring0.len(),
        silent: 1,
        watched: ring0.len(),
        ..HealthSummary::default()
    };
    let n = ring0.len();
    touched.set_metrics(
        &mut [
            vec![(50.0, n)],
            vec![(0.01, n)],
            vec![(1.0, n)],
            vec![(20e6, n)],
            vec![(0.0, n)],
            vec![(0.0, n)],
            vec![(0.0, n)],
        ],
        GateSpec::default().trim_share,
    );
    let current = HealthSummary {
        agents: ring0.len(),
        adopted: ring0.len(),
        ..HealthSummary::default()
    };
    let mut by_totals = start.clone();
    let got = step_with_health(&spec, &mut by_totals, now, touched, &current);
    assert!(
        matches!(got, Some(Transition::GateFailure { .. })),
        "{got:?}"
    );
    assert_eq!(got, expected);
    assert_eq!(by_totals, by_step);
}

#[test]
fn step_with_health_promotes_an_empty_ring_on_bake_time() {
    let spec = RolloutSpec::default_rings(1_000);
    let mut state = RolloutState::start_with_baseline(0, HealthSummary::default());
    let empty = HealthSummary::default();
    assert_eq!(
        step_with_health(&spec, &mut state, 500, empty.clone(), &empty),
        None
    );
    assert_eq!(
        step_with_health(&spec, &mut state, 1_000, empty.clone(), &empty),
        Some(Transition::Promote {
            from: 0,
            to: 1,
            at_ms: 1_000
        })
    );
}

#[test]
fn a_first_release_that_fails_is_disabled_never_rolled_back() {
    let spec = RolloutSpec::default_rings(10_000);
    let mut agents = fleet(50, "none", 0);
    let mut state = RolloutState::start_first_release(0);
    adopt(&spec, &state, &mut agents, "r", 1_000);
    for agent in agents
        .iter_mut()
        .filter(|a| a.version.as_deref() == Some("2"))
    {
        agent.crashes_ms.push(1_000);
    }
    let transition = step(&spec, &mut state, "r", "2", 2_000, &agents).expect("gate fails");
    assert_eq!(transition.action(), "gate_failure_disable");
    let reason = transition.reason(&spec);
    assert!(
        reason.contains("halted and disabled the channel on the touched hosts"),
        "{reason}"
    );
    assert!(!reason.contains("rolled back"), "{reason}");
    assert!(state.apply(transition, &spec));
    assert_eq!(state.phase, Phase::Disabled);
    assert!(state.phase.is_final());
    assert_eq!(target_for(&state, 0), Target::Previous);
    let json = serde_json::to_value(&state).expect("json");
    assert_eq!(json["phase"], "disabled");

    // An operator's rollback of a first release says the same.
    let mut state = RolloutState::start_first_release(0);
    let by_hand = Transition::Rollback {
        at_ms: 5,
        reason: "rollback by op".into(),
        disable_channel: true,
    };
    assert_eq!(by_hand.action(), "halt_and_disable");
    assert!(state.apply(by_hand, &spec));
    assert_eq!(state.phase, Phase::Disabled);
    let reason = state.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("rollback by op; halted and disabled"),
        "{reason}"
    );
    assert!(!state.apply(
        Transition::Rollback {
            at_ms: 6,
            reason: "again".into(),
            disable_channel: true
        },
        &spec
    ));
}

#[test]
fn a_stopped_host_does_not_block_a_ring_but_one_that_dies_during_it_does() {
    let spec = RolloutSpec::from_percentages("50,100", 10_000).expect("spec");
    let mut agents = fleet(20, "2", 0);
    // Stopped an hour before the rollout.
    agents[0].last_heartbeat_ms = -3_600_000;
    let mut state = RolloutState::start(0, &agents, &spec.gates);
    let now = 60_000;
    for a in agents.iter_mut().skip(1) {
        a.last_heartbeat_ms = now;
    }
    let transition = step(&spec, &mut state, "r", "2", now, &agents);
    assert!(
        matches!(transition, Some(Transition::Promote { .. })),
        "{transition:?} {:?}",
        state.gates
    );
    state.apply(transition.expect("promote"), &spec);
    assert_eq!(state.ring_opened_ms(1), now);
    // One that was alive at the ring's opening and went silent counts.
    for a in agents.iter_mut() {
        a.last_heartbeat_ms = a.last_heartbeat_ms.min(now - 1);
    }
    for a in agents.iter_mut().skip(1).take(10) {
        a.last_heartbeat_ms = 200_000;
    }
    let transition = step(&spec, &mut state, "r", "2", 200_000, &agents);
    assert!(
        matches!(transition, Some(Transition::GateFailure { .. })),
        "{transition:?}"
    );
}

#[test]
fn an_install_that_takes_too_long_fails_as_an_install() {
    let spec = RolloutSpec::from_percentages("100", 1_000).expect("spec");
    let mut agents = fleet(10, "1", 0);
    let mut state = RolloutState::start(0, &agents, &spec.gates);
    let late = spec.gates.adoption_timeout_ms + 1;
    for a in &mut agents {
        // Busy compiling: its last heartbeat, which said so, is older than the timeout.
        a.installing = true;
        a.last_heartbeat_ms = late - 2 * spec.gates.heartbeat_timeout_ms;
    }
    let transition = step(&spec, &mut state, "r", "2", late, &agents).expect("fails");
    let Transition::GateFailure { failed, .. } = &transition else {
        panic!("{transition:?}");
    };
    assert_eq!(failed.len(), 1, "not silent: {failed:?}");
    assert_eq!(failed[0].gate, "adoption");
    assert!(
        failed[0].explanation.contains("10 hosts still installing")
            && failed[0].explanation.contains("install failure"),
        "{}",
        failed[0].explanation
    );
}

#[test]
fn rollout_state_stored_by_an_older_server_reads_back() {
    let old = r#"{"phase": "rolled_back", "ring": 0, "started_ms": 1, "ring_started_ms": 1,
        "baseline": {"agents": 1, "adopted": 1, "crashes": 0, "silent": 0, "p99_us": 0.0,
                     "deny_rate": 0.0, "cpu_pct": 0.0, "rss_bytes": 0.0},
        "gates": [{"gate": "rss", "value": 1.0, "threshold": null, "passed": false,
                   "explanation": "x"}],
        "history": [{"transition": "gate_failure", "ring": 0, "at_ms": 2, "failed": []},
                    {"transition": "rollback", "at_ms": 3, "reason": "r"}]}"#;
    let state: RolloutState = serde_json::from_str(old).expect("reads");
    assert_eq!(state.phase, Phase::RolledBack);
    assert!(!state.first_release);
    assert_eq!(state.history.len(), 2);
}

/// A healthy fleet that has adopted whatever `state` says, heartbeating at `now`.
fn adopted_fleet(spec: &RolloutSpec, state: &RolloutState, now: i64) -> Vec<AgentHealth> {
    let mut agents = fleet(200, "1", 0);
    adopt(spec, state, &mut agents, "r", now);
    agents
}

#[test]
fn promote_ends_the_bake_early_when_the_gates_pass() {
    let spec = RolloutSpec::default_rings(600_000);
    let mut state = RolloutState::start(0, &fleet(200, "1", 0), &GateSpec::default());
    let agents = adopted_fleet(&spec, &state, 1_000);
    assert_eq!(
        step(&spec, &mut state.clone(), "r", "2", 1_000, &agents),
        None,
        "the controller waits for the bake"
    );
    let promote = promote_now(&spec, &state, "r", "2", 1_000, &agents, "looks good".into())
        .expect("healthy ring 0 may be promoted");
    assert_eq!(
        promote,
        Transition::OperatorPromote {
            from: 0,
            to: Some(1),
            at_ms: 1_000,
            reason: "looks good".into()
        }
    );
    assert_eq!(promote.action(), "promote");
    assert!(state.apply(promote, &spec));
    assert_eq!(
        (state.phase, state.ring, state.ring_started_ms),
        (Phase::Running, 1, 1_000)
    );
    assert_eq!(
        state.ring_opened_ms(1),
        1_000,
        "ring 1's hosts are watched from now"
    );
    let reason = state.reason.as_deref().unwrap_or("");
    assert!(
        reason.contains("looks good") && reason.contains("early"),
        "{reason}"
    );
}

#[test]
fn promote_never_skips_a_failing_gate() {
    let spec = RolloutSpec::default_rings(600_000);
    let state = RolloutState::start(0, &fleet(200, "1", 0), &GateSpec::default());
    let mut agents = adopted_fleet(&spec, &state, 1_000);
    for agent in agents
        .iter_mut()
        .filter(|a| a.version.as_deref() == Some("2"))
    {
        agent.crashes_ms.push(500);
    }
    let refused = promote_now(&spec, &state, "r", "2", 1_000, &agents, "hurry".into())
        .expect_err("a crashing ring is not promoted");
    let PromoteRefused::Gates { ring, failed } = &refused else {
        panic!("{refused:?}");
    };
    assert_eq!(ring, &spec.rings[0].name);
    assert!(failed.iter().all(|g| !g.passed) && !failed.is_empty());
    assert!(
        refused.to_string().contains("failure reports per agent"),
        "the message names the gate: {refused}"
    );
}

#[test]
fn promote_waits_for_the_ring_to_adopt_the_release() {
    let spec = RolloutSpec::default_rings(600_000);
    let state = RolloutState::start(0, &fleet(200, "1", 0), &GateSpec::default());
    // Nobody installed the release yet: the ring has shown nothing.
    let agents = fleet(200, "1", 1_000);
    let refused = promote_now(&spec, &state, "r", "2", 1_000, &agents, "hurry".into())
        .expect_err("a ring still on the old release is not promoted");
    assert!(refused.to_string().contains("adoption"), "{refused}");
}

#[test]
fn promote_from_the_last_ring_completes_and_finished_rollouts_refuse() {
    let spec = RolloutSpec::from_percentages("100", 600_000).expect("spec");
    let mut state = RolloutState::start_with_baseline(0, HealthSummary::default());
    let promote =
        promote_now(&spec, &state, "r", "2", 5, &[], "ship it".into()).expect("empty ring");
    assert!(matches!(
        promote,
        Transition::OperatorPromote { to: None, .. }
    ));
    assert!(state.apply(promote, &spec));
    assert_eq!((state.phase, state.ended_ms), (Phase::Completed, Some(5)));
    assert_eq!(
        promote_now(&spec, &state, "r", "2", 6, &[], "again".into()),
        Err(PromoteRefused::Phase(Phase::Completed))
    );
}

#[test]
fn promote_of_a_paused_rollout_runs_it_again_but_a_halted_one_refuses() {
    let spec = RolloutSpec::default_rings(600_000);
    let mut state = RolloutState::start_with_baseline(0, HealthSummary::default());
    let pause = Transition::Pause {
        at_ms: 1,
        reason: "hold".into(),
    };
    assert!(state.apply(pause, &spec));
    let promote = promote_now(&spec, &state, "r", "2", 2, &[], "go".into()).expect("paused");
    // A promote decided for ring 0 is stale once the rollout has moved on.
    let mut moved = state.clone();
    moved.ring = 1;
    assert!(!moved.apply(promote.clone(), &spec), "stale promote");
    assert!(state.apply(promote, &spec));
    assert_eq!((state.phase, state.ring), (Phase::Running, 1));

    let halt = Transition::Halt {
        at_ms: 3,
        reason: "odd".into(),
    };
    assert!(state.apply(halt, &spec));
    assert_eq!(
        promote_now(&spec, &state, "r", "2", 4, &[], "go".into()),
        Err(PromoteRefused::Phase(Phase::Halted))
    );
}

#[test]
fn an_operator_promote_reads_back_from_stored_history() {
    let promote = Transition::OperatorPromote {
        from: 2,
        to: None,
        at_ms: 9,
        reason: "r".into(),
    };
    let json = serde_json::to_value(&promote).expect("serialise");
    assert_eq!(json["transition"], "operator_promote");
    assert_eq!(
        serde_json::from_value::<Transition>(json).expect("read back"),
        promote
    );
}
