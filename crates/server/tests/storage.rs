//! The database under faults (a full disk freed again, a truncated or missing file, many
//! writers), what preflight refuses (an empty corpus, `default deny` as a first release, a key
//! agents do not trust), remediation pins held to the rollout rules, and revocation: operator
//! tokens and decommissioned agents refused at once, on every replica.

mod common;

use axum::http::StatusCode;
use common::{Harness, harnesses};
use ringfence_bundled_engines as bundled;
use ringfence_protocol::FailurePolicy;
use ringfence_release::{Bundle, Component, MANIFEST_FORMAT, Manifest, ReleaseKey, Version};
use ringfence_server::ServerConfig;
use serde_json::json;
use std::time::{Duration, Instant};

fn bundle(key: &ReleaseKey, channel: &str, version: &str, engine: &str, content: &[u8]) -> Vec<u8> {
    let wasm = bundled::get(engine).expect("bundled engine").wasm.to_vec();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        name: channel.into(),
        version: Version::parse(version).expect("version"),
        engine_name: engine.into(),
        engine: Some(Component::of(&wasm)),
        content: Some(Component::of(content)),
        failure_policy: FailurePolicy::FailOpen,
        min_agent_version: Version::new(0, 1, 0),
        created_at: 1,
        notes: String::new(),
    };
    Bundle::build(&manifest, Some(wasm), Some(content.to_vec()), key)
        .expect("build")
        .to_bytes()
        .expect("bytes")
}

fn server_key(h: &Harness) -> ReleaseKey {
    ReleaseKey::read_file(&h.state.config.data_dir.join("release.key")).expect("server key")
}

async fn publish(h: &Harness, bytes: Vec<u8>) -> (StatusCode, serde_json::Value) {
    h.post_bytes("/api/v1/releases", Some(&h.operator), bytes)
        .await
}

async fn open_error(config: ServerConfig) -> String {
    match ringfence_server::open(config).await {
        Ok(_) => panic!("the server started"),
        Err(error) => error.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Storage faults

#[tokio::test]
async fn a_full_disk_makes_healthz_degraded_and_the_server_recovers_when_it_is_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(_fs) = ringfence_testkit::SmallTmpfs::mount(
        "a_full_disk_makes_healthz_degraded_and_the_server_recovers_when_it_is_freed",
        dir.path(),
        "6m",
    ) else {
        return;
    };
    let data = dir.path().join("data");
    let h = Harness::at(&data, None).await;
    let (status, health) = h.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{health}");

    let filler = dir.path().join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
    }
    // Writes fail now (perhaps after the WAL's spare room is used up): healthz must say so.
    let mut degraded = None;
    for _ in 0..200 {
        let _ = h
            .post_json(
                "/api/v1/enroll-tokens",
                Some(&h.operator),
                json!({"label": "x".repeat(2000), "count": 50}),
            )
            .await;
        let (status, health) = h.get("/healthz", None).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            degraded = Some(health);
            break;
        }
    }
    let health = degraded.expect("healthz never noticed the full disk");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["database"]
            .as_str()
            .is_some_and(|d| d.contains("writes fail")),
        "{health}"
    );

    std::fs::remove_file(&filler).expect("free the disk");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, health) = h.get("/healthz", None).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery without a restart: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Ordinary writes answer again, in the same process.
    let agent = h.enroll("after-the-disk", &[]).await;
    let (status, reply) = h
        .post_json(
            "/api/v1/agents/heartbeat",
            Some(&agent.credential),
            json!({"agent_version": "0.1.0", "releases": []}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

#[tokio::test]
async fn a_truncated_or_missing_database_refuses_to_start_and_a_new_data_dir_just_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A brand-new data directory starts with no flags, owner-only.
    let h = Harness::at(&data, None).await;
    h.enroll("host", &[]).await;
    let db = data.join("ringfence.db");
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [data.join("ringfence.db"), data.join("release.key")] {
            let mode = std::fs::metadata(&file)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
        let mode = std::fs::metadata(&data).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    h.state.store.close().await;
    drop(h);

    // Truncated to 0 bytes (its WAL gone with it): refused, with what to do.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::File::create(&db).expect("truncate");
    let error = open_error(ServerConfig::new(data.clone())).await;
    assert!(
        error.contains("empty (0 bytes)") && error.contains("--init"),
        "{error}"
    );
    // Deleted: the release key says a server ran here before.
    std::fs::remove_file(&db).expect("delete");
    let error = open_error(ServerConfig::new(data.clone())).await;
    assert!(
        error.contains("missing") && error.contains("--init"),
        "{error}"
    );

    // `--init` starts an empty database on purpose.
    let mut config = ServerConfig::new(data.clone());
    config.init = true;
    let state = ringfence_server::open(config).await.expect("--init");
    assert_eq!(state.store.agent_count().await.expect("count"), 0);
    state.store.close().await;
    let state = ringfence_server::open(ServerConfig::new(data))
        .await
        .expect("after --init it starts without flags");
    state.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_agents_and_operators_writing_at_once_never_get_a_503() {
    for h in harnesses().await {
        let mut agents = Vec::new();
        for i in 0..16 {
            agents.push(h.enroll(&format!("host-{i}"), &[]).await);
        }
        let h = std::sync::Arc::new(h);
        let mut tasks = Vec::new();
        for (i, agent) in agents.into_iter().enumerate() {
            let h = std::sync::Arc::clone(&h);
            tasks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for n in 0..20 {
                    let (status, _) = h
                        .post_json(
                            "/api/v1/agents/heartbeat",
                            Some(&agent.credential),
                            json!({"agent_version": "0.1.0", "releases": []}),
                        )
                        .await;
                    statuses.push(status);
                    let (status, _) = h
                        .post_json(
                            "/api/v1/agents/reports",
                            Some(&agent.credential),
                            json!({"reports": [{"id": format!("r-{i}-{n}"), "kind": "alert", "at_ms": 1, "body": {}}]}),
                        )
                        .await;
                    statuses.push(status);
                    let (status, _) = h
                        .post_json(
                            "/api/v1/enroll-tokens",
                            Some(&h.operator),
                            json!({"label": "load", "count": 2}),
                        )
                        .await;
                    statuses.push(status);
                }
                statuses
            }));
        }
        for task in tasks {
            for status in task.await.expect("join") {
                assert!(
                    status != StatusCode::SERVICE_UNAVAILABLE && !status.is_server_error(),
                    "{}: {status}",
                    h.name
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Preflight

#[tokio::test]
async fn an_empty_or_missing_preflight_corpus_refuses_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").expect("write");
    let mut config = ServerConfig::new(dir.path().join("a"));
    config.preflight_corpus = Some(empty);
    let error = open_error(config).await;
    assert!(error.contains("holds no events"), "{error}");
    let mut config = ServerConfig::new(dir.path().join("b"));
    config.preflight_corpus = Some(dir.path().join("nowhere.jsonl"));
    let error = open_error(config).await;
    assert!(error.contains("nowhere.jsonl"), "{error}");
    assert!(
        !dir.path().join("a").exists() && !dir.path().join("b").exists(),
        "nothing is created for a server that does not start"
    );
}

#[tokio::test]
async fn default_deny_as_a_first_release_is_rejected_and_results_carry_coverage() {
    for h in harnesses().await {
        let key = server_key(&h);
        let (status, release) = publish(
            &h,
            bundle(
                &key,
                "lockdown",
                "1.0.0",
                "exec-allowlist",
                b"default deny\n",
            ),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}: {release}",
            h.name
        );
        let report = &release["preflight_report"];
        let reason = report["reason"].as_str().expect("reason");
        assert!(reason.contains("first release"), "{reason}");
        assert_eq!(report["coverage"]["events"], 2000, "{report}");
        assert!(
            report["coverage"]["executables"]
                .as_u64()
                .is_some_and(|n| n > 1),
            "{report}"
        );
        assert!(
            report["coverage"]["kinds"]["exec"]
                .as_u64()
                .is_some_and(|n| n > 0),
            "{report}"
        );

        let (status, release) = publish(
            &h,
            bundle(&key, "lockdown", "1.0.1", "exec-allowlist", b"allow /**\n"),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {release}", h.name);
        assert!(release["preflight_report"]["coverage"]["events"].is_number());
    }
}

#[tokio::test]
async fn a_release_signed_by_a_key_agents_never_learned_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let h = Harness::at(&data, None).await;
    h.enroll("old-host", &[]).await;
    // An operator key added after that agent enrolled: the server trusts it from its next
    // start, the agent never heard of it.
    let late = ReleaseKey::generate().expect("key");
    std::fs::create_dir_all(data.join("trusted-keys")).expect("dir");
    late.public()
        .write_file(&data.join("trusted-keys/late.pub"))
        .expect("write");
    h.state.store.close().await;
    drop(h);
    let h = Harness::at(&data, None).await;
    let (status, release) = publish(&h, bundle(&late, "detection", "1.0.0", "faulty", b"ok")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{release}");
    let reason = release["preflight_report"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{release}"));
    assert!(reason.contains("1 of 1 agents would refuse it"), "{reason}");
    // Signed by the key the agent got at enrollment, the same content passes.
    let (status, release) = publish(
        &h,
        bundle(&server_key(&h), "detection", "1.0.1", "faulty", b"ok"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{release}");
}

// ---------------------------------------------------------------------------------------------
// Remediations

#[tokio::test]
async fn pins_obey_the_rollout_rules_unless_forced_and_disable_needs_a_channel() {
    for h in harnesses().await {
        let key = server_key(&h);
        let (status, _) = publish(&h, bundle(&key, "detection", "1.0.0", "faulty", b"ok")).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = publish(&h, bundle(&key, "detection", "2.0.0", "faulty", b"ok")).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = publish(&h, bundle(&key, "detection", "3.0.0", "faulty", b"cf291")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, rollout) = h
            .post_json(
                "/api/v1/rollouts",
                Some(&h.operator),
                json!({"channel": "detection", "version": "2.0.0"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{rollout}");
        let plan = |version: &str, force: bool| {
            json!({"scope": "fleet", "channel": "detection", "action": "pin", "version": version,
                   "reason": "incident 42", "force": force})
        };
        // A rejected release.
        let (status, reply) = h
            .post_json(
                "/api/v1/remediations",
                Some(&h.operator),
                plan("3.0.0", false),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}: {reply}",
            h.name
        );
        assert!(
            reply["error"]
                .as_str()
                .is_some_and(|e| e.contains("preflight rejected")),
            "{reply}"
        );
        // Below the rollback floor (the rollout's first version: nothing before it to go back to).
        let (status, reply) = h
            .post_json(
                "/api/v1/remediations",
                Some(&h.operator),
                plan("1.0.0", false),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}: {reply}",
            h.name
        );
        assert!(
            reply["error"]
                .as_str()
                .is_some_and(|e| e.contains("rollback floor 2.0.0")),
            "{reply}"
        );
        // Within the rules.
        let (status, reply) = h
            .post_json(
                "/api/v1/remediations",
                Some(&h.operator),
                plan("2.0.0", false),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {reply}", h.name);
        // Forced: stored with what it broke, audited loudly.
        let (status, reply) = h
            .post_json(
                "/api/v1/remediations",
                Some(&h.operator),
                plan("1.0.0", true),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {reply}", h.name);
        assert!(
            reply["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("FORCED")),
            "{reply}"
        );
        let (_, audit) = h.get("/api/v1/audit", Some(&h.operator)).await;
        assert_eq!(
            audit["entries"][0]["action"], "remediation_forced",
            "{audit}"
        );
        assert!(
            audit["entries"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("rollback floor"))
        );

        let (status, reply) = h
            .post_json(
                "/api/v1/remediations",
                Some(&h.operator),
                json!({"scope": "fleet", "channel": "no-such-channel", "action": "disable", "reason": "typo"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{}: {reply}", h.name);
        assert!(
            reply["error"]
                .as_str()
                .is_some_and(|e| e.contains("no channel")),
            "{reply}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Revocation

#[tokio::test]
async fn operator_tokens_expire_list_and_revoke_with_audit() {
    for h in harnesses().await {
        let (status, created) = h
            .post_json(
                "/api/v1/tokens",
                Some(&h.operator),
                json!({"label": "ci", "ttl_s": 3600}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {created}", h.name);
        let token = created["token"].as_str().expect("token").to_owned();
        let id = created["id"].as_str().expect("id").to_owned();
        let (status, _) = h.get("/api/v1/tokens", Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "the new token works");
        let (_, list) = h.get("/api/v1/tokens", Some(&h.operator)).await;
        let entry = list["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .find(|t| t["id"] == id.as_str())
            .expect("listed")
            .clone();
        assert_eq!(entry["state"], "active");
        assert!(entry["expires_at_ms"].is_number());
        assert!(
            !list.to_string().contains(&token),
            "tokens are never shown again"
        );

        let (status, reply) = h
            .post_json(
                &format!("/api/v1/tokens/{id}/revoke"),
                Some(&h.operator),
                json!({"reason": "leaked"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["state"], "revoked");
        let (status, _) = h.get("/api/v1/tokens", Some(&token)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{}: revoked at once",
            h.name
        );
        let (status, _) = h
            .post_json(
                &format!("/api/v1/tokens/{id}/revoke"),
                Some(&h.operator),
                json!({"reason": "again"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) = h
            .post_json(
                "/api/v1/tokens/000000000000/revoke",
                Some(&h.operator),
                json!({"reason": "x"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = h
            .post_json(
                "/api/v1/tokens",
                Some(&h.operator),
                json!({"label": "x", "ttl_s": 0}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (_, audit) = h.get("/api/v1/audit", Some(&h.operator)).await;
        let actions: Vec<&str> = audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["action"].as_str())
            .collect();
        assert!(actions.contains(&"revoke_operator_token"), "{actions:?}");
        assert!(actions.contains(&"create_operator_token"), "{actions:?}");

        // An expired token is refused like a revoked one.
        let expired = ringfence_server::auth::new_token(ringfence_server::auth::OPERATOR_PREFIX);
        h.state
            .store
            .insert_token(
                &ringfence_server::auth::hash_token(&expired),
                ringfence_store::TokenKind::Operator,
                "old",
                Some(ringfence_store::now_ms() - 1),
            )
            .await
            .expect("insert");
        let (status, _) = h.get("/api/v1/tokens", Some(&expired)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_decommissioned_agent_is_refused_at_once_here_and_within_seconds_on_other_replicas() {
    let beat = json!({"agent_version": "0.1.0", "releases": []});
    for h in harnesses().await {
        let agent = h.enroll("retired-host", &[]).await;
        let keeper = h.enroll("kept-host", &[]).await;
        // A second replica on the same database that has the credential cached.
        let other = Harness::at(
            &h.state.config.data_dir,
            h.state.config.database_url.clone(),
        )
        .await;
        for replica in [&h, &other] {
            let (status, _) = replica
                .post_json(
                    "/api/v1/agents/heartbeat",
                    Some(&agent.credential),
                    beat.clone(),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        // Its cache would keep a certified agent forever: mark it so.
        ringfence_server::auth::certificate_issued(&other.state, &agent.agent_id);
        let sweeper = tokio::spawn(ringfence_server::revocation::run(other.state.clone()));

        let (status, reply) = h
            .post_json(
                &format!("/api/v1/agents/{}/decommission", agent.agent_id),
                Some(&h.operator),
                json!({"reason": "host retired"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{}: {reply}", h.name);
        assert!(reply["decommissioned_at_ms"].is_number());
        let (status, _) = h
            .post_json(
                "/api/v1/agents/heartbeat",
                Some(&agent.credential),
                beat.clone(),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{}: refused at once here",
            h.name
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (status, _) = other
                .post_json(
                    "/api/v1/agents/heartbeat",
                    Some(&agent.credential),
                    beat.clone(),
                )
                .await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: still served by the other replica",
                h.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sweeper.abort();
        let (status, _) = h
            .post_json(
                "/api/v1/agents/heartbeat",
                Some(&keeper.credential),
                beat.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "others keep working");
        let (status, shown) = h
            .get(
                &format!("/api/v1/agents/{}", agent.agent_id),
                Some(&h.operator),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(shown["decommissioned_at_ms"].is_number(), "{shown}");
        let (status, _) = h
            .post_json(
                &format!("/api/v1/agents/{}/decommission", agent.agent_id),
                Some(&h.operator),
                json!({"reason": "again"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, reply) = h
            .post_json(
                "/api/v1/agents/nobody/decommission",
                Some(&h.operator),
                json!({"reason": "x"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
        let (_, audit) = h.get("/api/v1/audit", Some(&h.operator)).await;
        assert!(
            audit["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .any(|e| e["action"] == "decommission"
                    && e["subject"] == format!("agent:{}", agent.agent_id).as_str()
                    && e["reason"] == "host retired"),
            "{audit}"
        );
    }
}
