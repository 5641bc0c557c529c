//! The server's edge against hostile agents and clients (issue #15): figures that would poison
//! the gates are stored clamped, report times come from the server's clock, bodies past their
//! limits are refused with JSON errors, and a flood of idle or half-sent connections neither
//! starves an operator nor holds its descriptors past the deadlines.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Harness, harnesses};
use http_body_util::BodyExt;
use ringfence_protocol::api::{bounds, limits};
use ringfence_server::controller;
use ringfence_store::{PreflightStatus, ReleaseRecord};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Sends `request` through the router: (status, content type, body as JSON or null).
async fn send(h: &Harness, request: Request<Body>) -> (StatusCode, String, Value) {
    let response = ringfence_server::router(h.state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        content_type,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Asserts an error answer is `{"error": "..."}` with a JSON content type.
fn assert_json_error(what: &str, (status, content_type, body): &(StatusCode, String, Value)) {
    assert!(
        content_type.starts_with("application/json"),
        "{what}: {status} answered {content_type:?}"
    );
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {status} answered {body}"
    );
}

fn post(path: &str, token: Option<&str>, content_type: Option<&str>, body: Body) -> Request<Body> {
    let mut builder = Request::builder().method("POST").uri(path);
    if let Some(token) = token {
        builder = builder.header("Authorization", format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        builder = builder.header("Content-Type", content_type);
    }
    builder.body(body).expect("request")
}

fn json_post(path: &str, token: &str, body: &Value) -> Request<Body> {
    post(
        path,
        Some(token),
        Some("application/json"),
        Body::from(body.to_string()),
    )
}

async fn publish(h: &Harness, version: &str) {
    let sha = format!("{:0>64}", version.replace('.', ""));
    h.state
        .store
        .put_blob(&sha, format!("bundle-{version}").as_bytes())
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

#[tokio::test]
async fn hostile_figures_are_stored_clamped_and_rollouts_stay_readable() {
    for h in harnesses().await {
        publish(&h, "1.0.0").await;
        let (status, started) = h
            .post_json(
                "/api/v1/rollouts",
                Some(&h.operator),
                json!({"channel": "detection", "version": "1.0.0", "rings": "50,100", "bake_s": 0.0}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{started}");
        let id = started["id"].as_str().expect("id").to_owned();
        let hostile = h.enroll("hostile", &["canary".to_owned()]).await;
        let honest = h.enroll("honest", &[]).await;
        // 1.7e308 is a valid JSON number; doubled in a gate's arithmetic it is infinite.
        let running = json!([{"channel": "detection", "current": "1.0.0", "lkg": null, "running": "current"}]);
        let body = json!({"agent_version": "0.1.0", "releases": running, "health": {
            "cpu_pct": 1.7e308, "p99_us": 1.0e308, "deny_rate": -3.0, "rss_bytes": u64::MAX,
            "latency": {"p50_us": 1e300, "p99_us": 1e300, "max_us": 1e300}, "events": u64::MAX}});
        for agent in [&hostile, &honest] {
            let (status, reply) = h
                .post_json(
                    "/api/v1/agents/heartbeat",
                    Some(&agent.credential),
                    body.clone(),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{}: {reply}", h.name);
        }
        let (status, agents) = h.get("/api/v1/agents", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::OK);
        let stored = agents["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .find(|a| a["id"] == hostile.agent_id.as_str())
            .expect("hostile agent")["status"]["health"]
            .clone();
        assert_eq!(stored["cpu_pct"], json!(bounds::MAX_CPU_PCT), "{stored}");
        assert_eq!(stored["p99_us"], json!(bounds::MAX_LATENCY_US), "{stored}");
        assert_eq!(stored["deny_rate"], json!(0.0), "{stored}");
        assert_eq!(
            stored["rss_bytes"],
            json!(bounds::MAX_RSS_BYTES),
            "{stored}"
        );
        assert_eq!(stored["events"], json!(bounds::MAX_EVENTS), "{stored}");
        for _ in 0..3 {
            controller::tick(&h.state).await.expect("controller tick");
        }
        let (status, rollout) = h
            .get(&format!("/api/v1/rollouts/{id}"), Some(&h.operator))
            .await;
        assert_eq!(status, StatusCode::OK, "{}: {rollout}", h.name);
        assert_eq!(rollout["id"], id.as_str());
        let (status, list) = h.get("/api/v1/rollouts", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::OK, "{}: {list}", h.name);
        // Every gate's threshold and value, and every health figure, is a number: an infinite
        // one would have been written as null and made the rollout unreadable.
        for rollout in list["rollouts"].as_array().expect("rollouts") {
            for gate in rollout["gates"].as_array().expect("gates") {
                assert!(
                    gate["threshold"].is_number() && gate["value"].is_number(),
                    "{}: {gate}",
                    h.name
                );
            }
            for (name, figure) in rollout["ring_health"].as_object().expect("health") {
                // Plain means sit beside the trimmed figures as one object of numbers.
                let numbers: Vec<&serde_json::Value> = match figure.as_object() {
                    Some(inner) => inner.values().collect(),
                    None => vec![figure],
                };
                assert!(
                    numbers.iter().all(|n| n.is_number()),
                    "{}: {name} = {figure}",
                    h.name
                );
            }
        }
    }
}

#[tokio::test]
async fn a_report_dated_2100_is_stamped_with_the_servers_clock_and_does_not_count_later() {
    for h in harnesses().await {
        let agent = h.enroll("canary-1", &["canary".to_owned()]).await;
        let before = ringfence_store::now_ms();
        let batch = json!({"reports": [{"id": "from-the-future", "kind": "crash",
            "at_ms": 4_102_444_800_000_i64, "body": {"kind": "native", "engine": "agent", "message": "the agent exited"}}]});
        let (status, ack) = h
            .post_json("/api/v1/agents/reports", Some(&agent.credential), batch)
            .await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        let after = ringfence_store::now_ms();
        let stored = h
            .state
            .store
            .reports_since("crash", before)
            .await
            .expect("reports");
        assert_eq!(stored.len(), 1, "{}", h.name);
        assert!(
            (before..=after).contains(&stored[0].received_at),
            "received_at is the server's clock"
        );
        assert!(
            stored[0].at <= after,
            "the claimed time is clamped to the server's clock: {}",
            stored[0].at
        );
        // A rollout (or any window) starting after it does not see it.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let later = ringfence_store::now_ms();
        assert!(
            h.state
                .store
                .reports_since("crash", later)
                .await
                .expect("reports")
                .is_empty(),
            "{}",
            h.name
        );
    }
}

#[tokio::test]
async fn bodies_past_their_limits_are_refused_with_json() {
    for h in harnesses().await {
        let agent = h.enroll("a", &[]).await;
        let beat = "/api/v1/agents/heartbeat";
        let reports = "/api/v1/agents/reports";

        // A heartbeat past its route's limit, declared and undeclared (chunked).
        let padding = " ".repeat(limits::MAX_HEARTBEAT_BYTES);
        let huge = format!(r#"{{"agent_version":"1"{padding}}}"#);
        let mut declared = post(
            beat,
            Some(&agent.credential),
            Some("application/json"),
            Body::from(huge.clone()),
        );
        declared
            .headers_mut()
            .insert("content-length", huge.len().into());
        let answer = send(&h, declared).await;
        assert_eq!(answer.0, StatusCode::PAYLOAD_TOO_LARGE, "{}", h.name);
        assert_json_error("declared oversize heartbeat", &answer);
        let chunks = Body::new(Chunks(
            huge.into_bytes()
                .chunks(16 << 10)
                .map(bytes::Bytes::copy_from_slice)
                .collect(),
        ));
        let answer = send(
            &h,
            post(
                beat,
                Some(&agent.credential),
                Some("application/json"),
                chunks,
            ),
        )
        .await;
        assert_eq!(answer.0, StatusCode::PAYLOAD_TOO_LARGE, "{}", h.name);
        assert_json_error("chunked oversize heartbeat", &answer);

        // One report whose body is past the per-report limit, in a batch under the route's.
        let big = "x".repeat(limits::MAX_REPORT_BODY_BYTES + 1);
        let batch =
            json!({"reports": [{"id": "1", "kind": "alert", "at_ms": 1, "body": {"m": big}}]});
        let answer = send(&h, json_post(reports, &agent.credential, &batch)).await;
        assert_eq!(answer.0, StatusCode::PAYLOAD_TOO_LARGE, "{}", h.name);
        assert_json_error("oversize report", &answer);

        // Too many releases, and too many reports: parsed, but outside the protocol.
        let release = json!({"channel": "c", "current": "1", "lkg": null, "running": "current"});
        let many = json!({"releases": vec![release; limits::MAX_RELEASES + 1]});
        let answer = send(&h, json_post(beat, &agent.credential, &many)).await;
        assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", h.name);
        assert_json_error("too many releases", &answer);
        let too_many: Vec<_> = (0..=limits::MAX_REPORTS_PER_BATCH)
            .map(|i| json!({"id": i.to_string(), "kind": "alert", "at_ms": 1, "body": {}}))
            .collect();
        let answer = send(
            &h,
            json_post(reports, &agent.credential, &json!({"reports": too_many})),
        )
        .await;
        assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", h.name);
        assert_json_error("too many reports", &answer);

        // Enrollment has a small limit of its own.
        let answer = send(
            &h,
            post(
                "/api/v1/enroll",
                None,
                Some("application/json"),
                Body::from(vec![b' '; limits::MAX_ENROLL_BYTES + 1]),
            ),
        )
        .await;
        assert_eq!(answer.0, StatusCode::PAYLOAD_TOO_LARGE);
        assert_json_error("oversize enrollment", &answer);
        assert!(
            h.state
                .store
                .reports_since("alert", 0)
                .await
                .expect("reports")
                .is_empty(),
            "nothing refused was stored"
        );
    }
}

/// A body sent in chunks with no `Content-Length`, as a client streaming it would.
struct Chunks(std::collections::VecDeque<bytes::Bytes>);

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(
            self.get_mut()
                .0
                .pop_front()
                .map(|c| Ok(http_body::Frame::data(c))),
        )
    }
}

#[tokio::test]
async fn every_error_is_json_axums_own_rejections_included() {
    for h in harnesses().await {
        let agent = h.enroll("a", &[]).await;
        let beat = "/api/v1/agents/heartbeat";
        let batch = r#"{"reports":[]}"#;

        let answer = send(
            &h,
            post(beat, Some(&agent.credential), None, Body::from("{}")),
        )
        .await;
        assert_eq!(answer.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_json_error("missing content type", &answer);

        let answer = send(
            &h,
            post(
                beat,
                Some(&agent.credential),
                Some("application/json"),
                Body::from("{not json"),
            ),
        )
        .await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST);
        assert_json_error("malformed JSON", &answer);

        let unknown = r#"{"reports":[],"agent_id":"someone-else"}"#;
        let answer = send(
            &h,
            post(
                "/api/v1/agents/reports",
                Some(&agent.credential),
                Some("application/json"),
                Body::from(unknown),
            ),
        )
        .await;
        assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_json_error("unknown field", &answer);
        assert!(
            answer.2["error"]
                .as_str()
                .unwrap_or("")
                .contains("agent_id")
        );

        let answer = send(
            &h,
            Request::builder()
                .method("GET")
                .uri(beat)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(answer.0, StatusCode::METHOD_NOT_ALLOWED);
        assert_json_error("wrong method", &answer);

        let answer = send(
            &h,
            Request::builder()
                .uri("/api/v1/no-such-thing")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(answer.0, StatusCode::NOT_FOUND);
        assert_json_error("unknown route", &answer);

        let answer = send(
            &h,
            post(
                "/api/v1/agents/reports",
                None,
                Some("application/json"),
                Body::from(batch),
            ),
        )
        .await;
        assert_eq!(answer.0, StatusCode::UNAUTHORIZED);
        assert_json_error("no credential", &answer);
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    for h in harnesses().await {
        let agent = h.enroll("a", &[]).await;
        for scheme in ["bearer", "BEARER", "Bearer"] {
            let request = Request::builder()
                .method("POST")
                .uri("/api/v1/agents/heartbeat")
                .header("Authorization", format!("{scheme} {}", agent.credential))
                .header("Content-Type", "application/json")
                .body(Body::from(r#"{"agent_version":"1"}"#))
                .expect("request");
            let (status, _, body) = send(&h, request).await;
            assert_eq!(status, StatusCode::OK, "{scheme}: {body}");
            let request = Request::builder()
                .uri("/api/v1/status")
                .header("Authorization", format!("{scheme} {}", h.operator))
                .body(Body::empty())
                .expect("request");
            let (status, _, body) = send(&h, request).await;
            assert_eq!(status, StatusCode::OK, "{scheme}: {body}");
        }
    }
}
