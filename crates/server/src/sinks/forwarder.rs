//! One task per sink: hold the sink's lease, read the next batch behind its cursor, send, move
//! the cursor; on failure keep the cursor and wait with backoff (`ringfence_backoff`).
//!
//! On SQLite every write waits for the one writer connection behind the uploads that fill the
//! outbox, so no batch waits for a write: the batch is read on a reader, the lease is renewed
//! only once a third of its time has passed, and the cursor write that records a batch runs
//! beside the next send (one at a time; batches sent meanwhile are recorded together). The
//! lease holder reads on from what it sent, not from the cursor; a replica that takes the lease
//! over starts from the cursor, so what was sent but not yet recorded is sent again, with the
//! same event ids: at least once, as before.

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
    // How far this replica has sent while it holds the lease (ahead of the cursor).
    let mut sent_through: Option<i64> = None;
    let mut record = Recorder::default();
    loop {
        let wake = state.sink_wake.notified();
        if renewed.is_none_or(|at| at.elapsed() >= RENEW_AFTER) {
            let held = renewed.is_some();
            renewed = None;
            match state
                .store
                .acquire_lease(&lease, &state.replica, LEASE_MS)
                .await
            {
                Ok(true) => {
                    if !held {
                        // Taken over (or first taken): the cursor says where sending stopped.
                        sent_through = None;
                    }
                    renewed = Some(Instant::now());
                }
                Ok(false) => {
                    // Another replica sends for this sink; be ready to take over when it stops.
                    sent_through = None;
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
        let read = match sent_through {
            Some(seq) => state.store.outbox_after(seq, settings.batch).await,
            None => state.store.outbox_batch(&sink.name, settings.batch).await,
        };
        let batch = match read {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(sink = %sink.name, "reading the outbox: {error}");
                tokio::time::sleep(backoff.delay(attempt, jitter.next_unit())).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        let Some(last) = batch.last().map(|item| item.seq) else {
            // Idle: the cursor catches up with what was sent before the outbox is pruned by it.
            record.finish(&state, &sink.name).await;
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
                sent_through = Some(last);
                let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
                record.sent(&state, &sink.name, last, count);
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

/// Records batches in the sink's cursor without holding up the next send: one write at a time,
/// and the batches sent while it runs are recorded together by the next.
#[derive(Default)]
struct Recorder {
    running: Option<tokio::task::JoinHandle<()>>,
    /// Sent but not yet handed to a write: the last `seq` and how many alerts.
    waiting: Option<(i64, i64)>,
}

impl Recorder {
    fn sent(&mut self, state: &AppState, sink: &str, last: i64, count: i64) {
        let total = self.waiting.map_or(0, |(_, counted)| counted);
        self.waiting = Some((last, total.saturating_add(count)));
        if self
            .running
            .as_ref()
            .is_none_or(|write| write.is_finished())
        {
            self.start(state, sink);
        }
    }

    /// Waits for the write in flight, then records whatever is still waiting.
    async fn finish(&mut self, state: &AppState, sink: &str) {
        loop {
            if let Some(write) = self.running.take() {
                let _ = write.await;
            }
            if self.waiting.is_none() {
                return;
            }
            self.start(state, sink);
        }
    }

    fn start(&mut self, state: &AppState, sink: &str) {
        let Some((last, count)) = self.waiting.take() else {
            return;
        };
        let (store, sink) = (state.store.clone(), sink.to_owned());
        self.running = Some(tokio::spawn(async move {
            if let Err(error) = store.sink_delivered(&sink, last, count).await {
                // Sent but not recorded: a replica taking over sends these again (same event
                // ids); this one moves the cursor past them with its next write.
                tracing::warn!(%sink, "recording delivery: {error}");
            }
        }));
    }
}
