//! The agent's privilege reduction (crate `ringfence-hardening`), in the order that makes it
//! hold: the kernel channels are opened (or adopted from a previous image) while the agent
//! still has `CAP_SYS_ADMIN`/`CAP_NET_ADMIN`, then the process is confined on the main thread,
//! and only then does any other thread start (the wasm runtime's, the agent's, the uplink's), so
//! every thread inherits the reduced capabilities. The threads that never read other processes'
//! `/proc` entries (the wasm runtime's, the uplink's, the alert shipper's) are created under the
//! Landlock view ([`landlocked`]).

use crate::HostError;
use ringfence_agent::{AgentConfig, Sensor};
use ringfence_hardening::{FsView, Hardening};
use ringfence_sensor::{Channels, EntryWatch, Fanotify, ProcConnector};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// What the agent writes and executes: its data directory and alert file; the directory of the
/// binary a self-upgrade executes. Landlock rules follow inodes, and a package upgrade replaces
/// the binary's inode, so the rule is on its directory.
pub fn view(data_dir: Option<&Path>, alerts: Option<&Path>, upgrade_binary: &Path) -> FsView {
    FsView {
        read_write: data_dir
            .into_iter()
            .chain(alerts)
            .map(Path::to_owned)
            .collect(),
        execute: upgrade_binary
            .parent()
            .map(Path::to_owned)
            .into_iter()
            .collect(),
    }
}

/// Opens the channels not handed over, then confines the process, unless `harden` is false
/// (`--no-harden`), the agent has no live sensor, or it does not run as root. Returns the
/// channels for `Agent::start_with` and, when hardened, the policies for [`landlocked`]; sets
/// `config.engine_threads` when hardened.
pub fn confine(
    harden: bool,
    config: &mut AgentConfig,
    inherited: Option<Channels>,
    view: FsView,
) -> Result<(Channels, Option<Hardening>), HostError> {
    // Only an image that adopted a live fanotify group is the next image of a running agent;
    // a handoff variable naming nothing proves nothing.
    let upgraded = inherited.as_ref().is_some_and(|c| c.fanotify.is_some());
    let mut channels = inherited.unwrap_or_default();
    if !harden {
        eprintln!("ringfence agent: hardening off (--no-harden)");
        return Ok((channels, None));
    }
    let live = config
        .sensors
        .iter()
        .any(|s| matches!(s, Sensor::Fanotify | Sensor::Proc | Sensor::Bpf(_)));
    if !live || !running_as_root() {
        tracing::info!("not hardened: only a root agent with live sensors is");
        return Ok((channels, None));
    }
    for sensor in &config.sensors {
        match sensor {
            Sensor::Fanotify if channels.fanotify.is_none() => {
                channels.fanotify = Some(Fanotify::open(&config.fanotify)?);
            }
            Sensor::Proc if channels.proc.is_none() => channels.proc = Some(ProcConnector::open()?),
            // Loading needs bpf() commands and tracefs that the confined agent no longer has;
            // a refusal is kept, with why, for the agent to report as reduced visibility.
            Sensor::Bpf(bpf) if channels.bpf.is_none() => {
                channels.bpf = Some(ringfence_bpf_sensor::BpfSensor::load(bpf));
            }
            _ => {}
        }
    }
    // Self-protection's entry watch must be told who changed what, which only a group made
    // with CAP_SYS_ADMIN is; the agent logs it if the group cannot be had.
    let fanotify = config.sensors.iter().any(|s| matches!(s, Sensor::Fanotify));
    if fanotify && !config.protect.is_empty() && channels.entries.is_none() {
        match EntryWatch::open() {
            Ok(watch) => channels.entries = Some(watch),
            Err(error) => tracing::warn!(%error, "no entry watch for self-protection"),
        }
    }
    // Landlock rules name existing files: the alert file must exist before the view is made.
    let mut view = view;
    for dir in &view.read_write {
        if config.alerts.as_deref() != Some(dir.as_path()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| HostError::io(format!("create {}", dir.display()), e))?;
        }
    }
    if let Some(alerts) = &config.alerts {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(alerts)
            .map_err(|e| HostError::io(format!("create {}", alerts.display()), e))?;
    }
    view.read_write.retain(|p| p.exists());
    let hardening = Hardening::new(view).map_err(HostError::hardening("hardening policy"))?;
    let inherited_filter = upgraded
        .then(|| std::env::var(ringfence_hardening::INHERITED_FILTER_ENV).ok())
        .flatten()
        .and_then(|value| ringfence_hardening::InheritedFilter::parse(&value));
    let report = hardening
        .confine_process(inherited_filter.as_ref())
        .map_err(HostError::hardening(
            "hardening (run with --no-harden to debug without it)",
        ))?;
    eprintln!("ringfence agent: hardened: {report}");
    config.engine_threads = Some(hardening.engine_confinement());
    Ok((channels, Some(hardening)))
}

/// Runs `f` (which starts threads) under the Landlock view when hardened, so that the threads
/// it starts inherit the domain; runs it as it is otherwise.
pub fn landlocked<T: Send>(
    hardening: Option<&Hardening>,
    what: &str,
    f: impl FnOnce() -> T + Send,
) -> Result<T, HostError> {
    let Some(hardening) = hardening else {
        return Ok(f());
    };
    let (value, report) = hardening
        .landlocked(f)
        .map_err(HostError::hardening("landlock"))?;
    eprintln!("ringfence agent: {what} under {report}");
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_writes_the_data_and_alerts_and_executes_the_binary_directory() {
        let view = view(
            Some(Path::new("/var/lib/ringfence/agent")),
            Some(Path::new("/var/log/ringfence/alerts.jsonl")),
            Path::new("/usr/bin/ringfence"),
        );
        assert_eq!(
            view.read_write,
            vec![
                Path::new("/var/lib/ringfence/agent").to_owned(),
                Path::new("/var/log/ringfence/alerts.jsonl").to_owned()
            ]
        );
        assert_eq!(view.execute, vec![Path::new("/usr/bin").to_owned()]);
    }

    #[test]
    fn an_agent_without_live_sensors_is_not_confined() {
        let mut config = AgentConfig {
            sensors: Vec::new(),
            ..AgentConfig::default()
        };
        let (channels, hardening) =
            confine(true, &mut config, None, FsView::default()).expect("nothing to confine");
        assert!(hardening.is_none());
        assert!(channels.fanotify.is_none());
        assert!(config.engine_threads.is_none());
    }
}
