//! The dashboard: its API (a host's page, adoption per ring, gate history) in-process on every
//! store, and the page itself in a real browser (headless Chromium).
//!
//! The first browser test loads the page with `--dump-dom` and checks what a glance shows: a
//! rollout halted on its crash gate, a degraded host with its reason. The second drives the
//! page through WebDriver (Debian's `chromium-driver`, with fantoccini): it filters the host
//! list, opens a host's page, presses a button that the server refuses and sees why, pauses a
//! rollout after confirming and sees its new phase and the audit entry, loses a race with
//! another operator and is told so, and retries a stopped rollout. Screenshots go to
//! `target/test-artifacts/`; with `RINGFENCE_UPDATE_SCREENSHOTS=1` they are also copied to
//! `docs/` (the ones the README shows).
//!
//! `scripts/test.sh` installs Debian's chromium and chromium-driver; without them the browser
//! tests say so and skip (and fail the run under `RINGFENCE_REQUIRE_ALL=1`).

mod common;

use axum::http::StatusCode;
use common::{Enrolled, Harness};
use fantoccini::{Client, ClientBuilder, Locator};
use ringfence_server::controller;
use ringfence_store::{GateSample, PreflightStatus, ReleaseRecord, now_ms};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn chromium() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|path| Path::new(path).exists())
}

fn chromedriver() -> Option<&'static str> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|path| Path::new(path).exists())
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir
}

async fn publish(h: &Harness, channel: &str, version: &str) {
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

async fn heartbeat(h: &Harness, agent: &Enrolled, body: Value) {
    let (status, reply) = h
        .post_json("/api/v1/agents/heartbeat", Some(&agent.credential), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

async fn start_rollout(h: &Harness, channel: &str, version: &str) -> String {
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
struct Fleet {
    allow: String,
    canary_id: String,
    beats: Vec<(Enrolled, Value)>,
}

impl Fleet {
    /// Every host heartbeats again (the same figures), so the page shows them online.
    async fn beat(&self, h: &Harness) {
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
async fn fleet(h: &Harness) -> Fleet {
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
        let beat = json!({"agent_version": "1.0.0",
               "releases": [{"channel": "allow", "current": current, "lkg": "1.0.0", "running": running}],
               "health": {"permission_events": 1000, "latency": {"p99_us": 300.0}, "cpu_pct": 1.0, "rss_bytes": 20_000_000u64}});
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

#[tokio::test]
async fn a_hosts_page_shows_its_slots_figures_restores_failures_and_crash_groups() {
    for h in common::harnesses().await {
        let fleet = fleet(&h).await;
        let path = format!("/api/v1/hosts/{}", fleet.canary_id);
        let (status, _) = h.get(&path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", h.name);
        let (status, host) = h.get(&path, Some(&h.operator)).await;
        assert_eq!(status, StatusCode::OK, "{}: {host}", h.name);
        assert_eq!(host["host"]["hostname"], "canary-1");
        assert_eq!(host["tags"], json!(["canary"]));
        assert_eq!(
            host["slots"],
            json!([{"channel": "detection", "current": "2.0.0", "lkg": "1.0.0", "running": "lkg"}])
        );
        assert_eq!(host["health"]["rss_bytes"], 27_262_976u64);
        assert_eq!(host["health"]["latency"]["p99_us"], 1500.0);
        assert_eq!(host["restores"].as_array().map(Vec::len), Some(1));
        assert_eq!(host["restores"][0]["body"]["channel"], "detection");
        let failures = host["failures"].as_array().expect("failures");
        assert_eq!(failures.len(), 1, "{}", h.name);
        assert_eq!(failures[0]["kind"], "failure");
        let groups = host["crash_groups"].as_array().expect("groups");
        assert_eq!(groups.len(), 1, "{}: {host}", h.name);
        assert!(
            groups[0]["summary"]
                .as_str()
                .is_some_and(|s| s.contains("parse_template")),
            "{host}"
        );
        // A host with no failures is in no group, and an unknown id is a 404 in words.
        let web = h.state.store.agents().await.expect("agents");
        let web_1 = web.iter().find(|a| a.hostname == "web-1").expect("web-1");
        let (_, quiet) = h
            .get(&format!("/api/v1/hosts/{}", web_1.id), Some(&h.operator))
            .await;
        assert_eq!(quiet["crash_groups"], json!([]));
        assert_eq!(quiet["restores"], json!([]));
        let (status, missing) = h.get("/api/v1/hosts/nobody", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            missing["error"]
                .as_str()
                .is_some_and(|e| e.contains("nobody"))
        );
    }
}

#[tokio::test]
async fn the_host_list_filters_the_whole_fleet_by_release_state_protection_and_contact() {
    for h in common::harnesses().await {
        fleet(&h).await;
        let names = |list: &Value| -> Vec<String> {
            list["hosts"]
                .as_array()
                .expect("hosts")
                .iter()
                .map(|host| host["hostname"].as_str().expect("name").to_owned())
                .collect()
        };
        let get = |query: &'static str| {
            let h = &h;
            async move {
                let (status, list) = h
                    .get(&format!("/api/v1/hosts{query}"), Some(&h.operator))
                    .await;
                assert_eq!(status, StatusCode::OK, "{query}: {list}");
                list
            }
        };
        let all = get("").await;
        assert_eq!(all["total"], 6, "{}", h.name);
        assert_eq!(all["matched"], 6);
        assert_eq!(all["truncated"], false);
        // Degraded first, then by name.
        assert_eq!(
            names(&all),
            ["sick-host", "canary-1", "web-1", "web-2", "web-3", "web-4"]
        );
        assert_eq!(names(&get("?degraded=true").await), ["sick-host"]);
        assert_eq!(get("?degraded=false").await["matched"], 5);
        assert_eq!(
            names(&get("?release=allow@2.0.0").await),
            ["web-1", "web-2"],
            "web-4 has 2.0.0 installed but runs its last known good"
        );
        assert_eq!(names(&get("?state=lkg").await), ["canary-1", "web-4"]);
        assert_eq!(get("?state=online").await["matched"], 6);
        assert_eq!(get("?state=offline").await["matched"], 0);
        assert_eq!(get("?seen_within_s=60").await["matched"], 6);
        assert_eq!(get("?unseen_for_s=86400").await["matched"], 0);
        assert_eq!(names(&get("?name=WEB-3").await), ["web-3"]);
        assert_eq!(
            names(&get("?release=allow@1.0.0&state=online").await),
            ["web-3", "web-4"],
            "web-4 runs 1.0.0 from its last known good slot"
        );
        let two = get("?limit=2").await;
        assert_eq!(names(&two).len(), 2);
        assert_eq!(two["matched"], 6);
        assert_eq!(two["truncated"], true);
        // A filter nobody knows is refused in words, not ignored.
        let (status, refused) = h.get("/api/v1/hosts?colour=red", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert!(refused["error"].is_string(), "{refused}");
        let (status, _) = h.get("/api/v1/hosts", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn rollouts_show_adoption_per_ring_and_the_controller_keeps_gate_history() {
    for h in common::harnesses().await {
        let allow = fleet(&h).await.allow;
        controller::tick(&h.state).await.expect("tick");
        let (status, rollout) = h
            .get(&format!("/api/v1/rollouts/{allow}"), Some(&h.operator))
            .await;
        assert_eq!(status, StatusCode::OK, "{rollout}");
        let rings = rollout["rings"].as_array().expect("rings");
        // Rings are cumulative: the last holds every host, and two of the six run 2.0.0 (web-4
        // has it installed but runs its last known good).
        assert_eq!(rings[3]["hosts"], 6, "{}: {rollout}", h.name);
        assert_eq!(rings[3]["on_release"], 2, "{}", h.name);
        // The canary ring holds the canary-tagged host, which does not run the channel.
        assert!(rings[0]["hosts"].as_u64().is_some_and(|n| n >= 1));
        assert_eq!(rings[0]["on_release"], 0);
        let (status, history) = h
            .get(
                &format!("/api/v1/rollouts/{allow}/gates"),
                Some(&h.operator),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{history}");
        assert_eq!(history["rollout_id"], allow.as_str());
        let gates = history["gates"].as_array().expect("gates");
        let crashes = gates
            .iter()
            .find(|g| g["gate"] == "crashes")
            .unwrap_or_else(|| panic!("{}: no crash gate series: {history}", h.name));
        assert_eq!(crashes["unit"], "per_agent");
        assert_eq!(crashes["points"].as_array().map(Vec::len), Some(1));
        assert_eq!(crashes["points"][0]["passed"], true);
        // A second tick within the bake's sampling interval (600 s / 120) adds no point.
        controller::tick(&h.state).await.expect("tick");
        let (_, again) = h
            .get(
                &format!("/api/v1/rollouts/{allow}/gates"),
                Some(&h.operator),
            )
            .await;
        assert_eq!(
            again["gates"][0]["points"].as_array().map(Vec::len),
            Some(1)
        );
        let (status, _) = h
            .get("/api/v1/rollouts/ro-none/gates", Some(&h.operator))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Old finished rollouts past the newest ten are listed without adoption (each costs a
        // hash per host); running ones always have it.
        let records = h.state.store.rollouts().await.expect("rollouts");
        let finished = records
            .iter()
            .find(|r| r.channel == "detection")
            .expect("the disabled rollout");
        for n in 0..10 {
            let mut copy = finished.clone();
            copy.id = format!("ro-old-{n}");
            h.state.store.insert_rollout(&copy).await.expect("insert");
        }
        let (_, listed) = h.get("/api/v1/rollouts", Some(&h.operator)).await;
        let listed = listed["rollouts"].as_array().expect("rollouts");
        assert_eq!(listed.len(), 12, "{}", h.name);
        let has_adoption = |id: &str| {
            let rollout = listed.iter().find(|r| r["id"] == id).expect("listed");
            rollout["rings"][0].get("hosts").is_some()
        };
        assert!(has_adoption(&allow), "{}", h.name);
        assert!(has_adoption("ro-old-0"), "{}", h.name);
        assert!(!has_adoption(&finished.id), "{}", h.name);
    }
}

/// Serves the harness's router on a loopback port, as the dashboard's browser sees it.
async fn serve(h: &Harness) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = ringfence_server::router(h.state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_halted_rollout_in_a_real_browser() {
    let Some(browser) = chromium() else {
        ringfence_testkit::skip(
            "dashboard_shows_a_halted_rollout_in_a_real_browser",
            "no Chromium at /usr/bin/chromium (scripts/test.sh installs Debian's chromium as root)",
        );
        return;
    };
    let h = Harness::sqlite().await;
    fleet(&h).await;
    let address = serve(&h).await;
    let url = format!("http://{address}/#token={}", h.operator);
    let artifacts = artifacts();
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
    // The channel's first release: nothing to roll back to, so the gates disable it.
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
    // The degraded host: its row carries the badge and the reason, the fleet figure counts it,
    // and neither sits in a hidden part of the page.
    assert!(
        !html.contains("<main id=\"app\" hidden"),
        "the app is shown"
    );
    let row = html
        .find("data-host=\"sick-host\"")
        .map(|at| &html[at..])
        .unwrap_or_else(|| panic!("the sick host has a row:\n{html}"));
    // Up to the next host's row.
    let row = &row[..row[1..].find("data-host=").map_or(row.len(), |n| n + 1)];
    assert!(
        row.contains("data-degraded=\"quarantine\""),
        "the row is marked degraded: {row}"
    );
    assert!(
        row.contains("class=\"badge degraded\">degraded: engine quarantined</span>"),
        "the badge names the reason: {row}"
    );
    assert!(row.contains("quarantined: faulty"), "the detail: {row}");
    assert!(
        html.contains("id=\"fleet-degraded\" data-degraded=\"1\""),
        "the fleet figure counts it"
    );
    assert!(html.contains("protection off"), "the fleet badge says so");
    // The login is explained to whoever opens the page without a token.
    assert!(html.contains("ringfence server token create"));
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

/// A chromedriver process on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(path: &str) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session on headless Chromium; retries while chromedriver is still starting.
async fn session(driver: &Driver, browser: &str, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--window-size=1280,1000",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    let url = format!("http://127.0.0.1:{}", driver.port);
    let mut last = String::new();
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return client,
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no WebDriver session from chromedriver at {url}: {last}");
}

/// Waits until the JavaScript expression `condition` is true in the page; panics with
/// `what` and the value of `show` after 10 s.
async fn until(client: &Client, condition: &str, what: &str, show: &str) {
    for _ in 0..100 {
        let value = client
            .execute(&format!("return !!({condition});"), Vec::new())
            .await
            .expect("script");
        if value == Value::Bool(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = client
        .execute(&format!("return {show};"), Vec::new())
        .await
        .unwrap_or(Value::Null);
    panic!("{what}: not seen within 10 s; the page has {shown}");
}

/// Clicks the element `css` finds, as a user would. The page re-renders every second, so an
/// element found a moment ago may have been replaced: then it is found again.
async fn click(client: &Client, css: &str) {
    let mut last = String::new();
    for _ in 0..50 {
        match client.find(Locator::Css(css)).await {
            Ok(element) => match element.click().await {
                Ok(()) => return,
                Err(error) => last = error.to_string(),
            },
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot click {css}: {last}");
}

/// What a script returns, as a string.
async fn text_of(client: &Client, expression: &str) -> String {
    match client
        .execute(&format!("return {expression};"), Vec::new())
        .await
        .expect("script")
    {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

/// Saves a screenshot under `target/test-artifacts/`, and into `docs/` when asked to with
/// `RINGFENCE_UPDATE_SCREENSHOTS=1`.
async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = artifacts().join(name);
    std::fs::write(&path, &png).expect("write screenshot");
    if std::env::var("RINGFENCE_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::write(docs.join(name), &png).expect("update the screenshot in docs/");
    }
}

const HOSTS_SHOWN: &str = "[...document.querySelectorAll('#host-table tr[data-host]')].map(r => r.dataset.host).sort().join(',')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_filters_hosts_opens_one_and_pauses_a_rollout_in_a_real_browser() {
    const TEST: &str = "an_operator_filters_hosts_opens_one_and_pauses_a_rollout_in_a_real_browser";
    let (Some(browser), Some(driver_path)) = (chromium(), chromedriver()) else {
        ringfence_testkit::skip(
            TEST,
            "no Chromium and chromedriver at /usr/bin (scripts/test.sh installs Debian's \
             chromium and chromium-driver as root)",
        );
        return;
    };
    let h = Harness::sqlite().await;
    let fleet = fleet(&h).await;
    let allow = fleet.allow.clone();
    // A bake's worth of gate history, as the controller would have kept it over ten minutes
    // (each point 20 s apart); the tick then adds the evaluation of now.
    let start = now_ms() - 600_000;
    for i in 0..30_i64 {
        let wobble = ((i * 7) % 5) as f64;
        let at_ms = start + i * 20_000;
        let samples: Vec<GateSample> = [
            ("crashes", 0.0, 0.05),
            ("latency_p99", 280.0 + wobble * 12.0, 2_000.0),
            ("rss", 19_500_000.0 + wobble * 150_000.0, 62_914_560.0),
            ("cpu", 0.8 + wobble * 0.1, 5.0),
        ]
        .into_iter()
        .map(|(gate, value, threshold)| GateSample {
            at_ms,
            ring: 0,
            gate: gate.to_owned(),
            value,
            threshold,
            passed: value <= threshold,
        })
        .collect();
        h.state
            .store
            .record_gate_samples(&allow, &samples, 0, 720)
            .await
            .expect("history");
    }
    controller::tick(&h.state).await.expect("tick");
    let address = serve(&h).await;
    let driver = Driver::start(driver_path);
    let profile = tempfile::tempdir().expect("profile");
    let client = session(&driver, browser, profile.path()).await;

    // Without a token the page explains the login.
    client
        .goto(&format!("http://{address}/"))
        .await
        .expect("open");
    until(
        &client,
        "!document.getElementById('login').hidden",
        "the login",
        "document.body.innerText",
    )
    .await;
    let login = text_of(&client, "document.getElementById('login').innerText").await;
    assert!(login.contains("ringfence server token create"), "{login}");
    assert!(login.contains("operator token"), "{login}");

    client
        .goto(&format!("http://{address}/#token={}", h.operator))
        .await
        .expect("open");
    until(
        &client,
        "document.querySelectorAll('#host-table tr[data-host]').length === 6",
        "six hosts listed",
        HOSTS_SHOWN,
    )
    .await;

    // Filters: degraded hosts only; then a release; then a state; then when last seen.
    let select = |id: &'static str, value: &'static str| {
        let client = client.clone();
        async move {
            client
                .find(Locator::Css(&format!("#{id}")))
                .await
                .expect("filter")
                .select_by_value(value)
                .await
                .expect("select");
        }
    };
    select("filter-degraded", "degraded").await;
    until(
        &client,
        &format!("{HOSTS_SHOWN} === 'sick-host'"),
        "only the degraded host",
        HOSTS_SHOWN,
    )
    .await;
    select("filter-degraded", "").await;
    until(
        &client,
        "[...document.getElementById('filter-release').options].some(o => o.value === 'allow@2.0.0')",
        "the releases hosts run are offered",
        "document.getElementById('filter-release').innerHTML",
    )
    .await;
    select("filter-release", "allow@2.0.0").await;
    until(
        &client,
        &format!("{HOSTS_SHOWN} === 'web-1,web-2'"),
        "the hosts running allow 2.0.0",
        HOSTS_SHOWN,
    )
    .await;
    // The filter holds across the page's refresh every second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(text_of(&client, HOSTS_SHOWN).await, "web-1,web-2");
    select("filter-release", "").await;
    select("filter-state", "lkg").await;
    until(
        &client,
        &format!("{HOSTS_SHOWN} === 'canary-1,web-4'"),
        "the hosts on their last known good release",
        HOSTS_SHOWN,
    )
    .await;
    select("filter-state", "").await;
    select("filter-seen", "stale").await;
    until(
        &client,
        "document.getElementById('no-hosts') !== null",
        "no host unseen for a day",
        HOSTS_SHOWN,
    )
    .await;
    select("filter-seen", "60").await;
    until(
        &client,
        "document.querySelectorAll('#host-table tr[data-host]').length === 6",
        "every host seen within a minute",
        HOSTS_SHOWN,
    )
    .await;

    // The per-ring adoption bar and the gate charts.
    let card = format!("[data-rollout=\"{allow}\"]");
    until(
        &client,
        &format!(
            "document.querySelector('{card} [data-ring=\"fleet\"]')?.dataset.adoption === '2/6'"
        ),
        "the fleet ring's adoption",
        &format!("document.querySelector('{card}')?.innerText"),
    )
    .await;
    until(
        &client,
        &format!(
            "document.querySelector('{card} [data-gate-chart=\"rss\"] polyline.threshold') !== null"
        ),
        "the RSS chart with its threshold line",
        &format!("document.querySelector('{card}')?.innerHTML"),
    )
    .await;
    let rss = text_of(
        &client,
        &format!("document.querySelector('{card} [data-gate-chart=\"rss\"]').innerText"),
    )
    .await;
    assert!(rss.contains("MiB"), "RSS in MiB: {rss}");
    let latency = text_of(
        &client,
        &format!("document.querySelector('{card} [data-gate-chart=\"latency_p99\"]').innerText"),
    )
    .await;
    assert!(
        latency.contains("µs") && latency.contains("2.0 ms"),
        "{latency}"
    );

    // A refused action: promoting while the canary ring has not adopted the release.
    let press = |action: &'static str| {
        let client = client.clone();
        let card = card.clone();
        async move {
            click(&client, &format!("{card} button[data-action=\"{action}\"]")).await;
            client
                .wait()
                .at_most(Duration::from_secs(5))
                .for_element(Locator::Css("#confirm[open]"))
                .await
                .expect("the confirmation");
        }
    };
    press("promote").await;
    let asked = text_of(&client, "document.getElementById('confirm').innerText").await;
    assert!(asked.contains("Promote allow@2.0.0?"), "{asked}");
    // Cancelling does nothing.
    click(&client, "#confirm-cancel").await;
    until(
        &client,
        "!document.getElementById('confirm').open && document.getElementById('result').hidden",
        "nothing happens on cancel",
        "document.getElementById('result').innerText",
    )
    .await;
    press("promote").await;
    click(&client, "#confirm-ok").await;
    until(
        &client,
        "document.getElementById('result').dataset.outcome === 'error'",
        "the refusal",
        "document.getElementById('result').innerText",
    )
    .await;
    let refusal = text_of(&client, "document.getElementById('result').innerText").await;
    assert!(
        refusal.contains("The server refused") && refusal.contains("Cannot promote rollout"),
        "the refusal in words: {refusal}"
    );
    assert_eq!(
        text_of(
            &client,
            &format!("document.querySelector('{card}').dataset.phase")
        )
        .await,
        "running"
    );

    // Pause, with a reason, and see the new phase and the audit entry.
    press("pause").await;
    client
        .find(Locator::Css("#confirm-reason"))
        .await
        .expect("reason")
        .send_keys("checking the canary by hand")
        .await
        .expect("type");
    click(&client, "#confirm-ok").await;
    until(
        &client,
        "document.getElementById('result').dataset.outcome === 'ok'",
        "the pause's result",
        "document.getElementById('result').innerText",
    )
    .await;
    let result = text_of(&client, "document.getElementById('result').innerText").await;
    assert!(result.contains("is now paused"), "{result}");
    assert!(
        result.contains("operator:test") && result.contains("checking the canary by hand"),
        "the audit entry: {result}"
    );
    until(
        &client,
        &format!("document.querySelector('{card}').dataset.phase === 'paused'"),
        "the card's new phase",
        &format!("document.querySelector('{card}').innerText"),
    )
    .await;
    until(
        &client,
        &format!(
            "document.querySelector('#audit-table tr.fresh[data-action=\"pause\"][data-subject=\"{allow}\"]') !== null"
        ),
        "the new audit entry, marked",
        "document.getElementById('audit').innerText",
    )
    .await;
    // The buttons now offer what a paused rollout allows.
    until(
        &client,
        &format!(
            "document.querySelector('{card} button[data-action=\"resume\"]') !== null \
             && document.querySelector('{card} button[data-action=\"pause\"]') === null"
        ),
        "resume offered instead of pause",
        &format!("document.querySelector('{card}').innerText"),
    )
    .await;
    let stored = h
        .state
        .store
        .rollout(&allow)
        .await
        .expect("read")
        .expect("rollout");
    assert_eq!(stored.state["phase"], "paused");
    client
        .execute("window.scrollTo(0, 0)", Vec::new())
        .await
        .expect("scroll");
    fleet.beat(&h).await;
    client
        .set_window_size(1280, 2500)
        .await
        .expect("window size");
    // A refresh (every second) shows the hosts online again.
    until(
        &client,
        "document.querySelectorAll('#host-table .badge.offline').length === 0",
        "every host online",
        HOSTS_SHOWN,
    )
    .await;
    screenshot(&client, "dashboard-fleet.png").await;

    // A host's page, from its row.
    click(&client, "tr[data-host=\"canary-1\"] a.host-link").await;
    until(
        &client,
        "document.getElementById('host-name')?.textContent === 'canary-1'",
        "the canary's page",
        "document.body.innerText",
    )
    .await;
    let page = text_of(&client, "document.getElementById('host').innerText").await;
    for expected in [
        "last known good",
        "2.0.0",
        "guard asked for the last known good slot",
        "faulty::parse_template",
        "26.0 MiB",
        "p99 1.5 ms",
        "canary",
    ] {
        assert!(
            page.contains(expected),
            "{expected:?} on the host page:\n{page}"
        );
    }
    client
        .set_window_size(1280, 1200)
        .await
        .expect("window size");
    // Two refreshes later the page still shows the host (none of the fleet's in-flight
    // answers took over the view).
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    until(
        &client,
        "document.getElementById('app').hidden && !document.getElementById('host-page').hidden",
        "the host page stays",
        "document.body.innerText",
    )
    .await;
    screenshot(&client, "dashboard-host.png").await;
    // Back to the fleet.
    click(&client, "#host a[href=\"#\"]").await;
    until(
        &client,
        "!document.getElementById('app').hidden",
        "the fleet again",
        "document.body.innerText",
    )
    .await;

    // Another operator resumes the rollout while this one is confirming the same: the server
    // refuses the second, and the page says so and shows the rollout as it is now.
    press("resume").await;
    let (status, reply) = h
        .post_json(
            &format!("/api/v1/rollouts/{allow}/resume"),
            Some(&h.operator),
            json!({"reason": "resumed from the CLI"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    click(&client, "#confirm-ok").await;
    until(
        &client,
        "document.getElementById('result').dataset.outcome === 'error'",
        "the refusal of a stale action",
        "document.getElementById('result').innerText",
    )
    .await;
    let refusal = text_of(&client, "document.getElementById('result').innerText").await;
    assert!(
        refusal.contains("The server refused. Cannot resume rollout")
            && refusal.contains("it is running")
            && refusal.contains("Nothing changed"),
        "{refusal}"
    );
    until(
        &client,
        &format!("document.querySelector('{card}').dataset.phase === 'running'"),
        "the rollout as it is now",
        &format!("document.querySelector('{card}').innerText"),
    )
    .await;

    // Retry the channel whose first release was disabled: a new rollout starts, and its
    // audit entry is the one shown.
    let detection = h
        .state
        .store
        .rollouts()
        .await
        .expect("rollouts")
        .into_iter()
        .find(|r| r.channel == "detection")
        .expect("the disabled rollout")
        .id;
    let old_card = format!("[data-rollout=\"{detection}\"]");
    click(
        &client,
        &format!("{old_card} button[data-action=\"retry\"]"),
    )
    .await;
    client
        .wait()
        .at_most(Duration::from_secs(5))
        .for_element(Locator::Css("#confirm[open]"))
        .await
        .expect("the confirmation");
    click(&client, "#confirm-ok").await;
    until(
        &client,
        "document.getElementById('result').dataset.outcome === 'ok'",
        "the retry's result",
        "document.getElementById('result').innerText",
    )
    .await;
    let retried = text_of(&client, "document.getElementById('result').innerText").await;
    assert!(
        retried.contains("A new rollout") && retried.contains("detection@2.0.0 is running"),
        "{retried}"
    );
    assert!(
        retried.contains("start") && retried.contains(&format!("a retry of {detection}")),
        "the new rollout's audit entry: {retried}"
    );
    until(
        &client,
        "document.querySelectorAll('[data-rollout][data-phase=\"running\"]').length === 2",
        "the new rollout listed as running",
        "document.getElementById('rollouts').innerText",
    )
    .await;
    client.close().await.expect("close");
}
