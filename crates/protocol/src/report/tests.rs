//! The report wire form: old reports decode and encode to the same bytes, bad ones are refused
//! with the report's id and the problem.

use super::*;
use crate::api::{WireReportBatch, limits};
use crate::{FailureKind, Frame};

/// Reports exactly as agents before the typed bodies wrote them (bodies were JSON maps, so
/// their keys are sorted), one per kind and shape.
const OLD_REPORTS: &[&str] = &[
    r#"{"id":"alert-1-0-00","kind":"alert","at_ms":5,"body":{"class_uid":1007,"message":"m","unmapped":{"ringfence":{"failures":[]}}}}"#,
    r#"{"id":"alert-1-0-00-f0","kind":"failure","at_ms":5,"body":{"at_unix_ns":7,"backtrace":[{"func_index":3,"function":"parse","module":null,"module_offset":12}],"content_sha256":"ab","elapsed_us":9,"engine":"faulty","event_kind":"exec","kind":"trap","message":"oob","trap_code":"memory_out_of_bounds"}}"#,
    r#"{"id":"5-1","kind":"failure","at_ms":5,"body":{"at_unix_ns":0,"content_sha256":"","during":"install","elapsed_us":0,"engine":"faulty","kind":"trap","message":"unreachable"}}"#,
    r#"{"id":"guard-5-0","kind":"crash","at_ms":5,"body":{"engine":"agent","exit_code":null,"kind":"native","message":"the agent killed by SIGSEGV","ran_ms":42,"signal":"SIGSEGV","slot":"current"}}"#,
    r#"{"id":"guard-5-1","kind":"crash","at_ms":5,"body":{"engine":"agent","exit_code":3,"kind":"native","message":"the agent exited with 3","ran_ms":1,"signal":null,"slot":"lkg"}}"#,
    r#"{"id":"5-2","kind":"install","at_ms":5,"body":{"channel":"detection","outcome":"running","version":"1.1.0"}}"#,
    r#"{"id":"5-3","kind":"install","at_ms":5,"body":{"channel":"detection","outcome":"refused","reason":"timed out","version":"1.1.0"}}"#,
    r#"{"id":"5-4","kind":"restore","at_ms":5,"body":{"channel":"detection","reason":"guard asked for the last known good slot"}}"#,
    r#"{"id":"5-5","kind":"remediation","at_ms":5,"body":{"action":"pin","channel":"detection","outcome":"applied","plan":"p1","reason":null}}"#,
    r#"{"id":"5-6","kind":"remediation","at_ms":5,"body":{"action":"explode","channel":"detection","outcome":"refused","plan":"p2","reason":"unknown action explode"}}"#,
    r#"{"id":"minidump-5","kind":"minidump","at_ms":5,"body":{"bytes":4096,"embedded":null,"engine":"agent","path":"/var/lib/ringfence/crashes/agent-5.dmp"}}"#,
    r#"{"id":"minidump-6","kind":"minidump","at_ms":6,"body":{"bytes":4,"embedded":"4d444d50","engine":"agent","path":"/d/agent-6.dmp"}}"#,
    r#"{"id":"minidump-7","kind":"minidump","at_ms":7,"body":{"engine":"agent","error":"no space left on device"}}"#,
    r#"{"id":"5-7","kind":"telemetry","at_ms":5,"body":{"suppressed_reports":12}}"#,
];

#[test]
fn old_reports_decode_and_encode_to_the_same_bytes() {
    let mut kinds = std::collections::BTreeSet::new();
    for old in OLD_REPORTS {
        let report: Report = serde_json::from_str(old).unwrap_or_else(|e| panic!("{old}: {e}"));
        kinds.insert(report.kind());
        assert_eq!(serde_json::to_string(&report).expect("encode"), *old);
    }
    assert_eq!(
        kinds.len(),
        ReportKind::ALL.len(),
        "every kind has an old report"
    );
}

#[test]
fn bodies_decode_to_their_types() {
    let report: Report = serde_json::from_str(OLD_REPORTS[1]).expect("failure");
    let ReportBody::Failure(failure) = report.body else {
        panic!("a failure: {report:?}");
    };
    assert_eq!(failure.record.kind, FailureKind::Trap);
    assert_eq!(
        failure.record.trap_code.as_deref(),
        Some("memory_out_of_bounds")
    );
    assert_eq!(
        failure.record.backtrace,
        [Frame {
            function: Some("parse".into()),
            func_index: 3,
            module_offset: Some(12),
            module: None,
        }]
    );
    assert_eq!(failure.during, None);
    let install: Report = serde_json::from_str(OLD_REPORTS[2]).expect("install failure");
    assert!(matches!(
        install.body,
        ReportBody::Failure(FailureReport {
            during: Some(FailurePhase::Install),
            ..
        })
    ));
    let crash: Report = serde_json::from_str(OLD_REPORTS[4]).expect("crash");
    assert!(matches!(
        crash.body,
        ReportBody::Crash(CrashReport {
            exit_code: Some(3),
            slot: Slot::Lkg,
            ..
        })
    ));
    let failed: Report = serde_json::from_str(OLD_REPORTS[12]).expect("minidump");
    assert!(matches!(
        failed.body,
        ReportBody::Minidump(MinidumpReport::Failed(_))
    ));
}

#[test]
fn a_newer_agents_extra_body_field_is_ignored() {
    let newer = r#"{"id":"1","kind":"restore","at_ms":1,"body":{"channel":"c","reason":"r","from_the_future":1}}"#;
    let report: Report = serde_json::from_str(newer).expect("decodes");
    assert_eq!(
        report.body,
        ReportBody::Restore(RestoreReport {
            channel: "c".into(),
            reason: "r".into()
        })
    );
}

#[test]
fn an_unknown_kind_or_a_malformed_body_names_the_report_and_the_problem() {
    let unknown = WireReport {
        id: "r-1".into(),
        kind: "quarantine".into(),
        at_ms: 1,
        body: serde_json::json!({}),
    };
    let error = unknown.typed().expect_err("unknown kind");
    assert!(matches!(error, ReportError::UnknownKind { .. }));
    let text = error.to_string();
    assert!(
        text.contains("\"r-1\"") && text.contains("\"quarantine\""),
        "{text}"
    );
    let malformed = WireReport {
        id: "r-2".into(),
        kind: "failure".into(),
        at_ms: 1,
        body: serde_json::json!({"kind": "trap"}),
    };
    let error = malformed
        .clone()
        .typed()
        .expect_err("a failure without its record");
    let text = error.to_string();
    assert!(
        text.contains("\"r-2\"") && text.contains("failure") && text.contains("engine"),
        "{text}"
    );
    let batch = WireReportBatch {
        reports: vec![
            WireReport {
                id: "ok".into(),
                kind: "telemetry".into(),
                at_ms: 1,
                body: serde_json::json!({"suppressed_reports": 1}),
            },
            malformed,
        ],
    };
    assert!(batch.validate().is_ok(), "within the limits");
    let refused = batch.typed().expect_err("the batch is refused");
    assert!(refused.to_string().contains("\"r-2\""), "{refused}");
    // A typed report with an unknown kind cannot even be read from a spool file.
    assert!(
        serde_json::from_str::<Report>(r#"{"id":"1","kind":"quarantine","at_ms":1,"body":{}}"#)
            .is_err()
    );
}

#[test]
fn a_typed_report_is_checked_against_the_limits_as_sent() {
    let big = Report {
        id: "1".into(),
        at_ms: 0,
        body: ReportBody::Alert(serde_json::json!({
            "m": "x".repeat(limits::MAX_REPORT_BODY_BYTES)
        })),
    };
    assert!(big.validate().is_err());
    let small = Report {
        id: "1".into(),
        at_ms: 0,
        body: ReportBody::Telemetry(TelemetryReport {
            suppressed_reports: 3,
        }),
    };
    assert_eq!(small.validate(), Ok(()));
}
