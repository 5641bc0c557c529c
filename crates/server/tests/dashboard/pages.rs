//! The page in headless Chromium: what a glance shows (`--dump-dom`), and an operator's
//! session driven through WebDriver.

use crate::browser::{
    Driver, artifacts, chromedriver, chromium, click, screenshot, serve, session, text_of, until,
};
use crate::common::Harness;
use crate::fleet::fleet;
use axum::http::StatusCode;
use fantoccini::Locator;
use ringfence_server::controller;
use ringfence_server::sinks::SinkConfig;
use ringfence_store::{GateSample, now_ms};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_halted_rollout_in_a_real_browser() {
    let Some(browser) = chromium() else {
        ringfence_testkit::skip(
            "dashboard_shows_a_halted_rollout_in_a_real_browser",
            "no Chromium at /usr/bin/chromium (scripts/test.sh installs Debian's chromium as root)",
        );
        return;
    };
    let data = tempfile::tempdir().expect("data dir");
    let h = Harness::configured(data.path(), None, |config| {
        let sink = SinkConfig::parse("siem=kafka://127.0.0.1:9/alerts").expect("sink");
        config.sinks.sinks.push(sink);
    })
    .await;
    fleet(&h).await;
    // The sink's last attempt failed, as its forwarder records it.
    h.state
        .store
        .register_sinks(&["siem".to_owned()])
        .await
        .expect("register");
    h.state
        .store
        .sink_failed("siem", "connect to 127.0.0.1:9: Connection refused")
        .await
        .expect("failure");
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
    assert!(
        html.contains("data-sink=\"siem\" data-health=\"failing\""),
        "the failing sink is shown as failing"
    );
    assert!(
        html.contains("Connection refused"),
        "the sink's last error is shown"
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

    // A host in audit mode is never shown as plain protection, and the fleet counts it.
    let audit = text_of(
        &client,
        "document.querySelector('#host-table tr[data-host=\"web-3\"] [data-mode=audit]').innerText",
    )
    .await;
    assert_eq!(audit.to_lowercase(), "audit mode · 7 would deny");
    let in_audit = text_of(&client, "document.getElementById('fleet-audit').innerText").await;
    assert!(in_audit.starts_with('1'), "{in_audit}");

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
    // The fleet's degraded figure is the way in: it filters the list to those hosts.
    click(&client, "#fleet-degraded").await;
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
    // The label shows the latest point: the tick's own evaluation, whose threshold is the
    // controller's (the budget while the fleet has no baseline), not the history's 2 ms.
    assert!(
        latency.contains("µs") && latency.contains("threshold") && latency.contains(" ms"),
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
    // Escape dismisses a confirmation without acting, also right after a confirmed one.
    press("halt").await;
    client
        .find(Locator::Css("#confirm-reason"))
        .await
        .expect("reason")
        .send_keys(&fantoccini::key::Key::Escape.to_string())
        .await
        .expect("escape");
    until(
        &client,
        "!document.getElementById('confirm').open",
        "the dialog closed",
        "document.getElementById('confirm').innerText",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        text_of(
            &client,
            &format!("document.querySelector('{card}').dataset.phase")
        )
        .await,
        "paused",
        "Escape halted the rollout"
    );
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
