//! The guard's persistent state (`<data-dir>/guard/state.json`): the boot counter and the LKG
//! pin must survive guard restarts and host reboots, so they are written atomically and fsynced.

use crate::fsutil::{self, FsError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Why the guard switched to the last known good slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreReason {
    /// N failures within the window.
    CrashLoop,
    /// The boot counter reached zero.
    BootLoop,
    /// The state file was unreadable, so the guard took the safe default.
    CorruptState,
}

impl std::fmt::Display for RestoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RestoreReason::CrashLoop => "crash loop",
            RestoreReason::BootLoop => "boot loop",
            RestoreReason::CorruptState => "corrupt guard state",
        })
    }
}

/// One local restore of LKG: when, why, and the evidence in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    pub at_unix: u64,
    pub reason: RestoreReason,
    pub detail: String,
}

/// What is on disk. Fields are only ever added (with serde defaults), never renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardState {
    pub version: u32,
    /// Identity of the current release as last seen, when the slot store tells us.
    #[serde(default)]
    pub release: Option<String>,
    pub boot_tries_left: u32,
    pub boot_tries_max: u32,
    /// The current release became healthy since the counter was last decremented.
    #[serde(default)]
    pub blessed: bool,
    /// Set while the guard must run LKG (until a new release or `ringfence guard reset`).
    #[serde(default)]
    pub pinned_lkg: Option<Restore>,
    #[serde(default)]
    pub last_restore: Option<Restore>,
    /// Restarts since the state was created (kept across guard restarts for `status`).
    #[serde(default)]
    pub restarts: u64,
}

pub const STATE_VERSION: u32 = 1;

impl GuardState {
    /// A first start: a full boot counter, nothing pinned.
    pub fn fresh(boot_tries: u32) -> Self {
        Self {
            version: STATE_VERSION,
            release: None,
            boot_tries_left: boot_tries,
            boot_tries_max: boot_tries,
            blessed: false,
            pinned_lkg: None,
            last_restore: None,
            restarts: 0,
        }
    }

    /// The safe default when the state cannot be trusted: LKG, no tries left.
    pub fn safe_default(boot_tries: u32, unix: u64, why: &str) -> Self {
        let restore = Restore {
            at_unix: unix,
            reason: RestoreReason::CorruptState,
            detail: why.to_owned(),
        };
        Self {
            boot_tries_left: 0,
            pinned_lkg: Some(restore.clone()),
            last_restore: Some(restore),
            ..Self::fresh(boot_tries)
        }
    }
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// the state file could not be read or written
    #[error(transparent)]
    Fs(#[from] FsError),
    /// the state file is not valid guard state
    #[error("guard state file {path} is corrupt: {source}")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
    /// the state file comes from a newer guard
    #[error("guard state file {path} has version {found}, this guard understands {STATE_VERSION}")]
    Version { path: String, found: u32 },
}

/// Reads the state; `Ok(None)` when there is none yet (first start).
pub fn load(path: &Path) -> Result<Option<GuardState>, StateError> {
    let Some(bytes) = fsutil::read_if_exists(path)? else {
        return Ok(None);
    };
    let state: GuardState =
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
            path: path.display().to_string(),
            source,
        })?;
    if state.version != STATE_VERSION {
        return Err(StateError::Version {
            path: path.display().to_string(),
            found: state.version,
        });
    }
    Ok(Some(state))
}

/// Writes the state durably: temp file, fsync, rename, fsync of the directory.
pub fn save(path: &Path, state: &GuardState) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
        path: path.display().to_string(),
        source,
    })?;
    fsutil::write_atomic(path, &bytes, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_missing_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("guard/state.json");
        assert!(load(&path).expect("no file is fine").is_none());
        let state = GuardState::safe_default(3, 42, "test");
        save(&path, &state).expect("save");
        assert_eq!(load(&path).expect("load"), Some(state));
        assert!(!dir.path().join("guard/state.json.tmp").exists());
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{\"version\": 1, \"boot_tries_le").expect("write");
        let err = load(&path).expect_err("corrupt");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn newer_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let mut state = GuardState::fresh(3);
        state.version = 99;
        std::fs::write(&path, serde_json::to_vec(&state).expect("json")).expect("write");
        assert!(matches!(
            load(&path),
            Err(StateError::Version { found: 99, .. })
        ));
    }
}
