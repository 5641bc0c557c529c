//! Process details from /proc. Processes vanish at any moment, so every reader returns what
//! it could get and never fails: a field we could not read stays empty.

use std::path::Path;

/// What /proc says about one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The image the process runs now.
    pub exe: String,
    pub argv: Vec<String>,
    pub cwd: String,
    /// False when the process was already gone.
    pub found: bool,
}

fn link(path: impl AsRef<Path>) -> String {
    std::fs::read_link(path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The executable a process runs now, or "" when it is gone.
pub fn exe(pid: u32) -> String {
    link(format!("/proc/{pid}/exe"))
}

/// Splits a NUL-separated /proc cmdline.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

/// The parent pid from /proc/PID/stat. The command name is in parentheses and may itself
/// contain spaces and parentheses, so we parse after the last ')'.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The real uid and gid from /proc/PID/status.
pub fn parse_status_ids(status: &str) -> (Option<u32>, Option<u32>) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    (field("Uid:"), field("Gid:"))
}

/// Reads what it can about `pid`.
pub fn process(pid: u32) -> ProcessInfo {
    let base = format!("/proc/{pid}");
    let stat = std::fs::read_to_string(format!("{base}/stat")).unwrap_or_default();
    let status = std::fs::read_to_string(format!("{base}/status")).unwrap_or_default();
    let (uid, gid) = parse_status_ids(&status);
    ProcessInfo {
        pid,
        ppid: parse_stat_ppid(&stat).unwrap_or(0),
        uid: uid.unwrap_or(0),
        gid: gid.unwrap_or(0),
        exe: link(format!("{base}/exe")),
        argv: std::fs::read(format!("{base}/cmdline"))
            .map(|b| parse_cmdline(&b))
            .unwrap_or_default(),
        cwd: link(format!("{base}/cwd")),
        found: !stat.is_empty(),
    }
}

/// Pids of processes whose `comm` is `name` (e.g. `systemd-journal`).
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|comm| comm.trim_end() == name)
                .unwrap_or(false)
        })
        .collect()
}

/// True when the process has the capability bit `cap` in its effective set.
pub fn has_capability(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| cap < 64 && mask & (1 << cap) != 0)
}

/// `CAP_SYS_ADMIN`, which fanotify permission events require.
pub const CAP_SYS_ADMIN: u32 = 21;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_parentheses_in_comm() {
        let stat = "123 (my (odd) prog) S 77 123 123 0 -1";
        assert_eq!(parse_stat_ppid(stat), Some(77));
        assert_eq!(parse_stat_ppid("garbage"), None);
        assert_eq!(parse_stat_ppid("1 (x)"), None);
    }

    #[test]
    fn cmdline_and_status() {
        assert_eq!(parse_cmdline(b"ls\0-la\0\0"), vec!["ls", "-la"]);
        assert!(parse_cmdline(b"").is_empty());
        let (uid, gid) =
            parse_status_ids("Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\t5\t5\t5\n");
        assert_eq!((uid, gid), (Some(1000), Some(5)));
        assert_eq!(parse_status_ids("nothing"), (None, None));
    }

    #[test]
    fn own_process_is_found_and_a_gone_one_is_empty() {
        let me = process(std::process::id());
        assert!(me.found);
        assert!(!me.exe.is_empty());
        let gone = process(u32::MAX - 1);
        assert!(!gone.found);
        assert_eq!(gone.exe, "");
    }
}
