//! Preflight: before any host sees a release, run it in the real engine host over a recorded
//! corpus. Any trap, deadline miss or memory failure rejects it, and so does a deny rate that
//! jumps above the channel's current release (a rule that denies `/bin/sh` is as fatal as a
//! crash).

use crate::error::{ApiResult, AppError};
use crate::signing::PublishedBundle;
use crate::state::AppState;
use ringfence_engine_host::{EngineSettings, LoadedEngine, run_corpus};
use ringfence_protocol::{Event, corpus};
use ringfence_store::{PreflightStatus, ReleaseRecord};
use std::sync::{Arc, OnceLock};

/// The corpus preflight uses when none is configured: generated, so it ships with the binary.
fn default_corpus() -> &'static [Event] {
    static CORPUS: OnceLock<Vec<Event>> = OnceLock::new();
    CORPUS.get_or_init(|| corpus::generate(2_000, 20_240_719))
}

pub struct Outcome {
    pub status: PreflightStatus,
    /// What was run and what happened: stored with the release and shown to operators.
    pub evidence: serde_json::Value,
}

/// The deny rate of the release the channel runs now, from its own preflight.
async fn baseline_deny_rate(state: &AppState, channel: &str) -> ApiResult<Option<(String, f64)>> {
    let current = state
        .fleet
        .rollouts()
        .into_iter()
        .find(|r| r.channel == channel)
        .and_then(|r| match r.state.phase {
            ringfence_rollout::Phase::Completed => Some(r.version),
            _ => r.doc.previous_version,
        });
    let releases: Vec<ReleaseRecord> = state
        .store
        .releases()
        .await?
        .into_iter()
        .filter(|r| r.channel == channel && r.preflight == PreflightStatus::Passed)
        .collect();
    let chosen = match current {
        Some(version) => releases.iter().find(|r| r.version == version),
        None => releases.first(),
    };
    Ok(chosen.and_then(|release| {
        let rate = release
            .preflight_report
            .as_ref()?
            .get("deny_rate")?
            .as_f64()?;
        Some((release.version.clone(), rate))
    }))
}

pub async fn run(state: &AppState, bundle: &PublishedBundle) -> ApiResult<Outcome> {
    let events: Arc<Vec<Event>> = Arc::new(match &state.config.preflight_corpus {
        Some(path) => {
            corpus::read_file(path).map_err(|e| AppError::internal("preflight corpus", e))?
        }
        None => default_corpus().to_vec(),
    });
    let Some(engine_bytes) = bundle.engine.clone() else {
        return Err(AppError::bad_request(
            "preflight needs the engine component in the bundle; include --engine when building",
        ));
    };
    let mut settings = EngineSettings::new(bundle.engine_name.clone()).with_policy(bundle.policy);
    // Preflight counts every failure instead of quarantining after a few.
    settings.quarantine.failures = u32::MAX;
    let runtime = state.engines.clone();
    let content = bundle.content.clone().unwrap_or_default();
    let corpus_events = Arc::clone(&events);
    let result = tokio::task::spawn_blocking(move || {
        let engine = LoadedEngine::load(&runtime, settings, &engine_bytes, &content)?;
        run_corpus(&engine, &corpus_events)
    })
    .await
    .map_err(|e| AppError::internal("preflight task", e))?;

    let corpus_name = state
        .config
        .preflight_corpus
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in (2000 generated events)".to_owned());
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            return Ok(Outcome {
                status: PreflightStatus::Rejected,
                evidence: serde_json::json!({
                    "reason": format!("the release does not load: {error}"),
                    "corpus": corpus_name,
                    "load_failure": error.record,
                }),
            });
        }
    };
    let baseline = baseline_deny_rate(state, &bundle.channel).await?;
    let margin = state.config.preflight_deny_margin;
    let deny_rate = report.deny_rate();
    let failed = report.failed_events();
    let reason = if failed > 0 {
        let kinds: Vec<String> = report
            .failures
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        let place = report
            .failure_records
            .first()
            .map(|r| {
                format!(
                    "; first: {} on a {} event in {}",
                    r.kind,
                    r.event_kind.as_deref().unwrap_or("?"),
                    r.top_function().unwrap_or("an unnamed function")
                )
            })
            .unwrap_or_default();
        Some(format!(
            "{failed} of {} events failed ({}){place}",
            report.events,
            kinds.join(", ")
        ))
    } else {
        match &baseline {
            Some((version, base)) if deny_rate > base + margin => Some(format!(
                "deny rate {:.1}% is above the current release {version}'s {:.1}% by more than {:.1} points",
                deny_rate * 100.0,
                base * 100.0,
                margin * 100.0
            )),
            _ => None,
        }
    };
    let status = if reason.is_some() {
        PreflightStatus::Rejected
    } else {
        PreflightStatus::Passed
    };
    Ok(Outcome {
        status,
        evidence: serde_json::json!({
            "reason": reason.unwrap_or_else(|| "no failures; deny rate within margin".to_owned()),
            "corpus": corpus_name,
            "events": report.events,
            "verdicts": report.verdicts,
            "failures": report.failures,
            "deny_rate": deny_rate,
            "baseline": baseline.map(|(version, rate)| serde_json::json!({"version": version, "deny_rate": rate})),
            "deny_margin": margin,
            "latency_us": report.latency_us,
            "first_failures": report.failure_records.iter().take(3).collect::<Vec<_>>(),
        }),
    })
}
