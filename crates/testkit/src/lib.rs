//! What the workspace's test suites share: skips that are loud, and the events they feed.
//!
//! Some tests need what a developer's machine may lack: root (fanotify, tmpfs mounts), a
//! PostgreSQL server, Chromium. Such a test may skip, but never silently: it says why on
//! standard error, appends one line to the file named by `RINGFENCE_SKIP_LOG` (so the test
//! command can count skips across every test binary), and — in a run that promised every
//! environment, `RINGFENCE_REQUIRE_ALL=1`, which `scripts/test.sh` sets in CI when it runs as
//! root with its services started — fails instead. A skip in CI is a failure, not a pass.

#![forbid(unsafe_code)]

pub mod events;

use std::io::Write;

/// Set to `1` when every test must run: a skip then panics.
pub const REQUIRE_ALL: &str = "RINGFENCE_REQUIRE_ALL";
/// A file each skip appends `test<TAB>reason` to.
pub const SKIP_LOG: &str = "RINGFENCE_SKIP_LOG";
/// The PostgreSQL server the store and server suites also run against.
pub const POSTGRES: &str = "RINGFENCE_TEST_POSTGRES";

/// Records that `test` cannot run here because of `reason`. Panics when the run requires every
/// test; otherwise the caller returns early.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os(SKIP_LOG)
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        // One short line per write: appends of this size do not interleave.
        let _ = file.write_all(format!("{test}\t{reason}\n").as_bytes());
    }
    if required() {
        panic!(
            "{test} would be skipped ({reason}), but {REQUIRE_ALL}=1: this run promised every \
             environment (root, PostgreSQL, Chromium)"
        );
    }
}

/// True when this run must not skip anything.
pub fn required() -> bool {
    std::env::var(REQUIRE_ALL).is_ok_and(|value| value == "1")
}

/// True when the process has `CAP_SYS_ADMIN` (fanotify permission events, mounts); otherwise
/// skips `test`, saying so.
pub fn root_or_skip(test: &str) -> bool {
    if has_cap_sys_admin() {
        return true;
    }
    skip(
        test,
        "needs root (CAP_SYS_ADMIN) for fanotify, the process connector and mounts",
    );
    false
}

/// Mounts tracefs, through which the BPF sensor attaches, where systemd would have: a
/// minimal machine (or a CI container) may not have it yet. Needs root.
pub fn mount_tracefs() {
    if !std::path::Path::new("/sys/kernel/tracing/events").is_dir() {
        let status = std::process::Command::new("mount")
            .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting tracefs failed");
    }
}

/// The PostgreSQL URL the suites run against; without one, skips `test`, saying so.
pub fn postgres_or_skip(test: &str) -> Option<String> {
    match std::env::var(POSTGRES) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip(
                test,
                "RINGFENCE_TEST_POSTGRES is not set: PostgreSQL not covered (scripts/test.sh starts one)",
            );
            None
        }
    }
}

/// Bit 21 of the effective capability set, from `/proc/self/status`.
fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// A size-limited tmpfs mounted on a directory, unmounted when dropped: a disk that fills up
/// on purpose without touching the machine's own. Mounting needs root.
pub struct SmallTmpfs<'a>(&'a std::path::Path);

impl<'a> SmallTmpfs<'a> {
    /// Mounts a tmpfs of `size` (`4m`, `6m`) on `dir` for `test`; when this process may not
    /// mount, skips `test` the loud way and returns `None`.
    pub fn mount(test: &str, dir: &'a std::path::Path, size: &str) -> Option<SmallTmpfs<'a>> {
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status();
        match status {
            Ok(status) if status.success() => Some(SmallTmpfs(dir)),
            other => {
                skip(
                    test,
                    &format!("cannot mount a tmpfs (needs root): {other:?}"),
                );
                None
            }
        }
    }
}

impl Drop for SmallTmpfs<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_capabilities_never_fails() {
        // Whatever the answer, it comes from /proc without panicking.
        let _ = has_cap_sys_admin();
    }
}
