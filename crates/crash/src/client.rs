//! The crashing side: connect to the monitor and install the signal handler that asks it for
//! a dump.

use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CrashError {
    #[error("could not reach the crash monitor at {path}: {reason}")]
    Connect { path: String, reason: String },
    #[error("could not install the crash handler: {0}")]
    Handler(String),
}

/// Keeps the handler installed while alive.
pub struct CrashCapture {
    _handler: crash_handler::CrashHandler,
}

impl std::fmt::Debug for CrashCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrashCapture").finish_non_exhaustive()
    }
}

impl CrashCapture {
    /// Connects to the monitor listening on `socket` (waiting up to `wait` for it to start) and
    /// installs the crash handler. `monitor_pid` may ptrace this process to write the dump.
    pub fn install(
        socket: &Path,
        monitor_pid: u32,
        wait: Duration,
    ) -> Result<CrashCapture, CrashError> {
        let deadline = Instant::now() + wait;
        let client = loop {
            match minidumper::Client::with_name(minidumper::SocketName::Path(socket)) {
                Ok(client) => break client,
                Err(error) if Instant::now() >= deadline => {
                    return Err(CrashError::Connect {
                        path: socket.display().to_string(),
                        reason: error.to_string(),
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let handler = ringfence_sys::crash::dump_on_crash(client)
            .map_err(|e| CrashError::Handler(e.to_string()))?;
        // Under Yama's ptrace scope 1 only ancestors may trace us; the monitor is our child.
        handler.set_ptracer(Some(monitor_pid));
        Ok(CrashCapture { _handler: handler })
    }
}
