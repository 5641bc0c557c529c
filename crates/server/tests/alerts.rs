//! Operators read alerts from the server itself: enrolled agents upload OCSF alerts (with
//! failure and crash reports beside them), `GET /api/v1/alerts` finds them by time, host, rule
//! and severity and refuses bad parameters with a 400 that says why; retention deletes old and
//! excess alerts and never a failure or crash report; `GET /api/v1/sinks` shows each sink's
//! progress. On SQLite always, on PostgreSQL when `RINGFENCE_TEST_POSTGRES` names one.

mod common;

use axum::http::StatusCode;
use common::{Enrolled, Harness};
use ringfence_server::ServerConfig;
use serde_json::{Value, json};
use std::time::Duration;

/// Harnesses on both backends with `change` applied to the configuration: (backend, harness,
/// the data directory it lives in).
async fn configured(
    change: impl Fn(&mut ServerConfig),
) -> Vec<(&'static str, Harness, tempfile::TempDir)> {
    let mut all = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    all.push((
        "sqlite",
        Harness::configured(dir.path(), None, &change).await,
        dir,
    ));
    if let Some(base) = ringfence_testkit::postgres_or_skip("alerts suite on PostgreSQL") {
        let url = ringfence_store::testing::fresh_postgres_url(&base).await;
        let dir = tempfile::tempdir().expect("tempdir");
        all.push((
            "postgres",
            Harness::configured(dir.path(), Some(url), &change).await,
            dir,
        ));
    }
    all
}

/// An OCSF alert as agents write them (`crates/agent/src/alerts.rs`), reduced to what the
/// queries read.
fn alert(id: &str, rule: &str, severity_id: i64, severity: &str) -> Value {
    json!({
        "id": id,
        "kind": "alert",
        "at_ms": 5,
        "body": {
            "class_uid": 1007,
            "severity_id": severity_id,
            "severity": severity,
            "message": format!("{rule} fired"),
            "unmapped": {"ringfence": {"rule_id": rule, "engines": []}},
        },
    })
}

/// Uploads `reports` as `agent`, one upload each with a pause between, so each has its own
/// receive time.
async fn upload(h: &Harness, agent: &Enrolled, reports: Vec<Value>) {
    for report in reports {
        let (status, ack) = h
            .post_json(
                "/api/v1/agents/reports",
                Some(&agent.credential),
                json!({ "reports": [report] }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        assert_eq!(ack["stored"], 1, "{ack}");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// `GET /api/v1/alerts?{query}` as the operator: the alerts' ids, newest first.
async fn ids(h: &Harness, query: &str) -> Vec<String> {
    let (status, reply) = h
        .get(&format!("/api/v1/alerts?{query}"), Some(&h.operator))
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {reply}");
    reply["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn alerts_are_found_by_time_host_rule_and_severity() {
    for (backend, h, _dir) in configured(|_| {}).await {
        let web1 = h.enroll("web-1", &[]).await;
        let web2 = h.enroll("web-2", &[]).await;
        let id = |agent: &Enrolled, n: &str| format!("{}:{n}", agent.agent_id);
        upload(
            &h,
            &web1,
            vec![
                alert("1", "ssh-authorized-keys", 4, "High"),
                json!({"id": "2", "kind": "failure", "at_ms": 5, "body": {"engine": "faulty", "content_sha256": "", "kind": "trap", "message": "trap", "at_unix_ns": 0}}),
            ],
        )
        .await;
        let middle = ringfence_store::now_ms();
        tokio::time::sleep(Duration::from_millis(3)).await;
        upload(&h, &web2, vec![alert("1", "curl-pipe-shell", 2, "Low")]).await;
        upload(
            &h,
            &web1,
            vec![alert("3", "curl-pipe-shell", 5, "Critical")],
        )
        .await;

        let (status, reply) = h.get("/api/v1/alerts", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::OK, "{backend}: {reply}");
        let list: ringfence_server::api::alerts::AlertList =
            serde_json::from_value(reply).expect("typed reply");
        assert_eq!(list.limit, 100);
        let all: Vec<&str> = list.alerts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(
            all,
            [id(&web1, "3"), id(&web2, "1"), id(&web1, "1")],
            "{backend}: alerts only, newest first"
        );
        let newest = &list.alerts[0];
        assert_eq!(newest.hostname.as_deref(), Some("web-1"), "{backend}");
        assert_eq!(newest.rule.as_deref(), Some("curl-pipe-shell"));
        assert_eq!(
            (newest.severity_id, newest.severity.as_deref()),
            (Some(5), Some("Critical"))
        );
        assert_eq!(newest.message.as_deref(), Some("curl-pipe-shell fired"));
        assert_eq!(newest.body["class_uid"], 1007);

        assert_eq!(
            ids(&h, &format!("since_ms={middle}")).await,
            [id(&web1, "3"), id(&web2, "1")],
            "{backend}"
        );
        assert_eq!(
            ids(&h, "host=web-2").await,
            [id(&web2, "1")],
            "{backend}: by hostname"
        );
        assert_eq!(
            ids(&h, &format!("host={}", web1.agent_id)).await,
            [id(&web1, "3"), id(&web1, "1")],
            "{backend}: by agent id"
        );
        assert!(ids(&h, "host=db-9").await.is_empty(), "{backend}");
        assert_eq!(
            ids(&h, "rule=SSH").await,
            [id(&web1, "1")],
            "{backend}: part of the rule, any case"
        );
        assert_eq!(
            ids(&h, "rule=curl&host=web-1").await,
            [id(&web1, "3")],
            "{backend}"
        );
        for severity in ["low", "Low", "2"] {
            assert_eq!(
                ids(&h, &format!("severity={severity}")).await,
                [id(&web2, "1")],
                "{backend}: {severity}"
            );
        }
        assert!(ids(&h, "severity=medium").await.is_empty(), "{backend}");
        assert_eq!(
            ids(&h, "limit=2").await,
            [id(&web1, "3"), id(&web2, "1")],
            "{backend}"
        );
        assert_eq!(ids(&h, "limit=10000").await.len(), 3, "{backend}");

        for (query, says) in [
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("limit=ten", "limit"),
            ("since_ms=-1", "since_ms"),
            ("since_ms=1h", "since_ms"),
            ("severity=severe", "severity"),
            ("severity=7", "severity"),
            ("host=", "host"),
            ("colour=red", "colour"),
        ] {
            let (status, reply) = h
                .get(&format!("/api/v1/alerts?{query}"), Some(&h.operator))
                .await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{backend} {query}: {reply}"
            );
            let message = reply["error"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{backend} {query}: {reply}");
        }
        // Operators only: an agent's credential does not read the fleet's alerts.
        let (status, _) = h.get("/api/v1/alerts", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend}");
        let (status, _) = h.get("/api/v1/alerts", Some(&web1.credential)).await;
        assert!(status.is_client_error(), "{backend}: {status}");
    }
}

#[tokio::test]
async fn retention_deletes_old_and_excess_alerts_but_never_failures_or_crashes() {
    let by_age = |config: &mut ServerConfig| {
        config.alert_retention.max_age = Duration::from_millis(400);
    };
    for (backend, h, _dir) in configured(by_age).await {
        let agent = h.enroll("web-1", &[]).await;
        upload(
            &h,
            &agent,
            vec![
                alert("1", "r", 4, "High"),
                alert("2", "r", 4, "High"),
                json!({"id": "3", "kind": "failure", "at_ms": 5, "body": {"engine": "faulty", "content_sha256": "", "kind": "trap", "message": "trap", "at_unix_ns": 0}}),
                json!({"id": "4", "kind": "crash", "at_ms": 5, "body": {"engine": "agent", "message": "the agent killed by SIGSEGV", "signal": "SIGSEGV"}}),
            ],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        upload(&h, &agent, vec![alert("5", "r", 4, "High")]).await;
        let deleted = ringfence_server::retention::prune(&h.state)
            .await
            .expect("prune");
        assert_eq!(deleted, 2, "{backend}");
        assert_eq!(
            ids(&h, "").await,
            [format!("{}:5", agent.agent_id)],
            "{backend}"
        );
        for kind in ["failure", "crash"] {
            let (_, reply) = h
                .get(&format!("/api/v1/reports?kind={kind}"), Some(&h.operator))
                .await;
            assert_eq!(
                reply["reports"].as_array().map(Vec::len),
                Some(1),
                "{backend}: the {kind} report is kept: {reply}"
            );
        }
        // A kind no agent sends is refused by name, not answered with an empty list.
        let (status, reply) = h
            .get("/api/v1/reports?kind=quarantine", Some(&h.operator))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{backend}: {reply}");
        assert!(
            reply.to_string().contains("known kinds: alert, failure"),
            "{backend}: {reply}"
        );
        let (_, metrics) = h.get_text("/metrics").await;
        assert!(
            metrics.contains("\nringfence_alerts_pruned_total 2\n"),
            "{backend}: {metrics}"
        );
    }

    let by_count = |config: &mut ServerConfig| config.alert_retention.max_count = 2;
    for (backend, h, _dir) in configured(by_count).await {
        let agent = h.enroll("web-1", &[]).await;
        upload(
            &h,
            &agent,
            vec![
                alert("1", "r", 4, "High"),
                json!({"id": "2", "kind": "failure", "at_ms": 5, "body": {"engine": "faulty", "content_sha256": "", "kind": "trap", "message": "trap", "at_unix_ns": 0}}),
                alert("3", "r", 4, "High"),
                alert("4", "r", 4, "High"),
            ],
        )
        .await;
        let deleted = ringfence_server::retention::prune(&h.state)
            .await
            .expect("prune");
        assert_eq!(deleted, 1, "{backend}: the oldest alert");
        let id = |n: &str| format!("{}:{n}", agent.agent_id);
        assert_eq!(ids(&h, "").await, [id("4"), id("3")], "{backend}");
        let failures = h
            .state
            .store
            .reports_since("failure", 0)
            .await
            .expect("failures");
        assert_eq!(failures.len(), 1, "{backend}");
    }
}

#[tokio::test]
async fn sinks_show_their_kind_target_and_progress() {
    let with_sinks = |config: &mut ServerConfig| {
        config.sinks.sinks = vec![
            ringfence_server::sinks::SinkConfig::parse(
                "siem=syslog+tls://127.0.0.1:6514?ca=/nonexistent/ca.pem",
            )
            .expect("syslog"),
            ringfence_server::sinks::SinkConfig::parse("lake=kafka://127.0.0.1:9092/alerts")
                .expect("kafka"),
        ];
    };
    for (backend, h, _dir) in configured(with_sinks).await {
        // Before any forwarder ran (the harness starts none): configured, nothing yet.
        let (status, reply) = h.get("/api/v1/sinks", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::OK, "{backend}: {reply}");
        assert_eq!(reply["sinks"].as_array().map(Vec::len), Some(2), "{reply}");
        assert_eq!(reply["sinks"][0]["depth"], 0, "{backend}: {reply}");

        // What a forwarder records: its cursor, a failure; a sink removed since keeps its row.
        let names = vec!["siem".to_owned(), "lake".to_owned(), "old".to_owned()];
        h.state
            .store
            .register_sinks(&names)
            .await
            .expect("register");
        let agent = h.enroll("web-1", &[]).await;
        upload(
            &h,
            &agent,
            vec![alert("1", "r", 4, "High"), alert("2", "r", 4, "High")],
        )
        .await;
        let batch = h.state.store.outbox_batch("lake", 10).await.expect("batch");
        let last = batch.last().expect("queued").seq;
        h.state
            .store
            .sink_delivered("lake", last, 2)
            .await
            .expect("delivered");
        h.state
            .store
            .sink_failed("siem", "connect to 127.0.0.1:6514: refused")
            .await
            .expect("failed");

        let (status, reply) = h.get("/api/v1/sinks", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::OK, "{backend}: {reply}");
        let list: ringfence_server::api::alerts::SinkList =
            serde_json::from_value(reply.clone()).expect("typed reply");
        assert_eq!(list.outbox_max, 1_000_000);
        let names: Vec<&str> = list.sinks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["siem", "lake", "old"],
            "{backend}: configured first"
        );
        let (siem, lake, old) = (&list.sinks[0], &list.sinks[1], &list.sinks[2]);
        assert_eq!(
            (siem.kind.as_str(), siem.target.as_deref()),
            ("syslog", Some("127.0.0.1:6514"))
        );
        assert_eq!((siem.depth, siem.sent, siem.failed), (2, 0, 1), "{backend}");
        assert!(siem.lag_ms >= 0);
        assert!(
            siem.last_error
                .as_deref()
                .is_some_and(|e| e.contains("refused")),
            "{backend}: {reply}"
        );
        assert_eq!(siem.last_success_at_ms, None);
        assert_eq!(
            (lake.kind.as_str(), lake.target.as_deref()),
            ("kafka", Some("127.0.0.1:9092/alerts"))
        );
        assert_eq!(
            (lake.depth, lake.sent, lake.cursor),
            (0, 2, last),
            "{backend}"
        );
        assert!(lake.last_success_at_ms.is_some(), "{backend}");
        assert_eq!((old.kind.as_str(), old.configured), ("unknown", false));
        assert!(siem.configured && lake.configured);

        let (status, _) = h.get("/api/v1/sinks", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend}");
    }
}
