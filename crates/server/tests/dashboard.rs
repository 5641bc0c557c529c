//! The dashboard in a real browser (headless Chromium): it loads with no external assets,
//! shows a rollout that halted on its crash gate with the gate's value against its threshold,
//! and a screenshot is kept in `target/test-artifacts/dashboard.png`.
//!
//! `scripts/test.sh` installs Debian's chromium; without it this test says so and skips.

mod common;

use common::Harness;
use ringfence_server::controller;
use ringfence_store::{PreflightStatus, ReleaseRecord};
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn chromium() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|path| Path::new(path).exists())
}

async fn halted_rollout(h: &Harness) {
    for version in ["1.0.0", "2.0.0"] {
        let sha = format!("{:0>64}", version.replace('.', ""));
        h.state
            .store
            .put_blob(&sha, version.as_bytes())
            .await
            .expect("blob");
        h.state
            .store
            .insert_release(&ReleaseRecord {
                channel: "detection".into(),
                version: version.into(),
                manifest: json!({"content": {"sha256": format!("content-{version}")}}),
                bundle_sha256: sha,
                published_at: 0,
                preflight: PreflightStatus::Skipped,
                preflight_report: None,
            })
            .await
            .expect("release");
    }
    let canary = h.enroll("canary-1", &["canary".to_owned()]).await;
    let (_, rollout) = h
        .post_json(
            "/api/v1/rollouts",
            Some(&h.operator),
            json!({"channel": "detection", "version": "2.0.0", "bake_s": 600}),
        )
        .await;
    assert!(rollout["id"].is_string(), "{rollout}");
    let heartbeat = json!({"releases": [{"channel": "detection", "current": "2.0.0", "lkg": "1.0.0", "running": "current"}]});
    h.post_json(
        "/api/v1/agents/heartbeat",
        Some(&canary.credential),
        heartbeat,
    )
    .await;
    let failure = json!({"reports": [{"id": "1", "kind": "failure", "at_ms": ringfence_store::now_ms(), "body": {
        "engine": "faulty", "content_sha256": "content-2.0.0", "kind": "trap", "trap_code": "memory_out_of_bounds",
        "message": "wasm trap: out of bounds memory access", "event_kind": "exec", "at_unix_ns": 0,
        "backtrace": [{"function": "faulty::parse_template", "func_index": 3}]}}]});
    h.post_json("/api/v1/agents/reports", Some(&canary.credential), failure)
        .await;
    h.state
        .heartbeats
        .flush(&h.state.store)
        .await
        .expect("flush");
    controller::tick(&h.state).await.expect("tick");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_halted_rollout_in_a_real_browser() {
    let Some(browser) = chromium() else {
        eprintln!(
            "skipped: no Chromium at /usr/bin/chromium (scripts/test.sh installs Debian's chromium as root)"
        );
        return;
    };
    let h = Harness::sqlite().await;
    halted_rollout(&h).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = ringfence_server::router(h.state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://{address}/#token={}", h.operator);
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifact directory");
    let profile = tempfile::tempdir().expect("profile");
    let common_flags = |command: &mut Command| {
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--window-size=1280,900", "--virtual-time-budget=4000"]);
    };
    let dom = tokio::task::spawn_blocking({
        let browser = browser.to_owned();
        let url = url.clone();
        let mut command = Command::new(&browser);
        common_flags(&mut command);
        move || {
            command
                .arg("--dump-dom")
                .arg(&url)
                .output()
                .expect("run chromium")
        }
    })
    .await
    .expect("join");
    let html = String::from_utf8_lossy(&dom.stdout);
    // The channel's first rollout: nothing to roll back to, so the channel is disabled.
    assert!(
        html.contains("data-phase=\"disabled\""),
        "the halted rollout is shown:\n{html}"
    );
    assert!(
        html.contains("data-gate=\"crashes\""),
        "the crash gate is shown"
    );
    assert!(html.contains("FAIL"), "the failed gate says so");
    assert!(
        html.contains("faulty::parse_template"),
        "the crash group is explained"
    );
    let screenshot = artifacts.join("dashboard.png");
    let mut command = Command::new(browser);
    common_flags(&mut command);
    let shot = tokio::task::spawn_blocking(move || {
        command
            .arg(format!("--screenshot={}", screenshot.display()))
            .arg(&url)
            .output()
            .expect("run chromium")
    })
    .await
    .expect("join");
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    assert!(artifacts.join("dashboard.png").exists());
}
