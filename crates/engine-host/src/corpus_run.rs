//! Runs a whole corpus through an engine and summarises what happened: the vendor's local
//! check (`ringfence engine test`) and the server's preflight use the same code.

use crate::loaded::{ContentSummary, LoadError, LoadedEngine};
use crate::quarantine::QuarantineReport;
use crate::worker::EngineWorker;
use ringfence_protocol::{Action, Event, FailureKind, FailureRecord};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Failure records kept verbatim in a report; the counts cover the rest.
const MAX_RECORDS: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

impl LatencySummary {
    /// From per-event latencies in nanoseconds; the summary is in microseconds.
    pub fn from_nanos(mut nanos: Vec<u64>) -> LatencySummary {
        if nanos.is_empty() {
            return LatencySummary::default();
        }
        nanos.sort_unstable();
        let at = |q: f64| {
            let index = ((nanos.len() as f64 * q).ceil() as usize).clamp(1, nanos.len()) - 1;
            nanos[index] / 1000
        };
        let sum: u128 = nanos.iter().map(|&n| u128::from(n)).sum();
        LatencySummary {
            p50: at(0.50),
            p99: at(0.99),
            max: nanos[nanos.len() - 1] / 1000,
            mean: sum as f64 / nanos.len() as f64 / 1000.0,
        }
    }
}

/// What `ringfence engine test --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusReport {
    pub engine: String,
    pub content_sha256: String,
    pub content: ContentSummary,
    pub events: u64,
    /// Counts by action: `allow`, `observe`, `deny`.
    pub verdicts: BTreeMap<String, u64>,
    /// Counts by failure kind.
    pub failures: BTreeMap<String, u64>,
    /// Matches per rule id, for verdicts other than a plain allow.
    pub rules: BTreeMap<String, u64>,
    pub latency_us: LatencySummary,
    pub peak_memory_bytes: usize,
    /// The first failures, verbatim.
    pub failure_records: Vec<FailureRecord>,
    /// Deadline misses that passed when the event was run again: the machine was busy, not
    /// the engine slow. An engine that is really slow misses every retry and fails.
    pub transient_deadlines: u64,
    pub quarantine: Option<QuarantineReport>,
}

impl CorpusReport {
    pub fn failed_events(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Share of events denied, 0.0–1.0.
    pub fn deny_rate(&self) -> f64 {
        if self.events == 0 {
            return 0.0;
        }
        self.verdicts.get("deny").copied().unwrap_or(0) as f64 / self.events as f64
    }
}

/// How often an event that missed its deadline is tried again before it counts as failed.
pub const DEADLINE_RETRIES: u32 = 2;

/// Decides every event, one call each (on-event for permission events, a batch of one for
/// notifications, as the agent calls them), in one worker.
pub fn run_corpus(engine: &Arc<LoadedEngine>, events: &[Event]) -> Result<CorpusReport, LoadError> {
    let mut worker = EngineWorker::new(Arc::clone(engine))?;
    worker.wait_for_spare(Duration::from_secs(5));
    let mut report = CorpusReport {
        engine: engine.name().to_owned(),
        content_sha256: engine.content_sha256().to_owned(),
        content: engine.content_summary().clone(),
        events: 0,
        verdicts: BTreeMap::new(),
        failures: BTreeMap::new(),
        rules: BTreeMap::new(),
        latency_us: LatencySummary::default(),
        peak_memory_bytes: 0,
        failure_records: Vec::new(),
        transient_deadlines: 0,
        quarantine: None,
    };
    let mut latencies = Vec::with_capacity(events.len());
    // Each event through the call the agent uses for its kind: permission events one by one,
    // notifications as batches (of one, so each still has its own latency and failure).
    let mut decide = |event: &Event| {
        if event.is_permission() {
            worker.decide(event)
        } else {
            worker
                .decide_batch(std::slice::from_ref(event))
                .pop()
                .unwrap_or_else(|| worker.decide(event))
        }
    };
    for event in events {
        let mut decision = decide(event);
        // A descheduled thread also misses deadlines; only a miss that repeats is the engine's.
        let mut retries = 0;
        while retries < DEADLINE_RETRIES
            && decision.failure.as_ref().map(|f| f.kind) == Some(FailureKind::Deadline)
        {
            retries += 1;
            let again = decide(event);
            if again.failure.is_none() {
                report.transient_deadlines += 1;
            }
            decision = again;
        }
        report.events += 1;
        latencies.push(u64::try_from(decision.elapsed.as_nanos()).unwrap_or(u64::MAX));
        *report
            .verdicts
            .entry(decision.verdict.action.as_str().to_owned())
            .or_insert(0) += 1;
        if decision.verdict.action != Action::Allow && !decision.verdict.rule_id.is_empty() {
            *report
                .rules
                .entry(decision.verdict.rule_id.clone())
                .or_insert(0) += 1;
        }
        if let Some(record) = decision.failure {
            *report
                .failures
                .entry(record.kind.as_str().to_owned())
                .or_insert(0) += 1;
            if report.failure_records.len() < MAX_RECORDS {
                report.failure_records.push(record);
            }
        }
        if let Some(quarantine) = decision.quarantined {
            report.quarantine = Some(quarantine);
        }
    }
    report.latency_us = LatencySummary::from_nanos(latencies);
    report.peak_memory_bytes = worker.peak_memory();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let summary = LatencySummary::from_nanos((1..=100).map(|n| n * 1000).collect());
        assert_eq!(summary.p50, 50);
        assert_eq!(summary.p99, 99);
        assert_eq!(summary.max, 100);
    }
}
