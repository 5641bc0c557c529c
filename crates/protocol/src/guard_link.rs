//! The agent's side of the guard heartbeat: the guard passes the write end of a pipe and names
//! it in `RINGFENCE_GUARD_FD`; the agent writes `ok\n` to prove it is alive, `ready\n` once it
//! serves and `stopping\n` when a termination signal asks it to stop. Writing never blocks and
//! never panics: a stuck guard must not stall the agent.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The env var the guard sets to the heartbeat pipe's fd number.
pub const GUARD_FD_ENV: &str = "RINGFENCE_GUARD_FD";
/// The env var the guard sets to the slot it started the agent on (`current` or `lkg`).
pub const SLOT_ENV: &str = "RINGFENCE_SLOT";
/// The env var the guard sets, to the reason in words, when the agent must start without its
/// BPF sensor: the host boot-looped or crash-looped, and kernel code we loaded may be why.
pub const BPF_OFF_ENV: &str = "RINGFENCE_BPF_OFF";

/// Which of a channel's two installed releases runs: the one installed last, or the last known
/// good one the guard restored after a crash or boot loop. The guard chooses it, the agent
/// starts on it, the heartbeat reports it: one type for all three.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Whatever each channel's slots say is current (the newest installed).
    #[default]
    Current,
    /// Each channel's last known good release.
    Lkg,
}

impl Slot {
    /// The slot's name in the guard's environment, on the command line and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Current => "current",
            Slot::Lkg => "lkg",
        }
    }
}

/// Beats closer together than this are skipped, so `beat()` can sit in a hot loop. The guard's
/// timeout is seconds (10 s by default), so one write a second is plenty.
const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// A link to the supervising guard. Cheap to share (`&self` everywhere, no locks).
#[derive(Debug)]
pub struct GuardLink {
    pipe: File,
    created: Instant,
    /// Milliseconds after `created` of the last beat written, plus one (0 = never).
    last_beat: AtomicU64,
}

impl GuardLink {
    /// `None` when not started by a guard (no or malformed `RINGFENCE_GUARD_FD`) or when the fd
    /// is not a pipe we can write.
    pub fn from_env() -> Option<Self> {
        let fd: u32 = std::env::var(GUARD_FD_ENV).ok()?.trim().parse().ok()?;
        Self::from_fd(fd)
    }

    /// Opens the inherited fd through `/proc/self/fd`, which gives a description of our own with
    /// `O_NONBLOCK` and `O_CLOEXEC` set, without any unsafe adoption of a raw fd.
    pub fn from_fd(fd: u32) -> Option<Self> {
        let pipe = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("/proc/self/fd/{fd}"))
            .ok()?;
        Some(Self {
            pipe,
            created: Instant::now(),
            last_beat: AtomicU64::new(0),
        })
    }

    /// "Still alive". Call it from the loop whose progress proves health (not from a timer
    /// thread of its own, which would beat on while the real work hangs), at least every few
    /// seconds. Returns whether a byte was written.
    pub fn beat(&self) -> bool {
        let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last_beat.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < MIN_INTERVAL.as_millis() as u64 {
            return false;
        }
        if self
            .last_beat
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another thread beat just now.
            return false;
        }
        self.write(b"ok\n")
    }

    /// "Serving": the guard records it and the bench times restores by it. Also a beat.
    pub fn ready(&self) -> bool {
        self.write(b"ready\n")
    }

    /// "A termination signal asked me to stop": the guard then takes the exit with code 0 that
    /// follows for a requested stop, not a crash (no crash report, no crash-loop count). Call it
    /// once, as soon as the signal is seen, before the shutdown work.
    pub fn stopping(&self) -> bool {
        self.write(b"stopping\n")
    }

    fn write(&self, line: &[u8]) -> bool {
        // Writes below PIPE_BUF are atomic: all or nothing. A full pipe (EAGAIN) means the guard
        // is behind on reading; skipping a beat is right. EPIPE means the guard is gone.
        (&self.pipe).write(line).is_ok_and(|n| n == line.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    /// A pipe made through a FIFO, so the test needs no unsafe and no extra crate.
    fn fifo() -> (tempfile::TempDir, File, File) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo");
        assert!(status.success());
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .expect("reader");
        let writer = OpenOptions::new().write(true).open(&path).expect("writer");
        (dir, reader, writer)
    }

    #[test]
    fn beats_are_rate_limited_and_ready_always_goes() {
        let (_dir, mut reader, writer) = fifo();
        let link = GuardLink::from_fd(writer.as_raw_fd() as u32).expect("link");
        assert!(link.ready());
        assert!(link.beat());
        assert!(!link.beat(), "second beat within the interval is skipped");
        let mut buf = [0u8; 64];
        let n = reader.read(&mut buf).expect("read");
        assert_eq!(&buf[..n], b"ready\nok\n");
    }

    #[test]
    fn full_pipe_does_not_block() {
        let (_dir, _reader, writer) = fifo();
        let link = GuardLink::from_fd(writer.as_raw_fd() as u32).expect("link");
        // Far more than any pipe buffer holds; must return, not block.
        let written = (0..100_000).filter(|_| link.ready()).count();
        assert!(written < 100_000, "a pipe never fills?");
    }

    #[test]
    fn bad_fds_are_none() {
        assert!(GuardLink::from_fd(987_654).is_none());
    }
}
