//! Gate tests: each gate trips and explains itself; hostile figures (1.7e308, NaN, a report
//! dated 2100, one outlier among ten) cannot move a verdict or make a stored value unreadable;
//! a missing baseline uses absolute budgets; membership (alive at ring open, decommissioned,
//! installing) decides who the heartbeat gate watches.

use super::*;

fn agent(version: &str, crashes: &[i64], deny: f64) -> AgentHealth {
    AgentHealth {
        agent_id: "a".into(),
        version: Some(version.into()),
        last_heartbeat_ms: 1_000,
        crashes_ms: crashes.to_vec(),
        p99_us: 100.0,
        deny_rate: deny,
        cpu_pct: 1.0,
        rss_bytes: 20e6,
        permission_events: 1_000,
        ..AgentHealth::default()
    }
}

fn window(version: Option<&str>, now: i64, since: i64) -> Window<'_> {
    Window::new(&GateSpec::default(), version, now, since)
}

/// Summarises agents whose ring opened at time 0.
fn sum(agents: &[AgentHealth], version: Option<&str>, now: i64, since: i64) -> HealthSummary {
    summarise(agents.iter().map(|a| (a, 0)), &window(version, now, since))
}

fn find<'a>(results: &'a [GateResult], name: &str) -> &'a GateResult {
    results
        .iter()
        .find(|g| g.gate == name)
        .unwrap_or_else(|| panic!("no gate {name} in {results:?}"))
}

fn healthy(n: usize, version: &str) -> Vec<AgentHealth> {
    (0..n).map(|_| agent(version, &[], 0.01)).collect()
}

#[test]
fn crash_gate_trips_and_explains() {
    let baseline = sum(&healthy(5, "1"), None, 1_000, 0);
    let ring = sum(
        &[agent("2", &[500], 0.0), agent("2", &[], 0.0)],
        Some("2"),
        1_000,
        0,
    );
    let results = evaluate_gates(&GateSpec::default(), &baseline, &ring);
    let crash = find(&results, "crashes");
    assert!(!crash.passed);
    assert!(
        crash.explanation.contains("1 report from 1 of 2 agents"),
        "{}",
        crash.explanation
    );
    assert!(
        results
            .iter()
            .filter(|g| g.gate != "crashes")
            .all(|g| g.passed)
    );
}

#[test]
fn deny_rate_jump_trips() {
    let baseline = sum(&healthy(5, "1"), None, 1_000, 0);
    let ring = sum(
        &(0..5).map(|_| agent("2", &[], 0.30)).collect::<Vec<_>>(),
        Some("2"),
        1_000,
        0,
    );
    let results = evaluate_gates(&GateSpec::default(), &baseline, &ring);
    assert!(!find(&results, "deny_rate").passed);
}

#[test]
fn old_crashes_and_silence_are_counted_right() {
    let mut silent = agent("2", &[10], 0.0);
    silent.last_heartbeat_ms = 0;
    let ring = sum(&[silent], Some("2"), 100_000, 50);
    assert_eq!(ring.crashes, 0, "crash before the ring started");
    assert_eq!(ring.silent, 1);
    assert_eq!(ring.watched, 1);
}

#[test]
fn quarantine_on_one_host_fails_at_once_even_in_a_big_ring() {
    let baseline = sum(&healthy(100, "1"), None, 1_000, 0);
    let mut ring = healthy(1_000, "2");
    ring[7].quarantined = true;
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&ring, Some("2"), 1_000, 0),
    );
    let quarantine = find(&results, "quarantine");
    assert!(!quarantine.passed, "{quarantine:?}");
    assert!(
        quarantine
            .explanation
            .contains("protection off (1 of 1000)"),
        "{}",
        quarantine.explanation
    );
    // A host still on the old release with something quarantined is not this release's doing.
    ring[7].version = Some("1".into());
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&ring, Some("2"), 1_000, 0),
    );
    assert!(find(&results, "quarantine").passed);
}

#[test]
fn engine_failures_and_policy_answers_of_every_class_trip_their_gates() {
    let baseline = sum(&healthy(10, "1"), None, 1_000, 0);
    let mut ring = healthy(10, "2");
    for a in &mut ring {
        // 5 failures (say deadline misses) and 50 policy answers per 1,000 events.
        a.failures = 5;
        a.policy_answers = 50;
    }
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&ring, Some("2"), 1_000, 0),
    );
    let failures = find(&results, "engine_failures");
    assert!(!failures.passed && failures.value == 5.0, "{failures:?}");
    let policy = find(&results, "policy_answers");
    assert!(!policy.passed && policy.value == 0.05, "{policy:?}");
}

#[test]
fn a_zero_or_missing_baseline_uses_the_absolute_budget() {
    // The README's tour: a first Sigma release at 109 MB RSS against an empty baseline.
    let mut ring = healthy(5, "2");
    for a in &mut ring {
        a.rss_bytes = 109_522_944.0;
        a.cpu_pct = 30.0;
        a.p99_us = 2_000.0;
    }
    let ring = sum(&ring, Some("2"), 1_000, 0);
    for baseline in [HealthSummary::default(), sum(&[], None, 1_000, 0)] {
        let results = evaluate_gates(&GateSpec::default(), &baseline, &ring);
        assert!(results.iter().all(|g| g.passed), "{results:?}");
        let rss = find(&results, "rss");
        assert_eq!(rss.threshold, GateSpec::default().rss_budget_bytes);
        assert!(rss.explanation.contains("absolute budget"), "{rss:?}");
    }
    // Over the budget still fails: the budget is a gate, not a pass.
    let mut hungry = healthy(5, "2");
    for a in &mut hungry {
        a.rss_bytes = 2e9;
    }
    let results = evaluate_gates(
        &GateSpec::default(),
        &HealthSummary::default(),
        &sum(&hungry, Some("2"), 1_000, 0),
    );
    assert!(!find(&results, "rss").passed);
}

#[test]
fn hostile_figures_stay_finite_and_cannot_fail_a_ring_alone() {
    let baseline = sum(&healthy(10, "1"), None, 1_000, 0);
    let mut ring = healthy(10, "2");
    ring[0].cpu_pct = 1.7e308;
    ring[0].rss_bytes = f64::INFINITY;
    ring[0].p99_us = f64::NAN;
    ring[0].deny_rate = f64::NAN;
    ring[1].cpu_pct = f64::NEG_INFINITY;
    ring[2].failures = u64::MAX;
    ring[2].permission_events = 0;
    let summary = sum(&ring, Some("2"), 1_000, 0);
    let results = evaluate_gates(&GateSpec::default(), &baseline, &summary);
    assert!(results.iter().all(|g| g.passed), "{results:?}");
    for g in &results {
        assert!(g.value.is_finite() && g.threshold.is_finite(), "{g:?}");
    }
    // The plain mean shows the claim, bounded; the trimmed mean the ring.
    assert!(summary.mean.cpu_pct.is_finite() && summary.mean.cpu_pct > 1e13);
    assert_eq!(summary.trimmed.cpu_pct, 1.0);
    // What is stored reads back: no `null` anywhere.
    let json = serde_json::to_string(&(&summary, &results)).expect("serialise");
    assert!(!json.contains("null"), "{json}");
}

#[test]
fn one_outlier_among_ten_moves_no_statistic_but_three_do() {
    let baseline = sum(&healthy(10, "1"), None, 1_000, 0);
    let mut ring = healthy(10, "2");
    ring[3].p99_us = 3_600_000_000.0;
    ring[3].deny_rate = 1.0;
    ring[3].rss_bytes = 64e12;
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&ring, Some("2"), 1_000, 0),
    );
    assert!(results.iter().all(|g| g.passed), "{results:?}");
    for a in &mut ring[4..6] {
        a.p99_us = 3_600_000_000.0;
    }
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&ring, Some("2"), 1_000, 0),
    );
    assert!(!find(&results, "latency_p99").passed, "{results:?}");
}

#[test]
fn latency_on_starved_hosts_is_not_the_releases_but_one_starved_claim_excuses_nothing() {
    let baseline = sum(&healthy(10, "1"), None, 1_000, 0);
    let mut ring = healthy(3, "2");
    for a in &mut ring {
        a.p99_us = 20_000.0;
    }
    // One host claims its CPU was taken: the other two are not, so the ring's latency counts.
    ring[0].cpu_pressure_pct = 90.0;
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&ring, Some("2"), 1_000, 0),
    );
    assert!(!find(&results, "latency_p99").passed, "{results:?}");

    // Most hosts starved (every core busy with other work): latency is shown, not held
    // against the release; the CPU gate still reads the agent's own CPU.
    ring[1].cpu_pressure_pct = 60.0;
    for a in &mut ring[1..] {
        a.cpu_pct = 400.0;
    }
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&ring, Some("2"), 1_000, 0),
    );
    let latency = find(&results, "latency_p99");
    assert!(latency.passed, "{latency:?}");
    assert!(
        latency
            .explanation
            .contains("2 of 3 hosts on it were starved of CPU"),
        "{latency:?}"
    );
    assert!(!find(&results, "cpu").passed, "{results:?}");
}

#[test]
fn statistics_need_enough_agents_but_evidence_does_not() {
    let baseline = sum(&healthy(10, "1"), None, 1_000, 0);
    let mut two = healthy(2, "2");
    for a in &mut two {
        a.p99_us = 1e9;
    }
    two[0].crashes_ms = vec![900];
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&two, Some("2"), 1_000, 0),
    );
    let latency = find(&results, "latency_p99");
    assert!(latency.passed, "{latency:?}");
    assert!(latency.explanation.contains("3 needed"), "{latency:?}");
    assert!(!find(&results, "crashes").passed, "a crash halts even here");
}

#[test]
fn a_report_dated_2100_never_counts_and_one_agent_counts_at_most_a_crash_loop() {
    let year_2100 = 4_102_444_800_000;
    let mut ring = healthy(100, "2");
    ring[0].crashes_ms = vec![year_2100];
    let summary = sum(&ring, Some("2"), 1_000, 0);
    assert_eq!(summary.crashes, 0);
    ring[0].crashes_ms = vec![500; 1_000];
    let summary = sum(&ring, Some("2"), 1_000, 0);
    assert_eq!(summary.crashes, 3);
    assert_eq!(summary.crashed_agents, 1);
    let results = evaluate_gates(&GateSpec::default(), &summary, &summary);
    assert!(find(&results, "crashes").passed, "{results:?}");
}

#[test]
fn the_heartbeat_gate_watches_only_agents_alive_at_ring_open_and_not_decommissioned() {
    let mut agents = healthy(4, "2");
    // Stopped long before the ring opened at 100 s.
    agents[0].last_heartbeat_ms = 10_000;
    // Alive at ring open, silent since.
    agents[1].last_heartbeat_ms = 95_000;
    // Decommissioned: not counted at all.
    agents[2].decommissioned = true;
    agents[2].last_heartbeat_ms = 0;
    agents[3].last_heartbeat_ms = 200_000;
    let summary = summarise(
        agents.iter().map(|a| (a, 100_000)),
        &window(Some("2"), 200_000, 100_000),
    );
    assert_eq!(summary.agents, 3);
    assert_eq!(summary.watched, 2);
    assert_eq!(summary.silent, 1);
    assert_eq!(summary.heartbeat_loss(), 0.5);
}

#[test]
fn an_installing_agent_is_not_silent_until_the_install_timeout() {
    let mut agent = agent("1", &[], 0.0);
    agent.installing = true;
    agent.last_heartbeat_ms = 0;
    let spec = GateSpec::default();
    let early = summarise([(&agent, 0)], &window(Some("2"), 60_000, 0));
    assert_eq!((early.silent, early.installing), (0, 1));
    let late = summarise(
        [(&agent, 0)],
        &window(Some("2"), spec.adoption_timeout_ms + 1, 0),
    );
    assert_eq!((late.silent, late.installing), (1, 0));
}

#[test]
fn trimmed_means_from_groups_match_one_agent_at_a_time() {
    assert_eq!(trim_count(2, 0.01), 0);
    assert_eq!(trim_count(3, 0.01), 1);
    assert_eq!(trim_count(1_000, 0.01), 10);
    let mut groups = vec![(4.0, 2), (1.0, 7), (1000.0, 1)];
    let (mean, trimmed) = mean_and_trimmed(&mut groups, 0.01);
    assert_eq!(mean, (8.0 + 7.0 + 1000.0) / 10.0);
    // One dropped from each end: 1×6, 4×2.
    assert_eq!(trimmed, (6.0 + 8.0) / 8.0);
    assert_eq!(mean_and_trimmed(&mut [], 0.01), (0.0, 0.0));
    assert_eq!(mean_and_trimmed(&mut [(5.0, 0), (2.0, 3)], 0.5), (2.0, 2.0));
}

#[test]
fn state_stored_by_an_older_server_reads_back() {
    // A threshold that was `inf`, stored as `null`, and a summary without the newer fields.
    let old = r#"{"gate": "cpu", "value": 3.0, "threshold": null, "passed": true,
                  "explanation": "agent CPU %"}"#;
    let gate: GateResult = serde_json::from_str(old).expect("reads");
    assert_eq!(gate.threshold, 0.0);
    let summary: HealthSummary = serde_json::from_str(
        r#"{"agents": 3, "adopted": 1, "crashes": 0, "silent": 0, "p99_us": null,
            "deny_rate": 0.0, "cpu_pct": 1.0, "rss_bytes": 2.0}"#,
    )
    .expect("reads");
    assert_eq!(
        (summary.agents, summary.trimmed.p99_us, summary.watched),
        (3, 0.0, 0)
    );
}

#[test]
fn a_release_that_denies_everything_fails_on_two_canaries_but_a_small_rise_waits() {
    let baseline = sum(&healthy(10, "1"), None, 1_000, 0);
    let mut two = healthy(2, "2");
    for a in &mut two {
        a.deny_rate = 1.0;
    }
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&two, Some("2"), 1_000, 0),
    );
    assert!(!find(&results, "deny_rate").passed, "{results:?}");
    for a in &mut two {
        a.deny_rate = 0.1;
    }
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&two, Some("2"), 1_000, 0),
    );
    let deny = find(&results, "deny_rate");
    assert!(
        deny.passed,
        "a modest rise on two agents is a statistic: {deny:?}"
    );
}

#[test]
fn an_empty_ring_says_so_instead_of_counting_zeros() {
    let baseline = sum(&healthy(5, "1"), None, 1_000, 0);
    let ring = sum(&[], Some("2"), 1_000, 0);
    let results = evaluate_gates(&GateSpec::default(), &baseline, &ring);
    let crash = find(&results, "crashes");
    assert!(
        crash.explanation.contains("no agents in this ring yet"),
        "{}",
        crash.explanation
    );
}

fn auditing(n: usize, version: &str, would_deny: u64) -> Vec<AgentHealth> {
    (0..n)
        .map(|_| AgentHealth {
            would_deny,
            deny_rate: 0.0,
            ..agent(version, &[], 0.0)
        })
        .collect()
}

#[test]
fn an_audit_release_that_would_deny_far_more_than_today_trips_would_deny_rate() {
    // The fleet denies 1 % today: 10 per 1,000.
    let baseline = sum(&healthy(5, "1"), None, 1_000, 0);
    // 200 of 1,000 would be denied: far past 10 + 20.
    let ring = sum(&auditing(3, "2", 200), Some("2"), 1_000, 0);
    let results = evaluate_gates(&GateSpec::default(), &baseline, &ring);
    let gate = find(&results, "would_deny_rate");
    assert!(!gate.passed, "{gate:?}");
    assert_eq!(gate.value, 200.0);
    assert!((gate.threshold - 30.0).abs() < 1e-9, "{gate:?}");
    assert!(gate.explanation.contains("would deny"), "{gate:?}");
    // Audit mode allowed all of it: the deny-rate gate sees nothing.
    assert!(find(&results, "deny_rate").passed);
}

#[test]
fn an_audit_release_that_would_deny_about_what_the_fleet_denies_passes() {
    let baseline = sum(&healthy(5, "1"), None, 1_000, 0);
    let ring = sum(&auditing(3, "2", 15), Some("2"), 1_000, 0);
    let results = evaluate_gates(&GateSpec::default(), &baseline, &ring);
    let gate = find(&results, "would_deny_rate");
    assert!(gate.passed, "{gate:?}");
    assert_eq!(gate.value, 15.0);
}

#[test]
fn two_auditing_agents_halt_only_a_release_that_would_deny_half_and_a_claim_is_bounded() {
    let baseline = sum(&healthy(5, "1"), None, 1_000, 0);
    let mut ring = auditing(2, "2", 1_000);
    ring[0].would_deny = u64::MAX;
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&ring, Some("2"), 1_000, 0),
    );
    let gate = find(&results, "would_deny_rate");
    assert!(
        !gate.passed,
        "a release that would deny everything is evidence: {gate:?}"
    );
    assert!(gate.value <= 1_000.0, "{gate:?}");
    // A smaller rise from two agents is a claim nobody corroborates yet.
    let two = auditing(2, "2", 100);
    let results = evaluate_gates(
        &GateSpec::default(),
        &baseline,
        &sum(&two, Some("2"), 1_000, 0),
    );
    let gate = find(&results, "would_deny_rate");
    assert!(gate.passed, "statistics wait for three agents: {gate:?}");
}

#[test]
fn enforcing_an_audited_release_compares_its_deny_rate_with_what_the_fleet_would_deny() {
    // The fleet runs the release in audit mode: it denies nothing but would deny 25 of 1,000.
    let baseline = sum(&auditing(5, "2", 25), None, 1_000, 0);
    // Enforced on the ring, the same release denies those 2.5 %: no rise at all.
    let ring = sum(
        &healthy(3, "2")
            .iter()
            .map(|a| AgentHealth {
                deny_rate: 0.025,
                ..a.clone()
            })
            .collect::<Vec<_>>(),
        Some("2"),
        1_000,
        0,
    );
    let results = evaluate_gates(&GateSpec::default(), &baseline, &ring);
    let deny = find(&results, "deny_rate");
    assert!(deny.passed, "{deny:?}");
    assert!((deny.threshold - 0.045).abs() < 1e-9, "{deny:?}");
}
