//! Heartbeats are buffered in memory and written in batches: an agent's newest heartbeat
//! replaces its older one, and one transaction writes a batch. This is what lets an embedded
//! SQLite database take tens of thousands of heartbeats a second; a crash loses at most one
//! flush interval of soft state that agents resend anyway.

use ringfence_store::{AgentStatusUpdate, Store};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct HeartbeatBuffer {
    pending: Mutex<HashMap<String, AgentStatusUpdate>>,
}

impl HeartbeatBuffer {
    pub fn push(&self, update: AgentStatusUpdate) {
        let mut pending = match self.pending.lock() {
            Ok(pending) => pending,
            Err(poisoned) => poisoned.into_inner(),
        };
        pending.insert(update.agent_id.clone(), update);
    }

    fn take(&self) -> Vec<AgentStatusUpdate> {
        let mut pending = match self.pending.lock() {
            Ok(pending) => pending,
            Err(poisoned) => poisoned.into_inner(),
        };
        pending.drain().map(|(_, update)| update).collect()
    }

    /// Writes everything buffered; on a database error the batch is put back for the next try.
    pub async fn flush(&self, store: &Store) -> Result<usize, ringfence_store::StoreError> {
        let batch = self.take();
        let count = batch.len();
        if let Err(error) = store.update_agent_status(&batch).await {
            for update in batch {
                // A newer heartbeat that arrived meanwhile wins.
                let mut pending = match self.pending.lock() {
                    Ok(pending) => pending,
                    Err(poisoned) => poisoned.into_inner(),
                };
                pending.entry(update.agent_id.clone()).or_insert(update);
            }
            return Err(error);
        }
        Ok(count)
    }

    /// Flushes every `interval` until the task is dropped.
    pub async fn run(&self, store: Store, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            if let Err(error) = self.flush(&store).await {
                tracing::warn!("could not write heartbeats, will retry: {error}");
            }
        }
    }
}
