//! Per-engine settings: how long a call may run, how much memory an instance may use, what to
//! answer when the engine cannot, and when to stop calling it.

use ringfence_protocol::FailurePolicy;
use std::time::Duration;

/// K failures within a window quarantine an engine+content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineRule {
    pub failures: u32,
    pub window: Duration,
}

impl Default for QuarantineRule {
    fn default() -> Self {
        QuarantineRule {
            failures: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// What an engine's exec verdict may depend on, as its vendor (or the bundle that ships it)
/// declares. Only a verdict that is a function of the executed file's content may be answered
/// by the kernel without asking the agent (the kernel exec cache): the kernel's cached answer
/// follows the inode, which a rename, hard link or mount gives new paths without asking anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecInputs {
    /// Anything in the event: path, argv, parent, user. The safe assumption, and the default.
    #[default]
    Event,
    /// The executed file's content alone (a hash allow-list; an engine that ignores execs).
    FileContent,
}

/// Everything the host needs to run one engine, besides its bytes.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Name used in verdicts, records and logs.
    pub name: String,
    pub policy: FailurePolicy,
    /// Deadline of one `on-event` call. Batches get this per event, up to `load_deadline`.
    pub deadline: Duration,
    /// Deadline for `init` plus `load-content`, which may compile rules.
    pub load_deadline: Duration,
    /// Linear memory limit per instance, in bytes.
    pub memory_limit: usize,
    pub quarantine: QuarantineRule,
    /// Engine-specific `init` configuration. The host adds `ringfence.deadline-us`.
    pub config: Vec<(String, String)>,
    /// What its exec verdicts depend on.
    pub exec_inputs: ExecInputs,
}

impl EngineSettings {
    /// Defaults from the brief: 5 ms per call, 64 MiB per instance, fail-open.
    pub fn new(name: impl Into<String>) -> EngineSettings {
        EngineSettings {
            name: name.into(),
            policy: FailurePolicy::FailOpen,
            deadline: Duration::from_millis(5),
            load_deadline: Duration::from_secs(2),
            memory_limit: 64 << 20,
            quarantine: QuarantineRule::default(),
            config: Vec::new(),
            exec_inputs: ExecInputs::Event,
        }
    }

    /// Declares what the engine's exec verdicts depend on.
    pub fn with_exec_inputs(mut self, inputs: ExecInputs) -> Self {
        self.exec_inputs = inputs;
        self
    }

    pub fn with_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    pub fn with_quarantine(mut self, rule: QuarantineRule) -> Self {
        self.quarantine = rule;
        self
    }

    /// The configuration `init` receives.
    pub(crate) fn init_config(&self) -> Vec<(String, String)> {
        let mut config = self.config.clone();
        config.push((
            "ringfence.deadline-us".to_owned(),
            self.deadline.as_micros().to_string(),
        ));
        config
    }
}
