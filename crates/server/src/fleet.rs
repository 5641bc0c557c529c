//! The server's in-memory view of what each agent should run: active rollouts and where
//! releases live. Refreshed from the database (every replica, every tick), so a heartbeat is
//! answered without touching the database.

use crate::signing::ReleaseAuthority;
use ringfence_protocol::Enforcement;
use ringfence_protocol::api::{Assignment, InstalledRelease, Remediation};
use ringfence_rollout::{RolloutSpec, RolloutState, Target, ring_of, target_for};
use ringfence_store::{RemediationRecord, RolloutRecord, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;

/// What the `spec` column of a rollout holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutDoc {
    pub spec: RolloutSpec,
    /// The version agents go back to on rollback; `None` for a channel's first rollout.
    pub previous_version: Option<String>,
    /// How hosts given the release run it: `audit` decides and reports "would deny" but
    /// blocks nothing. Documents written before audit mode existed read as `enforce`.
    #[serde(default)]
    pub mode: Enforcement,
    /// How the fleet ran `previous_version`, and so how hosts not (or no longer) given the
    /// release run it: `audit` when this rollout enforces a release an audit rollout brought.
    #[serde(default)]
    pub previous_mode: Enforcement,
    /// The audit rollout whose release this rollout enforces (`ringfence rollout enforce`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforces: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ActiveRollout {
    pub id: String,
    pub channel: String,
    pub version: String,
    pub doc: RolloutDoc,
    pub state: RolloutState,
}

impl ActiveRollout {
    pub fn from_record(record: &RolloutRecord) -> Result<ActiveRollout, StoreError> {
        let corrupt = |what, e: serde_json::Error| StoreError::Corrupt {
            what,
            reason: e.to_string(),
        };
        let doc: RolloutDoc =
            serde_json::from_value(record.spec.clone()).map_err(|e| corrupt("rollout spec", e))?;
        let mut state: RolloutState = serde_json::from_value(record.state.clone())
            .map_err(|e| corrupt("rollout state", e))?;
        // State stored before `first_release` existed: the document knows.
        state.first_release |= doc.previous_version.is_none();
        Ok(ActiveRollout {
            id: record.id.clone(),
            channel: record.channel.clone(),
            version: record.version.clone(),
            doc,
            state,
        })
    }

    /// The version this agent should run for the rollout's channel.
    pub fn version_for(&self, agent_id: &str, tags: &[String]) -> Option<&str> {
        self.target_for(agent_id, tags).map(|(version, _)| version)
    }

    /// The version this agent should run for the rollout's channel, and in which mode.
    pub fn target_for(&self, agent_id: &str, tags: &[String]) -> Option<(&str, Enforcement)> {
        let ring = ring_of(agent_id, tags, &self.id, &self.doc.spec);
        match target_for(&self.state, ring) {
            Target::New => Some((&self.version, self.doc.mode)),
            Target::Previous => self
                .doc
                .previous_version
                .as_deref()
                .map(|version| (version, self.doc.previous_mode)),
        }
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    /// Newest rollout per channel.
    latest: HashMap<String, ActiveRollout>,
    /// (channel, version) → bundle sha256.
    bundles: HashMap<(String, String), String>,
    /// agent id → tags.
    tags: HashMap<String, Vec<String>>,
    remediations: Vec<RemediationRecord>,
}

/// True when a plan's scope covers this agent.
fn in_scope(scope: &str, agent_id: &str, tags: &[String]) -> bool {
    match scope.split_once(':') {
        None => scope == "fleet",
        Some(("agent", id)) => id == agent_id,
        Some(("tag", tag)) => tags.iter().any(|t| t == tag),
        Some(_) => false,
    }
}

#[derive(Debug, Default)]
pub struct FleetCache {
    snapshot: RwLock<Snapshot>,
}

impl FleetCache {
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let mut snapshot = Snapshot::default();
        for record in store.rollouts().await? {
            // `rollouts()` is newest first: keep the first per channel.
            if snapshot.latest.contains_key(&record.channel) {
                continue;
            }
            match ActiveRollout::from_record(&record) {
                Ok(rollout) => {
                    snapshot.latest.insert(record.channel.clone(), rollout);
                }
                Err(error) => {
                    tracing::error!(rollout = %record.id, "skipping unreadable rollout: {error}")
                }
            }
        }
        for release in store.releases().await? {
            snapshot
                .bundles
                .insert((release.channel, release.version), release.bundle_sha256);
        }
        for agent in store.agents().await? {
            snapshot.tags.insert(agent.id, agent.tags);
        }
        snapshot.remediations = store.active_remediations().await?;
        if let Ok(mut current) = self.snapshot.write() {
            *current = snapshot;
        }
        Ok(())
    }

    /// The remediation plans for `agent_id`, newest per channel; pins carry a rollback
    /// directive when they go back from what the agent runs.
    pub fn remediations(
        &self,
        agent_id: &str,
        installed: &[InstalledRelease],
        authority: &ReleaseAuthority,
    ) -> Vec<Remediation> {
        let Ok(snapshot) = self.snapshot.read() else {
            return Vec::new();
        };
        let no_tags = Vec::new();
        let tags = snapshot.tags.get(agent_id).unwrap_or(&no_tags);
        let mut by_channel: HashMap<&str, &RemediationRecord> = HashMap::new();
        for plan in snapshot
            .remediations
            .iter()
            .filter(|p| in_scope(&p.scope, agent_id, tags))
        {
            // Oldest first: a later plan on the same channel wins.
            by_channel.insert(plan.channel.as_str(), plan);
        }
        let mut plans: Vec<Remediation> = by_channel
            .into_values()
            .map(|plan| {
                let running = installed
                    .iter()
                    .find(|r| r.channel == plan.channel)
                    .and_then(|r| r.current.clone());
                let rollback_directive = match (&plan.version, &running) {
                    (Some(version), Some(running))
                        if plan.action == "pin" && version != running =>
                    {
                        authority.rollback_directive(&plan.channel, running, version)
                    }
                    _ => None,
                };
                Remediation {
                    id: plan.id.clone(),
                    channel: plan.channel.clone(),
                    action: plan.action.clone(),
                    bundle_sha256: plan.version.as_ref().and_then(|v| {
                        snapshot
                            .bundles
                            .get(&(plan.channel.clone(), v.clone()))
                            .cloned()
                    }),
                    version: plan.version.clone(),
                    reason: plan.reason.clone(),
                    rollback_directive,
                }
            })
            .collect();
        plans.sort_by(|a, b| a.channel.cmp(&b.channel));
        plans
    }

    /// What `agent_id` should run on every channel with a rollout, given what it runs now.
    /// Channels under a pin or disable plan get no assignment: the plan decides there; under
    /// an audit plan the assignment stands, in audit mode.
    pub fn assignments(
        &self,
        agent_id: &str,
        installed: &[InstalledRelease],
        authority: &ReleaseAuthority,
    ) -> Vec<Assignment> {
        let Ok(snapshot) = self.snapshot.read() else {
            return Vec::new();
        };
        let no_tags = Vec::new();
        let tags = snapshot.tags.get(agent_id).unwrap_or(&no_tags);
        let mut assignments = Vec::new();
        for rollout in snapshot.latest.values() {
            // The newest plan in scope decides, as in `remediations`: a pin or a disable
            // replaces the rollout on its channel, an audit plan keeps it, in audit mode.
            let plan = snapshot
                .remediations
                .iter()
                .rfind(|p| p.channel == rollout.channel && in_scope(&p.scope, agent_id, tags));
            let audit_plan = match plan {
                None => false,
                Some(plan) if plan.action == "audit" => true,
                Some(_) => continue,
            };
            let Some((version, mode)) = rollout.target_for(agent_id, tags) else {
                continue;
            };
            let mode = if audit_plan { Enforcement::Audit } else { mode };
            let Some(bundle) = snapshot
                .bundles
                .get(&(rollout.channel.clone(), version.to_owned()))
            else {
                continue;
            };
            let running = installed
                .iter()
                .find(|r| r.channel == rollout.channel)
                .and_then(|r| r.current.as_deref());
            // Going back from the rollout's version needs the server's signed permission.
            let rollback_directive = (version != rollout.version
                && running == Some(rollout.version.as_str()))
            .then(|| authority.rollback_directive(&rollout.channel, &rollout.version, version))
            .flatten();
            assignments.push(Assignment {
                channel: rollout.channel.clone(),
                version: version.to_owned(),
                bundle_sha256: bundle.clone(),
                rollout_id: Some(rollout.id.clone()),
                rollback_directive,
                mode,
            });
        }
        assignments.sort_by(|a, b| a.channel.cmp(&b.channel));
        assignments
    }

    /// The newest rollout of every channel.
    pub fn rollouts(&self) -> Vec<ActiveRollout> {
        self.snapshot
            .read()
            .map(|s| s.latest.values().cloned().collect())
            .unwrap_or_default()
    }
}
