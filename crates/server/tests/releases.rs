//! Publishing real signed bundles: signature and tamper checks, preflight in the real engine
//! host (traps, an allow-list that denies `/bin/sh`), `--skip-preflight` in the audit log, and
//! preflight compiling an engine once (the compiled-engine cache in the data directory).

mod common;

use axum::http::StatusCode;
use common::{Harness, harnesses};
use ringfence_bundled_engines as bundled;
use ringfence_protocol::FailurePolicy;
use ringfence_release::{Bundle, Component, MANIFEST_FORMAT, Manifest, ReleaseKey, Version};

fn bundle(key: &ReleaseKey, version: &str, engine: &str, content: &[u8]) -> Vec<u8> {
    let wasm = bundled::get(engine).expect("bundled engine").wasm.to_vec();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        name: "detection".into(),
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

#[tokio::test]
async fn good_release_passes_preflight_and_is_downloadable() {
    for h in harnesses().await {
        let bytes = bundle(&server_key(&h), "1.0.0", "faulty", b"ok");
        let (status, release) = h
            .post_bytes("/api/v1/releases", Some(&h.operator), bytes.clone())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {release}", h.name);
        assert_eq!(release["preflight"], "passed");
        assert_eq!(release["preflight_report"]["events"], 2000);
        let agent = h.enroll("a", &[]).await;
        let sha = release["bundle_sha256"].as_str().expect("sha");
        let (status, _) = h
            .request(
                "get",
                &format!("/api/v1/blobs/{sha}"),
                Some(&agent.credential),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = h
            .post_bytes("/api/v1/releases", Some(&h.operator), bytes)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "versions are immutable");
    }
}

#[tokio::test]
async fn preflight_of_the_same_engine_again_loads_it_from_the_engine_cache() {
    for h in harnesses().await {
        for version in ["1.0.0", "1.0.1"] {
            let bytes = bundle(&server_key(&h), version, "faulty", b"ok");
            let (status, release) = h
                .post_bytes("/api/v1/releases", Some(&h.operator), bytes)
                .await;
            assert_eq!(status, StatusCode::CREATED, "{}: {release}", h.name);
            assert_eq!(release["preflight"], "passed");
        }
        let cache = h
            .state
            .engines
            .cache()
            .expect("the data dir has an engine cache");
        assert_eq!(
            cache.dir(),
            h.state
                .config
                .data_dir
                .join("engine-cache")
                .canonicalize()
                .expect("exists")
        );
        let stats = cache.stats();
        assert_eq!(
            (stats.compiled, stats.hits),
            (1, 1),
            "{}: {stats:?}",
            h.name
        );
    }
}

#[tokio::test]
async fn trapping_release_is_rejected_with_evidence() {
    let h = Harness::sqlite().await;
    let bytes = bundle(&server_key(&h), "2.0.0", "faulty", b"cf291");
    let (status, release) = h
        .post_bytes("/api/v1/releases", Some(&h.operator), bytes)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{release}");
    assert_eq!(release["preflight"], "rejected");
    let reason = release["preflight_report"]["reason"]
        .as_str()
        .expect("reason");
    assert!(
        reason.contains("2000 of 2000 events failed") && reason.contains("faulty::parse_template"),
        "{reason}"
    );
    let (status, _) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            serde_json::json!({"channel": "detection", "version": "2.0.0"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a rejected release never reaches ring 0"
    );
}

#[tokio::test]
async fn allowlist_that_denies_the_shell_is_rejected_for_its_deny_rate() {
    let h = Harness::sqlite().await;
    let key = server_key(&h);
    let good = bundle(&key, "1.0.0", "exec-allowlist", b"allow /**\n");
    let (status, _) = h
        .post_bytes("/api/v1/releases", Some(&h.operator), good)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let bad = bundle(
        &key,
        "1.1.0",
        "exec-allowlist",
        b"deny /usr/bin/bash\ndeny /usr/bin/dash\nallow /**\n",
    );
    let (status, release) = h
        .post_bytes("/api/v1/releases", Some(&h.operator), bad)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{release}");
    let reason = release["preflight_report"]["reason"]
        .as_str()
        .expect("reason");
    assert!(reason.contains("deny rate"), "{reason}");
}

#[tokio::test]
async fn skipped_preflight_is_recorded_in_the_audit_log() {
    let h = Harness::sqlite().await;
    let bytes = bundle(&server_key(&h), "2.0.0", "faulty", b"cf291");
    let (status, release) = h
        .post_bytes(
            "/api/v1/releases?skip_preflight=true",
            Some(&h.operator),
            bytes,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{release}");
    assert_eq!(release["preflight"], "skipped");
    let (_, audit) = h.get("/api/v1/audit", Some(&h.operator)).await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["action"], "publish_skip_preflight");
    assert_eq!(entry["subject"], "detection@2.0.0");
}

#[tokio::test]
async fn unsigned_tampered_and_garbage_bundles_are_refused_and_nothing_is_stored() {
    let h = Harness::sqlite().await;
    let stranger = ReleaseKey::generate().expect("key");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown key", bundle(&stranger, "1.0.0", "faulty", b"ok")),
        ("garbage", b"not a bundle at all".to_vec()),
        ("tampered", {
            let mut bytes = bundle(&server_key(&h), "1.0.0", "faulty", b"ok");
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            bytes
        }),
    ];
    for (what, bytes) in cases {
        let (status, reply) = h
            .post_bytes("/api/v1/releases", Some(&h.operator), bytes)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {reply}");
        assert!(
            reply["error"]
                .as_str()
                .expect("error")
                .starts_with("bundle refused"),
            "{what}: {reply}"
        );
    }
    assert!(h.state.store.releases().await.expect("list").is_empty());
}
