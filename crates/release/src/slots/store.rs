//! The slot store on disk. Layout under the data directory:
//!
//! ```text
//! releases/<channel>/<version>/{manifest.json,signatures.json,engine.wasm,content}
//! slots/<channel>.json    SlotState, replaced atomically (temp + fsync + rename + dir fsync)
//! slots/<channel>.lock    flock'd around every read-modify-write (agent and guard share it)
//! ```
//!
//! A release directory appears by renaming a fully written and fsynced staging directory, so
//! a crash never leaves half a release under its final name.

use super::{LoadedRelease, SlotError, SlotState};
use crate::bundle::{Bundle, Member};
use crate::fsutil::{self, ReadLimited};
use crate::keys::TrustedKeys;
use crate::manifest::validate_channel;
use crate::sign::{self, Purpose, Signatures};
use crate::verify::{VerifiedRelease, VerifyError, VerifyOptions};
use semver::Version;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A state file is a few hundred bytes.
const MAX_STATE_BYTES: u64 = 16 << 10;

/// Prefix of staging directories; names starting with '.' are never versions.
const STAGING_PREFIX: &str = ".staging-";

/// Release slots in one data directory.
#[derive(Debug, Clone)]
pub struct SlotStore {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SlotError + '_ {
    move |source| SlotError::Io {
        path: path.to_owned(),
        source,
    }
}

impl SlotStore {
    /// Opens (and creates) the slot store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SlotError> {
        let root = dir.into();
        for sub in ["releases", "slots"] {
            let path = root.join(sub);
            std::fs::create_dir_all(&path).map_err(io(&path))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn channel_dir(&self, channel: &str) -> Result<PathBuf, SlotError> {
        validate_channel(channel).map_err(SlotError::InvalidChannel)?;
        Ok(self.root.join("releases").join(channel))
    }

    /// Where a staged release lives.
    pub fn release_dir(&self, channel: &str, version: &Version) -> Result<PathBuf, SlotError> {
        Ok(self.channel_dir(channel)?.join(version.to_string()))
    }

    fn state_path(&self, channel: &str) -> Result<PathBuf, SlotError> {
        validate_channel(channel).map_err(SlotError::InvalidChannel)?;
        Ok(self.root.join("slots").join(format!("{channel}.json")))
    }

    /// Takes the channel's lock; it is released when the returned file is dropped.
    fn lock(&self, channel: &str) -> Result<File, SlotError> {
        validate_channel(channel).map_err(SlotError::InvalidChannel)?;
        let path = self.root.join("slots").join(format!("{channel}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }

    /// The channel's state; the default (nothing installed) when it has none yet. A file that
    /// cannot be parsed is [`SlotError::CorruptState`], never silently replaced.
    pub fn state(&self, channel: &str) -> Result<SlotState, SlotError> {
        let path = self.state_path(channel)?;
        let bytes = match fsutil::read_limited(&path, MAX_STATE_BYTES) {
            Ok(bytes) => bytes,
            Err(ReadLimited::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                // A missing state with releases on disk means the file was deleted: treating
                // that as "nothing installed" would silently drop the rollback floor.
                if !self.staged_versions(channel)?.is_empty() {
                    return Err(SlotError::CorruptState {
                        path,
                        reason: "the state file is missing but releases are staged".into(),
                    });
                }
                return Ok(SlotState::default());
            }
            Err(ReadLimited::Io(e)) => return Err(io(&path)(e)),
            Err(ReadLimited::TooLarge(size)) => {
                return Err(SlotError::CorruptState {
                    path,
                    reason: format!("{size} bytes"),
                });
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| SlotError::CorruptState {
            path,
            reason: e.to_string(),
        })
    }

    fn write_state(&self, channel: &str, state: &SlotState) -> Result<(), SlotError> {
        let path = self.state_path(channel)?;
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| SlotError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        bytes.push(b'\n');
        fsutil::write_atomic(&path, &bytes).map_err(io(&path))
    }

    /// The safe default after a corrupt state file: the file is moved aside to
    /// `<channel>.json.corrupt`, and the new state has no current and no LKG release, with the
    /// rollback floor (`highest_installed`) rebuilt from the releases still on disk, so that
    /// corruption can never reopen the door to a downgrade. The agent then re-activates what
    /// the server assigns (staged releases need no download). Fine on a healthy state too.
    pub fn recover(&self, channel: &str) -> Result<SlotState, SlotError> {
        let _lock = self.lock(channel)?;
        let path = self.state_path(channel)?;
        match self.state(channel) {
            Err(SlotError::CorruptState { .. }) => {}
            other => return other,
        }
        if path.exists() {
            let aside = path.with_extension("json.corrupt");
            std::fs::rename(&path, &aside).map_err(io(&path))?;
        }
        let state = SlotState {
            highest_installed: self.staged_versions(channel)?.into_iter().max(),
            ..SlotState::default()
        };
        self.write_state(channel, &state)?;
        Ok(state)
    }

    /// Channels that have releases or state.
    pub fn channels(&self) -> Result<Vec<String>, SlotError> {
        let mut names = std::collections::BTreeSet::new();
        let releases = self.root.join("releases");
        for entry in std::fs::read_dir(&releases).map_err(io(&releases))? {
            let name = entry.map_err(io(&releases))?.file_name();
            if let Some(name) = name.to_str().filter(|n| validate_channel(n).is_ok()) {
                names.insert(name.to_owned());
            }
        }
        let slots = self.root.join("slots");
        for entry in std::fs::read_dir(&slots).map_err(io(&slots))? {
            let name = entry.map_err(io(&slots))?.file_name();
            if let Some(name) = name.to_str().and_then(|n| n.strip_suffix(".json"))
                && validate_channel(name).is_ok()
            {
                names.insert(name.to_owned());
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Versions staged on a channel, oldest first.
    pub fn staged_versions(&self, channel: &str) -> Result<Vec<Version>, SlotError> {
        let dir = self.channel_dir(channel)?;
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            if let Some(version) = name.to_str().and_then(|n| Version::parse(n).ok())
                && version.to_string() == name.to_string_lossy()
                && entry.path().join(Member::Manifest.file_name()).is_file()
            {
                versions.push(version);
            }
        }
        versions.sort();
        Ok(versions)
    }

    pub fn is_staged(&self, channel: &str, version: &Version) -> bool {
        self.release_dir(channel, version)
            .is_ok_and(|dir| dir.join(Member::Manifest.file_name()).is_file())
    }

    /// Writes a verified release to its slot directory and raises the rollback floor.
    /// Staging the same release again is a no-op. Rollback protection is checked again here
    /// against the state on disk, which may have moved since the release was verified.
    pub fn stage(&self, release: &VerifiedRelease) -> Result<PathBuf, SlotError> {
        let bundle = release.bundle();
        let manifest = bundle.manifest();
        let (channel, version) = (manifest.name.as_str(), &manifest.version);
        let channel_dir = self.channel_dir(channel)?;
        let final_dir = self.release_dir(channel, version)?;
        std::fs::create_dir_all(&channel_dir).map_err(io(&channel_dir))?;
        if let Some(done) = self.already_staged(channel, version, bundle)? {
            return Ok(done);
        }
        // Refuse early, before writing megabytes, then write outside the lock so the guard is
        // never kept waiting on a large fsync.
        self.state(channel)?
            .stage(version, release.rollback().is_some())?;
        let staging = channel_dir.join(format!(
            "{STAGING_PREFIX}{version}-{}",
            fsutil::unique_suffix()
        ));
        let written = write_release(&staging, bundle);
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let _lock = self.lock(channel)?;
        let result = (|| {
            if let Some(done) = self.already_staged(channel, version, bundle)? {
                return Ok(done);
            }
            let next = self
                .state(channel)?
                .stage(version, release.rollback().is_some())?;
            std::fs::rename(&staging, &final_dir).map_err(io(&final_dir))?;
            fsutil::sync_dir(&channel_dir).map_err(io(&channel_dir))?;
            self.write_state(channel, &next)?;
            Ok(final_dir.clone())
        })();
        let _ = std::fs::remove_dir_all(&staging);
        self.remove_stale_staging(&channel_dir);
        result
    }

    /// The agent's one call for a downloaded bundle: parse, verify against this channel's
    /// state, and stage. Activation is a separate step.
    pub fn install(
        &self,
        bytes: &[u8],
        keys: &TrustedKeys,
        options: &VerifyOptions<'_>,
    ) -> Result<VerifiedRelease, SlotError> {
        let refused = |e: VerifyError| SlotError::Refused(Box::new(e));
        let bundle = Bundle::read(bytes).map_err(|e| refused(e.into()))?;
        let state = self.state(&bundle.manifest().name)?;
        let release = crate::verify::verify(&bundle, keys, &state, options).map_err(refused)?;
        self.stage(&release)?;
        Ok(release)
    }

    /// `Some(dir)` when this exact release is already staged; an error when another release
    /// with the same version is.
    fn already_staged(
        &self,
        channel: &str,
        version: &Version,
        bundle: &Bundle,
    ) -> Result<Option<PathBuf>, SlotError> {
        let dir = self.release_dir(channel, version)?;
        let path = dir.join(Member::Manifest.file_name());
        match fsutil::read_limited(&path, Member::Manifest.limit()) {
            Ok(bytes) if bytes == bundle.manifest_bytes() => Ok(Some(dir)),
            Ok(_) => Err(SlotError::AlreadyStaged {
                channel: channel.to_owned(),
                version: version.clone(),
            }),
            Err(ReadLimited::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(ReadLimited::Io(e)) => Err(io(&path)(e)),
            Err(ReadLimited::TooLarge(_)) => Err(SlotError::AlreadyStaged {
                channel: channel.to_owned(),
                version: version.clone(),
            }),
        }
    }

    /// Removes staging directories left by processes that died mid-stage.
    fn remove_stale_staging(&self, channel_dir: &Path) {
        let Ok(entries) = std::fs::read_dir(channel_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(STAGING_PREFIX) else {
                continue;
            };
            // The name ends in `-<pid>-<n>`; a live pid may still be writing.
            let pid = rest.rsplit('-').nth(1).unwrap_or_default();
            if !Path::new("/proc").join(pid).exists() || pid.is_empty() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn transition(
        &self,
        channel: &str,
        step: impl FnOnce(&SlotState) -> Result<SlotState, SlotError>,
    ) -> Result<SlotState, SlotError> {
        let _lock = self.lock(channel)?;
        let next = step(&self.state(channel)?)?;
        self.write_state(channel, &next)?;
        self.prune(channel, &next);
        Ok(next)
    }

    /// Makes a staged release current (the previous current becomes LKG only if blessed).
    pub fn activate(&self, channel: &str, version: &Version) -> Result<SlotState, SlotError> {
        self.transition(channel, |state| {
            if !self.is_staged(channel, version) {
                return Err(SlotError::NotStaged {
                    channel: channel.to_owned(),
                    version: version.clone(),
                });
            }
            Ok(state.activate(version))
        })
    }

    /// Marks the current release known good: it becomes the LKG.
    pub fn bless(&self, channel: &str) -> Result<SlotState, SlotError> {
        self.transition(channel, |state| Ok(state.bless()?))
    }

    /// Makes the LKG current again (the guard, after a crash or boot loop).
    pub fn restore_lkg(&self, channel: &str) -> Result<SlotState, SlotError> {
        self.transition(channel, |state| Ok(state.restore_lkg()?))
    }

    /// Deletes a staged release that is neither current nor LKG.
    pub fn remove(&self, channel: &str, version: &Version) -> Result<(), SlotError> {
        let _lock = self.lock(channel)?;
        let state = self.state(channel)?;
        let in_use = |slot| SlotError::InUse {
            channel: channel.to_owned(),
            version: version.clone(),
            slot,
        };
        if state.current.as_ref() == Some(version) {
            return Err(in_use("current"));
        }
        if state.lkg.as_ref() == Some(version) {
            return Err(in_use("the last known good"));
        }
        let dir = self.release_dir(channel, version)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }

    /// Removes releases the state no longer needs (see [`SlotState::keeps`]). Best effort:
    /// a release that cannot be removed now is removed next time.
    fn prune(&self, channel: &str, state: &SlotState) {
        let Ok(versions) = self.staged_versions(channel) else {
            return;
        };
        for version in versions.iter().filter(|v| !state.keeps(v)) {
            if let Ok(dir) = self.release_dir(channel, version) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    /// Loads the current release, re-checking hashes and signature.
    pub fn load_current(
        &self,
        channel: &str,
        keys: &TrustedKeys,
    ) -> Result<LoadedRelease, SlotError> {
        let current = self
            .state(channel)?
            .current
            .ok_or(super::TransitionError::NoCurrent)?;
        self.load(channel, &current, keys)
    }

    /// Loads the LKG release, re-checking hashes and signature.
    pub fn load_lkg(&self, channel: &str, keys: &TrustedKeys) -> Result<LoadedRelease, SlotError> {
        let lkg = self
            .state(channel)?
            .lkg
            .ok_or(super::TransitionError::NoLkg)?;
        self.load(channel, &lkg, keys)
    }

    /// Loads a staged release, re-checking hashes, signature, and that the manifest names this
    /// channel and version (so a release cannot be swapped into another's directory).
    pub fn load(
        &self,
        channel: &str,
        version: &Version,
        keys: &TrustedKeys,
    ) -> Result<LoadedRelease, SlotError> {
        let dir = self.release_dir(channel, version)?;
        if !self.is_staged(channel, version) {
            return Err(SlotError::NotStaged {
                channel: channel.to_owned(),
                version: version.clone(),
            });
        }
        let tampered = |source: VerifyError| SlotError::Tampered {
            channel: channel.to_owned(),
            version: version.clone(),
            source: Box::new(source),
        };
        let read = |member: Member, required: bool| -> Result<Option<Vec<u8>>, SlotError> {
            let path = dir.join(member.file_name());
            match fsutil::read_limited(&path, member.limit()) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(ReadLimited::Io(e))
                    if e.kind() == std::io::ErrorKind::NotFound && !required =>
                {
                    Ok(None)
                }
                Err(ReadLimited::Io(e)) => Err(io(&path)(e)),
                Err(ReadLimited::TooLarge(size)) => Err(tampered(VerifyError::TooLarge {
                    what: member.to_string(),
                    size,
                    limit: member.limit(),
                })),
            }
        };
        let manifest = read(Member::Manifest, true)?.unwrap_or_default();
        let signatures = read(Member::Signatures, true)?.unwrap_or_default();
        let signatures = Signatures::parse(&signatures)
            .map_err(|e| tampered(e.into()))?
            .signatures;
        let bundle = Bundle::from_parts(
            manifest,
            signatures,
            read(Member::Engine, false)?,
            read(Member::Content, false)?,
        )
        .map_err(|e| tampered(e.into()))?;
        let m = bundle.manifest();
        if m.name != channel || m.version != *version {
            return Err(tampered(VerifyError::Malformed {
                reason: format!(
                    "the manifest names {} {}, not the slot it is in",
                    m.name, m.version
                ),
            }));
        }
        let signer = sign::check(
            keys,
            Purpose::Manifest,
            bundle.manifest_bytes(),
            bundle.signatures(),
        )
        .map_err(|e| tampered(e.into()))?;
        Ok(LoadedRelease { bundle, signer })
    }
}

/// Writes every member into a new directory and makes it durable.
fn write_release(dir: &Path, bundle: &Bundle) -> Result<(), SlotError> {
    std::fs::create_dir(dir).map_err(io(dir))?;
    let signatures = bundle.signatures_bytes();
    let mut members: Vec<(Member, &[u8])> = vec![
        (Member::Manifest, bundle.manifest_bytes()),
        (Member::Signatures, &signatures),
    ];
    if let Some(engine) = bundle.engine() {
        members.push((Member::Engine, engine));
    }
    if let Some(content) = bundle.content() {
        members.push((Member::Content, content));
    }
    for (member, bytes) in members {
        let path = dir.join(member.file_name());
        fsutil::write_new_synced(&path, bytes).map_err(io(&path))?;
    }
    fsutil::sync_dir(dir).map_err(io(dir))
}
