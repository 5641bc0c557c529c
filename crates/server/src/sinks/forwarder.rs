//! One task per sink: hold the sink's lease, read the next batch behind its cursor, send, move
//! the cursor; on failure keep the cursor and wait with backoff (`ringfence_backoff`).
//!
//! On SQLite every write waits for the one writer connection behind the uploads that fill the
//! outbox, so a batch costs one write (the cursor): the batch is read on a reader, and the lease
//! is renewed only once a third of its time has passed, not before every batch.

use super::{Client, SinkConfig};
use crate::AppState;
use ringfence_backoff::{ExpBackoff, Jitter};
use std::time::{Duration, Instant};

/// How long a sink's lease lasts without renewal: a dead replica's batches are resent by
/// another after at most this long.
const LEASE_MS: i64 = 10_000;
/// How long a renewed lease is used before it is renewed again: a third of its time, so two
/// thirds of it are left for the batch in flight.
const RENEW_AFTER: Duration = Duration::from_millis(LEASE_MS as u64 / 3);
/// How often a forwarder with nothing to send looks again when no upload woke it (uploads to
/// other replicas do not).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Between failed attempts: quick at first (a broker restarting), at most 30 s (an outage), so a
/// sink that comes back is caught up with within half a minute.
const RETRY: ExpBackoff =
    ExpBackoff::fixed(Duration::from_millis(100), Duration::from_secs(30), 0.2);

/// Starts a forwarder for every configured sink (none without sinks).
pub fn spawn(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    state
        .config
        .sinks
        .sinks
        .iter()
        .map(|sink| tokio::spawn(run(state.clone(), sink.clone())))
        .collect()
}

/// Wakes every forwarder of this replica: an upload just queued alerts.
pub fn wake_all(state: &AppState) {
    state.sink_wake.notify_waiters();
}

async fn run(state: AppState, sink: SinkConfig) {
    let settings = &state.config.sinks;
    let lease = format!("sink:{}", sink.name);
    let mut client = Client::new(&sink);
    let backoff = RETRY;
    let mut jitter = Jitter::from_entropy();
    let mut attempt: u32 = 0;
    if let Err(error) = state.store.register_sinks(&settings.names()).await {
        tracing::warn!(sink = %sink.name, "could not register the sink: {error}");
    }
    // When this replica last renewed the sink's lease.
    let mut renewed: Option<Instant> = None;
    loop {
        let wake = state.sink_wake.notified();
        if renewed.is_none_or(|at| at.elapsed() >= RENEW_AFTER) {
            renewed = None;
            match state
                .store
                .acquire_lease(&lease, &state.replica, LEASE_MS)
                .await
            {
                Ok(true) => renewed = Some(Instant::now()),
                Ok(false) => {
                    // Another replica sends for this sink; be ready to take over when it stops.
                    tokio::time::sleep(RENEW_AFTER).await;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(sink = %sink.name, "sink lease: {error}");
                    tokio::time::sleep(backoff.delay(attempt, jitter.next_unit())).await;
                    attempt = attempt.saturating_add(1);
                    continue;
                }
            }
        }
        let batch = match state.store.outbox_batch(&sink.name, settings.batch).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(sink = %sink.name, "reading the outbox: {error}");
                tokio::time::sleep(backoff.delay(attempt, jitter.next_unit())).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        let Some(last) = batch.last().map(|item| item.seq) else {
            if let Err(error) = state.store.prune_outbox(&settings.names()).await {
                tracing::warn!("pruning the outbox: {error}");
            }
            let _ = tokio::time::timeout(IDLE_POLL, wake).await;
            continue;
        };
        let sent = tokio::time::timeout(settings.send_timeout, client.send(&batch)).await;
        let outcome = match sent {
            Ok(result) => result,
            Err(_) => Err(super::SinkError::Timeout(settings.send_timeout)),
        };
        match outcome {
            Ok(()) => {
                attempt = 0;
                let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
                if let Err(error) = state.store.sink_delivered(&sink.name, last, count).await {
                    // Sent but not recorded: the batch goes again, with the same event ids.
                    tracing::warn!(sink = %sink.name, "recording delivery: {error}");
                }
            }
            Err(error) => {
                client.reset();
                let delay = backoff.delay(attempt, jitter.next_unit());
                attempt = attempt.saturating_add(1);
                tracing::warn!(
                    sink = %sink.name,
                    alerts = batch.len(),
                    "sending failed, trying again in {delay:?}: {error}"
                );
                if let Err(store_error) = state
                    .store
                    .sink_failed(&sink.name, &error.to_string())
                    .await
                {
                    tracing::warn!(sink = %sink.name, "recording the failure: {store_error}");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}
