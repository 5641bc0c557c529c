//! Rollouts end to end inside one process, on SQLite and PostgreSQL: a good release walks every
//! ring; a crashing release halts in the first ring and every touched ring rolls back; operators
//! steer, and an action that loses a race to the controller's write is judged again; the
//! controller survives a restart; two replicas never apply a transition twice.
//!
//! Agents here are simulated by their heartbeats and reports: the server only ever sees those.

mod common;

use axum::http::StatusCode;
use common::{Enrolled, Harness, harnesses};
use ringfence_server::controller;
use ringfence_store::{PreflightStatus, ReleaseRecord};
use serde_json::{Value, json};

async fn publish_directly(h: &Harness, version: &str) {
    let bundle = format!("bundle-{version}");
    let sha = format!("{:0>64}", version.replace('.', ""));
    h.state
        .store
        .put_blob(&sha, bundle.as_bytes())
        .await
        .expect("blob");
    h.state
        .store
        .insert_release(&ReleaseRecord {
            channel: "detection".into(),
            version: version.into(),
            manifest: json!({"name": "detection", "version": version}),
            bundle_sha256: sha,
            published_at: 0,
            preflight: PreflightStatus::Passed,
            preflight_report: Some(json!({"deny_rate": 0.0})),
        })
        .await
        .expect("release");
}

/// One heartbeat; the agent then "installs" whatever it was assigned. Returns the version.
async fn beat(h: &Harness, agent: &Enrolled, running: Option<&str>) -> Option<String> {
    beat_with(h, agent, running, 0.0).await
}

async fn beat_with(
    h: &Harness,
    agent: &Enrolled,
    running: Option<&str>,
    deny_rate: f64,
) -> Option<String> {
    let releases = match running {
        Some(version) => {
            json!([{"channel": "detection", "current": version, "lkg": null, "running": "current"}])
        }
        None => json!([]),
    };
    let body = json!({"agent_version": "0.1.0", "releases": releases, "health": {"p99_us": 40.0, "deny_rate": deny_rate, "cpu_pct": 1.0, "rss_bytes": 20000000}});
    let (status, reply) = h
        .post_json("/api/v1/agents/heartbeat", Some(&agent.credential), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["assignments"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["channel"] == "detection"))
        .and_then(|a| a["version"].as_str())
        .map(str::to_owned)
        .or_else(|| running.map(str::to_owned))
}

struct Fleet {
    agents: Vec<Enrolled>,
    versions: Vec<Option<String>>,
}

impl Fleet {
    async fn enroll(h: &Harness, n: usize) -> Fleet {
        Fleet::enroll_with_canaries(h, n, 2).await
    }

    /// `n` agents, the first `canaries` tagged `canary` (always in the first ring).
    async fn enroll_with_canaries(h: &Harness, n: usize, canaries: usize) -> Fleet {
        let mut agents = Vec::new();
        for i in 0..n {
            let tags = if i < canaries {
                vec!["canary".to_owned()]
            } else {
                Vec::new()
            };
            agents.push(h.enroll(&format!("host-{i}"), &tags).await);
        }
        Fleet {
            versions: vec![None; n],
            agents,
        }
    }

    /// Every agent heartbeats and adopts its assignment; crashing versions file a report.
    async fn round(&mut self, h: &Harness, crashing: Option<&str>) {
        self.round_with(h, crashing, |_| 0.0).await;
    }

    /// A round where each agent reports the deny rate `deny_rate(version it runs)`.
    async fn round_with(
        &mut self,
        h: &Harness,
        crashing: Option<&str>,
        deny_rate: impl Fn(Option<&str>) -> f64,
    ) {
        for (i, agent) in self.agents.iter().enumerate() {
            let running = self.versions[i].clone();
            let next = beat_with(h, agent, running.as_deref(), deny_rate(running.as_deref())).await;
            if next.is_some() && next.as_deref() == crashing && self.versions[i] != next {
                let report = json!({"reports": [{"id": format!("crash-{i}"), "kind": "failure", "at_ms": ringfence_store::now_ms(),
                    "body": {"engine": "faulty", "content_sha256": "", "kind": "trap", "message": "out of bounds", "at_unix_ns": 0}}]});
                let (status, _) = h
                    .post_json("/api/v1/agents/reports", Some(&agent.credential), report)
                    .await;
                assert_eq!(status, StatusCode::OK);
            }
            self.versions[i] = next;
        }
        h.state
            .heartbeats
            .flush(&h.state.store)
            .await
            .expect("flush");
        controller::tick(&h.state).await.expect("controller tick");
        h.state
            .fleet
            .refresh(&h.state.store)
            .await
            .expect("refresh");
    }

    fn count(&self, version: &str) -> usize {
        self.versions
            .iter()
            .filter(|v| v.as_deref() == Some(version))
            .count()
    }
}

async fn start(h: &Harness, version: &str, bake_s: f64) -> Value {
    start_with_rings(h, version, "5,25,50,100", bake_s).await
}

async fn start_with_rings(h: &Harness, version: &str, rings: &str, bake_s: f64) -> Value {
    let (status, rollout) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            json!({"channel": "detection", "version": version, "rings": rings, "bake_s": bake_s}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rollout}");
    rollout
}

async fn rollout(h: &Harness, id: &str) -> Value {
    let (status, rollout) = h
        .get(&format!("/api/v1/rollouts/{id}"), Some(&h.operator))
        .await;
    assert_eq!(status, StatusCode::OK);
    rollout
}

async fn complete_good_release(h: &Harness, fleet: &mut Fleet) {
    publish_directly(h, "1.0.0").await;
    let started = start(h, "1.0.0", 0.0).await;
    let id = started["id"].as_str().expect("id").to_owned();
    for _ in 0..12 {
        fleet.round(h, None).await;
    }
    let done = rollout(h, &id).await;
    assert_eq!(done["phase"], "completed", "{}: {done}", h.name);
    assert_eq!(fleet.count("1.0.0"), fleet.agents.len());
}

#[tokio::test]
async fn good_release_walks_every_ring() {
    for h in harnesses().await {
        let mut fleet = Fleet::enroll(&h, 20).await;
        complete_good_release(&h, &mut fleet).await;
        let (_, audit) = h.get("/api/v1/audit?limit=50", Some(&h.operator)).await;
        let actions: Vec<&str> = audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["action"].as_str())
            .collect();
        assert_eq!(
            actions.iter().filter(|a| **a == "promote").count(),
            3,
            "{actions:?}"
        );
        assert!(actions.contains(&"complete"));
    }
}

#[tokio::test]
async fn crashing_release_halts_in_the_first_ring_and_rolls_back() {
    for h in harnesses().await {
        let mut fleet = Fleet::enroll(&h, 20).await;
        complete_good_release(&h, &mut fleet).await;
        publish_directly(&h, "2.0.0").await;
        let started = start(&h, "2.0.0", 3600.0).await;
        let id = started["id"].as_str().expect("id").to_owned();
        let mut reached = 0;
        for _ in 0..6 {
            fleet.round(&h, Some("2.0.0")).await;
            reached = reached.max(fleet.count("2.0.0"));
        }
        let after = rollout(&h, &id).await;
        assert_eq!(after["phase"], "rolled_back", "{}: {after}", h.name);
        assert_eq!(after["ring"], 0, "never past the first ring");
        assert!(
            after["reason"]
                .as_str()
                .expect("reason")
                .contains("failure reports per agent"),
            "{after}"
        );
        assert!(
            (2..20).contains(&reached),
            "the canaries got it, the fleet did not: {reached}"
        );
        fleet.round(&h, Some("2.0.0")).await;
        assert_eq!(
            fleet.count("1.0.0"),
            20,
            "every host back on the previous release"
        );
        let gate = after["gates"]
            .as_array()
            .expect("gates")
            .iter()
            .find(|g| g["gate"] == "crashes")
            .expect("crash gate");
        assert_eq!(gate["passed"], false);
    }
}

#[tokio::test]
async fn rollback_assignments_carry_a_directive_only_for_downgrades() {
    let h = Harness::sqlite().await;
    let mut fleet = Fleet::enroll(&h, 4).await;
    complete_good_release(&h, &mut fleet).await;
    publish_directly(&h, "2.0.0").await;
    let started = start(&h, "2.0.0", 3600.0).await;
    let id = started["id"].as_str().expect("id").to_owned();
    fleet.round(&h, None).await;
    let (status, _) = h
        .post_json(
            &format!("/api/v1/rollouts/{id}/rollback"),
            Some(&h.operator),
            json!({"reason": "operator saw something"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let canary = &fleet.agents[0];
    let body = json!({"releases": [{"channel": "detection", "current": "2.0.0", "lkg": "1.0.0", "running": "current"}]});
    let (_, reply) = h
        .post_json("/api/v1/agents/heartbeat", Some(&canary.credential), body)
        .await;
    let assignment = &reply["assignments"][0];
    assert_eq!(assignment["version"], "1.0.0");
    assert!(assignment.get("rollback_directive").is_some(), "{reply}");
}

#[tokio::test]
async fn operators_steer_and_bad_requests_are_refused() {
    let h = Harness::sqlite().await;
    let mut fleet = Fleet::enroll(&h, 10).await;
    complete_good_release(&h, &mut fleet).await;
    publish_directly(&h, "2.0.0").await;
    let id = start(&h, "2.0.0", 3600.0).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            json!({"channel": "detection", "version": "2.0.0"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "one active rollout per channel"
    );
    let (status, _) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            json!({"channel": "detection", "version": "9.9.9"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (action, phase) in [
        ("pause", "paused"),
        ("resume", "running"),
        ("halt", "halted"),
        ("rollback", "rolled_back"),
    ] {
        let (status, reply) = h
            .post_json(
                &format!("/api/v1/rollouts/{id}/{action}"),
                Some(&h.operator),
                json!({"reason": format!("test {action}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{action}: {reply}");
        assert_eq!(reply["phase"], phase);
    }
    let (status, _) = h
        .post_json(
            &format!("/api/v1/rollouts/{id}/pause"),
            Some(&h.operator),
            json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a rolled-back rollout cannot be paused"
    );
    let (status, _) = h
        .post_json(
            &format!("/api/v1/rollouts/{id}/explode"),
            Some(&h.operator),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, audit) = h.get("/api/v1/audit", Some(&h.operator)).await;
    let reasons: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"test halt"), "{reasons:?}");
}

#[tokio::test]
async fn rejected_release_cannot_be_rolled_out() {
    let h = Harness::sqlite().await;
    h.state
        .store
        .insert_release(&ReleaseRecord {
            channel: "detection".into(),
            version: "6.6.6".into(),
            manifest: json!({}),
            bundle_sha256: "0".repeat(64),
            published_at: 0,
            preflight: PreflightStatus::Rejected,
            preflight_report: Some(json!({"reason": "3 traps"})),
        })
        .await
        .expect("insert");
    let (status, reply) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            json!({"channel": "detection", "version": "6.6.6"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply["error"]
            .as_str()
            .expect("error")
            .contains("rejected by preflight")
    );
}

#[tokio::test]
async fn controller_resumes_from_the_database_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let first = Harness::at(dir.path(), Some(url.clone())).await;
    let mut fleet = Fleet::enroll(&first, 10).await;
    publish_directly(&first, "1.0.0").await;
    let id = start(&first, "1.0.0", 0.0).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    fleet.round(&first, None).await;
    let ring_before = rollout(&first, &id).await["ring"].as_u64().expect("ring");
    first.state.store.close().await;
    drop(first);
    // A new server process on the same database picks up where the old one stopped.
    let second = Harness::at(dir.path(), Some(url)).await;
    let reopened = rollout(&second, &id).await;
    assert_eq!(reopened["ring"].as_u64(), Some(ring_before));
    for _ in 0..12 {
        fleet.round(&second, None).await;
    }
    assert_eq!(rollout(&second, &id).await["phase"], "completed");
}

#[tokio::test]
async fn two_replicas_never_apply_a_transition_twice() {
    let Some(base) =
        ringfence_testkit::postgres_or_skip("two_replicas_never_apply_a_transition_twice")
    else {
        return;
    };
    let url = ringfence_store::testing::fresh_postgres_url(&base).await;
    let a = Harness::at(
        tempfile::tempdir().expect("tempdir").path(),
        Some(url.clone()),
    )
    .await;
    let b = Harness::at(tempfile::tempdir().expect("tempdir").path(), Some(url)).await;
    let mut fleet = Fleet::enroll(&a, 10).await;
    publish_directly(&a, "1.0.0").await;
    let id = start(&a, "1.0.0", 0.0).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Both replicas tick the controller at once, many times: leases pick one leader, and
    // optimistic concurrency stops a stale one from applying anything twice.
    for _ in 0..8 {
        fleet.round(&a, None).await;
        let (ra, rb) = tokio::join!(controller::tick(&a.state), controller::tick(&b.state));
        ra.expect("tick a");
        rb.expect("tick b");
    }
    // Kill the leader (stop using it); the other finishes the rollout.
    a.state.store.close().await;
    for _ in 0..8 {
        fleet.round(&b, None).await;
    }
    let done = rollout(&b, &id).await;
    assert_eq!(done["phase"], "completed", "{done}");
    let promotions = done["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|t| t["transition"] == "promote")
        .count();
    assert_eq!(promotions, 3, "every promotion exactly once: {done}");
}

#[tokio::test]
async fn release_that_denies_the_shell_halts_on_its_deny_rate() {
    // The same bad allow-list preflight rejects, published with preflight skipped: agents on
    // it report a deny rate far above the baseline and the deny-rate gate stops it. The deny
    // rate is a statistic: it can fail a ring only once three agents run the release, so the
    // first ring holds three canaries (plus whoever else the rollout's hash puts in its 20 %,
    // which can be nobody: 0.8^17 ≈ 2 % of runs).
    for h in harnesses().await {
        let mut fleet = Fleet::enroll_with_canaries(&h, 20, 3).await;
        complete_good_release(&h, &mut fleet).await;
        publish_directly(&h, "2.0.0").await;
        let (status, started) = h
            .post_json(
                "/api/v1/rollouts",
                Some(&h.operator),
                json!({"channel": "detection", "version": "2.0.0", "rings": "20,50,100", "bake_s": 3600.0}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{started}");
        let id = started["id"].as_str().expect("id").to_owned();
        for _ in 0..4 {
            fleet
                .round_with(
                    &h,
                    None,
                    |running| if running == Some("2.0.0") { 0.35 } else { 0.0 },
                )
                .await;
        }
        let after = rollout(&h, &id).await;
        assert_eq!(after["phase"], "rolled_back", "{}: {after}", h.name);
        assert_eq!(after["ring"], 0);
        assert!(
            after["reason"]
                .as_str()
                .expect("reason")
                .contains("deny rate"),
            "{after}"
        );
    }
}

#[tokio::test]
async fn agent_offline_for_a_whole_rollout_catches_up_when_it_returns() {
    let h = Harness::sqlite().await;
    let mut fleet = Fleet::enroll(&h, 10).await;
    complete_good_release(&h, &mut fleet).await;
    publish_directly(&h, "2.0.0").await;
    // A ring counts as adopted at 50%, so one silent host does not hold the rollout back.
    let body = json!({"channel": "detection", "version": "2.0.0", "rings": "5,25,50,100", "bake_s": 0.0,
        "gates": {"min_adoption": 0.5}});
    let (status, started) = h
        .post_json("/api/v1/rollouts", Some(&h.operator), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_str().expect("id").to_owned();
    // The sleeper comes from the most populated ring: alone in its ring, its silence would
    // rightly hold the rollout there (ids are random, so rings are too). Fleet::enroll tags
    // the first two hosts `canary`.
    let spec = ringfence_rollout::RolloutSpec::from_percentages("5,25,50,100", 0).expect("spec");
    let ring = |i: usize| {
        let tags = if i < 2 {
            vec!["canary".to_owned()]
        } else {
            Vec::new()
        };
        ringfence_rollout::ring_of(&fleet.agents[i].agent_id, &tags, &id, &spec)
    };
    let rings: Vec<usize> = (0..fleet.agents.len()).map(ring).collect();
    let crowded = (0..spec.rings.len())
        .max_by_key(|&r| rings.iter().filter(|&&x| x == r).count())
        .expect("a ring");
    let pick = rings
        .iter()
        .position(|&r| r == crowded)
        .expect("an agent in it");
    let sleeper = fleet.agents.remove(pick);
    fleet.versions.remove(pick);
    for _ in 0..12 {
        fleet.round(&h, None).await;
    }
    let state = rollout(&h, &id).await;
    assert_eq!(state["phase"], "completed", "{state:#}");
    // Back after the whole rollout: its first heartbeat assigns the final release.
    let assigned = beat(&h, &sleeper, Some("1.0.0")).await;
    assert_eq!(assigned.as_deref(), Some("2.0.0"));
}

#[tokio::test]
async fn first_release_that_crashes_is_disabled_and_a_fixed_release_supersedes_the_plan() {
    for h in harnesses().await {
        let mut fleet = Fleet::enroll(&h, 10).await;
        publish_directly(&h, "1.0.0").await;
        let id = start(&h, "1.0.0", 3600.0).await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        for _ in 0..4 {
            fleet.round(&h, Some("1.0.0")).await;
        }
        let stopped = rollout(&h, &id).await;
        assert_eq!(stopped["phase"], "disabled", "{}: {stopped}", h.name);
        let reason = stopped["reason"].as_str().expect("reason");
        assert!(
            reason.contains("halted and disabled the channel on the touched hosts"),
            "{reason}"
        );
        assert!(!reason.contains("rolled back"), "{reason}");
        assert_eq!(stopped["rings"][0]["status"], "disabled", "{stopped}");
        let (_, plans) = h.get("/api/v1/remediations", Some(&h.operator)).await;
        let plan = &plans["remediations"][0];
        assert_eq!(plan["action"], "disable", "{plans}");
        assert_eq!(plan["created_by"], "controller");
        // Every agent is told to disable the channel and gets no assignment for it.
        let canary = &fleet.agents[0];
        let body = json!({"releases": [{"channel": "detection", "current": "1.0.0", "lkg": null, "running": "current"}]});
        let (_, reply) = h
            .post_json(
                "/api/v1/agents/heartbeat",
                Some(&canary.credential),
                body.clone(),
            )
            .await;
        assert_eq!(reply["remediations"][0]["action"], "disable", "{reply}");
        assert!(
            reply["assignments"].as_array().expect("list").is_empty(),
            "{reply}"
        );
        let (_, audit) = h.get("/api/v1/audit", Some(&h.operator)).await;
        let actions = |audit: &Value| -> Vec<String> {
            audit["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .filter_map(|e| e["action"].as_str().map(str::to_owned))
                .collect()
        };
        assert!(
            actions(&audit).contains(&"gate_failure_disable".to_owned()),
            "{audit}"
        );
        assert!(
            !actions(&audit).iter().any(|a| a.contains("rollback")),
            "{audit}"
        );

        // Fix forward: the next release supersedes the controller's plan, audited, and the
        // canaries are assigned it.
        publish_directly(&h, "1.0.1").await;
        start(&h, "1.0.1", 0.0).await;
        let (_, plans) = h.get("/api/v1/remediations", Some(&h.operator)).await;
        assert!(
            plans["remediations"].as_array().expect("list").is_empty(),
            "{plans}"
        );
        let (_, audit) = h.get("/api/v1/audit", Some(&h.operator)).await;
        assert!(
            actions(&audit).contains(&"supersede_remediation".to_owned()),
            "{audit}"
        );
        let (_, reply) = h
            .post_json("/api/v1/agents/heartbeat", Some(&canary.credential), body)
            .await;
        assert!(
            reply["remediations"].as_array().expect("list").is_empty(),
            "{reply}"
        );
        assert_eq!(reply["assignments"][0]["version"], "1.0.1", "{reply}");
        for _ in 0..12 {
            fleet.round(&h, None).await;
        }
        assert_eq!(fleet.count("1.0.1"), 10, "{}", h.name);
    }
}

#[tokio::test]
async fn an_operator_rollback_of_a_first_release_disables_the_channel() {
    let h = Harness::sqlite().await;
    let mut fleet = Fleet::enroll(&h, 4).await;
    publish_directly(&h, "1.0.0").await;
    let id = start(&h, "1.0.0", 3600.0).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    fleet.round(&h, None).await;
    let (status, reply) = h
        .post_json(
            &format!("/api/v1/rollouts/{id}/rollback"),
            Some(&h.operator),
            json!({"reason": "operator saw something"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["phase"], "disabled", "{reply}");
    let reason = reply["reason"].as_str().expect("reason");
    assert!(reason.contains("disabled the channel"), "{reason}");
    let (_, plans) = h.get("/api/v1/remediations", Some(&h.operator)).await;
    assert_eq!(plans["remediations"][0]["action"], "disable", "{plans}");
    let (_, audit) = h.get("/api/v1/audit", Some(&h.operator)).await;
    assert_eq!(audit["entries"][1]["action"], "halt_and_disable", "{audit}");
}

#[tokio::test]
async fn bad_plans_are_refused() {
    let h = Harness::sqlite().await;
    for (body, expected) in [
        (
            json!({"scope": "planet", "channel": "c", "action": "disable", "reason": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"scope": "fleet", "channel": "c", "action": "pin", "reason": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"scope": "fleet", "channel": "c", "action": "pin", "version": "9.9.9", "reason": "x"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"scope": "fleet", "channel": "c", "action": "explode", "reason": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"scope": "fleet", "channel": "c", "action": "disable", "reason": " "}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"scope": "fleet", "channel": "c", "action": "audit", "version": "1.0.0", "reason": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"scope": "fleet", "channel": "c", "action": "audit", "reason": "x"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, reply) = h
            .post_json("/api/v1/remediations", Some(&h.operator), body.clone())
            .await;
        assert_eq!(status, expected, "{body} -> {reply}");
    }
    let (status, _) = h.post_json("/api/v1/remediations", None, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        h.state
            .store
            .active_remediations()
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn a_plan_made_by_an_operator_says_when() {
    let h = Harness::sqlite().await;
    publish_directly(&h, "1.0.0").await;
    let before = ringfence_protocol::clock::unix_ms();
    let (status, plan) = h
        .post_json(
            "/api/v1/remediations",
            Some(&h.operator),
            json!({"scope": "fleet", "channel": "detection", "action": "disable", "reason": "investigating"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plan}");
    assert!(
        plan["created_at"].as_i64().is_some_and(|at| at >= before),
        "{plan}"
    );
}

/// One heartbeat with the given health figures; returns the assigned version.
async fn beat_health(
    h: &Harness,
    agent: &Enrolled,
    running: Option<&str>,
    health: Value,
) -> Option<String> {
    let releases = match running {
        Some(version) => {
            json!([{"channel": "detection", "current": version, "lkg": null, "running": "current"}])
        }
        None => json!([]),
    };
    let body = json!({"agent_version": "0.1.0", "releases": releases, "health": health});
    let (status, reply) = h
        .post_json("/api/v1/agents/heartbeat", Some(&agent.credential), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["assignments"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["channel"] == "detection"))
        .and_then(|a| a["version"].as_str())
        .map(str::to_owned)
        .or_else(|| running.map(str::to_owned))
}

#[tokio::test]
async fn a_quarantined_engine_on_one_canary_halts_at_once() {
    for h in harnesses().await {
        let mut fleet = Fleet::enroll(&h, 10).await;
        complete_good_release(&h, &mut fleet).await;
        publish_directly(&h, "2.0.0").await;
        let id = start(&h, "2.0.0", 3600.0).await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        fleet.round(&h, None).await;
        let canary = fleet
            .versions
            .iter()
            .position(|v| v.as_deref() == Some("2.0.0"))
            .expect("a canary runs it");
        beat_health(
            &h,
            &fleet.agents[canary],
            Some("2.0.0"),
            json!({"quarantined": ["detection"], "permission_events": 10}),
        )
        .await;
        h.state
            .heartbeats
            .flush(&h.state.store)
            .await
            .expect("flush");
        controller::tick(&h.state).await.expect("tick");
        let after = rollout(&h, &id).await;
        assert_eq!(after["phase"], "rolled_back", "{}: {after:#}", h.name);
        assert!(
            after["reason"]
                .as_str()
                .expect("reason")
                .contains("protection off (1 of"),
            "{after}"
        );
    }
}

#[tokio::test]
async fn hostile_figures_and_a_report_dated_2100_do_not_steer_rollouts() {
    let h = Harness::sqlite().await;
    let mut fleet = Fleet::enroll(&h, 10).await;
    // Before any rollout, one agent files a "crash" dated 2100.
    let report = json!({"reports": [{"id": "future-1", "kind": "crash", "at_ms": 4_102_444_800_000i64,
        "body": {"engine": "agent", "message": "the agent killed by SIGSEGV", "signal": "SIGSEGV"}}]});
    let (status, _) = h
        .post_json(
            "/api/v1/agents/reports",
            Some(&fleet.agents[5].credential),
            report,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    complete_good_release(&h, &mut fleet).await;
    // From here on it speaks for itself.
    let hostile = fleet.agents.remove(5);
    let mut hostile_version = fleet.versions.remove(5);
    let hostile = &hostile;
    publish_directly(&h, "2.0.0").await;
    let id = start(&h, "2.0.0", 0.0).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Every round the hostile agent claims absurd figures; the rest are healthy.
    for _ in 0..12 {
        let running = hostile_version.clone();
        hostile_version = beat_health(
            &h,
            hostile,
            running.as_deref(),
            json!({"cpu_pct": 1.7e308, "rss_bytes": 9_000_000_000_000_000u64, "deny_rate": 1.0,
                   "latency": {"p99_us": 3.6e9}, "permission_events": 1, "policy_answers": {"deadline": 1}}),
        )
        .await;
        fleet.round(&h, None).await;
    }
    let done = rollout(&h, &id).await;
    assert_eq!(done["phase"], "completed", "{done:#}");
    // What was stored reads back everywhere, with nothing non-finite in it.
    let (status, list) = h.get("/api/v1/rollouts", Some(&h.operator)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!list.to_string().contains("null,\"passed\""), "{list}");
}

#[tokio::test]
async fn one_unreadable_rollout_does_not_stop_the_others() {
    for h in harnesses().await {
        let mut fleet = Fleet::enroll(&h, 6).await;
        h.state
            .store
            .insert_rollout(&ringfence_store::RolloutRecord {
                id: "ro-broken".into(),
                channel: "other".into(),
                version: "1.0.0".into(),
                spec: json!({"spec": "not a spec"}),
                state: json!({"phase": "running", "ring": "zero"}),
                revision: 0,
                created_at: 0,
                updated_at: 0,
            })
            .await
            .expect("insert");
        complete_good_release(&h, &mut fleet).await;
        let (status, list) = h.get("/api/v1/rollouts", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let broken = list["rollouts"]
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["id"] == "ro-broken")
            .cloned()
            .expect("listed");
        assert!(broken["error"].is_string(), "{broken}");
    }
}

#[tokio::test]
async fn older_versions_need_force_and_misspelt_gates_are_refused() {
    let h = Harness::sqlite().await;
    let mut fleet = Fleet::enroll(&h, 4).await;
    publish_directly(&h, "0.9.0").await;
    complete_good_release(&h, &mut fleet).await;
    let (status, reply) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            json!({"channel": "detection", "version": "0.9.0"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    let error = reply["error"].as_str().expect("JSON reason");
    assert!(
        error.contains("older than 1.0.0") && error.contains("force"),
        "{error}"
    );
    let (status, reply) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            json!({"channel": "detection", "version": "2.0.0",
                   "gates": {"max_crash_per_agent": 0.5}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    let error = reply["error"].as_str().expect("JSON reason");
    assert!(error.contains("max_crash_per_agent"), "{error}");
    let (status, reply) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            json!({"channel": "detection", "version": "0.9.0", "force": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}

async fn act(h: &Harness, id: &str, action: &str) -> (StatusCode, Value) {
    h.post_json(
        &format!("/api/v1/rollouts/{id}/{action}"),
        Some(&h.operator),
        json!({"reason": format!("test {action}")}),
    )
    .await
}

async fn audit_actions(h: &Harness) -> Vec<(String, String)> {
    let (_, audit) = h.get("/api/v1/audit?limit=100", Some(&h.operator)).await;
    audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (field("action"), field("subject"))
        })
        .collect()
}

#[tokio::test]
async fn promote_ends_a_healthy_ring_early_and_never_skips_a_failing_gate() {
    let h = Harness::sqlite().await;
    let mut fleet = Fleet::enroll(&h, 20).await;
    complete_good_release(&h, &mut fleet).await;
    publish_directly(&h, "2.0.0").await;
    // Ring membership is a hash of agent and rollout ids: a ring 1 of 5–50 % holds hosts of its
    // own (of 18 non-canaries, none falls there once in 2^15 rollouts; a 5–25 % ring missed
    // all of them in about one run of 55, and then had nothing left to adopt).
    let id = start_with_rings(&h, "2.0.0", "5,50,100", 3600.0).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // The first ring installs the release and says so in its next heartbeat.
    fleet.round(&h, None).await;
    fleet.round(&h, None).await;
    let (status, promoted) = act(&h, &id, "promote").await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(
        (&promoted["phase"], &promoted["ring"]),
        (&json!("running"), &json!(1))
    );
    assert!(
        promoted["reason"]
            .as_str()
            .is_some_and(|r| r.contains("test promote") && r.contains("early")),
        "{promoted}"
    );
    assert!(
        audit_actions(&h)
            .await
            .contains(&("promote".to_owned(), id.clone())),
        "audited"
    );

    // Ring 1 has not installed yet: its bake cannot be cut short.
    let (status, refused) = act(&h, &id, "promote").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused.to_string().contains("adoption"), "{refused}");

    // A canary files a crash report; the controller has not looked yet, the promote does.
    fleet.round(&h, None).await;
    fleet.round(&h, None).await;
    let report = json!({"reports": [{"id": "crash-promote", "kind": "failure", "at_ms": ringfence_store::now_ms(),
        "body": {"engine": "faulty", "content_sha256": "", "kind": "trap", "message": "out of bounds", "at_unix_ns": 0}}]});
    let (status, _) = h
        .post_json(
            "/api/v1/agents/reports",
            Some(&fleet.agents[0].credential),
            report,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = act(&h, &id, "promote").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let message = refused.to_string();
    assert!(
        message.contains("crashes") && message.contains("failure reports per agent"),
        "the refusal names the failing gate: {message}"
    );
    assert_eq!(
        rollout(&h, &id).await["ring"],
        1,
        "a refused promote changes nothing"
    );

    let (status, _) = act(&h, &id, "rollback").await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = act(&h, &id, "promote").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused.to_string().contains("RolledBack"), "{refused}");
    let (status, _) = act(&h, "ro-nosuchthing", "promote").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn retry_starts_a_stopped_rollout_over_and_refuses_a_running_or_completed_one() {
    let h = Harness::sqlite().await;
    let mut fleet = Fleet::enroll(&h, 6).await;
    complete_good_release(&h, &mut fleet).await;
    publish_directly(&h, "2.0.0").await;
    let (status, first) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            json!({"channel": "detection", "version": "2.0.0", "rings": "10,100", "bake_s": 1800}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first = first["id"].as_str().expect("id").to_owned();
    fleet.round(&h, None).await;

    let (status, refused) = act(&h, &first, "retry").await;
    assert_eq!(status, StatusCode::CONFLICT, "a running rollout: {refused}");
    assert!(refused.to_string().contains("Running"), "{refused}");
    let (status, _) = act(&h, "ro-nosuchthing", "retry").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A halted rollout holds its channel: the retry rolls it back, then starts over.
    assert_eq!(act(&h, &first, "halt").await.0, StatusCode::OK);
    let (status, second) = h
        .post_json(
            &format!("/api/v1/rollouts/{first}/retry"),
            Some(&h.operator),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let second_id = second["id"].as_str().expect("id").to_owned();
    assert_ne!(second_id, first);
    assert_eq!(second["version"], "2.0.0");
    assert_eq!(second["previous_version"], "1.0.0");
    assert_eq!(second["ring"], 0);
    let percents: Vec<&Value> = second["rings"]
        .as_array()
        .expect("rings")
        .iter()
        .map(|r| &r["percent"])
        .collect();
    assert_eq!(percents, [&json!(10.0), &json!(100.0)], "{second}");
    assert_eq!(second["rings"][0]["bake_ms"], 1_800_000, "the same bake");
    assert_eq!(rollout(&h, &first).await["phase"], "rolled_back");
    let audit = audit_actions(&h).await;
    assert!(
        audit.contains(&("rollback".to_owned(), first.clone())),
        "{audit:?}"
    );
    assert!(
        audit.contains(&("start".to_owned(), second_id.clone())),
        "{audit:?}"
    );

    // A rolled-back rollout may be retried too; the one it replaced cannot be retried twice.
    assert_eq!(act(&h, &second_id, "rollback").await.0, StatusCode::OK);
    let (status, third) = act(&h, &second_id, "retry").await;
    assert_eq!(status, StatusCode::CREATED, "{third}");
    let (status, refused) = act(&h, &first, "retry").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the third still runs: {refused}"
    );

    let completed = audit
        .iter()
        .find(|(action, _)| action == "complete")
        .map(|(_, target)| target.clone())
        .expect("the first release completed");
    let (status, refused) = act(&h, &completed, "retry").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused.to_string().contains("completed"), "{refused}");
}

/// One heartbeat of 1,000 decisions from an agent answering in `mode` with `would_deny` of
/// them allowed by audit mode; the agent then "installs" its assignment. Returns the version
/// and mode assigned.
async fn beat_mode(
    h: &Harness,
    agent: &Enrolled,
    running: Option<&str>,
    mode: &str,
    would_deny: u64,
) -> (Option<String>, String) {
    let releases = match running {
        Some(version) => {
            json!([{"channel": "detection", "current": version, "lkg": null, "running": "current"}])
        }
        None => json!([]),
    };
    let body = json!({"agent_version": "0.1.0", "releases": releases, "health": {
        "p99_us": 40.0, "cpu_pct": 1.0, "rss_bytes": 20000000, "permission_events": 1000,
        "would_deny": would_deny, "mode": mode}});
    let (status, reply) = h
        .post_json("/api/v1/agents/heartbeat", Some(&agent.credential), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let assignment = reply["assignments"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["channel"] == "detection"));
    let version = assignment
        .and_then(|a| a["version"].as_str())
        .map(str::to_owned)
        .or_else(|| running.map(str::to_owned));
    let mode = assignment
        .and_then(|a| a["mode"].as_str())
        .unwrap_or("enforce")
        .to_owned();
    (version, mode)
}

/// A round in which every agent answers in the mode it was assigned last and, while it runs
/// `audited` in audit mode, reports `would_deny` per 1,000 decisions.
async fn audit_round(
    h: &Harness,
    fleet: &mut Fleet,
    modes: &mut [String],
    audited: &str,
    would_deny: u64,
) {
    for (i, agent) in fleet.agents.iter().enumerate() {
        let running = fleet.versions[i].clone();
        let wd = if running.as_deref() == Some(audited) && modes[i] == "audit" {
            would_deny
        } else {
            0
        };
        let (next, mode) = beat_mode(h, agent, running.as_deref(), &modes[i], wd).await;
        fleet.versions[i] = next;
        modes[i] = mode;
    }
    h.state
        .heartbeats
        .flush(&h.state.store)
        .await
        .expect("flush");
    controller::tick(&h.state).await.expect("controller tick");
    h.state
        .fleet
        .refresh(&h.state.store)
        .await
        .expect("refresh");
}

async fn start_audit(h: &Harness, version: &str, rings: &str, bake_s: f64) -> String {
    let (status, started) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            json!({"channel": "detection", "version": version, "rings": rings,
                   "bake_s": bake_s, "mode": "audit"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["mode"], "audit", "{started}");
    started["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn an_audit_rollout_that_would_deny_far_more_than_today_halts_on_would_deny_rate() {
    // Hosts on the audited release allow everything but would deny 300 of every 1,000
    // decisions, against a fleet that denies none: the would_deny_rate gate stops it in the
    // first ring, and the hosts go back to the previous release, enforced.
    for h in harnesses().await {
        let mut fleet = Fleet::enroll(&h, 20).await;
        complete_good_release(&h, &mut fleet).await;
        publish_directly(&h, "2.0.0").await;
        let (status, refused) = h
            .post_json(
                "/api/v1/rollouts",
                Some(&h.operator),
                json!({"channel": "detection", "version": "2.0.0", "mode": "lenient"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert!(refused.to_string().contains("lenient"), "{refused}");
        let id = start_audit(&h, "2.0.0", "20,50,100", 3600.0).await;
        let mut modes = vec!["enforce".to_owned(); fleet.agents.len()];
        audit_round(&h, &mut fleet, &mut modes, "2.0.0", 300).await;
        let on_release: Vec<usize> = (0..fleet.agents.len())
            .filter(|&i| fleet.versions[i].as_deref() == Some("2.0.0"))
            .collect();
        assert!(on_release.len() >= 3, "{}: {:?}", h.name, fleet.versions);
        assert!(
            on_release.iter().all(|&i| modes[i] == "audit"),
            "{}: the ring runs the release in audit mode: {modes:?}",
            h.name
        );
        for _ in 0..3 {
            audit_round(&h, &mut fleet, &mut modes, "2.0.0", 300).await;
        }
        let after = rollout(&h, &id).await;
        assert_eq!(after["phase"], "rolled_back", "{}: {after}", h.name);
        assert_eq!(after["ring"], 0);
        let reason = after["reason"].as_str().expect("reason");
        assert!(reason.contains("would deny"), "{}: {reason}", h.name);
        let gate = after["gates"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["gate"] == "would_deny_rate"))
            .unwrap_or_else(|| panic!("{}: no would_deny_rate gate: {after}", h.name));
        assert_eq!(gate["passed"], false, "{gate}");
        assert_eq!(fleet.count("1.0.0"), fleet.agents.len());
        assert!(modes.iter().all(|m| m == "enforce"), "{modes:?}");
        // Nothing to enforce: the audit rollout stopped.
        let (status, refused) = act(&h, &id, "enforce").await;
        assert_eq!(status, StatusCode::CONFLICT, "{refused}");
        assert!(refused.to_string().contains("RolledBack"), "{refused}");
    }
}

#[tokio::test]
async fn an_audit_rollout_with_a_low_would_deny_rate_completes_and_is_enforced_through_the_rings() {
    for h in harnesses().await {
        let mut fleet = Fleet::enroll(&h, 20).await;
        complete_good_release(&h, &mut fleet).await;
        publish_directly(&h, "2.0.0").await;
        let id = start_audit(&h, "2.0.0", "5,25,50,100", 0.0).await;
        let mut modes = vec!["enforce".to_owned(); fleet.agents.len()];
        audit_round(&h, &mut fleet, &mut modes, "2.0.0", 5).await;
        // Still running: its release cannot be enforced yet.
        let (status, refused) = act(&h, &id, "enforce").await;
        assert_eq!(status, StatusCode::CONFLICT, "{}: {refused}", h.name);
        assert!(refused.to_string().contains("must complete"), "{refused}");
        for _ in 0..12 {
            audit_round(&h, &mut fleet, &mut modes, "2.0.0", 5).await;
        }
        let done = rollout(&h, &id).await;
        assert_eq!(done["phase"], "completed", "{}: {done}", h.name);
        let gate = done["gates"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["gate"] == "would_deny_rate"))
            .unwrap_or_else(|| panic!("{}: no would_deny_rate gate: {done}", h.name));
        assert_eq!(gate["passed"], true, "{gate}");
        assert_eq!(fleet.count("2.0.0"), fleet.agents.len());
        assert!(modes.iter().all(|m| m == "audit"), "{modes:?}");

        // Unknown ids are not found; the audited release goes out again, enforced.
        let (status, _) = act(&h, "ro-nosuchthing", "enforce").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, enforcing) = act(&h, &id, "enforce").await;
        assert_eq!(status, StatusCode::CREATED, "{}: {enforcing}", h.name);
        assert_eq!(enforcing["mode"], "enforce");
        assert_eq!(enforcing["version"], "2.0.0");
        assert_eq!(enforcing["previous_version"], "2.0.0");
        assert_eq!(enforcing["enforces"], json!(id));
        let enforce_id = enforcing["id"].as_str().expect("id").to_owned();
        assert!(
            audit_actions(&h)
                .await
                .contains(&("enforce".to_owned(), id.clone())),
            "audited"
        );
        // Once is enough, and an enforcing rollout is no audit rollout.
        let (status, refused) = act(&h, &id, "enforce").await;
        assert_eq!(status, StatusCode::CONFLICT, "{refused}");
        assert!(
            refused.to_string().contains("enforced already"),
            "{refused}"
        );
        let (status, refused) = act(&h, &enforce_id, "enforce").await;
        assert_eq!(status, StatusCode::CONFLICT, "{refused}");
        assert!(
            refused.to_string().contains("only an audit rollout"),
            "{refused}"
        );

        // Ring by ring, hosts switch from audit to enforce on the same release.
        audit_round(&h, &mut fleet, &mut modes, "2.0.0", 5).await;
        let enforcing_now = modes.iter().filter(|m| *m == "enforce").count();
        assert!(
            enforcing_now > 0 && enforcing_now < fleet.agents.len(),
            "{}: the first ring enforces, the rest still audit: {modes:?}",
            h.name
        );
        for _ in 0..12 {
            audit_round(&h, &mut fleet, &mut modes, "2.0.0", 5).await;
        }
        let done = rollout(&h, &enforce_id).await;
        assert_eq!(done["phase"], "completed", "{}: {done}", h.name);
        assert!(modes.iter().all(|m| m == "enforce"), "{modes:?}");
        assert_eq!(fleet.count("2.0.0"), fleet.agents.len());
        let (status, refused) = act(&h, &id, "enforce").await;
        assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    }
}

#[tokio::test]
async fn an_audit_plan_keeps_one_host_on_its_rollouts_in_audit_mode() {
    for h in harnesses().await {
        let mut fleet = Fleet::enroll(&h, 6).await;
        complete_good_release(&h, &mut fleet).await;
        let audited = &fleet.agents[3];
        let (status, plan) = h
            .post_json(
                "/api/v1/remediations",
                Some(&h.operator),
                json!({"scope": format!("agent:{}", audited.agent_id), "channel": "detection",
                       "action": "audit", "reason": "new build hosts: watch before blocking"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {plan}", h.name);
        for (i, agent) in fleet.agents.iter().enumerate() {
            let (version, mode) = beat_mode(&h, agent, Some("1.0.0"), "enforce", 0).await;
            // The plan keeps the host on what the rollouts assign, only in audit mode.
            assert_eq!(version.as_deref(), Some("1.0.0"), "{}", h.name);
            let expected = if i == 3 { "audit" } else { "enforce" };
            assert_eq!(mode, expected, "{}: host {i}", h.name);
        }
        let (_, reply) = h
            .post_json(
                "/api/v1/agents/heartbeat",
                Some(&audited.credential),
                json!({"releases": [{"channel": "detection", "current": "1.0.0", "running": "current"}]}),
            )
            .await;
        assert_eq!(reply["remediations"][0]["action"], "audit", "{reply}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_that_loses_a_race_to_the_controller_is_judged_again() {
    for h in harnesses().await {
        let mut fleet = Fleet::enroll(&h, 4).await;
        complete_good_release(&h, &mut fleet).await;
        publish_directly(&h, "2.0.0").await;
        let id = start(&h, "2.0.0", 3600.0).await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        // Stands in for the controller, which rewrites every running rollout each tick: here
        // every few milliseconds (the controller: once a second), so operators' actions keep
        // losing the race to it.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rewriter = tokio::spawn({
            let store = h.state.store.clone();
            let id = id.clone();
            let stop = std::sync::Arc::clone(&stop);
            async move {
                let mut writes = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let record = store.rollout(&id).await.expect("read").expect("rollout");
                    if store
                        .update_rollout_state(&id, record.revision, &record.state)
                        .await
                        .is_ok()
                    {
                        writes += 1;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                writes
            }
        });
        for i in 0..20 {
            let (action, phase) = if i % 2 == 0 {
                ("pause", "paused")
            } else {
                ("resume", "running")
            };
            let (status, reply) = h
                .post_json(
                    &format!("/api/v1/rollouts/{id}/{action}"),
                    Some(&h.operator),
                    json!({"reason": format!("{action} {i}")}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{}: {action} {i}: {reply}", h.name);
            assert_eq!(reply["phase"], phase, "{}", h.name);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let writes = rewriter.await.expect("rewriter");
        assert!(
            writes >= 10,
            "{}: the rewriter wrote {writes} times",
            h.name
        );
    }
}
