//! Self-protection: the agent's configuration and data may be changed only by the agent itself,
//! its guard and the package manager.
//!
//! A root attacker's first move against a security agent is to rewrite it: edit its
//! configuration, poison its data directory. (Its running binary the kernel already guards: an
//! open for writing fails with ETXTBSY. Marking it too would hang the crash monitor, which reads
//! it while the agent is stopped for a dump.) The agent marks those files on its own fanotify
//! group for open permission and, for every open by another process, decides here: the
//! agent's family (the agent, its parent the guard, and children of either running the agent's
//! binary, such as the crash monitor) and the package manager may; anyone else may read or
//! execute but not open for writing, and is denied with an alert. Running the agent's binary
//! is not enough: anyone can start `ringfence`, and the CLI writes where it is told.
//!
//! No fanotify event can refuse a rename or an unlink, so the entries of the binary, the
//! configuration and the data directory's files are watched too
//! ([`ringfence_sensor::EntryWatch`]): a stranger who renames a file over the binary or deletes
//! the configuration is reported, not stopped. What neither can see (a write through a
//! descriptor opened before the agent started, anything by the kernel) stays out of reach;
//! `docs/threat-model.md` says so.

use ringfence_sensor::EntryWatch;
use ringfence_sensor::intent::{self, OpenIntent};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The package manager's binaries: upgrades replace the agent's files through them.
const PACKAGE_MANAGERS: [&str; 2] = ["/usr/bin/dpkg", "/bin/dpkg"];

/// What is protected and who is trusted.
#[derive(Debug, Clone)]
pub struct SelfProtection {
    /// Canonical: files, and directories whose direct children are protected.
    paths: Vec<PathBuf>,
    /// As configured (absolute, not resolved): a symlink there can be swapped too.
    configured: Vec<PathBuf>,
    files: HashSet<(u64, u64)>,
    dirs: Vec<PathBuf>,
    /// (dev, ino) of the agent's own binary: processes running it are the agent's family.
    own_binary: Option<(u64, u64)>,
    /// Where that binary is (as /proc/self/exe reads at start).
    binary_path: Option<PathBuf>,
    own_pid: u32,
    /// The process that started the agent (its guard), unless that is init.
    own_parent: Option<u32>,
}

/// Why an open of a protected file was decided the way it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied: the opening process, its executable and what it tried.
    Deny {
        exe: String,
        intent: OpenIntent,
    },
}

impl SelfProtection {
    /// Protects `paths` (missing ones are skipped with a warning: a config file is optional).
    pub fn new(paths: &[PathBuf]) -> SelfProtection {
        let mut protection = SelfProtection {
            paths: Vec::new(),
            configured: Vec::new(),
            files: HashSet::new(),
            dirs: Vec::new(),
            own_binary: std::fs::metadata("/proc/self/exe")
                .ok()
                .map(|m| (m.dev(), m.ino())),
            binary_path: std::fs::read_link("/proc/self/exe").ok(),
            own_pid: std::process::id(),
            own_parent: Some(std::os::unix::process::parent_id()).filter(|&pid| pid > 1),
        };
        for path in paths {
            let Ok(canonical) = std::fs::canonicalize(path) else {
                tracing::warn!(path = %path.display(), "not protected: it does not exist");
                continue;
            };
            let Ok(meta) = std::fs::metadata(&canonical) else {
                continue;
            };
            if meta.is_dir() {
                protection.dirs.push(canonical.clone());
            } else {
                protection.files.insert((meta.dev(), meta.ino()));
            }
            protection.paths.push(canonical);
            protection
                .configured
                .push(std::path::absolute(path).unwrap_or(path.clone()));
        }
        protection
    }

    /// The canonical paths to mark.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// True when an open of `path` (identity `file`) touches a protected file.
    pub fn covers(&self, path: &str, file: Option<(u64, u64)>) -> bool {
        file.is_some_and(|id| self.files.contains(&id))
            || Path::new(path)
                .parent()
                .is_some_and(|parent| self.dirs.iter().any(|dir| dir == parent))
    }

    /// Decides an open of a protected file by `pid` (never our own pid: the caller answers
    /// those first, without looking).
    pub fn decide(&self, pid: u32) -> Decision {
        let exe = ringfence_sensor::procfs::exe(pid);
        if self.trusted(pid, &exe) {
            return Decision::Allow;
        }
        match intent::open_intent(pid) {
            OpenIntent::Exec | OpenIntent::Read => Decision::Allow,
            intent => Decision::Deny { exe, intent },
        }
    }

    /// Watches, on `watch`, the entries of everything protected and of the agent's binary, as
    /// configured and as resolved, and the entries of every directory above them: renaming
    /// `/etc/ringfence` away and making a new one replaces the configuration as surely as
    /// renaming over the file. A path that cannot be watched is logged and skipped.
    pub fn watch_entries(&self, watch: &mut EntryWatch) {
        let mut entries = HashSet::new();
        let named = self
            .binary_path
            .iter()
            .chain(&self.configured)
            .chain(&self.paths);
        for path in named {
            // `ancestors` starts with the path itself and ends with "/", which has no entry.
            entries.extend(path.ancestors().filter(|a| a.parent().is_some()));
        }
        for path in entries {
            if let Err(error) = watch.watch_entry(path) {
                tracing::warn!(%error, path = %path.display(), "entry not watched");
            }
        }
        for dir in &self.dirs {
            if let Err(error) = watch.watch_children(dir) {
                tracing::warn!(%error, dir = %dir.display(), "entries not watched");
            }
        }
    }

    /// True when `pid` may change the agent's files (see the module header). A process that
    /// has exited cannot be told apart, so it is not.
    pub fn trusted_pid(&self, pid: u32) -> bool {
        self.trusted(pid, &ringfence_sensor::procfs::exe(pid))
    }

    fn trusted(&self, pid: u32, exe: &str) -> bool {
        if PACKAGE_MANAGERS.contains(&exe) {
            return true;
        }
        let family = |pid: u32| pid == self.own_pid || Some(pid) == self.own_parent;
        if family(pid) {
            return true;
        }
        let running = std::fs::metadata(format!("/proc/{pid}/exe"))
            .ok()
            .map(|m| (m.dev(), m.ino()));
        running.is_some()
            && running == self.own_binary
            && family(ringfence_sensor::procfs::process(pid).ppid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_protected_files_and_direct_children_of_protected_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        let config = dir.path().join("agent.conf");
        std::fs::write(&config, "x").expect("write");
        let protection =
            SelfProtection::new(&[data.clone(), config.clone(), dir.path().join("missing")]);
        assert_eq!(protection.paths().len(), 2);
        let meta = std::fs::metadata(&config).expect("stat");
        let canonical = |p: &Path| std::fs::canonicalize(p).expect("canonical");
        assert!(protection.covers(
            &canonical(&config).to_string_lossy(),
            Some((meta.dev(), meta.ino()))
        ));
        let inside = canonical(&data).join("spool");
        assert!(protection.covers(&inside.to_string_lossy(), None));
        assert!(!protection.covers(&inside.join("deeper").to_string_lossy(), None));
        assert!(!protection.covers("/etc/passwd", None));
    }

    #[test]
    fn processes_running_our_binary_are_trusted() {
        let protection = SelfProtection::new(&[]);
        assert_eq!(protection.decide(std::process::id()), Decision::Allow);
    }

    /// Running the agent's binary makes a process family only when the agent or its parent
    /// started it: anyone can run `ringfence`. `sleep` stands in for the agent's binary here.
    #[test]
    fn our_binary_is_family_only_as_our_child() {
        let sleep = std::fs::metadata("/usr/bin/sleep").expect("sleep");
        let mut protection = SelfProtection::new(&[]);
        protection.own_binary = Some((sleep.dev(), sleep.ino()));
        let mut child = std::process::Command::new("/usr/bin/sleep")
            .arg("5")
            .spawn()
            .expect("child");
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "/usr/bin/sleep 5 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("shell");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(shell.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("grandchild pid");
        let grandchild: u32 = line.trim().parse().expect("pid");
        // Until it has exec'd, the grandchild is still a shell: wait for it to run `sleep`.
        for _ in 0..200 {
            if ringfence_sensor::procfs::exe(grandchild) == "/usr/bin/sleep" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(ringfence_sensor::procfs::exe(grandchild), "/usr/bin/sleep");
        assert!(protection.trusted_pid(child.id()), "our child");
        assert!(!protection.trusted_pid(grandchild), "a stranger's child");
        for process in [&mut child, &mut shell] {
            let _ = process.kill();
            let _ = process.wait();
        }
        let _ = std::process::Command::new("kill")
            .arg(grandchild.to_string())
            .status();
    }
}
