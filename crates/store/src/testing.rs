//! Test databases: a fresh SQLite file always, and PostgreSQL when `RINGFENCE_TEST_POSTGRES`
//! names a server (scripts/test.sh starts one). Every store test runs on both.

use crate::Store;

/// Stores to run a test against, with their names.
pub async fn stores() -> Vec<(String, Store, Option<tempfile::TempDir>)> {
    let mut stores = Vec::new();
    for (name, url, dir) in databases().await {
        let store = Store::connect(&url).await.expect(&name);
        stores.push((name, store, dir));
    }
    stores
}

/// Like [`stores`], but without any schema: migration tests build an older one themselves.
#[cfg(test)]
pub(crate) async fn unmigrated_stores() -> Vec<(String, Store, Option<tempfile::TempDir>)> {
    let mut stores = Vec::new();
    for (name, url, dir) in databases().await {
        let store = Store::open(&url).await.expect(&name);
        stores.push((name, store, dir));
    }
    stores
}

/// Empty databases to test against: (name, URL, the directory holding a SQLite file).
async fn databases() -> Vec<(String, String, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let mut databases = vec![("sqlite".to_owned(), url, Some(dir))];
    if let Some(base) = ringfence_testkit::postgres_or_skip("store suite on PostgreSQL") {
        databases.push(("postgres".to_owned(), fresh_postgres_url(&base).await, None));
    }
    databases
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
