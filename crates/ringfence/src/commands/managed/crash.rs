//! The crash monitor a managed agent starts beside itself, so a native crash leaves a minidump.

use anyhow::Context;
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

pub(super) fn start_crash_monitor(data_dir: &Path) -> anyhow::Result<CrashMonitor> {
    let socket = data_dir.join("crash-monitor.sock");
    let exe = std::env::current_exe().context("find the ringfence binary")?;
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
        .context("start the crash monitor")?;
    let capture =
        ringfence_crash::CrashCapture::install(&socket, child.id(), Duration::from_secs(5))?;
    Ok(CrashMonitor {
        child,
        _capture: capture,
    })
}
