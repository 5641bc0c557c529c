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
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub used_at: Option<i64>,
    /// Set once revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<i64>,
}

/// How many hex digits of a token's hash name it in lists and `token revoke`: public (the hash
/// of a 256-bit random token reveals nothing) and long enough not to collide in practice.
pub const TOKEN_ID_LEN: usize = 12;

impl TokenRecord {
    /// The token's public id: the start of its hash.
    pub fn id(&self) -> &str {
        self.hash.get(..TOKEN_ID_LEN).unwrap_or(&self.hash)
    }
}

/// What [`Store::revoke_operator_token`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    Done(TokenRecord),
    Already(TokenRecord),
    Unknown,
}

fn operator_record(row: &sqlx::any::AnyRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        hash: row.try_get("hash")?,
        kind: TokenKind::Operator,
        label: row.try_get("label")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
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

    /// The operator token with this hash, if any and not revoked. Not cached anywhere: a
    /// revocation takes effect on every replica with the next request.
    pub async fn operator_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT hash, label, created_at, expires_at, used_at, revoked_at FROM tokens \
             WHERE hash = $1 AND kind = 'operator' AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(operator_record).transpose()
    }

    /// Every operator token, revoked and expired ones included, oldest first.
    pub async fn operator_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT hash, label, created_at, expires_at, used_at, revoked_at FROM tokens \
             WHERE kind = 'operator' ORDER BY created_at, hash",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(operator_record).collect()
    }

    /// Revokes the operator token whose id (see [`TokenRecord::id`]) is `id`, with its audit
    /// row (`revoke_operator_token`, by `actor`), in one transaction.
    pub async fn revoke_operator_token(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Revocation> {
        // Ids are hex; anything else (a `%` or `_` in particular) names no token.
        if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Revocation::Unknown);
        }
        let pattern = format!("{}%", id.to_ascii_lowercase());
        let mut tx = self.pool().begin().await?;
        let rows = sqlx::query(
            "SELECT hash, label, created_at, expires_at, used_at, revoked_at FROM tokens \
             WHERE kind = 'operator' AND hash LIKE $1",
        )
        .bind(&pattern)
        .fetch_all(&mut *tx)
        .await?;
        let found: Vec<TokenRecord> = rows.iter().map(operator_record).collect::<Result<_>>()?;
        let record = match found.as_slice() {
            [] => {
                tx.rollback().await?;
                return Ok(Revocation::Unknown);
            }
            [one] => one.clone(),
            _ => {
                tx.rollback().await?;
                return Err(crate::StoreError::Conflict(
                    "token id (several tokens share it; revoke by a longer id)",
                ));
            }
        };
        if record.revoked_at.is_some() {
            tx.rollback().await?;
            return Ok(Revocation::Already(record));
        }
        let now = now_ms();
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE hash = $2")
            .bind(now)
            .bind(&record.hash)
            .execute(&mut *tx)
            .await?;
        let subject = format!("token:{} ({})", record.id(), record.label);
        crate::audit::insert(actor, "revoke_operator_token", &subject, reason, &mut *tx).await?;
        tx.commit().await?;
        Ok(Revocation::Done(TokenRecord {
            revoked_at: Some(now),
            ..record
        }))
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
        .fetch_optional(self.reader())
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
    async fn operator_tokens_are_listed_and_revoked_with_an_audit_row() {
        for (backend, store, _dir) in crate::testing::stores().await {
            let a = "a".repeat(64);
            let b = format!("{}{}", "a".repeat(11), "b".repeat(53));
            store
                .insert_token(&a, TokenKind::Operator, "ci", None)
                .await
                .expect("insert");
            store
                .insert_token(&b, TokenKind::Operator, "ops", Some(now_ms() + 60_000))
                .await
                .expect("insert");
            store
                .insert_token(&"c".repeat(64), TokenKind::Enroll, "agents", None)
                .await
                .expect("insert");
            let listed = store.operator_tokens().await.expect("list");
            assert_eq!(
                listed.len(),
                2,
                "{backend}: enrollment tokens are not listed"
            );
            assert!(store.operator_token(&a).await.expect("get").is_some());

            let done = store
                .revoke_operator_token(&a[..TOKEN_ID_LEN], "operator:ops", "leaked in CI log")
                .await
                .expect("revoke");
            assert!(
                matches!(&done, Revocation::Done(r) if r.label == "ci"),
                "{backend}"
            );
            assert_eq!(
                store.operator_token(&a).await.expect("get"),
                None,
                "{backend}: a revoked token authenticates nothing"
            );
            assert!(store.operator_token(&b).await.expect("get").is_some());
            let again = store
                .revoke_operator_token(&a[..TOKEN_ID_LEN], "operator:ops", "again")
                .await
                .expect("again");
            assert!(matches!(again, Revocation::Already(_)), "{backend}");
            for bad in [
                "",
                "%",
                "aaaaaaaaaaa_",
                "zzzzzzzzzzzz",
                &"c".repeat(TOKEN_ID_LEN),
            ] {
                assert_eq!(
                    store
                        .revoke_operator_token(bad, "operator:ops", "x")
                        .await
                        .expect("unknown"),
                    Revocation::Unknown,
                    "{backend}: {bad:?}"
                );
            }
            let log = store.audit_log(10).await.expect("audit");
            assert_eq!(log.len(), 1, "{backend}: {log:?}");
            assert_eq!(log[0].action, "revoke_operator_token");
            assert!(log[0].subject.contains("aaaaaaaaaaaa (ci)"), "{log:?}");
            let listed = store.operator_tokens().await.expect("list");
            assert!(
                listed
                    .iter()
                    .any(|t| t.label == "ci" && t.revoked_at.is_some())
            );
        }
    }

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
