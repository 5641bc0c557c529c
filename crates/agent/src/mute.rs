//! The mute set: processes and paths the agent never holds up, so it cannot block itself, its
//! guard, its logs or journald, and cannot deadlock on its own execs and opens.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Muted pids (thread-group ids, as fanotify reports them) and path prefixes.
#[derive(Debug, Clone, Default)]
pub struct MuteSet {
    pub pids: HashSet<u32>,
    pub paths: Vec<PathBuf>,
}

impl MuteSet {
    /// The agent itself, its parent (the guard, or whatever started it) and journald.
    pub fn defaults() -> MuteSet {
        let mut pids = HashSet::new();
        pids.insert(std::process::id());
        let parent = std::os::unix::process::parent_id();
        if parent > 1 {
            pids.insert(parent);
        }
        pids.extend(ringfence_sensor::procfs::pids_named("systemd-journal"));
        MuteSet {
            pids,
            paths: Vec::new(),
        }
    }

    pub fn with_pid(mut self, pid: u32) -> MuteSet {
        self.pids.insert(pid);
        self
    }

    pub fn with_path(mut self, path: impl Into<PathBuf>) -> MuteSet {
        self.paths.push(path.into());
        self
    }

    pub fn pid(&self, pid: u32) -> bool {
        self.pids.contains(&pid)
    }

    /// True when `path` is a muted path or lies under a muted directory.
    pub fn path(&self, path: &str) -> bool {
        let path = Path::new(path);
        self.paths.iter().any(|muted| path.starts_with(muted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_and_paths_are_muted() {
        let mute = MuteSet::defaults().with_path("/var/lib/ringfence");
        assert!(mute.pid(std::process::id()));
        assert!(mute.path("/var/lib/ringfence/spool/1.json"));
        assert!(!mute.path("/var/lib/ringfence-other"));
        assert!(!mute.path("/usr/bin/ls"));
    }
}
