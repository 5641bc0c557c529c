//! What operators ask about alerts without a SIEM at hand: the newest alerts by time, host,
//! rule and severity (`GET /api/v1/alerts`), and how each sink keeps up with them
//! (`GET /api/v1/sinks`).
//!
//! Host and time are filtered by the store in SQL; rule and severity live in the OCSF body and
//! are judged here on the parsed JSON, so SQLite and PostgreSQL answer the same.

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::sinks::SinkKind;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use ringfence_store::{AlertFilter, ReportRecord};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Alerts listed when the caller gives no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The most alerts one request lists.
pub const MAX_LIMIT: usize = 10_000;

/// `GET /api/v1/alerts` parameters, as text: each is checked here so a bad one is answered
/// with what is wrong with it, not a generic parse error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// Received by the server at or after this time (ms since the epoch).
    pub since_ms: Option<String>,
    /// An agent id or a hostname.
    pub host: Option<String>,
    /// Part of the rule id (case-insensitive).
    pub rule: Option<String>,
    /// An OCSF severity name (`high`) or id (`4`).
    pub severity: Option<String>,
    pub limit: Option<String>,
}

/// The OCSF severities: (id, name). `info` is accepted for `Informational`.
const SEVERITIES: [(i64, &str); 8] = [
    (0, "Unknown"),
    (1, "Informational"),
    (2, "Low"),
    (3, "Medium"),
    (4, "High"),
    (5, "Critical"),
    (6, "Fatal"),
    (99, "Other"),
];

/// The OCSF `severity_id` a parameter names, by id or name.
pub fn parse_severity(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(id) = text.parse::<i64>() {
        return SEVERITIES
            .iter()
            .any(|(known, _)| *known == id)
            .then_some(id);
    }
    if text.eq_ignore_ascii_case("info") {
        return Some(1);
    }
    SEVERITIES
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case(text))
        .map(|(id, _)| *id)
}

/// One alert as `GET /api/v1/alerts` lists it: the fields a table shows, pulled out of the OCSF
/// body, and the body itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEntry {
    /// The event id (agent-scoped report id), the same `metadata.uid` the sinks carry.
    pub id: String,
    pub agent_id: String,
    /// The name the agent enrolled under; `None` for the server's own alerts.
    pub hostname: Option<String>,
    /// When the server stored it (its clock).
    pub received_at_ms: i64,
    /// When the agent says it happened (a claim).
    pub at_ms: i64,
    pub severity_id: Option<i64>,
    pub severity: Option<String>,
    /// `unmapped.ringfence.rule_id` (agents) or `.rule` (the server's own alerts).
    pub rule: Option<String>,
    pub message: Option<String>,
    /// The OCSF object the agent uploaded.
    pub body: serde_json::Value,
}

/// `GET /api/v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertList {
    /// Newest first.
    pub alerts: Vec<AlertEntry>,
    /// The limit applied: when `alerts` is this long, older matches may exist.
    pub limit: usize,
}

/// The rule an alert names: agents write `rule_id`, the server's own alerts `rule`.
fn rule_of(body: &serde_json::Value) -> Option<&str> {
    let ringfence = &body["unmapped"]["ringfence"];
    ringfence["rule_id"]
        .as_str()
        .or_else(|| ringfence["rule"].as_str())
}

/// Whether `body` names a rule containing `needle` (lowercase): the alert's own rule, or that
/// of one of the engines that judged it.
fn matches_rule(body: &serde_json::Value, needle: &str) -> bool {
    let hit = |rule: Option<&str>| rule.is_some_and(|r| r.to_lowercase().contains(needle));
    hit(rule_of(body))
        || body["unmapped"]["ringfence"]["engines"]
            .as_array()
            .is_some_and(|engines| engines.iter().any(|e| hit(e["rule_id"].as_str())))
}

/// The checked parameters.
struct Parsed {
    filter: AlertFilter,
    rule: Option<String>,
    severity: Option<i64>,
    limit: usize,
}

fn parse(query: AlertsQuery) -> Result<Parsed, AppError> {
    let since_ms = match query.since_ms.as_deref() {
        None => None,
        Some(text) => match text.trim().parse::<i64>() {
            Ok(ms) if ms >= 0 => Some(ms),
            _ => {
                return Err(AppError::bad_request(format!(
                    "since_ms must be milliseconds since the epoch (a whole number, 0 or more), not {text:?}"
                )));
            }
        },
    };
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(AppError::bad_request(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, not {text:?}"
                )));
            }
        },
    };
    let severity = match query.severity.as_deref() {
        None => None,
        Some(text) => Some(parse_severity(text).ok_or_else(|| {
            AppError::bad_request(format!(
                "severity {text:?} is not an OCSF severity: use a name (informational, low, \
                 medium, high, critical, fatal, unknown, other) or its id (0-6, 99)"
            ))
        })?),
    };
    let text = |name: &str, value: Option<String>| -> Result<Option<String>, AppError> {
        match value {
            None => Ok(None),
            Some(v) if v.is_empty() || v.len() > 256 => {
                Err(AppError::bad_request(format!("{name} must be 1-256 bytes")))
            }
            Some(v) => Ok(Some(v)),
        }
    };
    Ok(Parsed {
        filter: AlertFilter {
            since_ms,
            host: text("host", query.host)?,
        },
        rule: text("rule", query.rule)?.map(|r| r.to_lowercase()),
        severity,
        limit,
    })
}

pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
    Query(query): Query<AlertsQuery>,
) -> ApiResult<Json<AlertList>> {
    let parsed = parse(query)?;
    let keep = |record: &ReportRecord| {
        let body = &record.body;
        parsed
            .severity
            .is_none_or(|id| body["severity_id"].as_i64() == Some(id))
            && parsed
                .rule
                .as_deref()
                .is_none_or(|needle| matches_rule(body, needle))
    };
    let records = state
        .store
        .alerts(&parsed.filter, parsed.limit, keep)
        .await?;
    // Hostnames of the agents in this page only: a large fleet's full list is not read.
    let mut hostnames: HashMap<String, Option<String>> = HashMap::new();
    let mut alerts = Vec::with_capacity(records.len());
    for record in records {
        let hostname = match hostnames.get(&record.agent_id) {
            Some(known) => known.clone(),
            None => {
                let name = state
                    .store
                    .agent(&record.agent_id)
                    .await?
                    .map(|a| a.hostname);
                hostnames.insert(record.agent_id.clone(), name.clone());
                name
            }
        };
        let body = &record.body;
        alerts.push(AlertEntry {
            hostname,
            received_at_ms: record.received_at,
            at_ms: record.at,
            severity_id: body["severity_id"].as_i64(),
            severity: body["severity"].as_str().map(str::to_owned),
            rule: rule_of(body).map(str::to_owned),
            message: body["message"].as_str().map(str::to_owned),
            id: record.id,
            agent_id: record.agent_id,
            body: record.body,
        });
    }
    Ok(Json(AlertList {
        alerts,
        limit: parsed.limit,
    }))
}

/// One sink as `GET /api/v1/sinks` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkStatus {
    pub name: String,
    /// `syslog` or `kafka`; `unknown` for a cursor left by a sink no longer configured.
    pub kind: String,
    /// Where it sends (`host:port`, or brokers and topic); no credentials.
    pub target: Option<String>,
    /// Configured on this replica; a sink that was removed keeps its cursor and counts.
    pub configured: bool,
    /// The last outbox sequence number it took.
    pub cursor: i64,
    /// Alerts in the outbox it has not taken yet.
    pub depth: i64,
    /// How long the oldest alert waiting for it has waited (ms).
    pub lag_ms: i64,
    pub sent: i64,
    /// Failed attempts to send a batch.
    pub failed: i64,
    /// Alerts dropped from a full outbox before it had them.
    pub dropped: i64,
    /// Why the last attempt failed; `None` once one succeeds.
    pub last_error: Option<String>,
    pub last_success_at_ms: Option<i64>,
}

/// `GET /api/v1/sinks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkList {
    pub sinks: Vec<SinkStatus>,
    /// Alerts the outbox may hold before the oldest are dropped.
    pub outbox_max: i64,
}

fn kind_and_target(kind: &SinkKind) -> (&'static str, String) {
    match kind {
        SinkKind::Syslog(c) => ("syslog", format!("{}:{}", c.host, c.port)),
        SinkKind::Kafka(c) => ("kafka", format!("{}/{}", c.brokers.join(","), c.topic)),
    }
}

pub async fn sinks(
    State(state): State<AppState>,
    _operator: Operator,
) -> ApiResult<Json<SinkList>> {
    let mut states: HashMap<String, ringfence_store::SinkState> = state
        .store
        .sink_states()
        .await?
        .into_iter()
        .map(|s| (s.sink.clone(), s))
        .collect();
    let settings = &state.config.sinks;
    let mut sinks = Vec::new();
    for sink in &settings.sinks {
        let (kind, target) = kind_and_target(&sink.kind);
        // Before its forwarder registered it, a sink has no cursor: nothing sent, nothing lost.
        let progress = states.remove(&sink.name);
        sinks.push(status(
            &sink.name,
            kind,
            Some(target),
            true,
            progress.as_ref(),
        ));
    }
    let mut left: Vec<_> = states.into_values().collect();
    left.sort_by(|a, b| a.sink.cmp(&b.sink));
    for progress in &left {
        sinks.push(status(
            &progress.sink,
            "unknown",
            None,
            false,
            Some(progress),
        ));
    }
    Ok(Json(SinkList {
        sinks,
        outbox_max: settings.outbox_max,
    }))
}

fn status(
    name: &str,
    kind: &str,
    target: Option<String>,
    configured: bool,
    progress: Option<&ringfence_store::SinkState>,
) -> SinkStatus {
    SinkStatus {
        name: name.to_owned(),
        kind: kind.to_owned(),
        target,
        configured,
        cursor: progress.map_or(0, |p| p.delivered),
        depth: progress.map_or(0, |p| p.depth),
        lag_ms: progress.map_or(0, |p| p.lag_ms),
        sent: progress.map_or(0, |p| p.sent),
        failed: progress.map_or(0, |p| p.failures),
        dropped: progress.map_or(0, |p| p.dropped),
        last_error: progress.and_then(|p| p.last_error.clone()),
        last_success_at_ms: progress.and_then(|p| p.last_sent_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_are_named_or_numbered() {
        assert_eq!(parse_severity("high"), Some(4));
        assert_eq!(parse_severity("HIGH"), Some(4));
        assert_eq!(parse_severity("4"), Some(4));
        assert_eq!(parse_severity("info"), Some(1));
        assert_eq!(parse_severity("99"), Some(99));
        assert_eq!(parse_severity("7"), None);
        assert_eq!(parse_severity("severe"), None);
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        let bad = |query: AlertsQuery| match parse(query) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.message,
        };
        let msg = bad(AlertsQuery {
            limit: Some("0".into()),
            ..AlertsQuery::default()
        });
        assert!(msg.contains("limit"), "{msg}");
        let msg = bad(AlertsQuery {
            since_ms: Some("yesterday".into()),
            ..AlertsQuery::default()
        });
        assert!(msg.contains("since_ms"), "{msg}");
        let msg = bad(AlertsQuery {
            severity: Some("severe".into()),
            ..AlertsQuery::default()
        });
        assert!(msg.contains("severity"), "{msg}");
    }

    #[test]
    fn a_rule_matches_the_alert_or_one_of_its_engines() {
        let body = serde_json::json!({"unmapped": {"ringfence": {
            "rule_id": "ssh-keys",
            "engines": [{"rule_id": "sigma:proc_creation_curl"}],
        }}});
        assert!(matches_rule(&body, "ssh"));
        assert!(matches_rule(&body, "curl"));
        assert!(!matches_rule(&body, "wget"));
        let server = serde_json::json!({"unmapped": {"ringfence": {"rule": "outbox-overflow"}}});
        assert_eq!(rule_of(&server), Some("outbox-overflow"));
    }
}
