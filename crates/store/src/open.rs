//! Opening a database safely: a SQLite file that exists but is empty, truncated, corrupt, holds
//! no ringfence schema, or was written by a newer version is refused with a clear error instead
//! of being silently treated as a new installation (agents, releases and rollouts would be gone
//! without a word). A missing file is a new installation and is created, 0600, like the WAL and
//! shared-memory files SQLite makes next to it (SQLite gives those the database file's mode).

use crate::{Backend, Result, Store, StoreError, backend_of, migrations};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How to treat a database that is not fit to start on.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Initialise an existing SQLite database that is empty or holds no schema, and move a
    /// corrupt one aside (`<file>.corrupt-<ms>`) to start a fresh one. Set only when an
    /// operator asked (`ringfence server --init`).
    pub init: bool,
}

/// The file a `sqlite:` URL names; `None` for in-memory databases.
pub(crate) fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The database file and the two SQLite keeps beside it in WAL mode.
fn data_files(path: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_owned(), with("-wal"), with("-shm")]
}

/// Owner-only permissions on the database and its WAL and shm files: they hold credential
/// hashes, the audit log and every release. Files created by an older version with the
/// default umask (0644) are tightened too.
pub fn restrict_permissions(path: &Path) -> Result<()> {
    for file in data_files(path) {
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(io(&file))?;
            }
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(&file)(error)),
        }
    }
    Ok(())
}

fn refused(path: &Path, what: &str) -> StoreError {
    StoreError::Refused(format!(
        "{}: {what}. Refusing to start on it: the agents, releases and rollouts it held would be \
         gone without a word. Restore it from a backup, or start once with `ringfence server \
         --init` to initialise an empty database here",
        path.display()
    ))
}

/// Opens `url` after the checks in the module header, without applying migrations.
pub(crate) async fn open_checked(url: &str, options: &OpenOptions) -> Result<Store> {
    // The check below opens a plain connection before any pool exists.
    sqlx::any::install_default_drivers();
    let path = match backend_of(url)? {
        Backend::Sqlite => sqlite_path(url),
        Backend::Postgres => None,
    };
    let Some(path) = path else {
        let store = Store::open(url).await?;
        check_schema_version(&store).await?;
        return Ok(store);
    };
    match std::fs::metadata(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // A new installation: create the file ourselves so it is never world-readable,
            // not even for the moment before a chmod.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io(&path))?;
            let store = Store::open(url).await?;
            restrict_permissions(&path)?;
            return Ok(store);
        }
        Err(error) => return Err(io(&path)(error)),
        Ok(meta) if meta.len() == 0 && !options.init => {
            return Err(refused(
                &path,
                "the database file exists but is empty (0 bytes)",
            ));
        }
        Ok(_) => {}
    }
    restrict_permissions(&path)?;
    match check_sqlite(url, &path).await {
        Ok(store) => Ok(store),
        Err(Problem::Empty(reason)) if options.init => {
            tracing::warn!(path = %path.display(), "initialising the database as asked (--init): {reason}");
            let store = Store::open(url).await?;
            restrict_permissions(&path)?;
            Ok(store)
        }
        Err(Problem::Corrupt(reason)) if options.init => {
            let aside = PathBuf::from(format!("{}.corrupt-{}", path.display(), crate::now_ms()));
            tracing::warn!(path = %path.display(), aside = %aside.display(), "moving the corrupt database aside and starting a new one as asked (--init): {reason}");
            for (from, suffix) in data_files(&path).iter().zip(["", "-wal", "-shm"]) {
                let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                match std::fs::rename(from, &to) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(io(from)(error)),
                }
            }
            Box::pin(open_checked(url, &OpenOptions { init: false })).await
        }
        Err(Problem::Empty(reason) | Problem::Corrupt(reason)) => Err(refused(&path, &reason)),
        Err(Problem::Fatal(error)) => Err(error),
    }
}

enum Problem {
    /// Readable but without a ringfence schema.
    Empty(String),
    /// Not a database, or a damaged one.
    Corrupt(String),
    /// Refused whatever the options (a newer schema), or not about the file at all.
    Fatal(StoreError),
}

/// Whether an error says the file's bytes are not a (whole) database.
fn is_corruption(error: &sqlx::Error) -> bool {
    let text = error.to_string();
    text.contains("not a database")
        || text.contains("malformed")
        || text.contains("corrupt")
        || text.contains("disk I/O error")
}

async fn check_sqlite(url: &str, path: &Path) -> std::result::Result<Store, Problem> {
    use sqlx::Connection;
    let classify = |error: sqlx::Error| {
        if is_corruption(&error) {
            Problem::Corrupt(format!("the database is damaged ({error})"))
        } else {
            Problem::Fatal(error.into())
        }
    };
    // One plain connection first: a pool retries a failing connection until its timeout and
    // then reports only that it timed out, which would hide what is wrong with the file.
    let base = url.split_once('?').map_or(url, |(base, _)| base);
    let mut conn = sqlx::AnyConnection::connect(&format!("{base}?mode=rw"))
        .await
        .map_err(classify)?;
    // quick_check reads every page and checks its structure, without the index cross-checks
    // of integrity_check: seconds even for a large fleet's database.
    let rows: Vec<(String,)> = sqlx::query_as("PRAGMA quick_check")
        .fetch_all(&mut conn)
        .await
        .map_err(classify)?;
    let problems: Vec<&str> = rows
        .iter()
        .map(|(row,)| row.as_str())
        .filter(|row| *row != "ok")
        .collect();
    if !problems.is_empty() {
        let _ = conn.close().await;
        return Err(Problem::Corrupt(format!(
            "the integrity check failed: {}",
            problems.into_iter().take(3).collect::<Vec<_>>().join("; ")
        )));
    }
    let has_schema: Option<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    )
    .fetch_optional(&mut conn)
    .await
    .map_err(classify)?;
    let _ = conn.close().await;
    if has_schema.is_none() {
        return Err(Problem::Empty(format!(
            "the file is a SQLite database without a ringfence schema ({} bytes)",
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        )));
    }
    let store = Store::open(url).await.map_err(Problem::Fatal)?;
    check_schema_version(&store).await.map_err(Problem::Fatal)?;
    Ok(store)
}

/// A schema newer than this build knows was written by a newer server: its migrations may have
/// changed what the old queries assume.
async fn check_schema_version(store: &Store) -> Result<()> {
    let exists = match store.backend() {
        Backend::Sqlite => {
            sqlx::query_as::<_, (String,)>(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            )
            .fetch_optional(store.pool())
            .await?
            .is_some()
        }
        Backend::Postgres => {
            sqlx::query_as::<_, (String,)>(
                "SELECT table_name::TEXT FROM information_schema.tables WHERE table_name = 'schema_migrations'",
            )
            .fetch_optional(store.pool())
            .await?
            .is_some()
        }
    };
    if !exists {
        return Ok(());
    }
    let (newest,): (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(store.pool())
        .await?;
    let known = migrations::newest();
    match newest {
        Some(version) if version > known => Err(StoreError::Refused(format!(
            "the database has schema version {version}, newer than this build's {known}: it was \
             written by a newer ringfence server; run that version (or restore a backup)"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/x.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/x.db"))
        );
        assert_eq!(
            sqlite_path("sqlite://rel.db"),
            Some(PathBuf::from("rel.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }

    fn url(path: &Path) -> String {
        format!("sqlite://{}", path.display())
    }

    #[tokio::test]
    async fn a_new_database_is_created_owner_only_with_its_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.db");
        let store = Store::connect(&url(&path)).await.expect("new database");
        store
            .insert_token("h", crate::TokenKind::Operator, "x", None)
            .await
            .expect("write");
        for file in data_files(&path) {
            let mode =
                std::fs::metadata(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(
                mode.permissions().mode() & 0o777,
                0o600,
                "{}",
                file.display()
            );
        }
        store.close().await;
    }

    #[tokio::test]
    async fn a_world_readable_database_is_tightened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        Store::connect(&url(&path))
            .await
            .expect("create")
            .close()
            .await;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        Store::connect(&url(&path))
            .await
            .expect("reopen")
            .close()
            .await;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn a_truncated_database_is_refused_unless_initialised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ringfence.db");
        let store = Store::connect(&url(&path)).await.expect("create");
        store
            .insert_token("h", crate::TokenKind::Operator, "x", None)
            .await
            .expect("write");
        store.close().await;
        for file in data_files(&path).iter().skip(1) {
            let _ = std::fs::remove_file(file);
        }
        std::fs::File::create(&path).expect("truncate");
        let refused = Store::connect(&url(&path)).await;
        let Err(StoreError::Refused(message)) = &refused else {
            panic!("not refused: {refused:?}");
        };
        assert!(message.contains("empty (0 bytes)"), "{message}");
        assert!(message.contains("--init"), "{message}");
        let store = Store::connect_with(&url(&path), &OpenOptions { init: true })
            .await
            .expect("--init");
        assert_eq!(store.agent_count().await.expect("count"), 0);
        store.close().await;
        // Initialised, it is an ordinary database again.
        Store::connect(&url(&path))
            .await
            .expect("reopen")
            .close()
            .await;
    }

    #[tokio::test]
    async fn a_damaged_database_is_refused_and_moved_aside_only_with_init() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ringfence.db");
        let store = Store::connect(&url(&path)).await.expect("create");
        for i in 0..200 {
            store
                .insert_token(&format!("h{i}"), crate::TokenKind::Operator, "x", None)
                .await
                .expect("write");
        }
        store.close().await;
        // Cut the file in half (past the header): pages that tables point to are gone.
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("cut");
        let refused = Store::connect(&url(&path)).await;
        assert!(
            matches!(&refused, Err(StoreError::Refused(m)) if m.contains("--init")),
            "{refused:?}"
        );
        // Garbage where the header should be: not a database at all.
        std::fs::write(&path, vec![0x5a; 8192]).expect("garbage");
        let refused = Store::connect(&url(&path)).await;
        assert!(
            matches!(&refused, Err(StoreError::Refused(m)) if m.contains("damaged")),
            "{refused:?}"
        );
        let store = Store::connect_with(&url(&path), &OpenOptions { init: true })
            .await
            .expect("--init");
        store.close().await;
        let aside = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(std::result::Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
        assert!(aside, "the damaged file is kept beside the new one");
    }

    #[tokio::test]
    async fn a_database_from_a_newer_version_is_refused() {
        for (backend, store, dir) in crate::testing::stores().await {
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)")
                .bind(migrations::newest() + 1)
                .execute(store.pool())
                .await
                .expect("future migration");
            store.close().await;
            if let Some(dir) = dir {
                let refused = Store::connect(&url(&dir.path().join("store.db"))).await;
                assert!(
                    matches!(&refused, Err(StoreError::Refused(m)) if m.contains("newer")),
                    "{backend}: {refused:?}"
                );
            }
        }
    }
}
