//! How far a rollout has got, for the dashboard: how many hosts of each ring run its release
//! (adoption), and each gate's values over the rollout (the history the controller keeps in
//! the store) with the unit a reader needs to show them.

use crate::auth::Operator;
use crate::error::{ApiResult, AppError};
use crate::fleet::ActiveRollout;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use ringfence_rollout::ring_of;
use ringfence_store::{AgentRecord, GateSample};
use serde::{Deserialize, Serialize};

/// How far a rollout's release has reached in each ring: hosts in the ring (rings are
/// cumulative, so ring 2 counts rings 0–2) and how many of them report running the release.
/// Decommissioned hosts are left out, as the gates leave them out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingAdoption {
    pub hosts: usize,
    pub on_release: usize,
}

/// What adoption is computed from: each live host's ring-membership inputs and the version it
/// reports running on each channel, read from its heartbeat once per request rather than once
/// per rollout.
pub struct Placements(Vec<Placement>);

/// One host for [`adoption`]: agent id, tags, and `(channel, version)` it runs.
struct Placement {
    id: String,
    tags: Vec<String>,
    running: Vec<(String, String)>,
}

impl Placements {
    pub fn of(agents: &[AgentRecord]) -> Placements {
        Placements(
            agents
                .iter()
                .filter(|a| a.decommissioned_at.is_none())
                .map(|agent| {
                    let heartbeat = crate::controller::heartbeat_of(agent);
                    let running = heartbeat
                        .releases
                        .iter()
                        .filter_map(|r| {
                            let version =
                                crate::controller::running_version(&heartbeat, &r.channel)?;
                            Some((r.channel.clone(), version))
                        })
                        .collect();
                    Placement {
                        id: agent.id.clone(),
                        tags: agent.tags.clone(),
                        running,
                    }
                })
                .collect(),
        )
    }
}

/// [`RingAdoption`] for every ring of `rollout`.
pub fn adoption(rollout: &ActiveRollout, hosts: &Placements) -> Vec<RingAdoption> {
    let rings = rollout.doc.spec.rings.len();
    let mut out = vec![RingAdoption::default(); rings];
    for host in &hosts.0 {
        let first = ring_of(&host.id, &host.tags, &rollout.id, &rollout.doc.spec);
        let on_release = host
            .running
            .iter()
            .any(|(channel, version)| *channel == rollout.channel && *version == rollout.version);
        for ring in out.iter_mut().skip(first) {
            ring.hosts += 1;
            ring.on_release += usize::from(on_release);
        }
    }
    out
}

/// One gate's values over the rollout, oldest first, in the gate's own unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSeries {
    pub gate: String,
    /// `per_agent`, `hosts`, `share`, `us`, `per_1k_events`, `percent` or `bytes`: what a
    /// reader needs to show the figure in words (MiB, ms, %).
    pub unit: String,
    pub points: Vec<GatePoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatePoint {
    pub at_ms: i64,
    pub ring: i64,
    pub value: f64,
    pub threshold: f64,
    pub passed: bool,
}

/// `GET /api/v1/rollouts/{id}/gates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateHistory {
    pub rollout_id: String,
    pub gates: Vec<GateSeries>,
}

/// The unit of a gate's value and threshold.
pub fn gate_unit(gate: &str) -> &'static str {
    match gate {
        "crashes" => "per_agent",
        "quarantine" => "hosts",
        "heartbeat_loss" | "deny_rate" | "policy_answers" | "adoption" => "share",
        "latency_p99" => "us",
        "engine_failures" => "per_1k_events",
        "cpu" => "percent",
        "rss" => "bytes",
        _ => "",
    }
}

/// Groups samples (oldest first) into one series per gate, gates in the order first seen.
pub fn gate_series(samples: Vec<GateSample>) -> Vec<GateSeries> {
    let mut series: Vec<GateSeries> = Vec::new();
    for sample in samples {
        let point = GatePoint {
            at_ms: sample.at_ms,
            ring: sample.ring,
            value: sample.value,
            threshold: sample.threshold,
            passed: sample.passed,
        };
        match series.iter_mut().find(|s| s.gate == sample.gate) {
            Some(existing) => existing.points.push(point),
            None => series.push(GateSeries {
                unit: gate_unit(&sample.gate).to_owned(),
                gate: sample.gate,
                points: vec![point],
            }),
        }
    }
    series
}

pub async fn gates(
    State(state): State<AppState>,
    _operator: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<GateHistory>> {
    if state.store.rollout(&id).await?.is_none() {
        return Err(AppError::not_found(format!("no rollout {id}")));
    }
    let samples = state.store.gate_samples(&id).await?;
    Ok(Json(GateHistory {
        rollout_id: id,
        gates: gate_series(samples),
    }))
}
