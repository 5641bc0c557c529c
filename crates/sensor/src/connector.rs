//! The netlink process connector: fork, exec and exit notifications for every process, enriched
//! from /proc. Notifications only; nothing waits on us here.

use crate::decode::{self, ProcEvent};
use crate::error::SensorError;
use crate::procfs;
use ringfence_protocol::{Event, ExecEvent, ExitEvent, ForkEvent};
use ringfence_sys as sys;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// A subscribed process connector socket.
#[derive(Debug)]
pub struct ProcConnector {
    socket: OwnedFd,
    /// Ends a [`ProcConnector::read`] early (see [`ProcConnector::wake_on`]).
    wake: Option<std::sync::Arc<sys::fd::Wake>>,
    /// Datagrams the kernel dropped because we were slow (ENOBUFS).
    pub overflows: u64,
}

impl ProcConnector {
    /// Opens the socket and subscribes to process events (needs root).
    pub fn open() -> Result<ProcConnector, SensorError> {
        let socket = sys::netlink::socket(libc::NETLINK_CONNECTOR, decode::CN_IDX_PROC).map_err(
            |e| match e.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => SensorError::NeedsCapNetAdmin,
                _ => SensorError::io("open netlink process connector", e),
            },
        )?;
        // Best effort: bursts of forks overflow the default buffer.
        let _ = sys::netlink::set_receive_buffer(&socket, 4 << 20);
        sys::netlink::send(&socket, &decode::proc_listen_message())
            .map_err(|e| SensorError::io("subscribe to process events", e))?;
        Ok(ProcConnector {
            socket,
            wake: None,
            overflows: 0,
        })
    }

    /// Takes over a subscribed socket a previous image of this agent handed across `execve`
    /// (see [`crate::handoff`]); notifications that arrived meanwhile wait in its buffer.
    pub fn adopt(socket: OwnedFd) -> ProcConnector {
        ProcConnector {
            socket,
            wake: None,
            overflows: 0,
        }
    }

    /// A duplicate of the socket that survives `execve` (see [`crate::handoff`]).
    pub fn inheritable_fd(&self) -> Result<OwnedFd, SensorError> {
        let dup = self
            .socket
            .try_clone()
            .map_err(|e| SensorError::io("dup process connector socket", e))?;
        sys::fd::set_cloexec(&dup, false).map_err(|e| SensorError::io("clear FD_CLOEXEC", e))?;
        Ok(dup)
    }

    /// Makes every later read return at once once `wake` is woken.
    pub fn wake_on(&mut self, wake: std::sync::Arc<sys::fd::Wake>) {
        self.wake = Some(wake);
    }

    /// Waits up to `timeout`; returns the events of one datagram, enriched.
    pub fn read(&mut self, timeout: Duration) -> Result<Vec<Event>, SensorError> {
        if !sys::fd::poll_readable_or_woken(&self.socket, self.wake.as_deref(), timeout)
            .map_err(|e| SensorError::io("poll netlink", e))?
        {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; 8192];
        let n = match sys::fd::read(&self.socket, &mut buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                self.overflows += 1;
                tracing::warn!("process connector overflow: events were lost");
                return Ok(Vec::new());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(SensorError::io("read netlink", e)),
        };
        Ok(decode::proc_events(buf.get(..n).unwrap_or_default())
            .into_iter()
            .filter_map(enrich)
            .collect())
    }
}

/// Turns a kernel notification into an event; threads (pid ≠ tgid) are not processes and are
/// skipped.
pub fn enrich(event: ProcEvent) -> Option<Event> {
    match event {
        ProcEvent::Fork {
            parent_tgid,
            child_pid,
            child_tgid,
        } => (child_pid == child_tgid).then_some(Event::Fork(ForkEvent {
            parent_pid: parent_tgid,
            child_pid,
        })),
        ProcEvent::Exec { tgid, .. } => Some(Event::Exec(exec_event(tgid))),
        ProcEvent::Exit {
            pid,
            tgid,
            exit_code,
        } => (pid == tgid).then_some(Event::Exit(ExitEvent {
            pid,
            exit_code: wait_status_code(exit_code),
        })),
    }
}

/// An exec notification resolved from /proc; a process that already exited keeps only its pid.
pub fn exec_event(pid: u32) -> ExecEvent {
    let info = procfs::process(pid);
    ExecEvent {
        pid,
        ppid: info.ppid,
        uid: info.uid,
        gid: info.gid,
        parent_exe: if info.ppid > 0 {
            procfs::exe(info.ppid)
        } else {
            String::new()
        },
        exe: info.exe,
        argv: info.argv,
        cwd: info.cwd,
        user: String::new(),
        group: String::new(),
        ancestors: Vec::new(),
    }
}

/// Exit code as a shell reports it: the code for a normal exit, 128 + signal otherwise.
pub fn wait_status_code(status: u32) -> i32 {
    let signal = status & 0x7f;
    if signal == 0 {
        ((status >> 8) & 0xff) as i32
    } else {
        128 + signal as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status() {
        assert_eq!(wait_status_code(0), 0);
        assert_eq!(wait_status_code(3 << 8), 3);
        assert_eq!(wait_status_code(9), 137);
    }

    #[test]
    fn threads_are_not_processes() {
        let thread = ProcEvent::Fork {
            parent_tgid: 1,
            child_pid: 11,
            child_tgid: 10,
        };
        assert_eq!(enrich(thread), None);
        let exit = ProcEvent::Exit {
            pid: 11,
            tgid: 10,
            exit_code: 0,
        };
        assert_eq!(enrich(exit), None);
    }
}
