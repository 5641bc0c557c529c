//! HTTP API bodies as the other side sends them: agents' requests to the server (enroll,
//! heartbeat, report batches as sent and as the server reads them, body by kind; an agent's
//! spool files are the same `Report` JSON), the server's
//! answers agents act on (enrollment, assignments and remediation plans), and the parts of an
//! operator's rollout request the server checks itself (ring percentages, gate thresholds,
//! ring specs). Everything must deserialise or fail cleanly, what parses must serialise to JSON
//! that parses again (the server stores heartbeats and reports that way), and a ring list the
//! parser accepts must pass the server's own validation.
//!
//! Input: one byte choosing the body, then the body.
//!
//! Not reached from here: the checks the server makes inline in its handlers (hostname and tag
//! lengths, remediation scopes, batch sizes) live in the server crate, which this lean fuzz
//! build does not link; they are length and prefix comparisons on already-parsed strings.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_protocol::api::{
    EnrollRequest, EnrollResponse, Heartbeat, HeartbeatResponse, Report, ReportBatch,
    WireReportBatch,
};
use ringfence_rollout::{GateSpec, RolloutSpec};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses `body` as `T`; if it parses, what we write must parse again.
fn reparses<T: DeserializeOwned + Serialize>(body: &[u8]) -> Option<(T, T)> {
    let value: T = serde_json::from_slice(body).ok()?;
    let written = serde_json::to_vec(&value).expect("a parsed body serialises");
    let again: T = serde_json::from_slice(&written).expect("a written body parses");
    Some((value, again))
}

/// As [`reparses`], and the value must survive unchanged. Only for bodies without floats:
/// serde_json's default float parsing may move a value by one ulp.
fn round_trips<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(body: &[u8]) {
    if let Some((value, again)) = reparses::<T>(body) {
        assert_eq!(value, again);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 9 {
        0 => round_trips::<EnrollRequest>(body),
        1 => round_trips::<EnrollResponse>(body),
        2 => {
            let _ = reparses::<Heartbeat>(body);
        }
        3 => {
            let _ = reparses::<HeartbeatResponse>(body);
        }
        4 => {
            let _ = reparses::<ReportBatch>(body);
            // The server's path: the wire form within the limits, then each body by its kind.
            if let Some((batch, _)) = reparses::<WireReportBatch>(body)
                && batch.validate().is_ok()
            {
                let _ = batch.typed();
            }
        }
        5 => {
            let _ = reparses::<Report>(body);
        }
        6 => {
            let _ = reparses::<GateSpec>(body);
        }
        7 => {
            if let Some((spec, _)) = reparses::<RolloutSpec>(body) {
                let _ = spec.validate();
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            if let Ok(spec) = RolloutSpec::from_percentages(&text, 60_000) {
                assert_eq!(spec.validate(), Ok(()), "rings {text:?}");
            }
        }
    }
});
