//! The crash monitor a managed agent starts beside itself, so a native crash leaves a minidump.

use std::path::Path;
use std::time::Duration;

/// The crash monitor child and the handler that talks to it; the monitor exits on its own
/// when the agent disconnects, and is reaped here.
pub(super) struct CrashMonitor {
    child: std::process::Child,
    _capture: ringfence_crash::CrashCapture,
}

impl Drop for CrashMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why there is no crash monitor: crash capture is evidence, not protection, so the agent runs
/// without it and says why.
#[derive(Debug, thiserror::Error)]
pub(super) enum CrashMonitorError {
    #[error("{what}: {source}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Capture(#[from] ringfence_crash::CrashError),
}

pub(super) fn start_crash_monitor(data_dir: &Path) -> Result<CrashMonitor, CrashMonitorError> {
    let socket = data_dir.join("crash-monitor.sock");
    let start = |what| move |source| CrashMonitorError::Start { what, source };
    let exe = std::env::current_exe().map_err(start("find the ringfence binary"))?;
    let child = std::process::Command::new(exe)
        .arg("crash-monitor")
        .arg("--socket")
        .arg(&socket)
        .arg("--dumps")
        .arg(data_dir.join("crashes"))
        .arg("--spool")
        .arg(data_dir.join("spool"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(start("start the crash monitor"))?;
    let capture =
        ringfence_crash::CrashCapture::install(&socket, child.id(), Duration::from_secs(5))?;
    Ok(CrashMonitor {
        child,
        _capture: capture,
    })
}
