//! The write path under faults: a file system that fills up and is freed again, and many
//! writers at once. Neither may leave a client with `database is locked`.

use crate::{Store, TokenKind};
use std::path::Path;
use std::time::{Duration, Instant};

/// Fills the file system holding `dir` with one file, until it has no space left.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

#[tokio::test]
async fn a_full_disk_fails_writes_and_health_then_recovers_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(_fs) = ringfence_testkit::SmallTmpfs::mount(
        "a_full_disk_fails_writes_and_health_then_recovers_without_a_restart",
        dir.path(),
        "4m",
    ) else {
        return;
    };
    let url = format!("sqlite://{}", dir.path().join("ringfence.db").display());
    let store = Store::connect(&url).await.expect("connect");
    store.write_probe("test").await.expect("healthy at first");
    let filler = fill(dir.path());

    // Writes that need new pages fail now, and so does the health probe (after the WAL's
    // spare room, if any, is used up).
    let blob = vec![7u8; 256 << 10];
    let mut failed = false;
    for i in 0..64 {
        if store.put_blob(&format!("b{i}"), &blob).await.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "writes must fail on a full disk");
    let mut probe_failed = false;
    for _ in 0..64 {
        if store.write_probe("test").await.is_err() {
            probe_failed = true;
            break;
        }
        let _ = store.put_blob("more", &blob).await;
    }
    assert!(probe_failed, "the write probe must notice the full disk");
    // Reads still work: the server can say what is wrong.
    store.agent_count().await.expect("reads on a full disk");

    std::fs::remove_file(&filler).expect("free the disk");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.write_probe("test").await {
            Ok(()) => break,
            Err(error) if Instant::now() < deadline => {
                eprintln!("not yet: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no recovery without a restart: {error}"),
        }
    }
    // Ordinary writes work again, at once and in parallel.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .insert_token(&format!("after-{i}"), TokenKind::Operator, "x", None)
                .await
        }));
    }
    for task in tasks {
        task.await.expect("join").expect("write after recovery");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_parallel_writers_on_sqlite_never_see_database_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("ringfence.db").display());
    let store = Store::connect(&url).await.expect("connect");
    // A second process-like handle on the same file (the CLI's `token create` while the server
    // runs): SQLite's busy timeout, not luck, keeps the two apart.
    let other = Store::connect(&url).await.expect("second handle");
    let mut tasks = Vec::new();
    for writer in 0..48 {
        let store = if writer % 8 == 0 {
            other.clone()
        } else {
            store.clone()
        };
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let id = format!("a-{writer}-{i}");
                store.insert_agent(&id, &id, "host", &[]).await?;
                store
                    .update_agent_status(&[crate::AgentStatusUpdate {
                        agent_id: id.clone(),
                        seen_at: i,
                        status: serde_json::json!({"i": i}),
                    }])
                    .await?;
                store.audit("test", "write", &id, "parallel").await?;
                store.agent(&id).await?;
            }
            Ok::<(), crate::StoreError>(())
        }));
    }
    for task in tasks {
        task.await.expect("join").expect("no writer may fail");
    }
    assert_eq!(store.agent_count().await.expect("count"), 48 * 25);
    store.close().await;
    other.close().await;
}
