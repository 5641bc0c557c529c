//! How an agent is configured: which sensors, where alerts go, deadlines, workers, the mute
//! set. The CLI and the guard build one of these; nothing here touches the system.

use crate::failures::FailureSender;
use crate::mute::MuteSet;
use ringfence_hardening::EngineConfinement;
use ringfence_protocol::{Enforcement, Event};
use ringfence_sensor::FanotifyConfig;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Files the kernel exec cache holds by default: each costs the agent a descriptor and the
/// kernel a mark and a lease.
pub const KERNEL_CACHE_FILES: usize = 4096;

/// One event source.
#[derive(Debug, Clone)]
pub enum Sensor {
    /// fanotify permission events on the marks in [`AgentConfig::fanotify`] (root).
    Fanotify,
    /// Netlink process connector notifications (root).
    Proc,
    /// The BPF sensor (root, a kernel with BTF): argv for exec decisions, and network, file
    /// and privilege activity counted. Refused or absent, the agent serves on the others and
    /// reports reduced visibility.
    Bpf(ringfence_bpf_sensor::BpfConfig),
    /// A recorded corpus, replayed once: exec/open as permission events (answered, timed and
    /// cached like live ones, with backpressure instead of queue-full answers), fork/exit as
    /// notifications.
    Replay(Vec<Event>),
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub sensors: Vec<Sensor>,
    pub fanotify: FanotifyConfig,
    /// Alert file (JSON lines); `None` writes alerts to standard output.
    pub alerts: Option<PathBuf>,
    /// Discard alerts entirely (benchmarks).
    pub discard_alerts: bool,
    /// Every permission event is answered within this, whatever the engines do.
    pub perm_deadline: Duration,
    /// Real-time CPU time the deadline responder may use without blocking (`RLIMIT_RTTIME`, the
    /// soft limit; twice it is the hard limit): past it the kernel kills the agent.
    pub realtime_budget: Duration,
    /// Worker threads deciding permission events.
    pub workers: usize,
    /// Permission events waiting for a worker; beyond this, policy answers at once.
    pub queue_capacity: usize,
    pub cache: bool,
    /// Let the kernel answer execs whose allow is cached, with no event to the agent (see
    /// `ringfence_sensor::kcache`), for at most this many files; 0 turns it off. Only engine
    /// sets that judge execs by file content alone are ever kernel-cached, and only with
    /// `cache` on, the fanotify sensor, and no BPF sensor.
    pub kernel_cache: usize,
    /// Filesystems (any path on each) whose files may be kernel-cached. An entry holds its file
    /// open, and so keeps the mount busy (`umount` fails with `EBUSY`): name only filesystems
    /// that stay mounted while the agent runs. Defaults to the root filesystem.
    pub kernel_cache_filesystems: Vec<PathBuf>,
    pub mute: MuteSet,
    /// Applied by every thread that runs engines to itself before its first event (the
    /// engine role of `ringfence_hardening`); `None` leaves them as the process is.
    pub engine_threads: Option<Arc<EngineConfinement>>,
    /// The agent's own files and directories (their direct children): only the agent, its
    /// family and the package manager may open them for writing. Needs the fanotify sensor.
    pub protect: Vec<PathBuf>,
    /// Whether deny verdicts deny (`Enforce`) or are only reported as "would deny"
    /// (`Audit`); switchable while the agent runs with [`crate::Agent::set_enforcement`].
    /// Self-protection of the agent's own files is enforced in either mode.
    pub enforcement: Enforcement,
    /// Engines (by name) whose verdicts are audited from the first event on, while the others
    /// enforce (a channel in an audit rollout); see [`crate::Agent::set_audited_engines`].
    pub audited_engines: BTreeSet<String>,
    /// Where engine failures go as values, each once ([`crate::failure_channel`]); `None`
    /// leaves them in the alerts only (a standalone agent).
    pub failures: Option<FailureSender>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            sensors: vec![Sensor::Fanotify],
            fanotify: FanotifyConfig {
                exec_mounts: vec![PathBuf::from("/")],
                ..FanotifyConfig::default()
            },
            alerts: None,
            discard_alerts: false,
            perm_deadline: Duration::from_millis(20),
            realtime_budget: crate::responder::RT_BUDGET,
            workers: 2,
            queue_capacity: 1024,
            cache: true,
            kernel_cache: KERNEL_CACHE_FILES,
            kernel_cache_filesystems: vec![PathBuf::from("/")],
            mute: MuteSet::defaults(),
            engine_threads: None,
            protect: Vec::new(),
            enforcement: Enforcement::Enforce,
            audited_engines: BTreeSet::new(),
            failures: None,
        }
    }
}

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A sensor could not be opened.
    #[error(transparent)]
    Sensor(#[from] ringfence_sensor::SensorError),
    /// An engine could not be instantiated for a worker.
    #[error(transparent)]
    Engine(#[from] ringfence_engine_host::LoadError),
    /// The alert file could not be opened.
    #[error("alert file {path}: {source}")]
    Alerts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("could not start a thread: {0}")]
    Thread(std::io::Error),
    /// An engine thread could not confine itself.
    #[error("confining an engine thread: {0}")]
    Confinement(#[source] ringfence_hardening::HardeningError),
    /// An engine thread ended before it said whether it confined itself.
    #[error("confining an engine thread: the thread died before it could say")]
    EngineThreadLost,
    /// The configuration makes no sense.
    #[error("{0}")]
    Config(String),
}
