//! Turns a fanotify permission event into the [`Event`] engines see.
//!
//! At `FAN_OPEN_EXEC_PERM` time the kernel has not replaced the process image yet: /proc still
//! shows the program that called `execve`. So `exe` is the file being executed (from the event
//! fd), `parent_exe` is the image calling `execve`, and `argv` is not known yet (the process
//! connector's exec notification carries it once the exec has happened).

use crate::procfs;
use ringfence_protocol::{Event, ExecEvent, OpenEvent};

/// Strips the " (deleted)" the kernel appends to links of unlinked files.
pub fn clean_path(path: &str) -> &str {
    path.strip_suffix(" (deleted)").unwrap_or(path)
}

/// The exec event for `pid` executing `path`.
pub fn resolve_exec(pid: u32, path: &str) -> Event {
    let info = procfs::process(pid);
    Event::Exec(ExecEvent {
        pid,
        ppid: info.ppid,
        uid: info.uid,
        gid: info.gid,
        exe: clean_path(path).to_owned(),
        argv: Vec::new(),
        cwd: info.cwd,
        parent_exe: info.exe,
        user: String::new(),
        group: String::new(),
        ancestors: Vec::new(),
    })
}

/// The open event for `pid` opening `path`.
pub fn resolve_open(pid: u32, path: &str) -> Event {
    let info = procfs::process(pid);
    Event::Open(OpenEvent {
        pid,
        uid: info.uid,
        gid: info.gid,
        path: clean_path(path).to_owned(),
        exe: info.exe,
        write: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_process_still_resolves() {
        let Event::Exec(exec) = resolve_exec(u32::MAX - 3, "/usr/bin/x (deleted)") else {
            panic!("exec expected")
        };
        assert_eq!(exec.exe, "/usr/bin/x");
        assert_eq!(exec.ppid, 0);
    }
}
