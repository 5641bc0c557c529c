//! The per-channel slot state machine, as pure functions: which release is current, which is
//! the last known good (LKG), and the highest version ever installed (the rollback floor).
//! The store applies these transitions to disk; keeping them pure lets proptest drive them.

use semver::Version;
use serde::{Deserialize, Serialize};

/// One channel's slots, as stored in `slots/<channel>.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotState {
    /// The release the agent runs.
    pub current: Option<Version>,
    /// Whether `current` has proven itself (the agent stayed healthy long enough). A blessed
    /// current is always equal to `lkg`.
    #[serde(default)]
    pub current_blessed: bool,
    /// The last release that was blessed: where the guard goes when current misbehaves.
    pub lkg: Option<Version>,
    /// The highest version ever staged on this channel. Never decreases, not even when a
    /// rollback directive lets an older release in.
    pub highest_installed: Option<Version>,
}

/// A transition the state machine refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error(
        "downgrade refused: version {offered} is not newer than {installed}, the highest installed on this channel"
    )]
    Downgrade {
        installed: Version,
        offered: Version,
    },
    #[error("no current release on this channel")]
    NoCurrent,
    #[error("no last known good release on this channel")]
    NoLkg,
}

impl SlotState {
    /// A release was verified and written to disk. It must be newer than anything installed,
    /// unless a verified rollback directive allowed it (`rollback_authorised`).
    pub fn stage(
        &self,
        version: &Version,
        rollback_authorised: bool,
    ) -> Result<SlotState, TransitionError> {
        let mut next = self.clone();
        match &self.highest_installed {
            Some(highest) if version <= highest => {
                if !rollback_authorised {
                    return Err(TransitionError::Downgrade {
                        installed: highest.clone(),
                        offered: version.clone(),
                    });
                }
            }
            _ => next.highest_installed = Some(version.clone()),
        }
        Ok(next)
    }

    /// Makes `version` current. The previous current becomes LKG only if it was blessed
    /// (a blessed current already is the LKG); an unproven release never becomes LKG here.
    pub fn activate(&self, version: &Version) -> SlotState {
        if self.current.as_ref() == Some(version) {
            return self.clone();
        }
        let mut next = self.clone();
        if self.current_blessed {
            next.lkg = self.current.clone();
        }
        next.current = Some(version.clone());
        // Going back to the LKG needs no new proof.
        next.current_blessed = next.lkg.as_ref() == Some(version);
        next
    }

    /// The current release is known good: it becomes the LKG.
    pub fn bless(&self) -> Result<SlotState, TransitionError> {
        let current = self.current.clone().ok_or(TransitionError::NoCurrent)?;
        Ok(SlotState {
            lkg: Some(current),
            current_blessed: true,
            ..self.clone()
        })
    }

    /// The guard's move: current := LKG.
    pub fn restore_lkg(&self) -> Result<SlotState, TransitionError> {
        let lkg = self.lkg.clone().ok_or(TransitionError::NoLkg)?;
        Ok(SlotState {
            current: Some(lkg),
            current_blessed: true,
            ..self.clone()
        })
    }

    /// Whether a staged release must be kept on disk: current, LKG, and anything newer than
    /// current (staged and not yet activated, or abandoned by a restore and kept for diagnosis
    /// until a newer release is activated).
    pub fn keeps(&self, version: &Version) -> bool {
        self.current.as_ref() == Some(version)
            || self.lkg.as_ref() == Some(version)
            || self
                .current
                .as_ref()
                .is_none_or(|current| version > current)
    }
}
