//! In-process server harness: a real store (SQLite always, PostgreSQL when configured), a real
//! router, requests through `tower::ServiceExt::oneshot`.

#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod tls_client;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ringfence_server::tls::ClientCert;
use ringfence_server::{AppState, ServerConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct Enrolled {
    pub agent_id: String,
    pub credential: String,
}

pub struct Harness {
    pub name: &'static str,
    pub state: AppState,
    pub operator: String,
    _dir: tempfile::TempDir,
}

pub async fn harnesses() -> Vec<Harness> {
    let mut all = vec![Harness::sqlite().await];
    if let Some(base) = ringfence_testkit::postgres_or_skip("server suite on PostgreSQL") {
        all.push(Harness::postgres(&base).await);
    }
    all
}

impl Harness {
    async fn with(name: &'static str, database_url: Option<String>) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut harness = Harness::at(dir.path(), database_url).await;
        harness.name = name;
        harness._dir = dir;
        harness
    }

    /// A server on an existing data directory (and database), as a restarted process would be.
    pub async fn at(data_dir: &std::path::Path, database_url: Option<String>) -> Harness {
        Harness::configured(data_dir, database_url, |_| {}).await
    }

    /// [`Harness::at`] with the configuration changed by `change` before the server opens.
    pub async fn configured(
        data_dir: &std::path::Path,
        database_url: Option<String>,
        change: impl FnOnce(&mut ServerConfig),
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ServerConfig::new(data_dir.to_owned());
        config.database_url = database_url;
        config.max_body_bytes = 1 << 20;
        change(&mut config);
        let state = ringfence_server::open(config).await.expect("open server");
        let operator = ringfence_server::create_operator_token(&state.store, "test")
            .await
            .expect("operator token");
        Harness {
            name: "custom",
            state,
            operator,
            _dir: dir,
        }
    }

    pub async fn sqlite() -> Harness {
        Harness::with("sqlite", None).await
    }

    pub async fn postgres(base: &str) -> Harness {
        let url = ringfence_store::testing::fresh_postgres_url(base).await;
        Harness::with("postgres", Some(url)).await
    }

    /// Any method, empty body: (status, raw body).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, Vec<u8>) {
        let request = Self::builder(&method.to_uppercase(), path, token)
            .body(Body::empty())
            .expect("request");
        self.send(request).await
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Vec<u8>) {
        let response = ringfence_server::router(self.state.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (status, bytes)
    }

    fn builder(method: &str, path: &str, token: Option<&str>) -> axum::http::request::Builder {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        builder
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let (status, bytes) = self
            .send(
                Self::builder("GET", path, token)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let (status, bytes) = self
            .send(
                Self::builder("GET", path, None)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn post_raw_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let request = Self::builder("POST", path, token)
            .header("Content-Type", "application/json")
            .body(Body::from(body))
            .expect("request");
        let (status, bytes) = self.send(request).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        self.post_raw_json(path, token, body.to_string().into_bytes())
            .await
    }

    /// `post_json` on a connection whose client certificate proved `certificate`, as the TLS
    /// listener would tell the router.
    pub async fn post_json_with_cert(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
        certificate: ClientCert,
    ) -> (StatusCode, Value) {
        let request = Self::builder("POST", path, token)
            .header("Content-Type", "application/json")
            .extension(ConnectInfo(certificate))
            .body(Body::from(body.to_string()))
            .expect("request");
        let (status, bytes) = self.send(request).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn post_bytes(
        &self,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let request = Self::builder("POST", path, token)
            .header("Content-Type", "application/octet-stream")
            .body(Body::from(body))
            .expect("request");
        let (status, bytes) = self.send(request).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn enroll_tokens(&self, count: usize) -> Vec<String> {
        let (status, reply) = self
            .post_json(
                "/api/v1/enroll-tokens",
                Some(&self.operator),
                json!({"label": "test", "count": count}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        reply["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| t.as_str().expect("str").to_owned())
            .collect()
    }

    pub async fn enroll(&self, hostname: &str, tags: &[String]) -> Enrolled {
        let token = self.enroll_tokens(1).await.remove(0);
        let (status, reply) = self
            .post_json(
                "/api/v1/enroll",
                None,
                json!({"token": token, "hostname": hostname, "tags": tags}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        Enrolled {
            agent_id: reply["agent_id"].as_str().expect("id").to_owned(),
            credential: reply["credential"].as_str().expect("credential").to_owned(),
        }
    }
}
