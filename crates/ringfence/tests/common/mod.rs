//! Helpers shared by the binary's end-to-end tests: a real `ringfence server` process on a free
//! loopback port, with the URL and CA fingerprint it printed.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running `ringfence server`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// `sha256:…` as the server printed it.
    pub fingerprint: String,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server with a fresh data directory (and so a fresh CA) on a free port.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// `start` with more arguments for `ringfence server`.
    pub fn start_with(extra: &[&str]) -> Server {
        Server::spawn(Command::new(env!("CARGO_BIN_EXE_ringfence")), extra)
    }

    fn spawn(mut command: Command, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = command
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let word = |prefix: &str| {
            line.split_whitespace()
                .find(|w| w.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {line:?}"))
                .to_owned()
        };
        Server {
            child,
            url: word("https://"),
            fingerprint: word("sha256:"),
            dir,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
