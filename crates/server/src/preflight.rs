//! Preflight: before any host sees a release, run it in the real engine host over a recorded
//! corpus. Any trap, deadline miss or memory failure rejects it, and so does a deny rate that
//! jumps above the channel's current release (a rule that denies `/bin/sh` is as fatal as a
//! crash). A channel's first release has no current release to compare with: its deny rate
//! must stay under an absolute ceiling instead. A release that agents would refuse (signed only
//! by a key added after they enrolled) is rejected too: it would pass here and fail on every
//! such host.
//!
//! Each result carries the corpus's coverage (events, event kinds, distinct executables), so
//! "passed" says over what. An empty or missing corpus refuses the server's start
//! ([`check_corpus`]): preflight over nothing passes everything.

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

/// What a corpus covers: shown with every preflight result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Coverage {
    pub name: String,
    pub events: usize,
    /// Event kinds present, with their counts.
    pub kinds: std::collections::BTreeMap<&'static str, usize>,
    /// Distinct executables among exec and open events.
    pub executables: usize,
}

impl Coverage {
    pub fn of(name: String, events: &[Event]) -> Coverage {
        let mut kinds = std::collections::BTreeMap::new();
        let mut executables = std::collections::HashSet::new();
        for event in events {
            *kinds.entry(event.kind()).or_insert(0) += 1;
            match event {
                Event::Exec(exec) => {
                    executables.insert(exec.exe.as_str());
                }
                Event::Open(open) if !open.exe.is_empty() => {
                    executables.insert(open.exe.as_str());
                }
                _ => {}
            }
        }
        Coverage {
            name,
            events: events.len(),
            kinds,
            executables: executables.len(),
        }
    }
}

/// Why the configured preflight corpus cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CorpusRefused {
    #[error(transparent)]
    Unreadable(#[from] corpus::CorpusError),
    #[error(
        "{0} holds no events: preflight over nothing would pass every release; record one \
         (`ringfence record`) or generate one (`ringfence corpus generate`), or omit \
         --preflight-corpus for the built-in corpus"
    )]
    Empty(String),
    #[error(
        "{name} holds {events} events and none is an exec: preflight would not see what \
         releases decide on most; use a corpus with exec events"
    )]
    NoExec { name: String, events: usize },
}

/// The corpus preflight runs over: the configured file, or the generated default.
fn load_corpus(config: &crate::ServerConfig) -> Result<(String, Vec<Event>), CorpusRefused> {
    match &config.preflight_corpus {
        Some(path) => {
            let events = corpus::read_file(path)?;
            Ok((path.display().to_string(), events))
        }
        None => Ok((
            "built-in (2000 generated events)".to_owned(),
            default_corpus().to_vec(),
        )),
    }
}

/// Reads the configured corpus once at start: a missing, unreadable or empty one, or one
/// without a single exec event (nothing to decide), is an error that names the file.
pub fn check_corpus(config: &crate::ServerConfig) -> Result<Coverage, CorpusRefused> {
    let (name, events) = load_corpus(config)?;
    let coverage = Coverage::of(name, &events);
    if coverage.events == 0 {
        return Err(CorpusRefused::Empty(coverage.name));
    }
    if !coverage.kinds.contains_key("exec") {
        return Err(CorpusRefused::NoExec {
            name: coverage.name,
            events: coverage.events,
        });
    }
    Ok(coverage)
}

/// How many agents (not decommissioned) would refuse a release signed by `signed_by`: those
/// enrolled before every one of its keys was first trusted, since agents learn the server's
/// keys only at enrollment.
pub(crate) async fn agents_refusing(
    state: &AppState,
    signed_by: &[String],
) -> ApiResult<(usize, usize)> {
    let keys = state
        .store
        .record_release_keys(&state.authority.keys())
        .await?;
    let trusted_since: Vec<i64> = keys
        .iter()
        .filter(|k| signed_by.contains(&k.key_id))
        .map(|k| k.first_trusted_at)
        .collect();
    let agents: Vec<_> = state
        .store
        .agents()
        .await?
        .into_iter()
        .filter(|a| a.decommissioned_at.is_none())
        .collect();
    let refusing = agents
        .iter()
        .filter(|agent| {
            !trusted_since
                .iter()
                .any(|since| *since <= agent.enrolled_at)
        })
        .count();
    Ok((refusing, agents.len()))
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
    let (corpus_name, events) =
        load_corpus(&state.config).map_err(|e| AppError::internal("preflight corpus", e))?;
    let coverage = Coverage::of(corpus_name, &events);
    if coverage.events == 0 {
        // Checked at start; the file changed since. Never pass a release over nothing.
        return Err(AppError::internal(
            "preflight corpus",
            format!("{} is empty now", coverage.name),
        ));
    }
    let events = Arc::new(events);
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

    let report = match result {
        Ok(report) => report,
        Err(error) => {
            return Ok(Outcome {
                status: PreflightStatus::Rejected,
                evidence: serde_json::json!({
                    "reason": format!("the release does not load: {error}"),
                    "corpus": coverage.name,
                    "coverage": coverage,
                    "load_failure": error.record,
                }),
            });
        }
    };
    let baseline = baseline_deny_rate(state, &bundle.channel).await?;
    let margin = state.config.preflight_deny_margin;
    let ceiling = state.config.preflight_first_release_max_deny_rate;
    let (refusing, agents) = agents_refusing(state, &bundle.signed_by).await?;
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
                    "; first: {} in {}, on an event of kind {}",
                    r.kind,
                    r.top_function().unwrap_or("an unnamed function"),
                    r.event_kind.as_deref().unwrap_or("?")
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
            None if deny_rate > ceiling => Some(format!(
                "deny rate {:.1}% is above the {:.1}% a channel's first release may deny (nothing to compare it with; --preflight-first-release-max-deny-rate)",
                deny_rate * 100.0,
                ceiling * 100.0
            )),
            _ if refusing > 0 => Some(format!(
                "{refusing} of {agents} agents would refuse it: it is signed only by keys \
                 ({}) the server trusted after they enrolled, and agents learn the server's \
                 keys at enrollment; sign it with a key they trust, or re-enroll them",
                bundle.signed_by.join(", ")
            )),
            _ => None,
        }
    };
    let status = if reason.is_some() {
        PreflightStatus::Rejected
    } else {
        PreflightStatus::Passed
    };
    let passed = match &baseline {
        Some(_) => "no failures; deny rate within margin of the current release",
        None => "no failures; deny rate under the first-release ceiling",
    };
    Ok(Outcome {
        status,
        evidence: serde_json::json!({
            "reason": reason.unwrap_or_else(|| passed.to_owned()),
            "corpus": coverage.name,
            "coverage": coverage,
            "events": report.events,
            "verdicts": report.verdicts,
            "failures": report.failures,
            "deny_rate": deny_rate,
            "baseline": baseline.map(|(version, rate)| serde_json::json!({"version": version, "deny_rate": rate})),
            "deny_margin": margin,
            "first_release_max_deny_rate": ceiling,
            "signed_by": bundle.signed_by,
            "agents_refusing_signer": refusing,
            "latency_us": report.latency_us,
            "first_failures": report.failure_records.iter().take(3).collect::<Vec<_>>(),
        }),
    })
}
