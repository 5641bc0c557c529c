//! Driving a real browser: where Chromium and chromedriver are, a chromedriver process and a
//! WebDriver session (fantoccini), waiting on the page, clicking through its refreshes, and
//! screenshots.

use crate::common::Harness;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) fn chromium() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|path| Path::new(path).exists())
}

pub(crate) fn chromedriver() -> Option<&'static str> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|path| Path::new(path).exists())
}

pub(crate) fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir
}

/// Serves the harness's router on a loopback port, as the dashboard's browser sees it.
pub(crate) async fn serve(h: &Harness) -> std::net::SocketAddr {
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

/// A chromedriver process on a free loopback port, stopped when dropped.
pub(crate) struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    pub(crate) fn start(path: &str) -> Driver {
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
pub(crate) async fn session(driver: &Driver, browser: &str, profile: &Path) -> Client {
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
pub(crate) async fn until(client: &Client, condition: &str, what: &str, show: &str) {
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
pub(crate) async fn click(client: &Client, css: &str) {
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
pub(crate) async fn text_of(client: &Client, expression: &str) -> String {
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
pub(crate) async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = artifacts().join(name);
    std::fs::write(&path, &png).expect("write screenshot");
    if std::env::var("RINGFENCE_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::write(docs.join(name), &png).expect("update the screenshot in docs/");
    }
}
