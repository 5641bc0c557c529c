//! Leader election by lease: one row per role, taken with a compare-and-set that works the same
//! on SQLite and PostgreSQL. A holder renews before expiry; a dead holder's lease lapses and
//! another replica takes it.

use crate::{Result, Store, now_ms};

impl Store {
    /// Takes or renews the lease `name` for `holder` until `now + ttl_ms`. True if `holder` now
    /// holds it.
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        let now = now_ms();
        let renewed = sqlx::query(
            "UPDATE leases SET holder = $1, expires_at = $2 \
             WHERE name = $3 AND (holder = $1 OR expires_at < $4)",
        )
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(name)
        .bind(now)
        .execute(self.pool())
        .await?;
        if renewed.rows_affected() == 1 {
            return Ok(true);
        }
        let inserted =
            sqlx::query("INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(holder)
                .bind(now + ttl_ms)
                .execute(self.pool())
                .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the lease up at once (clean shutdown).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn one_holder_at_a_time() {
        for (backend, store, _dir) in crate::testing::stores().await {
            assert!(
                store
                    .acquire_lease("controller", "a", 60_000)
                    .await
                    .expect("a takes")
            );
            assert!(
                !store
                    .acquire_lease("controller", "b", 60_000)
                    .await
                    .expect("b waits"),
                "{backend}"
            );
            assert!(
                store
                    .acquire_lease("controller", "a", 60_000)
                    .await
                    .expect("a renews")
            );
            store
                .release_lease("controller", "a")
                .await
                .expect("release");
            assert!(
                store
                    .acquire_lease("controller", "b", 1)
                    .await
                    .expect("b takes")
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
            assert!(
                store
                    .acquire_lease("controller", "a", 60_000)
                    .await
                    .expect("lapsed lease")
            );
        }
    }
}
