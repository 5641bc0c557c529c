//! Crash groups: reports that share a signature (engine, failure kind, trap code, top frames)
//! are one problem. Each group is linked to the release that carried the content and the rollout
//! that shipped it, and explained in a sentence a person can act on.

use ringfence_protocol::FailureRecord;
use ringfence_protocol::report::ReportBody;
use ringfence_store::{ReleaseRecord, ReportRecord};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::fleet::ActiveRollout;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrashGroup {
    pub signature: String,
    pub count: usize,
    pub hosts: usize,
    pub first_ms: i64,
    pub last_ms: i64,
    pub engine: String,
    pub kind: String,
    pub trap_code: Option<String>,
    pub function: Option<String>,
    pub event_kinds: Vec<String>,
    /// `channel@version` of the release whose content crashed, when known.
    pub release: Option<String>,
    pub rollout: Option<String>,
    pub summary: String,
}

struct Accumulator {
    record: FailureRecord,
    count: usize,
    hosts: BTreeSet<String>,
    first_ms: i64,
    last_ms: i64,
    event_kinds: BTreeSet<String>,
    /// When the server received the newest report (its own clock): the host cannot have been
    /// running a release published after that.
    last_received_ms: i64,
}

/// The release a host was running when its engine failed on this content: among releases that
/// carry the content (the manifest names it by hash in exactly one place) for that engine,
/// those a host could have run — published before the server received the report, and not
/// rejected by preflight (no rollout or pin ships those) — the newest. Several releases can
/// carry the same content (a re-publish, a rejected release with an unchanged rule file); the
/// first one found by hash is not necessarily the one that ran.
fn release_of<'a>(
    releases: &'a [ReleaseRecord],
    record: &FailureRecord,
    received_ms: i64,
) -> Option<&'a ReleaseRecord> {
    if record.content_sha256.is_empty() {
        return None;
    }
    releases
        .iter()
        .filter(|r| r.manifest["content"]["sha256"].as_str() == Some(&record.content_sha256))
        .filter(|r| {
            r.manifest["engine_name"]
                .as_str()
                .is_none_or(|engine| engine == record.engine)
        })
        .filter(|r| r.preflight != ringfence_store::PreflightStatus::Rejected)
        .filter(|r| r.published_at <= received_ms)
        .max_by_key(|r| r.published_at)
}

fn plain_words(group: &CrashGroup, rollout: Option<&ActiveRollout>) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if group.engine == "agent" {
        return format!(
            "the agent process died ({}); {} report{} from {} host{}; its guard restarted it, \
             and restores the last known good release after repeated crashes",
            group.trap_code.as_deref().unwrap_or("unknown cause"),
            group.count,
            plural(group.count),
            group.hosts,
            plural(group.hosts)
        );
    }
    let what = match group.kind.as_str() {
        "trap" => format!(
            "crashed{}",
            group
                .trap_code
                .as_deref()
                .map(|c| format!(" ({})", c.replace('_', " ")))
                .unwrap_or_default()
        ),
        "deadline" => "ran past its deadline".to_owned(),
        "memory" => "ran out of memory".to_owned(),
        "native" => "took the agent down (native crash)".to_owned(),
        other => other.replace('_', " "),
    };
    let place = group
        .function
        .as_deref()
        .map(|f| format!(" in {f}"))
        .unwrap_or_default();
    let on = if group.event_kinds.is_empty() {
        String::new()
    } else {
        format!(" on {} events", group.event_kinds.join("/"))
    };
    let release = group
        .release
        .as_deref()
        .map(|r| format!("release {r}: "))
        .unwrap_or_default();
    let mut sentence = format!(
        "{release}engine {} {what}{place}{on}; {} report{} from {} host{}",
        group.engine,
        group.count,
        if group.count == 1 { "" } else { "s" },
        group.hosts,
        if group.hosts == 1 { "" } else { "s" }
    );
    if let Some(rollout) = rollout {
        let ring = rollout
            .doc
            .spec
            .rings
            .get(rollout.state.ring)
            .map(|r| r.name.as_str())
            .unwrap_or("?");
        let fate = match rollout.state.phase {
            ringfence_rollout::Phase::RolledBack => {
                format!("rollout {} halted in {ring} and rolled back", rollout.id)
            }
            ringfence_rollout::Phase::Halted => {
                format!("rollout {} halted in {ring}", rollout.id)
            }
            phase => format!("rollout {} is {phase:?} in {ring}", rollout.id).to_lowercase(),
        };
        sentence.push_str("; ");
        sentence.push_str(&fate);
    }
    sentence
}

/// The failure a report describes: an engine's `FailureRecord`, or a native crash report
/// (written by the guard when the agent process dies) read as one: the agent as the "engine",
/// the signal (or exit code) as the code. A stored report that does not read as its kind (from
/// before bodies were typed) is an unknown failure, still counted.
fn record_of(report: &ReportRecord) -> FailureRecord {
    let unknown = |engine: &str, trap_code: Option<String>, message: String| FailureRecord {
        engine: engine.to_owned(),
        content_sha256: String::new(),
        kind: ringfence_protocol::FailureKind::Trap,
        trap_code,
        message,
        event_kind: None,
        backtrace: Vec::new(),
        at_unix_ns: 0,
        elapsed_us: 0,
    };
    match crate::stored_reports::body_of(report) {
        Ok(ReportBody::Failure(failure)) => failure.record,
        Ok(ReportBody::Crash(crash)) => unknown(
            &crash.engine,
            crash
                .signal
                .or_else(|| crash.exit_code.map(|code| format!("exit {code}"))),
            crash.message,
        ),
        Ok(other) => unknown("unknown", None, format!("a {} report", other.kind())),
        Err(error) => unknown("unknown", None, error.to_string()),
    }
}

/// The signature of the group a failure or crash report falls in (a host's page lists the
/// groups its own reports are in).
pub fn signature_of(report: &ReportRecord) -> String {
    record_of(report).signature()
}

/// Groups failure and crash reports.
pub fn group(
    reports: &[ReportRecord],
    releases: &[ReleaseRecord],
    rollouts: &[ActiveRollout],
) -> Vec<CrashGroup> {
    let mut groups: BTreeMap<String, Accumulator> = BTreeMap::new();
    for report in reports {
        let record = record_of(report);
        let signature = record.signature();
        let entry = groups.entry(signature).or_insert_with(|| Accumulator {
            record: record.clone(),
            count: 0,
            hosts: BTreeSet::new(),
            first_ms: report.at,
            last_ms: report.at,
            event_kinds: BTreeSet::new(),
            last_received_ms: report.received_at,
        });
        entry.last_received_ms = entry.last_received_ms.max(report.received_at);
        entry.count += 1;
        entry.hosts.insert(report.agent_id.clone());
        entry.first_ms = entry.first_ms.min(report.at);
        entry.last_ms = entry.last_ms.max(report.at);
        if let Some(kind) = &record.event_kind {
            entry.event_kinds.insert(kind.clone());
        }
    }
    let mut out: Vec<CrashGroup> = groups
        .into_iter()
        .map(|(signature, acc)| {
            let release = release_of(releases, &acc.record, acc.last_received_ms);
            let rollout = release.and_then(|r| {
                rollouts
                    .iter()
                    .find(|ro| ro.channel == r.channel && ro.version == r.version)
            });
            let mut group = CrashGroup {
                signature,
                count: acc.count,
                hosts: acc.hosts.len(),
                first_ms: acc.first_ms,
                last_ms: acc.last_ms,
                engine: acc.record.engine.clone(),
                kind: acc.record.kind.as_str().to_owned(),
                trap_code: acc.record.trap_code.clone(),
                function: acc.record.top_function().map(str::to_owned),
                event_kinds: acc.event_kinds.into_iter().collect(),
                release: release.map(|r| format!("{}@{}", r.channel, r.version)),
                rollout: rollout.map(|r| r.id.clone()),
                summary: String::new(),
            };
            group.summary = plain_words(&group, rollout);
            group
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.signature.cmp(&b.signature)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_protocol::{FailureKind, Frame};
    use ringfence_store::PreflightStatus;

    fn failure(agent: &str, at: i64) -> ReportRecord {
        let record = FailureRecord {
            engine: "faulty".into(),
            content_sha256: "c0ffee".into(),
            kind: FailureKind::Trap,
            trap_code: Some("memory_out_of_bounds".into()),
            message: "wasm trap: out of bounds memory access".into(),
            event_kind: Some("exec".into()),
            backtrace: vec![Frame {
                function: Some("faulty::parse_template".into()),
                func_index: 1,
                module_offset: Some(10),
                module: None,
            }],
            at_unix_ns: 0,
            elapsed_us: 1,
        };
        ReportRecord {
            id: format!("{agent}:{at}"),
            agent_id: agent.into(),
            kind: "failure".into(),
            at,
            received_at: at,
            body: serde_json::to_value(record).expect("serialises"),
        }
    }

    fn release(version: &str, published_at: i64, preflight: PreflightStatus) -> ReleaseRecord {
        ReleaseRecord {
            channel: "detection".into(),
            version: version.into(),
            manifest: serde_json::json!({"engine_name": "faulty", "content": {"sha256": "c0ffee"}}),
            bundle_sha256: version.into(),
            published_at,
            preflight,
            preflight_report: None,
        }
    }

    #[test]
    fn reports_belong_to_the_release_that_could_have_run_not_a_rejected_one() {
        use ringfence_store::PreflightStatus::{Passed, Rejected};
        // Newest first, as the store lists them: 3.0.0 carries the same content, but preflight
        // rejected it, and 4.0.0 was published after the reports arrived.
        let releases = [
            release("4.0.0", 500, Passed),
            release("3.0.0", 50, Rejected),
            release("2.0.0", 20, Passed),
            release("1.0.0", 10, Passed),
        ];
        let reports = [failure("a", 100), failure("b", 110)];
        let groups = group(&reports, &releases, &[]);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].release.as_deref(), Some("detection@2.0.0"));
        // Another engine's failure on the same content bytes is not this release's.
        let mut other = failure("c", 120);
        other.body["engine"] = serde_json::json!("sigma");
        let groups = group(&[other], &releases, &[]);
        assert_eq!(groups[0].release, None);
        // Only a rejected release carries it: no release, so no crash group points at it.
        let groups = group(&reports, &[release("3.0.0", 50, Rejected)], &[]);
        assert_eq!(groups[0].release, None, "{}", groups[0].summary);
        assert!(
            !groups[0].summary.contains("3.0.0"),
            "{}",
            groups[0].summary
        );
    }

    #[test]
    fn native_crashes_from_the_guard_are_grouped_in_plain_words() {
        let report = ReportRecord {
            id: "a:guard-1".into(),
            agent_id: "a".into(),
            kind: "crash".into(),
            at: 1,
            received_at: 1,
            body: serde_json::json!({"engine": "agent", "kind": "native", "signal": "SIGSEGV", "message": "the agent killed by SIGSEGV"}),
        };
        let groups = group(&[report], &[], &[]);
        assert_eq!(groups.len(), 1);
        assert!(
            groups[0]
                .summary
                .starts_with("the agent process died (SIGSEGV)"),
            "{}",
            groups[0].summary
        );
    }

    #[test]
    fn same_signature_is_one_group_in_plain_words() {
        let reports = [failure("a", 1), failure("b", 2), failure("a", 3)];
        let release = ReleaseRecord {
            channel: "detection".into(),
            version: "291.0.0".into(),
            manifest: serde_json::json!({"content": {"sha256": "c0ffee"}}),
            bundle_sha256: "x".into(),
            published_at: 0,
            preflight: ringfence_store::PreflightStatus::Skipped,
            preflight_report: None,
        };
        let groups = group(&reports, &[release], &[]);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!((g.count, g.hosts), (3, 2));
        assert_eq!(g.release.as_deref(), Some("detection@291.0.0"));
        assert!(
            g.summary.contains(
                "crashed (memory out of bounds) in faulty::parse_template on exec events"
            ),
            "{}",
            g.summary
        );
        assert!(
            g.summary
                .starts_with("release detection@291.0.0: engine faulty"),
            "{}",
            g.summary
        );
    }
}
