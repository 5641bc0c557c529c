//! Confining the threads that run engines (the permission workers and the notification
//! thread): each applies the engine role of `ringfence_hardening` to itself as its first act,
//! before it sees a guest, and reports back; [`Agent::start`](crate::Agent::start) fails if any
//! thread could not, so an agent never runs half-confined.

use crate::config::AgentError;
use ringfence_hardening::{EngineConfinement, HardeningError};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};

/// Collects the outcome of every engine thread's confinement.
pub struct Gate {
    confinement: Option<Arc<EngineConfinement>>,
    tx: Sender<Result<(), HardeningError>>,
    rx: Receiver<Result<(), HardeningError>>,
    threads: usize,
}

/// What one engine thread runs first.
pub struct Entry {
    confinement: Option<Arc<EngineConfinement>>,
    tx: Sender<Result<(), HardeningError>>,
}

impl Gate {
    pub fn new(confinement: Option<Arc<EngineConfinement>>) -> Gate {
        let (tx, rx) = mpsc::channel();
        Gate {
            confinement,
            tx,
            rx,
            threads: 0,
        }
    }

    /// The entry for one more engine thread.
    pub fn entry(&mut self) -> Entry {
        if self.confinement.is_some() {
            self.threads += 1;
        }
        Entry {
            confinement: self.confinement.clone(),
            tx: self.tx.clone(),
        }
    }

    /// Waits until every engine thread has confined itself; the first failure is the error.
    pub fn wait(self) -> Result<(), AgentError> {
        for _ in 0..self.threads {
            match self.rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(AgentError::Confinement(error)),
                Err(_) => return Err(AgentError::EngineThreadLost),
            }
        }
        Ok(())
    }
}

impl Entry {
    /// Confines the calling thread (when hardening is on) and reports the outcome.
    pub fn enter(self) {
        if let Some(confinement) = self.confinement {
            let _ = self.tx.send(confinement.confine_current_thread());
        }
    }
}
