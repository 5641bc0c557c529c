//! Test databases: a fresh SQLite file always, and PostgreSQL when `RINGFENCE_TEST_POSTGRES`
//! names a server (scripts/test.sh starts one). Every store test runs on both.

use crate::Store;

/// Stores to run a test against, with their names.
pub async fn stores() -> Vec<(String, Store, Option<tempfile::TempDir>)> {
    let mut stores = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    stores.push((
        "sqlite".to_owned(),
        Store::connect(&url).await.expect("sqlite"),
        Some(dir),
    ));
    match std::env::var("RINGFENCE_TEST_POSTGRES") {
        Ok(base) => {
            let store = fresh_postgres(&base).await;
            stores.push(("postgres".to_owned(), store, None));
        }
        Err(_) => eprintln!(
            "note: RINGFENCE_TEST_POSTGRES is not set; this run covers SQLite only \
             (scripts/test.sh starts PostgreSQL and sets it)"
        ),
    }
    stores
}

/// A new, empty database on the server at `base`, so tests never see each other's rows.
pub async fn fresh_postgres(base: &str) -> Store {
    Store::connect(&fresh_postgres_url(base).await)
        .await
        .expect("connect to test database")
}

/// Creates a new, empty database on the server at `base` and returns its URL.
pub async fn fresh_postgres_url(base: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    sqlx::any::install_default_drivers();
    let name = format!(
        "rf_test_{}_{}_{}",
        std::process::id(),
        crate::now_ms(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let admin = sqlx::AnyPool::connect(base)
        .await
        .expect("connect to test postgres");
    // The name is ours (digits and underscores), not input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("postgres URL has a database part");
    format!("{prefix}/{name}")
}
