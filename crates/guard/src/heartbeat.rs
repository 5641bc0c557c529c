//! The heartbeat pipe: the agent writes a byte or a short line (`ok\n`, `ready\n`) at least
//! every heartbeat timeout, and `stopping\n` when a termination signal asked it to stop; the
//! guard drains it without ever blocking.

use nix::fcntl::OFlag;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

pub use ringfence_protocol::guard_link::{BPF_OFF_ENV, GUARD_FD_ENV};

/// A fresh pipe per agent start, so bytes from a dead agent never count for the new one.
/// Both ends are non-blocking: the agent must never block on a slow guard, nor the guard on it.
pub fn pipe() -> io::Result<(HeartbeatReader, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    Ok((
        HeartbeatReader {
            fd: read,
            line: Vec::new(),
            eof: false,
        },
        write,
    ))
}

/// What one drain of the pipe saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Bytes read: any byte is a beat.
    pub bytes: usize,
    /// A `ready` line arrived: the agent is serving.
    pub ready: bool,
    /// A `stopping` line arrived: the agent was asked to stop and is shutting down, so an exit
    /// with code 0 that follows is a requested stop, not a crash.
    pub stopping: bool,
}

/// The guard's end of the pipe.
#[derive(Debug)]
pub struct HeartbeatReader {
    fd: OwnedFd,
    line: Vec<u8>,
    eof: bool,
}

/// Partial lines longer than this are garbage, not protocol; they still count as beats.
const MAX_LINE: usize = 64;

impl HeartbeatReader {
    /// The agent closed every write end: polling would spin on POLLHUP, so stop polling it and
    /// let the heartbeat deadline decide.
    pub fn eof(&self) -> bool {
        self.eof
    }

    /// Reads everything available now.
    pub fn drain(&mut self) -> Drained {
        let mut out = Drained::default();
        let mut buf = [0u8; 512];
        loop {
            match nix::unistd::read(self.fd.as_fd(), &mut buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    out.bytes += n;
                    let lines = self.feed(&buf[..n]);
                    out.ready |= lines.ready;
                    out.stopping |= lines.stopping;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                // EAGAIN: drained. Any other error: treat like EOF rather than spin.
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(_) => {
                    self.eof = true;
                    break;
                }
            }
        }
        out
    }

    fn feed(&mut self, bytes: &[u8]) -> Drained {
        let mut seen = Drained::default();
        for &b in bytes {
            if b == b'\n' {
                match self.line.trim_ascii() {
                    b"ready" => seen.ready = true,
                    b"stopping" => seen.stopping = true,
                    _ => {}
                }
                self.line.clear();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
        seen
    }
}

impl AsFd for HeartbeatReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for HeartbeatReader {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_ready_and_eof() {
        let (mut reader, write) = pipe().expect("pipe");
        assert_eq!(reader.drain(), Drained::default());
        nix::unistd::write(&write, b"ok\nrea").expect("write");
        assert_eq!(
            reader.drain(),
            Drained {
                bytes: 6,
                ..Drained::default()
            }
        );
        nix::unistd::write(&write, b"dy\n.").expect("write");
        assert_eq!(
            reader.drain(),
            Drained {
                bytes: 4,
                ready: true,
                stopping: false,
            }
        );
        // The garbage line (".") ends first; then the announcement.
        nix::unistd::write(&write, b"\nstopping\n").expect("write");
        assert_eq!(
            reader.drain(),
            Drained {
                bytes: 10,
                ready: false,
                stopping: true,
            }
        );
        drop(write);
        reader.drain();
        assert!(reader.eof());
    }

    #[test]
    fn long_garbage_is_bounded() {
        let (mut reader, write) = pipe().expect("pipe");
        nix::unistd::write(&write, &[b'x'; 4000]).expect("write");
        let d = reader.drain();
        assert_eq!(d.bytes, 4000);
        assert!(reader.line.len() <= MAX_LINE);
    }
}
