//! sd_notify without libsystemd: under systemd (`NOTIFY_SOCKET` set) the guard says READY=1,
//! pings the watchdog and reports its status; without systemd every call is a no-op.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The environment variables that belong to the guard's relationship with systemd and must not
/// leak to the agent (it would otherwise notify or be watched in the guard's name).
pub const SYSTEMD_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = path.as_encoded_bytes();
            let addr = match bytes.first() {
                Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]).ok()?,
                Some(b'/') => SocketAddr::from_pathname(std::path::Path::new(&path)).ok()?,
                _ => return None,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|_| {
                std::env::var("WATCHDOG_PID")
                    .ok()
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_none_or(|p| p == std::process::id())
            })
            .filter(|&us| us > 0)
            .map(Duration::from_micros);
        Self { target, watchdog }
    }

    pub fn disabled() -> Self {
        Self {
            target: None,
            watchdog: None,
        }
    }

    pub fn active(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send WATCHDOG=1: half the interval systemd expects, as sd_watchdog_enabled
    /// recommends.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.target.as_ref()?;
        self.watchdog.map(|d| d / 2)
    }

    /// Sends one datagram; failures are logged, never fatal: systemd going away must not take
    /// the guard with it.
    pub fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(error) = socket.send_to_addr(message.as_bytes(), addr)
        {
            tracing::debug!(%error, "sd_notify failed");
        }
    }

    pub fn ready(&self) {
        self.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS=supervising the agent",
            std::process::id()
        ));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn status(&self, text: &str) {
        // STATUS is one line; keep it short and single-line whatever the caller passed.
        let line: String = text.chars().filter(|c| *c != '\n').take(200).collect();
        self.send(&format!("STATUS={line}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let addr = SocketAddr::from_pathname(&path).expect("addr");
        let n = Notifier {
            target: Some((UnixDatagram::unbound().expect("socket"), addr)),
            watchdog: Some(Duration::from_secs(10)),
        };
        n.ready();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).expect("recv");
        let msg = std::str::from_utf8(&buf[..len]).expect("utf8");
        assert!(msg.starts_with("READY=1\nMAINPID="), "{msg}");
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(5)));
    }
}
