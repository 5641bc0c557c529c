//! Counting failures in a sliding window, and the report written when an engine+content is
//! quarantined.

use crate::limits::QuarantineRule;
use ringfence_protocol::{FailureKind, FailureRecord};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Why an engine+content stopped being called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineReport {
    pub engine: String,
    pub content_sha256: String,
    /// Failures inside the window when the rule tripped.
    pub failures: u32,
    pub window_s: u64,
    /// Those failures by kind.
    pub kinds: BTreeMap<FailureKind, u32>,
    /// A sentence for people.
    pub message: String,
    /// The failure that tripped the rule.
    pub last_failure: FailureRecord,
}

pub(crate) struct FailureWindow {
    rule: QuarantineRule,
    recent: VecDeque<(Instant, FailureKind)>,
}

impl FailureWindow {
    pub(crate) fn new(rule: QuarantineRule) -> FailureWindow {
        FailureWindow {
            rule,
            recent: VecDeque::new(),
        }
    }

    /// Records a failure; returns the report when this failure trips the rule.
    pub(crate) fn record(
        &mut self,
        now: Instant,
        failure: &FailureRecord,
    ) -> Option<QuarantineReport> {
        while let Some(&(at, _)) = self.recent.front() {
            if now.duration_since(at) > self.rule.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back((now, failure.kind));
        let failures = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        if failures < self.rule.failures {
            return None;
        }
        let mut kinds = BTreeMap::new();
        for &(_, kind) in &self.recent {
            *kinds.entry(kind).or_insert(0) += 1;
        }
        let summary: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        Some(QuarantineReport {
            engine: failure.engine.clone(),
            content_sha256: failure.content_sha256.clone(),
            failures,
            window_s: self.rule.window.as_secs(),
            message: format!(
                "engine {} with content {} quarantined after {failures} failures in {} s ({}); \
                 its failure policy answers for it until new content arrives",
                failure.engine,
                short(&failure.content_sha256),
                self.rule.window.as_secs(),
                summary.join(", ")
            ),
            kinds,
            last_failure: failure.clone(),
        })
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn failure(kind: FailureKind) -> FailureRecord {
        crate::classify::load_failure("e", "abc", kind, String::new())
    }

    #[test]
    fn trips_at_k_within_window() {
        let rule = QuarantineRule {
            failures: 3,
            window: Duration::from_secs(10),
        };
        let mut window = FailureWindow::new(rule);
        let t0 = Instant::now();
        assert!(window.record(t0, &failure(FailureKind::Trap)).is_none());
        assert!(window.record(t0, &failure(FailureKind::Deadline)).is_none());
        let report = window
            .record(t0 + Duration::from_secs(1), &failure(FailureKind::Trap))
            .expect("third failure trips");
        assert_eq!(report.failures, 3);
        assert_eq!(report.kinds[&FailureKind::Trap], 2);
    }

    #[test]
    fn old_failures_age_out() {
        let rule = QuarantineRule {
            failures: 2,
            window: Duration::from_secs(1),
        };
        let mut window = FailureWindow::new(rule);
        let t0 = Instant::now();
        assert!(window.record(t0, &failure(FailureKind::Trap)).is_none());
        assert!(
            window
                .record(t0 + Duration::from_secs(5), &failure(FailureKind::Trap))
                .is_none()
        );
    }
}
