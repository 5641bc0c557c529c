//! The control plane as the demo and the fault matrix see it: the operator's HTTP API, read
//! the way an operator's script would, so that every act drives the product through its public
//! interfaces.

use crate::releases::{self, CHANNEL};
use crate::{DemoError, fleet::Fleet};
use ringfence_protocol::report::{InstallOutcome, ReportBody, ReportKind};
use ringfence_uplink::{CaCert, ClientError, ServerClient};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// An operator's session with the fleet's server.
pub struct Control {
    client: ServerClient,
    release_key: PathBuf,
}

impl Control {
    /// Signs in to `fleet`'s server with its CA and operator token.
    pub fn new(fleet: &Fleet) -> Result<Control, DemoError> {
        let ca = CaCert::read_file(&fleet.ca_file())
            .map_err(|e| DemoError::Failed(format!("the server's CA: {e}")))?;
        let client = ServerClient::new(&fleet.url, Duration::from_secs(120))
            .with_ca(&ca)
            .with_credential(&fleet.operator);
        Ok(Control {
            client,
            release_key: fleet.server_dir().join("release.key"),
        })
    }

    pub fn get(&self, path: &str) -> Result<Value, DemoError> {
        Ok(self.client.get_json("demo", path)?)
    }

    pub fn post(&self, what: &'static str, path: &str, body: &Value) -> Result<Value, DemoError> {
        Ok(self.client.post_json(what, path, body)?)
    }

    /// Builds, signs and publishes `engine` with `content` as `version` of the channel.
    /// `Ok(Err(reason))` is a release preflight refused.
    pub fn publish(
        &self,
        version: &str,
        engine: &str,
        content: &str,
        notes: &str,
        skip_preflight: bool,
    ) -> Result<Result<Value, String>, DemoError> {
        let bundle = releases::build(&self.release_key, version, engine, content, notes)?;
        let path = format!("/api/v1/releases?skip_preflight={skip_preflight}");
        match self.client.post_bytes::<Value>("publish", &path, &bundle) {
            Ok(release) => Ok(Ok(release)),
            Err(ClientError::Refused {
                status: 422,
                message,
                ..
            }) => Ok(Err(message)),
            Err(error) => Err(error.into()),
        }
    }

    /// Starts a rollout of `version` in rings 1, 10, 50 and 100 % (canaries in the first).
    pub fn start_rollout(&self, version: &str, bake_s: f64) -> Result<Value, DemoError> {
        self.start_rollout_with_gates(version, bake_s, json!({}))
    }

    /// [`Control::start_rollout`] with some gate fields set (the rest keep their defaults).
    pub fn start_rollout_with_gates(
        &self,
        version: &str,
        bake_s: f64,
        gates: Value,
    ) -> Result<Value, DemoError> {
        let body = json!({"channel": CHANNEL, "version": version, "rings": "1,10,50,100", "bake_s": bake_s, "gates": gates});
        self.post("rollout", "/api/v1/rollouts", &body)
    }

    pub fn rollout(&self, id: &str) -> Result<Value, DemoError> {
        self.get(&format!("/api/v1/rollouts/{id}"))
    }

    /// Hostname → the version of the channel it reports running.
    pub fn versions(&self) -> Result<BTreeMap<String, Option<String>>, DemoError> {
        let agents = self.get("/api/v1/agents")?;
        let mut out = BTreeMap::new();
        for agent in agents["agents"].as_array().cloned().unwrap_or_default() {
            let host = agent["hostname"].as_str().unwrap_or("?").to_owned();
            out.insert(host, running(&agent));
        }
        Ok(out)
    }

    /// True when every host has reported, after `since_ms`, that it runs `version`: a report
    /// from before the halt says nothing about recovery.
    pub fn all_on_since(&self, version: &str, since_ms: i64) -> Result<bool, DemoError> {
        let agents = self.get("/api/v1/agents")?;
        Ok(agents["agents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .all(|agent| {
                running(agent).as_deref() == Some(version)
                    && agent["last_seen_at_ms"].as_i64().unwrap_or(0) > since_ms
            }))
    }

    /// The agent id the server knows `hostname` by.
    pub fn agent_id(&self, hostname: &str) -> Result<String, DemoError> {
        let agents = self.get("/api/v1/agents")?;
        agents["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|agent| agent["hostname"] == hostname)
            .and_then(|agent| agent["id"].as_str().map(str::to_owned))
            .ok_or_else(|| DemoError::Failed(format!("no agent named {hostname}")))
    }

    /// Takes an agent out of the fleet (a machine retired for good), saying why.
    pub fn decommission(&self, agent_id: &str, reason: &str) -> Result<Value, DemoError> {
        self.post(
            "decommission",
            &format!("/api/v1/agents/{agent_id}/decommission"),
            &json!({ "reason": reason }),
        )
    }

    /// Agents whose install reports say they refused `version` (it failed on their own recent
    /// events, did not verify, or took too long to install): it never served there.
    pub fn refused(&self, version: &str) -> Result<BTreeSet<String>, DemoError> {
        self.installs(version, InstallOutcome::Refused)
    }

    /// Agents whose install reports say they ran `version`.
    pub fn reached(&self, version: &str) -> Result<BTreeSet<String>, DemoError> {
        self.installs(version, InstallOutcome::Running)
    }

    /// Agents with an install report of `version` that ended in `outcome`.
    fn installs(
        &self,
        version: &str,
        outcome: InstallOutcome,
    ) -> Result<BTreeSet<String>, DemoError> {
        Ok(self
            .reports(ReportKind::Install)?
            .into_iter()
            .filter(|(_, body)| {
                matches!(body, ReportBody::Install(install)
                    if install.version == version && install.outcome == outcome)
            })
            .map(|(agent, _)| agent)
            .collect())
    }

    /// The server's reports of `kind`, as (agent id, typed body); one that does not read as
    /// its kind is left out.
    pub fn reports(&self, kind: ReportKind) -> Result<Vec<(String, ReportBody)>, DemoError> {
        let reports = self.get(&format!("/api/v1/reports?kind={kind}"))?;
        Ok(reports["reports"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| {
                let agent = r["agent_id"].as_str()?.to_owned();
                let id = r["id"].as_str().unwrap_or_default();
                let body = ReportBody::decode(id, kind.as_str(), r["body"].clone()).ok()?;
                Some((agent, body))
            })
            .collect())
    }
}

/// The version of the demo's channel an agent record says it runs: the slot it runs from.
fn running(agent: &Value) -> Option<String> {
    let release = agent["status"]["releases"]
        .as_array()?
        .iter()
        .find(|r| r["channel"] == CHANNEL)?;
    let slot = if release["running"] == "lkg" {
        "lkg"
    } else {
        "current"
    };
    release[slot].as_str().map(str::to_owned)
}
