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

    /// Marks an enrollment token used, atomically: true only for the one caller that used a
    /// valid, unexpired, unused token.
    pub async fn consume_enroll_token(&self, hash: &str) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE tokens SET used_at = $1 WHERE hash = $2 AND kind = 'enroll' \
             AND used_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(now)
        .bind(hash)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn enroll_tokens_are_single_use_and_expire() {
        for (backend, store, _dir) in crate::testing::stores().await {
            store
                .insert_token("a", TokenKind::Enroll, "t", None)
                .await
                .expect("insert");
            assert!(
                store.consume_enroll_token("a").await.expect("use"),
                "{backend}"
            );
            assert!(
                !store.consume_enroll_token("a").await.expect("reuse"),
                "{backend}"
            );
            store
                .insert_token("b", TokenKind::Enroll, "t", Some(now_ms() - 1))
                .await
                .expect("insert");
            assert!(
                !store.consume_enroll_token("b").await.expect("expired"),
                "{backend}"
            );
            assert!(
                !store
                    .consume_enroll_token("missing")
                    .await
                    .expect("unknown")
            );
            store
                .insert_token("op", TokenKind::Operator, "ci", None)
                .await
                .expect("insert");
            assert!(store.operator_token("op").await.expect("get").is_some());
            assert!(!store.consume_enroll_token("op").await.expect("wrong kind"));
        }
    }
}
