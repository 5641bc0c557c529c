//! Engine failures as typed values for whoever ships them (the managed agent's spool): a bounded
//! channel the agent's threads send every [`FailureRecord`] into once, without ever blocking
//! the event path. A full channel drops the record and counts it, so the receiver can say how
//! many it never saw. The alert file still carries failures inside alerts for a standalone
//! agent's readers; nothing needs to read them back out of it.

use ringfence_protocol::FailureRecord;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

/// The agent's end: cloned into the configuration, kept by the agent while it runs.
#[derive(Debug, Clone)]
pub struct FailureSender {
    tx: SyncSender<FailureRecord>,
    dropped: Arc<AtomicU64>,
}

/// The shipper's end. Once every [`FailureSender`] is gone (the agent stopped or handed off)
/// and the queue is empty, `recv_timeout` says `Disconnected`.
#[derive(Debug)]
pub struct FailureReceiver {
    rx: Receiver<FailureRecord>,
    dropped: Arc<AtomicU64>,
}

/// A channel of at most `capacity` failures waiting for the receiver.
pub fn failure_channel(capacity: usize) -> (FailureSender, FailureReceiver) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    (
        FailureSender {
            tx,
            dropped: Arc::clone(&dropped),
        },
        FailureReceiver { rx, dropped },
    )
}

impl FailureSender {
    /// Hands one failure over, or counts it as dropped when the receiver is behind or gone.
    pub fn send(&self, record: &FailureRecord) {
        match self.tx.try_send(record.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl FailureReceiver {
    /// The next failure, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<FailureRecord, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// Failures dropped because the channel was full since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_protocol::FailureKind;

    fn record(n: u64) -> FailureRecord {
        FailureRecord {
            engine: "faulty".into(),
            content_sha256: String::new(),
            kind: FailureKind::Trap,
            trap_code: None,
            message: String::new(),
            event_kind: None,
            backtrace: Vec::new(),
            at_unix_ns: n,
            elapsed_us: 0,
        }
    }

    #[test]
    fn a_full_channel_drops_and_counts_and_a_closed_one_says_so_once_drained() {
        let (tx, rx) = failure_channel(2);
        for n in 0..5 {
            tx.send(&record(n));
        }
        assert_eq!(rx.take_dropped(), 3);
        assert_eq!(rx.take_dropped(), 0, "counted once");
        drop(tx);
        let short = Duration::from_millis(10);
        assert_eq!(rx.recv_timeout(short).map(|r| r.at_unix_ns), Ok(0));
        assert_eq!(rx.recv_timeout(short).map(|r| r.at_unix_ns), Ok(1));
        assert_eq!(
            rx.recv_timeout(short).map(|r| r.at_unix_ns),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}
