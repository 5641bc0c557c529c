//! `ringfence status`: the fleet from the server in a few lines, or with `--host` this machine
//! in plain words — what the guard and agent are doing, which release runs from which slot, the
//! last restore and why, reports waiting to be sent.
//!
//! Protection that is off is never a bare version: degraded hosts (the server's
//! `api::status::degradation`) are listed with their reasons, a disabled channel says
//! `disabled`, and `--check` exits 1 when anything is degraded (2 stays "could not tell").

use super::operator::{OperatorArgs, TrustArgs};
use anyhow::Context;
use ringfence_protocol::api::Heartbeat;
use ringfence_release::SlotStore;
use ringfence_server::api::status::FleetStatus;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  ringfence status\n  ringfence status --json\n  # This host: guard, agent, slots, spool; exit 1 unless it serves on the current release\n  ringfence status --host --check"
)]
pub struct StatusArgs {
    /// Describe this host (guard, agent, slots, spool) instead of the fleet.
    #[arg(long)]
    host: bool,
    /// The host's data directory (with --host).
    #[arg(long, default_value = "/var/lib/ringfence")]
    data_dir: PathBuf,
    /// Server URL (fleet view).
    #[arg(
        long,
        env = "RINGFENCE_SERVER",
        default_value = "https://127.0.0.1:7700"
    )]
    server: String,
    #[command(flatten)]
    trust: TrustArgs,
    /// Operator API token (fleet view).
    #[arg(long, env = "RINGFENCE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Exit 1 when protection is off somewhere: a degraded host in the fleet view; with --host,
    /// a guard that is not running its agent or runs the last known good release.
    #[arg(long)]
    check: bool,
}

/// `--check` found protection off.
const DEGRADED: u8 = 1;

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if args.host {
        return host(&args);
    }
    let token = args.token.clone().context(
        "give --token (or RINGFENCE_TOKEN) for the fleet view, or --host for this machine",
    )?;
    let operator = OperatorArgs {
        server: args.server.clone(),
        trust: args.trust.clone(),
        token,
    };
    fleet(&operator, args.json, args.check)
}

fn host(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let guard =
        ringfence_guard::status::read(&ringfence_guard::supervisor::status_path(&args.data_dir));
    let identity = ringfence_uplink::Identity::load(&args.data_dir.join("identity.json"))
        .ok()
        .flatten();
    let mut channels = Vec::new();
    // Opening a slot store creates its directories; a status command only looks.
    let slots_dir = args.data_dir.join("slots");
    if let Some(slots) = slots_dir
        .is_dir()
        .then(|| SlotStore::open(slots_dir))
        .and_then(Result::ok)
    {
        for channel in slots.channels().unwrap_or_default() {
            match slots.state(&channel) {
                Ok(state) => channels.push(json!({
                    "channel": channel,
                    "current": state.current.map(|v| v.to_string()),
                    "current_blessed": state.current_blessed,
                    "lkg": state.lkg.map(|v| v.to_string()),
                    "highest_installed": state.highest_installed.map(|v| v.to_string()),
                })),
                Err(error) => {
                    channels.push(json!({"channel": channel, "error": error.to_string()}))
                }
            }
        }
    }
    let last_heartbeat = last_heartbeat(&args.data_dir);
    let degraded: Vec<String> = last_heartbeat
        .as_ref()
        .map(|(heartbeat, _)| {
            ringfence_server::api::status::degradation(heartbeat)
                .into_iter()
                .map(|d| d.detail)
                .collect()
        })
        .unwrap_or_default();
    let pending = std::fs::read_dir(args.data_dir.join("spool"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0);
    if args.json {
        let exit = host_exit(args.check, &guard, &degraded);
        let guard = match &guard {
            Ok(status) => serde_json::to_value(status)?,
            Err(error) => json!({"error": error.to_string()}),
        };
        let report = json!({
            "guard": guard,
            "agent": identity.as_ref().map(|i| json!({"agent_id": i.agent_id, "server": i.server})),
            "releases": channels,
            "spool_pending": pending,
            "protection": {
                "degraded": degraded,
                "last_heartbeat_age_s": last_heartbeat.as_ref().map(|(_, age)| age.as_secs()),
                "health": last_heartbeat.as_ref().map(|(heartbeat, _)| &heartbeat.health),
            },
        });
        println!("{report}");
        return Ok(exit);
    }
    match &guard {
        Ok(status) => println!("{}", status.summary()),
        Err(error) => println!("guard: {error}"),
    }
    match &identity {
        Some(identity) => println!(
            "agent {} is managed by {}",
            identity.agent_id, identity.server
        ),
        None => println!("agent: not enrolled with a server (standalone, or never started)"),
    }
    if channels.is_empty() {
        println!("releases: none installed");
    }
    for channel in &channels {
        let text = |key: &str| channel[key].as_str().unwrap_or("none").to_owned();
        println!(
            "release channel {}: runs {}{}, last known good {}",
            text("channel"),
            text("current"),
            if channel["current_blessed"] == true {
                " (blessed)"
            } else {
                " (not yet blessed)"
            },
            text("lkg")
        );
    }
    println!("reports waiting to be sent: {pending}");
    match &last_heartbeat {
        None => {
            println!("protection: no heartbeat recorded here (a standalone agent, or not started)")
        }
        Some((_, age)) if degraded.is_empty() => println!(
            "protection: on (as of the last heartbeat, {} s ago)",
            age.as_secs()
        ),
        Some((_, age)) => println!(
            "protection: DEGRADED (as of the last heartbeat, {} s ago): {}",
            age.as_secs(),
            degraded.join("; ")
        ),
    }
    Ok(host_exit(args.check, &guard, &degraded))
}

/// The managed agent's last heartbeat and how old it is; `None` when there is none (or it
/// does not parse).
fn last_heartbeat(data_dir: &std::path::Path) -> Option<(Heartbeat, std::time::Duration)> {
    let path = data_dir.join(super::managed::HEALTH_FILE);
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .unwrap_or_default();
    let heartbeat = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    Some((heartbeat, age))
}

/// With `--check`, a host is degraded when its guard cannot be read, is not running a serving
/// agent, runs the last known good release because the current one failed, or its last
/// heartbeat shows protection off (`degraded`).
fn host_exit(
    check: bool,
    guard: &Result<ringfence_guard::Status, ringfence_guard::status::StatusError>,
    degraded: &[String],
) -> ExitCode {
    let healthy = match guard {
        Ok(status) => {
            status.phase == ringfence_guard::Phase::Running
                && status.agent_ready
                && status.pinned_lkg.is_none()
        }
        Err(_) => false,
    } && degraded.is_empty();
    if check && !healthy {
        ExitCode::from(DEGRADED)
    } else {
        ExitCode::SUCCESS
    }
}

fn fleet(operator: &OperatorArgs, json_out: bool, check: bool) -> anyhow::Result<ExitCode> {
    let status: FleetStatus = operator.client()?.get_json("status", "/api/v1/status")?;
    let exit = if check && status.degraded > 0 {
        ExitCode::from(DEGRADED)
    } else {
        ExitCode::SUCCESS
    };
    if json_out {
        println!("{}", serde_json::to_string(&status)?);
        return Ok(exit);
    }
    println!(
        "agents {} ({} online, {} running their last known good release)",
        status.agents, status.online, status.on_lkg
    );
    if status.degraded == 0 {
        println!("protection: on everywhere (no host degraded)");
    } else {
        let reasons: Vec<String> = status
            .degraded_by_reason
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(reason, n)| format!("{} {n}", reason.as_str()))
            .collect();
        println!(
            "DEGRADED: protection is off on {} host(s) ({})",
            status.degraded,
            reasons.join(", ")
        );
    }
    if status.audit_mode > 0 {
        println!(
            "audit mode on {} host(s): deciding and reporting would-deny, blocking nothing",
            status.audit_mode
        );
    }
    for (channel, counts) in &status.versions {
        let parts: Vec<String> = counts.iter().map(|(v, n)| format!("{v}: {n}")).collect();
        println!("channel {channel}: {}", parts.join(", "));
    }
    for host in status.hosts.iter().filter(|h| !h.degraded.is_empty()) {
        let why: Vec<&str> = host.degraded.iter().map(|d| d.detail.as_str()).collect();
        println!(
            "host {} ({}) DEGRADED: {}",
            host.hostname,
            host.agent_id,
            why.join("; ")
        );
    }
    if status.hosts_truncated {
        println!(
            "(hosts listed: the first {} of {}, degraded first)",
            status.hosts.len(),
            status.agents
        );
    }
    for rollout in &status.rollouts {
        println!(
            "rollout {} {}@{} {} (ring {}){}",
            rollout.id,
            rollout.channel,
            rollout.version,
            serde_json::to_value(rollout.phase)?.as_str().unwrap_or("?"),
            rollout.ring,
            rollout
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    Ok(exit)
}
