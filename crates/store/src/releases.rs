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

macro_rules! columns {
    () => {
        "channel, version, manifest, bundle_sha256, published_at, preflight_status, preflight_report"
    };
}

impl Store {
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
            .fetch_optional(self.pool())
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
        .fetch_optional(self.pool())
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
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(release).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
