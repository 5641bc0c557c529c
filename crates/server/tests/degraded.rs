//! Protection that is off is loud: a host whose heartbeat shows a quarantined engine, a
//! disabled channel or too many policy answers is *degraded* in the status API (with the
//! reason) and in `/metrics`, and a disabled channel says `disabled`, not its version.

mod common;

use common::Harness;
use ringfence_protocol::api::{HealthFigures, Heartbeat, PolicyAnswers};
use ringfence_server::api::status::{
    DegradedReason, FleetStatus, POLICY_ANSWER_SHARE, degradation,
};
use serde_json::json;

fn release(version: &str) -> serde_json::Value {
    json!({"channel": "detection", "current": version, "lkg": "0.9.0", "running": "current"})
}

async fn fleet(h: &Harness) -> FleetStatus {
    let (status, body) = h.get("/api/v1/status", Some(&h.operator)).await;
    assert!(status.is_success(), "{status}: {body}");
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("typed status: {e}: {body}"))
}

fn metric(text: &str, line_start: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn a_quarantined_engine_makes_the_host_degraded_in_status_and_metrics() {
    for h in common::harnesses().await {
        let sick = h.enroll("sick-1", &[]).await;
        let well = h.enroll("well-1", &[]).await;
        let off = h.enroll("off-1", &[]).await;
        let (status, body) = h
            .post_json(
                "/api/v1/agents/heartbeat",
                Some(&sick.credential),
                json!({"agent_version": "1.0.0", "releases": [release("1.0.0")],
                       "health": {"permission_events": 1000, "quarantined": ["faulty"],
                                  "policy_answers": {"quarantine": 5}}}),
            )
            .await;
        assert!(status.is_success(), "{}: {body}", h.name);
        h.post_json(
            "/api/v1/agents/heartbeat",
            Some(&well.credential),
            json!({"agent_version": "1.0.0", "releases": [release("1.0.0")],
                   "health": {"permission_events": 1000, "policy_answers": {"deadline": 3}}}),
        )
        .await;
        h.post_json(
            "/api/v1/agents/heartbeat",
            Some(&off.credential),
            json!({"agent_version": "1.0.0", "releases": [release("1.0.0")],
                   "health": {"disabled": ["detection"]}}),
        )
        .await;

        let status = fleet(&h).await;
        assert_eq!(status.agents, 3, "{}", h.name);
        assert_eq!(status.degraded, 2, "{}: {status:?}", h.name);
        assert_eq!(status.degraded_by_reason[&DegradedReason::Quarantine], 1);
        assert_eq!(status.degraded_by_reason[&DegradedReason::Disabled], 1);
        assert_eq!(status.degraded_by_reason[&DegradedReason::PolicyAnswers], 0);
        let host = |name: &str| {
            status
                .hosts
                .iter()
                .find(|h| h.hostname == name)
                .unwrap_or_else(|| panic!("{name} listed"))
        };
        let sick_host = host("sick-1");
        assert_eq!(sick_host.degraded.len(), 1, "{sick_host:?}");
        assert_eq!(sick_host.degraded[0].reason, DegradedReason::Quarantine);
        assert!(sick_host.degraded[0].detail.contains("faulty"));
        assert!(
            host("well-1").degraded.is_empty(),
            "0.3 % policy answers is fine"
        );
        // The disabled channel runs nothing: it says so instead of the version on disk.
        let off_host = host("off-1");
        assert_eq!(off_host.releases[0].running, "disabled");
        assert_eq!(off_host.degraded[0].reason, DegradedReason::Disabled);
        assert_eq!(status.versions["detection"]["1.0.0"], 2);
        assert_eq!(status.versions["detection"]["disabled"], 1);
        // Degraded hosts are listed first.
        assert!(status.hosts[..2].iter().all(|h| !h.degraded.is_empty()));

        let (code, text) = h.get_text("/metrics").await;
        assert!(code.is_success());
        assert_eq!(
            metric(&text, "ringfence_agents_degraded{reason=\"quarantine\"} "),
            Some(1),
            "{text}"
        );
        assert_eq!(
            metric(&text, "ringfence_agents_degraded{reason=\"disabled\"} "),
            Some(1)
        );
        assert_eq!(
            metric(
                &text,
                "ringfence_agents_degraded{reason=\"policy_answers\"} "
            ),
            Some(0)
        );
        assert_eq!(metric(&text, "ringfence_agents_degraded_any "), Some(2));

        // The engine is back: the host is healthy again at its next heartbeat.
        h.post_json(
            "/api/v1/agents/heartbeat",
            Some(&sick.credential),
            json!({"agent_version": "1.0.0", "releases": [release("1.0.0")],
                   "health": {"permission_events": 1000}}),
        )
        .await;
        let status = fleet(&h).await;
        assert_eq!(status.degraded, 1, "{}", h.name);
        assert!(host_named(&status, "sick-1").degraded.is_empty());
    }
}

fn host_named<'a>(
    status: &'a FleetStatus,
    name: &str,
) -> &'a ringfence_server::api::status::HostStatus {
    status
        .hosts
        .iter()
        .find(|h| h.hostname == name)
        .unwrap_or_else(|| panic!("{name} listed"))
}

#[test]
fn policy_answers_above_the_share_degrade() {
    let beat = |events: u64, answers: PolicyAnswers| Heartbeat {
        health: HealthFigures {
            permission_events: events,
            policy_answers: answers,
            ..HealthFigures::default()
        },
        ..Heartbeat::default()
    };
    assert!(degradation(&beat(1000, PolicyAnswers::default())).is_empty());
    // Exactly the share is still fine; one more is not.
    let at = (1000.0 * POLICY_ANSWER_SHARE) as u64;
    let share = |n| PolicyAnswers {
        deadline: n,
        ..PolicyAnswers::default()
    };
    assert!(degradation(&beat(1000, share(at))).is_empty());
    let over = degradation(&beat(1000, share(at + 1)));
    assert_eq!(over.len(), 1);
    assert_eq!(over[0].reason, DegradedReason::PolicyAnswers);
    assert!(over[0].detail.contains("deadline 11"), "{}", over[0].detail);
    // Policy answers with no permission events at all.
    let none = degradation(&beat(
        0,
        PolicyAnswers {
            queue_full: 1,
            ..PolicyAnswers::default()
        },
    ));
    assert_eq!(none[0].reason, DegradedReason::PolicyAnswers);
}

#[test]
fn hostile_figures_are_clamped_before_judging() {
    // Thousands of names cannot make a detail unbounded; NaN-free counts only.
    let heartbeat = Heartbeat {
        health: HealthFigures {
            quarantined: (0..10_000).map(|i| format!("engine-{i}")).collect(),
            ..HealthFigures::default()
        },
        ..Heartbeat::default()
    };
    let reasons = degradation(&heartbeat);
    assert_eq!(reasons[0].reason, DegradedReason::Quarantine);
    assert!(
        reasons[0].detail.len() < 64 * 140,
        "{}",
        reasons[0].detail.len()
    );
}

#[tokio::test]
async fn a_database_outage_leaves_the_degraded_gauges_out_rather_than_zero() {
    let h = Harness::sqlite().await;
    let (_, text) = h.get_text("/metrics").await;
    assert!(
        text.contains("ringfence_agents_degraded{reason=\"quarantine\"} 0"),
        "{text}"
    );
    h.state.store.close().await;
    let (code, text) = h.get_text("/metrics").await;
    assert!(code.is_success());
    assert!(
        !text.contains("ringfence_agents_degraded"),
        "no claim of zero degraded hosts without the data: {text}"
    );
    let (code, _) = h.get("/api/v1/status", Some(&h.operator)).await;
    assert!(code.is_server_error(), "{code}");
}

/// Audit mode is not silent either: the heartbeat's mode and would-deny count are stored
/// with the other figures and shown per host (both backends).
#[tokio::test]
async fn an_audit_host_shows_its_mode_and_would_deny_in_status() {
    for h in common::harnesses().await {
        let audit = h.enroll("audit-1", &[]).await;
        let enforce = h.enroll("enforce-1", &[]).await;
        for (agent, health) in [
            (
                &audit,
                json!({"permission_events": 1000, "would_deny": 40, "mode": "audit"}),
            ),
            (&enforce, json!({"permission_events": 1000, "denies": 2})),
        ] {
            let (status, body) = h
                .post_json(
                    "/api/v1/agents/heartbeat",
                    Some(&agent.credential),
                    json!({"agent_version": "1.0.0", "releases": [release("1.0.0")],
                           "health": health}),
                )
                .await;
            assert!(status.is_success(), "{}: {body}", h.name);
        }
        let (status, body) = h
            .post_json(
                "/api/v1/agents/heartbeat",
                Some(&audit.credential),
                json!({"health": {"mode": "lenient"}}),
            )
            .await;
        assert!(status.is_client_error(), "{}: {status} {body}", h.name);
        let status = fleet(&h).await;
        let audited = host_named(&status, "audit-1");
        assert_eq!(audited.mode, ringfence_protocol::Enforcement::Audit);
        assert_eq!(audited.would_deny, 40);
        let enforced = host_named(&status, "enforce-1");
        assert_eq!(enforced.mode, ringfence_protocol::Enforcement::Enforce);
        assert_eq!(enforced.would_deny, 0);
        assert_eq!(status.audit_mode, 1);
        assert_eq!(status.degraded, 0, "audit mode is not degraded protection");
        let (code, text) = h.get_text("/metrics").await;
        assert!(code.is_success());
        assert_eq!(
            metric(&text, "ringfence_agents_audit_mode "),
            Some(1),
            "{text}"
        );
    }
}
