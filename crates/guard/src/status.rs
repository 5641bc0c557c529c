//! The status file (`<data-dir>/guard/status.json`): what the guard is doing, in plain data,
//! for `ringfence status` and `ringfence guard status` on the host.

use crate::fsutil::{self, FsError};
use crate::slot::Slot;
use crate::state::Restore;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The guard's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Starting,
    Running,
    /// Waiting out the restart backoff.
    Backoff,
    /// The agent missed its heartbeat and was sent SIGKILL; waiting for it to die.
    Killing,
    Stopping,
    Stopped,
}

/// Everything `status` shows. Fields are added, never renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub guard_pid: u32,
    pub phase: Phase,
    pub agent_pid: Option<u32>,
    pub slot: Slot,
    pub release: Option<String>,
    /// The agent has said `ready` in this run.
    pub agent_ready: bool,
    pub restarts: u64,
    pub failures_in_window: usize,
    pub last_failure: Option<String>,
    /// The last run that ended on request (a termination signal, or the guard stopping): not a
    /// failure, so not in `last_failure`.
    #[serde(default)]
    pub last_stop: Option<String>,
    pub boot_tries_left: u32,
    pub boot_tries_max: u32,
    pub blessed: bool,
    pub last_restore: Option<Restore>,
    /// Why the guard runs LKG right now, if it does.
    pub pinned_lkg: Option<Restore>,
    pub updated_at_unix: u64,
}

impl Status {
    /// One sentence for people and for systemd's STATUS=.
    pub fn summary(&self) -> String {
        let agent = match (self.phase, self.agent_pid) {
            (Phase::Running, Some(pid)) if self.agent_ready => format!("agent {pid} serving"),
            (Phase::Running, Some(pid)) => format!("agent {pid} starting"),
            (Phase::Killing, Some(pid)) => format!("killing hung agent {pid}"),
            (Phase::Backoff, _) => "agent down, restarting after backoff".to_owned(),
            (Phase::Stopping, _) => "stopping the agent".to_owned(),
            (Phase::Stopped, _) => "stopped".to_owned(),
            _ => "starting the agent".to_owned(),
        };
        let mut s = format!(
            "{agent} on slot {}; {} restarts; boot tries left {}/{}",
            self.slot.as_str(),
            self.restarts,
            self.boot_tries_left,
            self.boot_tries_max
        );
        if let Some(r) = &self.pinned_lkg {
            s.push_str(&format!("; on LKG because of a {}: {}", r.reason, r.detail));
        }
        s
    }
}

/// Why the status file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// the file could not be read or written
    #[error(transparent)]
    Fs(#[from] FsError),
    /// the file is not a guard status
    #[error("guard status file {path} is unreadable: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    /// no guard has run with this data directory
    #[error("no guard status at {0}: is `ringfence guard` running with this --data-dir?")]
    Missing(String),
}

/// Not fsynced: it is rewritten often and only describes the present.
pub fn write(path: &Path, status: &Status) -> Result<(), StatusError> {
    let bytes = serde_json::to_vec_pretty(status).map_err(|source| StatusError::Parse {
        path: path.display().to_string(),
        source,
    })?;
    fsutil::write_atomic(path, &bytes, false)?;
    Ok(())
}

pub fn read(path: &Path) -> Result<Status, StatusError> {
    let bytes = fsutil::read_if_exists(path)?
        .ok_or_else(|| StatusError::Missing(path.display().to_string()))?;
    serde_json::from_slice(&bytes).map_err(|source| StatusError::Parse {
        path: path.display().to_string(),
        source,
    })
}
