//! Which release slot the agent starts on, and how the guard tells it. The release store
//! (`crates/release`) is written separately; the guard only needs this small trait, so it keeps
//! depending on almost nothing and works before the store exists.

pub use ringfence_protocol::guard_link::{SLOT_ENV, Slot};
use std::ffi::OsString;
use std::path::PathBuf;

/// A command line to start the agent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCommand {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

impl AgentCommand {
    pub fn new(
        program: impl Into<OsString>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
        }
    }
}

/// Why a slot could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// the slot store refused to switch
    #[error("cannot switch to slot {slot}: {reason}")]
    Switch { slot: &'static str, reason: String },
}

/// How a slot choice reaches the agent.
pub trait SlotSwitch {
    /// Identity of the release in the current slot, when known: a new one resets the boot
    /// counter and lifts an LKG pin.
    fn current_release(&self) -> Option<String>;
    /// Turns the base command into the one that starts `slot`.
    fn command_for(&mut self, slot: Slot, base: &AgentCommand) -> Result<AgentCommand, SlotError>;
}

/// The contract with the agent when no slot store is linked: env `RINGFENCE_SLOT=current|lkg`
/// on every start, plus argument templates appended per slot (`--slot lkg` for LKG by default),
/// where `{slot}` is replaced by the slot name.
#[derive(Debug, Clone)]
pub struct ArgSlotSwitch {
    pub current_args: Vec<String>,
    pub lkg_args: Vec<String>,
    /// A file (or symlink) naming the current release, e.g. the store's `current` pointer.
    pub release_marker: Option<PathBuf>,
}

impl Default for ArgSlotSwitch {
    fn default() -> Self {
        Self {
            current_args: Vec::new(),
            lkg_args: vec!["--slot".into(), "{slot}".into()],
            release_marker: None,
        }
    }
}

impl SlotSwitch for ArgSlotSwitch {
    fn current_release(&self) -> Option<String> {
        let marker = self.release_marker.as_ref()?;
        // A symlink's target names the release without reading anything behind it.
        if let Ok(target) = std::fs::read_link(marker) {
            return Some(target.display().to_string());
        }
        let text = std::fs::read_to_string(marker).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.chars().take(256).collect())
    }

    fn command_for(&mut self, slot: Slot, base: &AgentCommand) -> Result<AgentCommand, SlotError> {
        let template = match slot {
            Slot::Current => &self.current_args,
            Slot::Lkg => &self.lkg_args,
        };
        let mut cmd = base.clone();
        cmd.args.extend(
            template
                .iter()
                .map(|a| OsString::from(a.replace("{slot}", slot.as_str()))),
        );
        cmd.env.push((SLOT_ENV.into(), slot.as_str().into()));
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lkg_appends_template_and_env() {
        let mut s = ArgSlotSwitch::default();
        let base = AgentCommand::new("ringfence", ["agent", "--replay", "x"]);
        let lkg = s.command_for(Slot::Lkg, &base).expect("lkg");
        assert_eq!(
            lkg.args,
            ["agent", "--replay", "x", "--slot", "lkg"].map(OsString::from)
        );
        assert_eq!(lkg.env, vec![(SLOT_ENV.into(), "lkg".into())]);
        let cur = s.command_for(Slot::Current, &base).expect("current");
        assert_eq!(cur.args, base.args);
        assert_eq!(cur.env, vec![(SLOT_ENV.into(), "current".into())]);
    }

    #[test]
    fn release_marker_reads_file_or_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("current");
        let mut s = ArgSlotSwitch {
            release_marker: Some(file.clone()),
            ..Default::default()
        };
        assert_eq!(s.current_release(), None);
        std::fs::write(&file, "engine-x@1.2.3\n").expect("write");
        assert_eq!(s.current_release().as_deref(), Some("engine-x@1.2.3"));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("releases/7", &link).expect("symlink");
        s.release_marker = Some(link);
        assert_eq!(s.current_release().as_deref(), Some("releases/7"));
    }
}
