//! The fleet every dashboard test looks at, made through the API as agents and operators would.

use crate::common::{Enrolled, Harness};
use axum::http::StatusCode;
use ringfence_server::controller;
use ringfence_store::{PreflightStatus, ReleaseRecord, now_ms};
use serde_json::{Value, json};
use std::time::Duration;

pub(crate) async fn publish(h: &Harness, channel: &str, version: &str) {
    let sha = format!("{:0>64}", format!("{channel}{version}").replace('.', ""))
        .chars()
        .map(|c| if c.is_ascii_hexdigit() { c } else { 'a' })
        .collect::<String>();
    h.state
        .store
        .put_blob(&sha, version.as_bytes())
        .await
        .expect("blob");
    h.state
        .store
        .insert_release(&ReleaseRecord {
            channel: channel.into(),
            version: version.into(),
            manifest: json!({"content": {"sha256": format!("content-{channel}-{version}")}}),
            bundle_sha256: sha,
            published_at: 0,
            preflight: PreflightStatus::Skipped,
            preflight_report: None,
        })
        .await
        .expect("release");
}

pub(crate) async fn heartbeat(h: &Harness, agent: &Enrolled, body: Value) {
    let (status, reply) = h
        .post_json("/api/v1/agents/heartbeat", Some(&agent.credential), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

pub(crate) async fn start_rollout(h: &Harness, channel: &str, version: &str) -> String {
    let (status, rollout) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            json!({"channel": channel, "version": version, "bake_s": 600}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rollout}");
    rollout["id"].as_str().expect("id").to_owned()
}

/// What [`fleet`] made: the running rollout, the canary, and every host's last heartbeat.
pub(crate) struct Fleet {
    pub(crate) allow: String,
    pub(crate) canary_id: String,
    pub(crate) beats: Vec<(Enrolled, Value)>,
}

impl Fleet {
    /// Every host heartbeats again (the same figures), so the page shows them online.
    pub(crate) async fn beat(&self, h: &Harness) {
        for (agent, body) in &self.beats {
            heartbeat(h, agent, body.clone()).await;
        }
        h.state
            .heartbeats
            .flush(&h.state.store)
            .await
            .expect("flush");
    }
}

/// The fleet the dashboard tests look at: a channel whose first release trapped on the canary
/// and was disabled by its crash gate; a host with its engine quarantined; a rollout of
/// another channel running, half adopted.
pub(crate) async fn fleet(h: &Harness) -> Fleet {
    for (channel, version) in [
        ("detection", "1.0.0"),
        ("detection", "2.0.0"),
        ("allow", "1.0.0"),
        ("allow", "2.0.0"),
    ] {
        publish(h, channel, version).await;
    }
    let mut beats = Vec::new();
    let canary = h.enroll("canary-1", &["canary".to_owned()]).await;
    start_rollout(h, "detection", "2.0.0").await;
    let canary_beat = json!({"agent_version": "0.9.0",
               "releases": [{"channel": "detection", "current": "2.0.0", "lkg": "1.0.0", "running": "lkg"}],
               "health": {"events": 52000, "permission_events": 4100, "denies": 12, "deny_rate": 0.003,
                          "latency": {"p50_us": 38.0, "p99_us": 1500.0, "max_us": 9800.0},
                          "failures": {"trap": 3}, "cpu_pct": 2.4, "rss_bytes": 27_262_976u64, "uptime_s": 5400}});
    heartbeat(h, &canary, canary_beat.clone()).await;
    let failure = json!({"reports": [
        {"id": "1", "kind": "failure", "at_ms": now_ms(), "body": {
            "engine": "faulty", "content_sha256": "content-detection-2.0.0", "kind": "trap",
            "trap_code": "memory_out_of_bounds", "message": "wasm trap: out of bounds memory access",
            "event_kind": "exec", "at_unix_ns": 0,
            "backtrace": [{"function": "faulty::parse_template", "func_index": 3}]}},
        {"id": "2", "kind": "restore", "at_ms": now_ms(), "body": {
            "channel": "detection", "reason": "guard asked for the last known good slot"}}]});
    let (status, reply) = h
        .post_json("/api/v1/agents/reports", Some(&canary.credential), failure)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    // A host whose engine is quarantined: protection is off there, and the dashboard must say so.
    let sick = h.enroll("sick-host", &[]).await;
    let sick_beat = json!({"agent_version": "1.0.0",
           "releases": [{"channel": "detection", "current": "1.0.0", "lkg": "1.0.0", "running": "current"}],
           "health": {"permission_events": 100, "quarantined": ["faulty"]}});
    heartbeat(h, &sick, sick_beat.clone()).await;
    let canary_id = canary.agent_id.clone();
    beats.push((canary, canary_beat));
    beats.push((sick, sick_beat));
    h.state
        .heartbeats
        .flush(&h.state.store)
        .await
        .expect("flush");
    controller::tick(&h.state).await.expect("tick");
    // The next rollout starts after the canary's reports arrived, so they are not its evidence.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut web = Vec::new();
    for name in ["web-1", "web-2", "web-3", "web-4"] {
        web.push(h.enroll(name, &[]).await);
    }
    let allow = start_rollout(h, "allow", "2.0.0").await;
    for (agent, (current, running)) in web.into_iter().zip([
        ("2.0.0", "current"),
        ("2.0.0", "current"),
        ("1.0.0", "current"),
        ("2.0.0", "lkg"),
    ]) {
        let mut beat = json!({"agent_version": "1.0.0",
               "releases": [{"channel": "allow", "current": current, "lkg": "1.0.0", "running": running}],
               "health": {"permission_events": 1000, "latency": {"p99_us": 300.0}, "cpu_pct": 1.0, "rss_bytes": 20_000_000u64}});
        // The host still on 1.0.0 runs in audit mode: it blocks nothing and says what it would.
        if current == "1.0.0" {
            beat["health"]["mode"] = json!("audit");
            beat["health"]["would_deny"] = json!(7);
        }
        heartbeat(h, &agent, beat.clone()).await;
        beats.push((agent, beat));
    }
    h.state
        .heartbeats
        .flush(&h.state.store)
        .await
        .expect("flush");
    Fleet {
        allow,
        canary_id,
        beats,
    }
}
