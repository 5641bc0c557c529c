//! Heartbeats and report batches as a hostile agent sends them, through the validation the
//! server's handlers apply before anything is stored or read (`Heartbeat::validated`,
//! `WireReportBatch::validate` and `typed`, `Report::claimed_at`): nothing may panic, whatever is accepted
//! must be within the protocol's limits, every figure kept must be finite and bounded (a figure
//! that is not made the gates' thresholds infinite), validation must be idempotent, and a
//! report's time must land within the window the server allows.
//!
//! Input: one byte choosing the body, then the body (JSON).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_protocol::api::{BodyError, Heartbeat, WireReportBatch, bounds, limits};

/// The server's clock for the claimed-time checks: fixed, so runs reproduce.
const NOW_MS: i64 = 1_780_000_000_000;

fn heartbeat(body: &[u8]) {
    let Ok(heartbeat) = serde_json::from_slice::<Heartbeat>(body) else {
        return;
    };
    let Ok(kept) = heartbeat.validated() else {
        return;
    };
    assert!(kept.releases.len() <= limits::MAX_RELEASES);
    assert!(kept.agent_version.len() <= limits::MAX_AGENT_VERSION_BYTES);
    let health = &kept.health;
    for (figure, max) in [
        (health.deny_rate, 1.0),
        (health.cpu_pct, bounds::MAX_CPU_PCT),
        (health.p99_us, bounds::MAX_LATENCY_US),
        (health.latency.p50_us, bounds::MAX_LATENCY_US),
        (health.latency.p99_us, bounds::MAX_LATENCY_US),
        (health.latency.max_us, bounds::MAX_LATENCY_US),
    ] {
        assert!(
            figure.is_finite() && (0.0..=max).contains(&figure),
            "{figure}"
        );
    }
    assert!(health.events <= bounds::MAX_EVENTS);
    assert!(health.rss_bytes <= bounds::MAX_RSS_BYTES);
    assert!(health.quarantined.len() <= bounds::MAX_NAMES);
    assert!(health.disabled.len() <= bounds::MAX_NAMES);
    // What the server stores is the JSON of the kept heartbeat: it must parse back, and a
    // second validation must change nothing.
    let stored = serde_json::to_vec(&kept).expect("a kept heartbeat serialises");
    let reread: Heartbeat = serde_json::from_slice(&stored).expect("stored JSON parses");
    let again = reread.validated().expect("a kept heartbeat stays valid");
    assert_eq!(again.health.clamped(), again.health);
}

fn report_batch(body: &[u8]) {
    let Ok(batch) = serde_json::from_slice::<WireReportBatch>(body) else {
        return;
    };
    match batch.validate() {
        Ok(()) => {
            assert!(batch.reports.len() <= limits::MAX_REPORTS_PER_BATCH);
            for report in &batch.reports {
                assert!((1..=limits::MAX_REPORT_ID_BYTES).contains(&report.id.len()));
                assert!((1..=limits::MAX_REPORT_KIND_BYTES).contains(&report.kind.len()));
                let size = serde_json::to_vec(&report.body).expect("serialises").len();
                assert!(size <= limits::MAX_REPORT_BODY_BYTES);
            }
            // Read by kind: a batch that reads is what the server stores, each report's time
            // within the window it allows.
            match batch.typed() {
                Ok(reports) => {
                    for report in &reports {
                        let at = report.claimed_at(NOW_MS);
                        assert!((NOW_MS - limits::MAX_REPORT_AGE_MS..=NOW_MS).contains(&at));
                    }
                }
                Err(BodyError::Invalid(reason)) => assert!(!reason.is_empty()),
                Err(other) => panic!("reading by kind refuses only as invalid: {other}"),
            }
        }
        Err(BodyError::TooLarge { actual, max, .. }) => assert!(actual > max),
        Err(BodyError::Invalid(reason)) => assert!(!reason.is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        heartbeat(body);
    } else {
        report_batch(body);
    }
});
