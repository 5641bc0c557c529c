//! Operator API tokens and enrollment tokens, stored only as sha256 hashes.

use crate::{Result, Store, now_ms};
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// May do everything an operator does.
    Operator,
    /// May enroll one agent, once, before it expires.
    Enroll,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Operator => "operator",
            TokenKind::Enroll => "enroll",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub hash: String,
    pub kind: TokenKind,
    pub label: String,
    pub expires_at: Option<i64>,
    pub used_at: Option<i64>,
}

impl Store {
    pub async fn insert_token(
        &self,
        hash: &str,
        kind: TokenKind,
        label: &str,
        expires_at: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (hash, kind, label, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(hash)
        .bind(kind.as_str())
        .bind(label)
        .bind(now_ms())
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The operator token with this hash, if any.
    pub async fn operator_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT hash, label, expires_at, used_at FROM tokens WHERE hash = $1 AND kind = 'operator'",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(TokenRecord {
                hash: row.try_get("hash")?,
                kind: TokenKind::Operator,
                label: row.try_get("label")?,
                expires_at: row.try_get("expires_at")?,
                used_at: row.try_get("used_at")?,
            })
        })
        .transpose()
    }

    /// Whether an enrollment token would be accepted now; it stays unused. Work that only a
    /// token holder may cause is done after this and before `enroll_agent` spends it.
    pub async fn enroll_token_usable(&self, hash: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT hash FROM tokens WHERE hash = $1 AND kind = 'enroll' \
             AND used_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(hash)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }
}

/// Marks an enrollment token used, atomically: true only for the one caller that used a valid,
/// unexpired, unused token.
pub(crate) async fn consume_enroll_token<'c>(
    hash: &str,
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
) -> Result<bool> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE tokens SET used_at = $1 WHERE hash = $2 AND kind = 'enroll' \
         AND used_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
    )
    .bind(now)
    .bind(hash)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn enroll_tokens_are_single_use_and_expire() {
        for (backend, store, _dir) in crate::testing::stores().await {
            let agent = |id| crate::NewAgent {
                id,
                credential_hash: id,
                hostname: "host",
                tags: &[],
                client_cert_issued: false,
            };
            store
                .insert_token("a", TokenKind::Enroll, "t", None)
                .await
                .expect("insert");
            assert!(store.enroll_token_usable("a").await.expect("check"));
            assert!(
                store.enroll_token_usable("a").await.expect("check"),
                "checking does not spend it"
            );
            assert!(
                store.enroll_agent("a", &agent("x1")).await.expect("use"),
                "{backend}"
            );
            assert!(!store.enroll_token_usable("a").await.expect("check"));
            assert!(
                !store.enroll_agent("a", &agent("x2")).await.expect("reuse"),
                "{backend}"
            );
            store
                .insert_token("b", TokenKind::Enroll, "t", Some(now_ms() - 1))
                .await
                .expect("insert");
            assert!(!store.enroll_token_usable("b").await.expect("expired"));
            assert!(
                !store
                    .enroll_agent("b", &agent("x3"))
                    .await
                    .expect("expired"),
                "{backend}"
            );
            assert!(!store.enroll_token_usable("missing").await.expect("unknown"));
            assert!(
                !store
                    .enroll_agent("missing", &agent("x4"))
                    .await
                    .expect("unknown")
            );
            store
                .insert_token("op", TokenKind::Operator, "ci", None)
                .await
                .expect("insert");
            assert!(store.operator_token("op").await.expect("get").is_some());
            assert!(!store.enroll_token_usable("op").await.expect("wrong kind"));
            assert!(
                !store
                    .enroll_agent("op", &agent("x5"))
                    .await
                    .expect("wrong kind")
            );
            let agents = store.agents().await.expect("agents");
            assert_eq!(agents.len(), 1, "{backend}");
            assert_eq!(agents[0].id, "x1");
        }
    }
}
