//! Engine failures and alerts leave the host through the spool: a follower reads the agent's
//! alert file and spools them, rate-limited, counting what it leaves out.

use ringfence_uplink::Spool;
use ringfence_uplink::link::report;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Follows the alert file and spools engine failures and alerts, at most `per_second` each,
/// counting what it had to leave out.
pub(super) fn ship_alerts(
    path: PathBuf,
    spool: Arc<Spool>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        const PER_SECOND: u32 = 20;
        let mut offset = 0u64;
        let mut window = Instant::now();
        let mut sent = 0u32;
        let mut suppressed = 0u64;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let Ok(mut file) = std::fs::File::open(&path) else {
                continue;
            };
            if file.seek(SeekFrom::Start(offset)).is_err() {
                continue;
            }
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if !line.ends_with('\n') {
                    break;
                }
                offset += line.len() as u64;
                if window.elapsed() >= Duration::from_secs(1) {
                    if suppressed > 0 {
                        let _ = spool.push(&report(
                            "telemetry",
                            serde_json::json!({"suppressed_reports": suppressed}),
                        ));
                    }
                    window = Instant::now();
                    sent = 0;
                    suppressed = 0;
                }
                if let Ok(alert) = serde_json::from_str::<serde_json::Value>(&line) {
                    let failures = alert["unmapped"]["ringfence"]["failures"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    for failure in failures {
                        if sent < PER_SECOND {
                            sent += 1;
                            let _ = spool.push(&report("failure", failure));
                        } else {
                            suppressed += 1;
                        }
                    }
                    if sent < PER_SECOND {
                        sent += 1;
                        let _ = spool.push(&report("alert", alert));
                    } else {
                        suppressed += 1;
                    }
                }
                line.clear();
            }
        }
    })
}
