//! The HTTP API in-process (Router + oneshot), on SQLite and on PostgreSQL when
//! `RINGFENCE_TEST_POSTGRES` is set: authentication and roles, body limits, enrollment,
//! heartbeats, idempotent reports, health, metrics and the OpenAPI document.

mod common;

use axum::http::StatusCode;
use common::{Harness, harnesses};
use ringfence_server::tls::ClientCert;
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn unauthenticated_and_wrong_role_writes_are_refused_and_store_nothing() {
    for h in harnesses().await {
        let (status, _) = h
            .post_json(
                "/api/v1/rollouts",
                None,
                json!({"channel": "c", "version": "1"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", h.name);
        let (status, _) = h
            .post_json(
                "/api/v1/rollouts",
                Some("rfo_bogus"),
                json!({"channel": "c", "version": "1"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", h.name);
        let agent = h.enroll("host-1", &[]).await;
        let (status, _) = h
            .post_json(
                "/api/v1/rollouts",
                Some(&agent.credential),
                json!({"channel": "c", "version": "1"}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "agent credential on an operator endpoint"
        );
        let (status, _) = h
            .post_json("/api/v1/agents/heartbeat", Some(&h.operator), json!({}))
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "operator token on an agent endpoint"
        );
        let (status, _) = h
            .post_bytes("/api/v1/releases", None, b"bundle".to_vec())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(h.state.store.rollouts().await.expect("list").is_empty());
        assert!(h.state.store.releases().await.expect("list").is_empty());
    }
}

#[tokio::test]
async fn enrollment_tokens_are_single_use() {
    for h in harnesses().await {
        let tokens = h.enroll_tokens(1).await;
        let body = json!({"token": tokens[0], "hostname": "a"});
        let (status, _) = h.post_json("/api/v1/enroll", None, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{}", h.name);
        let (status, reply) = h.post_json("/api/v1/enroll", None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", h.name);
        assert!(
            reply["error"]
                .as_str()
                .expect("error")
                .contains("already used")
        );
        assert_eq!(h.state.store.agents().await.expect("agents").len(), 1);
    }
}

#[tokio::test]
async fn the_ca_is_served_to_anyone_and_matches_the_printed_fingerprint() {
    let h = Harness::sqlite().await;
    let (status, pem) = h.request("GET", "/api/v1/tls/ca.pem", None).await;
    assert_eq!(status, StatusCode::OK);
    let tls = h.state.tls.as_ref().expect("HTTPS by default");
    assert_eq!(Some(String::from_utf8_lossy(&pem).into_owned()), tls.ca_pem);
    let file = std::fs::read_to_string(tls.ca_path.as_ref().expect("CA file")).expect("read");
    assert_eq!(Some(file), tls.ca_pem, "the file on disk is what is served");
    assert!(
        tls.ca_fingerprint
            .as_deref()
            .is_some_and(|f| f.starts_with("sha256:"))
    );
}

#[tokio::test]
async fn expired_enrollment_tokens_enroll_nothing() {
    for h in harnesses().await {
        let tokens = ringfence_server::create_enroll_tokens(
            &h.state.store,
            "test",
            1,
            std::time::Duration::ZERO,
        )
        .await
        .expect("token");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let body = json!({"token": tokens[0], "hostname": "late"});
        let (status, reply) = h.post_json("/api/v1/enroll", None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", h.name);
        assert!(reply["error"].as_str().expect("error").contains("expired"));
        assert!(h.state.store.agents().await.expect("agents").is_empty());
    }
}

fn csr() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    rcgen::CertificateParams::default()
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

#[tokio::test]
async fn a_malformed_csr_is_refused_and_the_token_is_not_spent() {
    for h in harnesses().await {
        let token = h.enroll_tokens(1).await.remove(0);
        let envelope =
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
        for csr in ["garbage", envelope, &"A".repeat(20_000)] {
            let body = json!({"token": token, "hostname": "a", "csr": csr});
            let (status, reply) = h.post_json("/api/v1/enroll", None, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{}: {reply}", h.name);
            assert!(
                reply["error"]
                    .as_str()
                    .expect("error")
                    .contains("certificate signing request"),
                "{reply}"
            );
        }
        assert!(h.state.store.agents().await.expect("agents").is_empty());
        let body = json!({"token": token, "hostname": "a", "csr": csr()});
        let (status, reply) = h.post_json("/api/v1/enroll", None, body).await;
        assert_eq!(status, StatusCode::OK, "the token still works: {reply}");
        assert!(
            reply["client_cert"]
                .as_str()
                .expect("client certificate")
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(h.state.store.agents().await.expect("agents").len(), 1);
    }
}

#[tokio::test]
async fn an_enrollment_without_a_valid_token_signs_nothing() {
    for h in harnesses().await {
        let spent = h.enroll_tokens(1).await.remove(0);
        let body = json!({"token": spent, "hostname": "a"});
        let (status, _) = h.post_json("/api/v1/enroll", None, body).await;
        assert_eq!(status, StatusCode::OK);
        let unknown = format!("rfe_{}", "0".repeat(64));
        for token in ["", "bogus", unknown.as_str(), spent.as_str()] {
            let body = json!({"token": token, "hostname": "b", "csr": csr()});
            let (status, reply) = h.post_json("/api/v1/enroll", None, body).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{}: {token:?}: {reply}",
                h.name
            );
            assert!(reply["client_cert"].is_null(), "{reply}");
        }
        assert_eq!(issued(&h), 0, "{}: no certificate issued", h.name);
        assert_eq!(h.state.store.agents().await.expect("agents").len(), 1);
        // Without a valid token the CSR is not even verified.
        let body = json!({"token": "bogus", "hostname": "b", "csr": "junk"});
        let (status, _) = h.post_json("/api/v1/enroll", None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let token = h.enroll_tokens(1).await.remove(0);
        let body = json!({"token": token, "hostname": "c", "csr": csr()});
        let (status, reply) = h.post_json("/api/v1/enroll", None, body).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(issued(&h), 1);
        let id = reply["agent_id"].as_str().expect("id");
        let agent = h.state.store.agent(id).await.expect("get").expect("agent");
        assert!(agent.client_cert_issued_at.is_some());
    }
}

#[tokio::test]
async fn enrollments_racing_for_one_token_issue_one_certificate() {
    for h in harnesses().await {
        let token = h.enroll_tokens(1).await.remove(0);
        let enroll = || {
            let body = json!({"token": token, "hostname": "race", "csr": csr()});
            h.post_json("/api/v1/enroll", None, body)
        };
        // Open the pool's connections first: a request that has to wait for a new one would
        // arrive after the race.
        let list = || h.get("/api/v1/agents", Some(&h.operator));
        tokio::join!(list(), list(), list(), list());
        // The requests interleave, so usually several pass the token check before one spends
        // it and get a CSR signed; however they run, only the one that spends the token issues
        // a certificate.
        let replies = tokio::join!(enroll(), enroll(), enroll(), enroll());
        let statuses = [replies.0.0, replies.1.0, replies.2.0, replies.3.0];
        let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let lost = statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count();
        assert_eq!((won, lost), (1, 3), "{}: {statuses:?}", h.name);
        assert_eq!(issued(&h), 1, "{}: discarded certificates count", h.name);
        assert_eq!(h.state.store.agents().await.expect("agents").len(), 1);
        let log = h.state.store.audit_log(1000).await.expect("audit");
        let enrollments = log.iter().filter(|e| e.action == "enroll").count();
        assert_eq!(enrollments, 1, "{}: {log:?}", h.name);
    }
}

async fn beat(
    h: &Harness,
    certificate: ClientCert,
    credential: &str,
) -> (StatusCode, serde_json::Value) {
    h.post_json_with_cert(
        "/api/v1/agents/heartbeat",
        Some(credential),
        json!({}),
        certificate,
    )
    .await
}

#[tokio::test]
async fn a_client_certificate_must_name_the_credentials_agent() {
    for mut h in harnesses().await {
        let a = h.enroll("host-a", &[]).await;
        let b = h.enroll("host-b", &[]).await;
        // Twice each: the second request finds the credential in the cache.
        for _ in 0..2 {
            let (status, _) = beat(&h, ClientCert::Agent(a.agent_id.clone()), &a.credential).await;
            assert_eq!(status, StatusCode::OK, "{}", h.name);
            let (status, reply) =
                beat(&h, ClientCert::Agent(a.agent_id.clone()), &b.credential).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
            assert!(
                reply["error"]
                    .as_str()
                    .expect("error")
                    .contains("another agent")
            );
            let (status, reply) = beat(&h, ClientCert::Unnamed, &a.credential).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
            let (status, _) = beat(&h, ClientCert::Absent, &a.credential).await;
            assert_eq!(status, StatusCode::OK, "optional by default");
        }

        let mut config = (*h.state.config).clone();
        config.require_agent_certs = true;
        h.state.config = Arc::new(config);
        let (status, reply) = beat(&h, ClientCert::Absent, &b.credential).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
        assert!(
            reply["error"]
                .as_str()
                .expect("error")
                .contains("requires agent client certificates"),
            "{reply}"
        );
        let (status, _) = beat(&h, ClientCert::Agent(b.agent_id.clone()), &b.credential).await;
        assert_eq!(status, StatusCode::OK);
        // Operators never present one.
        let (status, _) = h.get("/api/v1/agents", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::OK);
        // An enrollment without a CSR is refused before its token is spent.
        let token = h.enroll_tokens(1).await.remove(0);
        let (status, reply) = h
            .post_json(
                "/api/v1/enroll",
                None,
                json!({"token": token, "hostname": "c"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
        let body = json!({"token": token, "hostname": "c", "csr": csr()});
        let (status, reply) = h.post_json("/api/v1/enroll", None, body).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_4xx_and_store_nothing() {
    for h in harnesses().await {
        let (status, _) = h
            .post_raw_json("/api/v1/enroll", None, b"{not json".to_vec())
            .await;
        assert!(status.is_client_error(), "{status}");
        let (status, _) = h
            .post_json(
                "/api/v1/enroll",
                None,
                json!({"token": "rfe_x", "hostname": ""}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let agent = h.enroll("host-1", &[]).await;
        let huge = vec![b' '; h.state.config.max_body_bytes + 1];
        let (status, _) = h
            .post_raw_json("/api/v1/agents/reports", Some(&agent.credential), huge)
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{}", h.name);
        let too_many: Vec<_> = (0..1001)
            .map(|i| json!({"id": i.to_string(), "kind": "alert", "at_ms": 1, "body": {}}))
            .collect();
        let (status, _) = h
            .post_json(
                "/api/v1/agents/reports",
                Some(&agent.credential),
                json!({"reports": too_many}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            h.state
                .store
                .reports_since("alert", 0)
                .await
                .expect("reports")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_report_of_an_unknown_kind_or_a_malformed_body_refuses_the_batch_naming_it() {
    for h in harnesses().await {
        let agent = h.enroll("a", &[]).await;
        let good = json!({"id": "good", "kind": "alert", "at_ms": 1, "body": {}});
        for (bad, problem) in [
            (
                json!({"id": "odd-kind", "kind": "quarantine", "at_ms": 1, "body": {}}),
                "unknown kind",
            ),
            (
                json!({"id": "no-record", "kind": "failure", "at_ms": 1, "body": {"kind": "trap"}}),
                "missing field `engine`",
            ),
            (
                json!({"id": "bad-type", "kind": "telemetry", "at_ms": 1,
                       "body": {"suppressed_reports": "many"}}),
                "invalid type",
            ),
        ] {
            let id = bad["id"].as_str().expect("an id").to_owned();
            let (status, reply) = h
                .post_json(
                    "/api/v1/agents/reports",
                    Some(&agent.credential),
                    json!({"reports": [good.clone(), bad]}),
                )
                .await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{}: {reply}",
                h.name
            );
            let error = reply["error"].as_str().expect("an error");
            assert!(
                error.contains(&format!("{id:?}")) && error.contains(problem),
                "{}: {error}",
                h.name
            );
        }
        assert!(
            h.state
                .store
                .reports_since("alert", 0)
                .await
                .expect("reports")
                .is_empty(),
            "{}: nothing of a refused batch is stored",
            h.name
        );
    }
}

#[tokio::test]
async fn reports_are_stored_once_and_scoped_to_the_sender() {
    for h in harnesses().await {
        let a = h.enroll("a", &[]).await;
        let b = h.enroll("b", &[]).await;
        let batch = json!({"reports": [{"id": "1", "kind": "failure", "at_ms": 5, "body": {"engine": "faulty", "content_sha256": "", "kind": "trap", "message": "trap", "at_unix_ns": 0}}]});
        let (_, ack) = h
            .post_json("/api/v1/agents/reports", Some(&a.credential), batch.clone())
            .await;
        assert_eq!(ack["stored"], 1);
        let (_, ack) = h
            .post_json("/api/v1/agents/reports", Some(&a.credential), batch.clone())
            .await;
        assert_eq!(ack["stored"], 0, "a retried upload is stored once");
        let (_, ack) = h
            .post_json("/api/v1/agents/reports", Some(&b.credential), batch)
            .await;
        assert_eq!(
            ack["stored"], 1,
            "the same id from another agent is another report"
        );
        let reports = h
            .state
            .store
            .reports_since("failure", 0)
            .await
            .expect("reports");
        let owners: Vec<_> = reports.iter().map(|r| r.agent_id.clone()).collect();
        assert!(owners.contains(&a.agent_id) && owners.contains(&b.agent_id));
    }
}

#[tokio::test]
async fn heartbeats_update_status_and_health_reports_the_database() {
    for h in harnesses().await {
        let agent = h.enroll("a", &["canary".to_owned()]).await;
        let heartbeat = json!({"agent_version": "0.1.0", "releases": [], "health": {"events": 10, "deny_rate": 0.1}});
        let (status, reply) = h
            .post_json(
                "/api/v1/agents/heartbeat",
                Some(&agent.credential),
                heartbeat,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            reply["assignments"]
                .as_array()
                .expect("assignments")
                .is_empty()
        );
        h.state
            .heartbeats
            .flush(&h.state.store)
            .await
            .expect("flush");
        let stored = h
            .state
            .store
            .agent(&agent.agent_id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(stored.status.expect("status")["health"]["events"], 10);
        let (status, health) = h.get("/healthz", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(health["database"], "ok");
        let (status, summary) = h.get("/api/v1/status", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(summary["agents"], 1);
        assert_eq!(summary["online"], 1, "{}", h.name);
    }
}

#[tokio::test]
async fn database_outage_shows_in_health_and_errors() {
    let h = Harness::sqlite().await;
    h.state.store.close().await;
    let (status, health) = h.get("/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["status"], "degraded");
    let (status, body) = h.get("/api/v1/releases", Some(&h.operator)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

#[tokio::test]
async fn metrics_and_openapi_are_served_and_agree_with_the_router() {
    let h = Harness::sqlite().await;
    let (status, text) = h.get_text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("ringfence_heartbeats_total 0"), "{text}");
    assert!(
        text.contains("ringfence_client_certificates_signed_total 0"),
        "{text}"
    );
    let (status, doc) = h.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path, _, _) in ringfence_server::openapi::ROUTES {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        // Every documented route is routed: axum answers an unrouted path with an empty 404
        // and a wrong method with 405; our handlers always answer with a body.
        let concrete = path
            .replace("{sha256}", &"0".repeat(64))
            .replace("{channel}", "c")
            .replace("{version}", "1")
            .replace("{id}", "x")
            .replace("{action}", "pause");
        let (status, body) = h.request(method, &concrete, Some(&h.operator)).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(!body.is_empty(), "{method} {path} is not routed ({status})");
    }
    let (status, page) = h.get_text("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<title>ringfence</title>"));
}

async fn renew(
    h: &Harness,
    certificate: ClientCert,
    credential: &str,
    csr: String,
) -> (StatusCode, serde_json::Value) {
    h.post_json_with_cert(
        "/api/v1/agents/certificate",
        Some(credential),
        json!({ "csr": csr }),
        certificate,
    )
    .await
}

fn issued(h: &Harness) -> u64 {
    h.state
        .metrics
        .client_certs_issued
        .load(std::sync::atomic::Ordering::Relaxed)
}

async fn renewals(h: &Harness) -> usize {
    let log = h.state.store.audit_log(1000).await.expect("audit");
    log.iter()
        .filter(|entry| entry.action == "renew_certificate")
        .count()
}

#[tokio::test]
async fn a_credential_without_the_agents_certificate_renews_nothing() {
    for h in harnesses().await {
        let a = h.enroll("host-a", &[]).await;
        let b = h.enroll("host-b", &[]).await;
        // A copied credential, from a host without the agent's key: on a default server (no
        // --require-agent-certs) it still heartbeats, but it must not buy a certificate of its
        // own, which would let it pass for the agent even where certificates are required.
        let (status, reply) = renew(&h, ClientCert::Absent, &a.credential, csr()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}: {reply}", h.name);
        assert!(
            reply["error"]
                .as_str()
                .expect("error")
                .contains("renewal needs the agent's current client certificate; re-enroll"),
            "{reply}"
        );
        let (status, reply) = renew(
            &h,
            ClientCert::Agent(b.agent_id.clone()),
            &a.credential,
            csr(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
        assert!(
            reply["error"]
                .as_str()
                .expect("error")
                .contains("another agent"),
            "{reply}"
        );
        let (status, _) = renew(&h, ClientCert::Unnamed, &a.credential, csr()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(issued(&h), 0, "{}: nothing issued", h.name);
        assert_eq!(renewals(&h).await, 0, "nothing audited as renewed");
        let agent = h.state.store.agent(&a.agent_id).await.expect("get");
        assert_eq!(agent.expect("agent").client_cert_issued_at, None);
        let (status, _) = beat(&h, ClientCert::Absent, &a.credential).await;
        assert_eq!(status, StatusCode::OK, "the agent itself is unharmed");
    }
}

#[tokio::test]
async fn an_agent_that_was_issued_a_certificate_must_present_it() {
    for h in harnesses().await {
        let token = h.enroll_tokens(1).await.remove(0);
        let body = json!({"token": token, "hostname": "a", "csr": csr()});
        let (status, reply) = h.post_json("/api/v1/enroll", None, body).await;
        assert_eq!(status, StatusCode::OK, "{}: {reply}", h.name);
        let id = reply["agent_id"].as_str().expect("id").to_owned();
        let credential = reply["credential"].as_str().expect("credential").to_owned();
        // Twice each: the second request finds the credential in the cache.
        for _ in 0..2 {
            let (status, reply) = beat(&h, ClientCert::Absent, &credential).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{}: {reply}", h.name);
            assert!(
                reply["error"]
                    .as_str()
                    .expect("error")
                    .contains("issued a client certificate"),
                "{reply}"
            );
            let (status, _) = beat(&h, ClientCert::Agent(id.clone()), &credential).await;
            assert_eq!(status, StatusCode::OK);
        }

        // An agent enrolled without a certificate (as by an older version) is bound by its
        // first renewal, at once for the cached credential and for a restarted server.
        let old = h.enroll("host-old", &[]).await;
        let (status, _) = beat(&h, ClientCert::Absent, &old.credential).await;
        assert_eq!(status, StatusCode::OK, "nothing was issued to it yet");
        let (status, reply) = renew(
            &h,
            ClientCert::Agent(old.agent_id.clone()),
            &old.credential,
            csr(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let (status, _) = beat(&h, ClientCert::Absent, &old.credential).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "cached credential");
        h.state.agent_ids.write().expect("cache").clear();
        let (status, _) = beat(&h, ClientCert::Absent, &old.credential).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "from the database");
        let (status, _) = beat(&h, ClientCert::Agent(old.agent_id.clone()), &old.credential).await;
        assert_eq!(status, StatusCode::OK);
    }
}

/// Another replica may sign a certificate for an agent this one has cached as having none:
/// the credential alone must stop working here too, within the recheck bound.
#[tokio::test]
async fn a_certificate_issued_elsewhere_binds_a_cached_credential_within_the_recheck_bound() {
    for h in harnesses().await {
        let agent = h.enroll("host-a", &[]).await;
        let (status, _) = beat(&h, ClientCert::Absent, &agent.credential).await;
        assert_eq!(status, StatusCode::OK, "nothing issued yet");
        // What another replica's renewal writes.
        h.state
            .store
            .record_certificate_renewal(&agent.agent_id)
            .await
            .expect("record");
        let (status, _) = beat(&h, ClientCert::Absent, &agent.credential).await;
        assert_eq!(status, StatusCode::OK, "{}: still cached", h.name);
        let long_ago = std::time::Instant::now()
            .checked_sub(
                ringfence_server::auth::UNBOUND_RECHECK + std::time::Duration::from_secs(1),
            )
            .expect("the clock has run long enough");
        for known in h.state.agent_ids.write().expect("cache").values_mut() {
            known.checked_at = long_ago;
        }
        let (status, reply) = beat(&h, ClientCert::Absent, &agent.credential).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}: {reply}", h.name);
        let (status, _) = beat(
            &h,
            ClientCert::Agent(agent.agent_id.clone()),
            &agent.credential,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn certificate_renewal_takes_the_agents_own_certificate_and_a_valid_csr() {
    for h in harnesses().await {
        let a = h.enroll("host-a", &[]).await;
        let b = h.enroll("host-b", &[]).await;
        let (status, reply) = renew(
            &h,
            ClientCert::Agent(a.agent_id.clone()),
            &a.credential,
            csr(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}: {reply}", h.name);
        assert!(
            reply["client_cert"]
                .as_str()
                .is_some_and(|pem| pem.starts_with("-----BEGIN CERTIFICATE-----"))
        );
        let (status, _) = renew(
            &h,
            ClientCert::Agent(b.agent_id.clone()),
            &a.credential,
            csr(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "B's certificate, A's credential"
        );
        let (status, _) = renew(
            &h,
            ClientCert::Agent(a.agent_id.clone()),
            &a.credential,
            "junk".into(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(issued(&h), 1, "only the first renewal issued anything");
        assert_eq!(renewals(&h).await, 1);
        let (status, _) = h
            .post_json(
                "/api/v1/agents/certificate",
                Some(&h.operator),
                json!({ "csr": csr() }),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "operators have no certificate to renew"
        );
    }
}
