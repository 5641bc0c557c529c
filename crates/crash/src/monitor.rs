//! The monitor process: waits for a crash request, writes the minidump, spools a report.

use ringfence_protocol::api::Report;
use ringfence_protocol::report::{MinidumpFailed, MinidumpReport, MinidumpWritten, ReportBody};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Largest dump embedded in the report; bigger ones stay on the host and are named. Hex doubles
/// it, and the rest of the body (engine, path, size) needs a little room under the server's
/// per-report limit: a report past that limit is set aside, not uploaded.
const MAX_EMBEDDED_BYTES: usize =
    (ringfence_protocol::api::limits::MAX_REPORT_BODY_BYTES - (8 << 10)) / 2;

struct Handler {
    dumps: PathBuf,
    spool: PathBuf,
}

impl Handler {
    fn spool_report(&self, minidump: MinidumpReport) -> std::io::Result<()> {
        let now = ringfence_protocol::clock::unix_ms();
        let report = Report {
            id: format!("minidump-{now}"),
            at_ms: now,
            body: ReportBody::Minidump(minidump),
        };
        // One report per crash; 999 keeps its name clear of the guard's counter in the same
        // millisecond.
        ringfence_protocol::spool::write_from_outside(&self.spool, &report, 999).map(drop)
    }
}

impl minidumper::ServerHandler for Handler {
    fn create_minidump_file(&self) -> Result<(File, PathBuf), std::io::Error> {
        std::fs::create_dir_all(&self.dumps)?;
        let path = self.dumps.join(format!(
            "agent-{}.dmp",
            ringfence_protocol::clock::unix_ms()
        ));
        Ok((File::create(&path)?, path))
    }

    fn on_minidump_created(
        &self,
        result: Result<minidumper::MinidumpBinary, minidumper::Error>,
    ) -> minidumper::LoopAction {
        let body = match result {
            Ok(binary) => {
                let bytes = std::fs::metadata(&binary.path)
                    .map(|m| m.len())
                    .unwrap_or(0);
                tracing::error!(path = %binary.path.display(), bytes, "the agent crashed; minidump written");
                MinidumpReport::Written(MinidumpWritten {
                    bytes,
                    embedded: binary
                        .contents
                        .as_ref()
                        .filter(|c| c.len() <= MAX_EMBEDDED_BYTES)
                        .map(|c| hex_encode(c)),
                    engine: "agent".to_owned(),
                    path: binary.path.display().to_string(),
                })
            }
            Err(error) => MinidumpReport::Failed(MinidumpFailed {
                engine: "agent".to_owned(),
                error: error.to_string(),
            }),
        };
        if let Err(error) = self.spool_report(body) {
            tracing::error!("could not spool the minidump report: {error}");
        }
        // One crash per agent process: the monitor's job is done.
        minidumper::LoopAction::Exit
    }

    fn on_message(&self, _kind: u32, _buffer: Vec<u8>) {}

    fn on_client_disconnected(&self, clients: usize) -> minidumper::LoopAction {
        // The agent went away without crashing (a clean stop): nothing left to watch.
        if clients == 0 {
            minidumper::LoopAction::Exit
        } else {
            minidumper::LoopAction::Continue
        }
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    out
}

/// Serves crash requests on `socket` until one dump is written or the agent disconnects.
pub fn run_monitor(socket: &Path, dumps: &Path, spool: &Path) -> Result<(), minidumper::Error> {
    let mut server = minidumper::Server::with_name(minidumper::SocketName::Path(socket))?;
    let shutdown = AtomicBool::new(false);
    let handler = Handler {
        dumps: dumps.to_owned(),
        spool: spool.to_owned(),
    };
    server.run(Box::new(handler), &shutdown, None)
}
