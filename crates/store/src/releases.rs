//! Published releases, their preflight verdicts, and the content-addressed blobs they point to.

use crate::{Result, Store, StoreError, json_column, now_ms, to_json, unique_violation};
use sqlx::Row;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreflightStatus {
    Passed,
    Rejected,
    /// `--skip-preflight`: recorded in the audit log, shown everywhere the release is.
    Skipped,
}

impl PreflightStatus {
    fn as_str(self) -> &'static str {
        match self {
            PreflightStatus::Passed => "passed",
            PreflightStatus::Rejected => "rejected",
            PreflightStatus::Skipped => "skipped",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "passed" => Ok(PreflightStatus::Passed),
            "rejected" => Ok(PreflightStatus::Rejected),
            "skipped" => Ok(PreflightStatus::Skipped),
            other => Err(StoreError::Corrupt {
                what: "preflight_status",
                reason: format!("unknown value {other:?}"),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRecord {
    pub channel: String,
    pub version: String,
    /// The signed manifest, as JSON.
    pub manifest: serde_json::Value,
    pub bundle_sha256: String,
    pub published_at: i64,
    pub preflight: PreflightStatus,
    pub preflight_report: Option<serde_json::Value>,
}

fn release(row: &AnyRow) -> Result<ReleaseRecord> {
    let report: Option<String> = row.try_get("preflight_report")?;
    let status: String = row.try_get("preflight_status")?;
    Ok(ReleaseRecord {
        channel: row.try_get("channel")?,
        version: row.try_get("version")?,
        manifest: json_column(row, "manifest")?,
        bundle_sha256: row.try_get("bundle_sha256")?,
        published_at: row.try_get("published_at")?,
        preflight: PreflightStatus::parse(&status)?,
        preflight_report: report.and_then(|r| serde_json::from_str(&r).ok()),
    })
}

/// A release key the server trusts, and since when. Agents learn the server's keys once, at
/// enrollment: an agent enrolled before `first_trusted_at` does not know this key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseKeyRecord {
    pub key_id: String,
    pub public_key: String,
    /// 0 for keys the server trusted before it kept this record: assumed known to every agent.
    pub first_trusted_at: i64,
}

macro_rules! columns {
    () => {
        "channel, version, manifest, bundle_sha256, published_at, preflight_status, preflight_report"
    };
}

impl Store {
    /// Records the keys the server trusts now (`(key id, public key)`), keeping the time each
    /// was first seen, and returns every key ever recorded. The first call on a database that
    /// has no record yet dates every key at 0: keys from before this record existed are taken
    /// to be known to every agent, since nothing says otherwise.
    pub async fn record_release_keys(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<ReleaseKeyRecord>> {
        let mut tx = self.pool().begin().await?;
        let (known,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM release_keys")
            .fetch_one(&mut *tx)
            .await?;
        let since = if known == 0 { 0 } else { now_ms() };
        for (key_id, public_key) in keys {
            let exists: Option<(String,)> =
                sqlx::query_as("SELECT key_id FROM release_keys WHERE key_id = $1")
                    .bind(key_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                sqlx::query(
                    "INSERT INTO release_keys (key_id, public_key, first_trusted_at) VALUES ($1, $2, $3)",
                )
                .bind(key_id)
                .bind(public_key)
                .bind(since)
                .execute(&mut *tx)
                .await?;
            }
        }
        let rows = sqlx::query(
            "SELECT key_id, public_key, first_trusted_at FROM release_keys ORDER BY first_trusted_at, key_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(ReleaseKeyRecord {
                    key_id: row.try_get("key_id")?,
                    public_key: row.try_get("public_key")?,
                    first_trusted_at: row.try_get("first_trusted_at")?,
                })
            })
            .collect()
    }

    /// Stores a blob under its sha256 (hex); storing the same bytes twice is a no-op.
    pub async fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT sha256 FROM blobs WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(self.pool())
                .await?;
        if exists.is_none() {
            let inserted = sqlx::query("INSERT INTO blobs (sha256, bytes) VALUES ($1, $2)")
                .bind(sha256)
                .bind(bytes.to_vec())
                .execute(self.pool())
                .await;
            match inserted {
                Ok(_) => {}
                // Another replica stored the same bytes first.
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub async fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT bytes FROM blobs WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.map(|(bytes,)| bytes))
    }

    pub async fn insert_release(&self, release: &ReleaseRecord) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO releases (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&release.channel)
        .bind(&release.version)
        .bind(to_json(&release.manifest))
        .bind(&release.bundle_sha256)
        .bind(if release.published_at == 0 {
            now_ms()
        } else {
            release.published_at
        })
        .bind(release.preflight.as_str())
        .bind(release.preflight_report.as_ref().map(to_json))
        .execute(self.pool())
        .await
        .map_err(|e| {
            unique_violation(
                e,
                format!("release {}@{}", release.channel, release.version),
            )
        })?;
        Ok(())
    }

    pub async fn release(&self, channel: &str, version: &str) -> Result<Option<ReleaseRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM releases WHERE channel = $1 AND version = $2"
        ))
        .bind(channel)
        .bind(version)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(release).transpose()
    }

    /// All releases, newest first.
    pub async fn releases(&self) -> Result<Vec<ReleaseRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM releases ORDER BY published_at DESC, channel, version"
        ))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(release).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn release_keys_remember_when_they_were_first_trusted() {
        for (backend, store, _dir) in crate::testing::stores().await {
            let key = |id: &str| (id.to_owned(), format!("ed25519:{id}"));
            let first = store
                .record_release_keys(&[key("k1")])
                .await
                .expect("record");
            assert_eq!(first.len(), 1);
            assert_eq!(
                first[0].first_trusted_at, 0,
                "{backend}: the first keys predate agents"
            );
            let before = now_ms();
            let second = store
                .record_release_keys(&[key("k1"), key("k2")])
                .await
                .expect("record");
            let k1 = second.iter().find(|k| k.key_id == "k1").expect("k1");
            let k2 = second.iter().find(|k| k.key_id == "k2").expect("k2");
            assert_eq!(k1.first_trusted_at, 0, "{backend}: kept");
            assert!(
                k2.first_trusted_at >= before,
                "{backend}: a key added later is dated"
            );
        }
    }

    #[tokio::test]
    async fn releases_and_blobs_roundtrip() {
        for (backend, store, _dir) in crate::testing::stores().await {
            store.put_blob("abc", b"bytes").await.expect("put");
            store.put_blob("abc", b"bytes").await.expect("idempotent");
            assert_eq!(
                store.blob("abc").await.expect("get").as_deref(),
                Some(&b"bytes"[..])
            );
            let record = ReleaseRecord {
                channel: "detection".into(),
                version: "1.0.0".into(),
                manifest: serde_json::json!({"name": "detection"}),
                bundle_sha256: "abc".into(),
                published_at: 0,
                preflight: PreflightStatus::Skipped,
                preflight_report: None,
            };
            store.insert_release(&record).await.expect("insert");
            let again = store.insert_release(&record).await;
            assert!(matches!(again, Err(StoreError::Duplicate(_))), "{backend}");
            let back = store
                .release("detection", "1.0.0")
                .await
                .expect("get")
                .expect("exists");
            assert_eq!(back.preflight, PreflightStatus::Skipped);
            assert_eq!(store.releases().await.expect("list").len(), 1);
        }
    }
}
