//! Prometheus metrics at `/metrics`, in the text exposition format.
//!
//! Protection that is off is a metric too: `ringfence_agents_degraded{reason=…}` counts hosts
//! whose last heartbeat shows a quarantined engine, a disabled channel or too many policy
//! answers (`api::status::degradation`), computed at scrape time from the database.

use crate::api::status::DegradedReason;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Degraded agents at scrape time (`api::status::degraded_counts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Degraded {
    pub any: usize,
    pub by_reason: BTreeMap<DegradedReason, usize>,
    /// Agents answering in audit mode (blocking nothing), not degraded but worth a gauge.
    pub audit_mode: usize,
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub heartbeats: AtomicU64,
    pub reports: AtomicU64,
    pub enrollments: AtomicU64,
    pub releases_published: AtomicU64,
    pub preflight_rejections: AtomicU64,
    pub auth_failures: AtomicU64,
    /// Client certificates whose enrollment or renewal committed; not those signed for a
    /// request that then failed.
    pub client_certs_issued: AtomicU64,
    /// Alerts dropped by this replica from a full outbox, summed over the sinks that lacked them.
    pub outbox_dropped: AtomicU64,
    /// Alert reports this replica deleted for retention (age or count).
    pub alerts_pruned: AtomicU64,
    /// What the connection budget did: admitted, shed, evicted, descriptors exhausted.
    pub edge: Arc<crate::tls::EdgeCounters>,
    leader: AtomicBool,
    transitions: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    pub fn count_transition(&self, action: &'static str) {
        if let Ok(mut transitions) = self.transitions.lock() {
            *transitions.entry(action).or_insert(0) += 1;
        }
    }

    /// The exposition text; `agents` and `degraded` come from the database at scrape time.
    pub fn render(&self, agents: i64, degraded: Option<&Degraded>) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "ringfence_heartbeats_total",
            "Heartbeats received.",
            self.heartbeats.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ringfence_reports_total",
            "Reports received from agents.",
            self.reports.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ringfence_enrollments_total",
            "Agents enrolled.",
            self.enrollments.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ringfence_releases_published_total",
            "Releases accepted.",
            self.releases_published.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ringfence_preflight_rejections_total",
            "Releases rejected by preflight.",
            self.preflight_rejections.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ringfence_auth_failures_total",
            "Requests refused for credentials.",
            self.auth_failures.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ringfence_client_certificates_signed_total",
            "Client certificates issued to agents by enrollments and renewals that completed.",
            self.client_certs_issued.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ringfence_outbox_overflow_dropped_total",
            "Alerts this replica dropped from a full outbox before every sink had them.",
            self.outbox_dropped.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "ringfence_alerts_pruned_total",
            "Alert reports this replica deleted past --alert-retention or --alert-retention-max.",
            self.alerts_pruned.load(Ordering::Relaxed),
        );
        let edge = &self.edge;
        for (name, help, value) in [
            (
                "ringfence_connections_admitted_total",
                "Connections accepted and given a slot.",
                &edge.admitted,
            ),
            (
                "ringfence_connections_shed_total",
                "New connections closed at once: every slot was held by authenticated ones.",
                &edge.shed,
            ),
            (
                "ringfence_connections_evicted_total",
                "Quiet unauthenticated connections closed to make room.",
                &edge.evicted,
            ),
            (
                "ringfence_accept_fd_exhausted_total",
                "Accepts that failed for want of file descriptors (EMFILE, ENFILE).",
                &edge.fd_exhausted,
            ),
        ] {
            counter(&mut out, name, help, value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP ringfence_agents Enrolled agents.\n# TYPE ringfence_agents gauge\nringfence_agents {agents}"
        );
        if let Some(degraded) = degraded {
            let _ = writeln!(
                out,
                "# HELP ringfence_agents_degraded Agents whose last heartbeat shows protection off, by reason (an agent may count under several).\n# TYPE ringfence_agents_degraded gauge"
            );
            for reason in DegradedReason::ALL {
                let _ = writeln!(
                    out,
                    "ringfence_agents_degraded{{reason=\"{}\"}} {}",
                    reason.as_str(),
                    degraded.by_reason.get(&reason).copied().unwrap_or(0)
                );
            }
            let _ = writeln!(
                out,
                "# HELP ringfence_agents_degraded_any Agents degraded for any reason.\n# TYPE ringfence_agents_degraded_any gauge\nringfence_agents_degraded_any {}",
                degraded.any
            );
            let _ = writeln!(
                out,
                "# HELP ringfence_agents_audit_mode Agents answering in audit mode: deciding and reporting would-deny, blocking nothing.\n# TYPE ringfence_agents_audit_mode gauge\nringfence_agents_audit_mode {}",
                degraded.audit_mode
            );
        }
        let _ = writeln!(
            out,
            "# HELP ringfence_controller_leader 1 if this replica runs the rollout controller.\n# TYPE ringfence_controller_leader gauge\nringfence_controller_leader {}",
            u8::from(self.is_leader())
        );
        let _ = writeln!(
            out,
            "# HELP ringfence_rollout_transitions_total Rollout transitions applied by this replica.\n# TYPE ringfence_rollout_transitions_total counter"
        );
        if let Ok(transitions) = self.transitions.lock() {
            for (action, count) in transitions.iter() {
                let _ = writeln!(
                    out,
                    "ringfence_rollout_transitions_total{{action=\"{action}\"}} {count}"
                );
            }
        }
        out
    }
}

/// Reads one figure out of a sink's state.
type SinkFigure = fn(&ringfence_store::SinkState) -> i64;

/// Per-sink figures from the store (shared by every replica): appended to the exposition.
pub fn render_sinks(out: &mut String, sinks: &[ringfence_store::SinkState]) {
    let families: [(&str, &str, &str, SinkFigure); 6] = [
        (
            "ringfence_sink_outbox_depth",
            "gauge",
            "Alerts in the outbox this sink has not taken yet.",
            |s| s.depth,
        ),
        (
            "ringfence_sink_lag_seconds",
            "gauge",
            "How long the oldest alert waiting for this sink has waited.",
            |s| s.lag_ms / 1000,
        ),
        (
            "ringfence_sink_sent_total",
            "counter",
            "Alerts this sink accepted (resends after a lost answer count again).",
            |s| s.sent,
        ),
        (
            "ringfence_sink_failed_total",
            "counter",
            "Attempts to send a batch to this sink that failed.",
            |s| s.failures,
        ),
        (
            "ringfence_sink_dropped_total",
            "counter",
            "Alerts dropped from a full outbox before this sink had them.",
            |s| s.dropped,
        ),
        (
            "ringfence_sink_up",
            "gauge",
            "1 if the last attempt to send to this sink succeeded (or none failed yet).",
            |s| i64::from(s.last_error.is_none()),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for sink in sinks {
            let _ = writeln!(out, "{name}{{sink=\"{}\"}} {}", sink.sink, value(sink));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_edge_did_is_exported() {
        let metrics = Metrics::default();
        metrics.edge.fd_exhausted.fetch_add(3, Ordering::Relaxed);
        metrics.edge.evicted.fetch_add(2, Ordering::Relaxed);
        let text = metrics.render(0, None);
        assert!(
            text.contains("\nringfence_accept_fd_exhausted_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("\nringfence_connections_evicted_total 2\n"),
            "{text}"
        );
    }
}
