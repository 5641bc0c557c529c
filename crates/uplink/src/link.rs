//! The uplink loop: heartbeat, follow assignments, upload the spool — on its own thread, so
//! the agent's permission path never waits on the network.
//!
//! An assignment is followed in four steps, each of which can refuse: download the bundle,
//! check it is the blob that was named (sha256), verify it (signature, hashes, rollback floor
//! or a signed rollback directive), stage it in the slot store. Only then is it activated and
//! handed to the agent. Every outcome is spooled as an `install` report; a refused release
//! leaves the agent on what it runs.
//!
//! After a heartbeat the server accepted, a client certificate with a third of its lifetime
//! left is renewed (a new key, its signing request, the certificate saved with the identity).
//! A renewal that fails, there or in saving, is tried again an hour later, doubling to a day.

use crate::client::{ClientError, ServerClient};
use crate::client_cert::AgentKey;
use crate::identity::{Identity, IdentityError};
use crate::spool::Spool;
use crate::tls::TrustError;
use ringfence_backoff::{ExpBackoff, Jitter};
use ringfence_protocol::Enforcement;
use ringfence_protocol::api::{
    Assignment, CertificateRenewal, HealthFigures, Heartbeat, InstalledRelease, Remediation,
    Report, ReportBatch,
};
use ringfence_protocol::guard_link::Slot;
use ringfence_protocol::report::{
    InstallOutcome, InstallReport, RemediationOutcome, RemediationReport, ReportBody,
};
use ringfence_release::{
    Bundle, BundleError, LoadedRelease, SignedRollbackDirective, SlotError, SlotStore, TrustedKeys,
    VerifyError, VerifyOptions, Version, verify,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// What the uplink needs from the agent.
pub trait AgentHost: Send + Sync + 'static {
    /// Runs this release from now on (swap engines). An error keeps the agent on what it ran,
    /// engines and all. A host that is still preparing the release when `deadline` passes
    /// gives up before switching and answers [`HostError::TimedOut`].
    fn activate(
        &self,
        channel: &str,
        release: &LoadedRelease,
        deadline: Instant,
    ) -> Result<(), HostError>;
    /// Stops running any engine on this channel (a remediation plan said so).
    fn disable(&self, channel: &str) -> Result<(), HostError>;
    /// Health figures since the previous call. The uplink adds what it owns: the spool's
    /// figures and the release being installed.
    fn health(&self) -> HealthFigures;
    /// The channels the server wants audited (an audit rollout's assignment, an audit plan):
    /// their engines' denies are reported as "would deny" and allowed, while the other
    /// channels' engines enforce. A host whose operator asked for `audit` locally stays in
    /// audit whatever this says; a host that cannot audit ignores it.
    fn assign_audited_channels(&self, _channels: &BTreeSet<String>) {}
}

/// The channels the assignments and plans want audited. Audit starts at once; leaving it waits
/// until the channel runs its assigned release, because a halted audit rollout assigns the
/// previous release in enforce mode while the audited one (which may deny far too much) still
/// runs here.
fn audited_channels(
    assignments: &[Assignment],
    plans: &[Remediation],
    auditing: &BTreeSet<String>,
    runs: impl Fn(&Assignment) -> bool,
) -> BTreeSet<String> {
    let assigned = assignments
        .iter()
        .filter(|a| a.mode.is_audit() || (auditing.contains(&a.channel) && !runs(a)))
        .map(|a| a.channel.clone());
    let planned = plans
        .iter()
        .filter(|p| p.action == "audit")
        .map(|p| p.channel.clone());
    assigned.chain(planned).collect()
}

/// Why the agent did not start a release (or stop a channel); the previous engines keep
/// serving, and the uplink reports the reason as a refused install.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The release's engine or content does not load.
    #[error("the release does not load: {0}")]
    Load(String),
    /// The new engines were refused: they failed on this host's recent events or could not be
    /// instantiated.
    #[error(transparent)]
    Refused(Box<dyn std::error::Error + Send + Sync>),
    /// Preparing the release outlasted the install timeout.
    #[error("preparing the release outlasted the install timeout")]
    TimedOut,
    /// The host's own state is unusable (a poisoned lock).
    #[error("{0}")]
    Internal(&'static str),
}

#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub agent_version: Version,
    /// First heartbeat interval; the server's answer sets the next ones.
    pub interval: Duration,
    /// A release that ran this long without failures becomes the last known good.
    pub bless_after: Duration,
    /// Reports uploaded per request.
    pub upload_batch: usize,
    /// Where the identity lives, so a renewed client certificate survives a restart; `None`
    /// keeps renewals in memory.
    pub identity_path: Option<PathBuf>,
    /// Where each heartbeat is also written, so `ringfence status --host` can say on the host
    /// itself whether protection is off (a quarantined engine, a disabled channel, answers by
    /// policy), with the server unreachable too.
    pub health_path: Option<PathBuf>,
    /// How long one install (download, verify, stage, compile, validate, switch) may take
    /// before it is reported failed. It runs on a thread of its own, so heartbeats go on.
    pub install_timeout: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            agent_version: Version::new(0, 1, 0),
            interval: Duration::from_secs(5),
            bless_after: Duration::from_secs(30),
            upload_batch: 500,
            identity_path: None,
            health_path: None,
            install_timeout: Duration::from_secs(120),
        }
    }
}

/// Retries against a server that is away: 0.25 s doubling to 30 s, each delay stretched by up
/// to half again so hosts that lost the server together do not come back together.
#[derive(Debug)]
struct Backoff {
    failures: u32,
    jitter: Jitter,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            failures: 0,
            jitter: Jitter::from_entropy(),
        }
    }
}

impl Backoff {
    const SHAPE: ExpBackoff =
        ExpBackoff::fixed(Duration::from_millis(250), Duration::from_secs(30), 0.5);

    fn next(&mut self) -> Duration {
        let delay = Self::SHAPE.delay(self.failures, self.jitter.next_unit());
        self.failures = self.failures.saturating_add(1);
        delay
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// When to try a failed certificate renewal again: an hour later, doubling up to a day. Every
/// attempt mints a certificate and an audit row on the server, and what makes it fail (an
/// identity file that cannot be written, a server refusing) rarely passes within a heartbeat;
/// a certificate becomes due four months before it expires, so waiting costs nothing.
#[derive(Debug, Default)]
struct RenewalBackoff {
    /// Failures in a row (0 = one) and when the pause after the last ends; `None` after a
    /// success.
    paused: Option<(u32, Instant)>,
}

impl RenewalBackoff {
    /// No jitter: renewals are already spread by when each host enrolled.
    const SHAPE: ExpBackoff =
        ExpBackoff::fixed(Duration::from_secs(3600), Duration::from_secs(86_400), 0.0);

    fn ready(&self, now: Instant) -> bool {
        self.paused.is_none_or(|(_, until)| now >= until)
    }

    /// Starts the next pause and returns its length.
    fn failed(&mut self, now: Instant) -> Duration {
        let attempt = self
            .paused
            .map_or(0, |(attempt, _)| attempt.saturating_add(1));
        let pause = Self::SHAPE.delay(attempt, 0.0);
        self.paused = Some((attempt, now + pause));
        pause
    }

    fn succeeded(&mut self) {
        self.paused = None;
    }
}

/// The running uplink; stops (after one last upload) when dropped or stopped.
pub struct Link {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

/// Report ids must be unique per agent across restarts: time plus a counter.
static REPORT_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A report ready for the spool.
pub fn report(body: ReportBody) -> Report {
    let sequence = REPORT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    Report {
        id: format!("{}-{sequence}", ringfence_protocol::clock::unix_ms()),
        at_ms: ringfence_protocol::clock::unix_ms(),
        body,
    }
}

/// Why the uplink cannot start, or a certificate cannot be renewed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("a release key learned at enrollment is not a key: {0}")]
    ReleaseKey(#[source] ringfence_release::KeyTextError),
    #[error("{0}")]
    Trust(#[from] TrustError),
    #[error("the server refused the renewal: {0}")]
    Renewal(#[source] ClientError),
    #[error("{0}")]
    Identity(#[from] IdentityError),
    #[error("could not start the uplink thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Parses the release keys learned at enrollment.
pub fn trusted_keys(identity: &Identity) -> Result<TrustedKeys, LinkError> {
    let mut keys = TrustedKeys::new();
    for text in &identity.release_keys {
        keys.insert(text.parse().map_err(LinkError::ReleaseKey)?);
    }
    Ok(keys)
}

/// How long one request to the server may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a release (or a remediation plan) was not put to work. The message is the `reason` of
/// the `install` or `remediation` report the operator reads, so it says what happened in words.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("bad version {0:?}")]
    BadVersion(String),
    #[error("the release slots: {0}")]
    Slots(#[source] SlotError),
    #[error("download the bundle: {0}")]
    Download(#[source] ClientError),
    #[error("downloaded bundle hashes to {got}, not {expected}")]
    HashMismatch { got: String, expected: String },
    #[error("{0}")]
    Bundle(#[source] BundleError),
    #[error("bad rollback directive: {0}")]
    Directive(#[source] serde_json::Error),
    #[error("{0}")]
    Unverified(#[source] VerifyError),
    #[error("the bundle is not the release that was assigned")]
    NotAssigned,
    #[error("the agent could not start the release: {0}")]
    Refused(#[source] HostError),
    #[error("the release runs but could not be recorded as current (a restart goes back): {0}")]
    NotRecorded(#[source] SlotError),
    #[error("the agent could not carry out the plan: {0}")]
    Plan(#[source] HostError),
    #[error("cannot carry out plan action {0:?}")]
    UnknownAction(String),
    #[error("could not start the install thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the install thread died")]
    ThreadDied,
    #[error("the install did not finish within {} s (install timeout)", .0.as_secs_f64())]
    TimedOut(Duration),
}

/// What an install needs, cloned onto the install's own thread so the link thread stays free
/// to heartbeat and upload while a release downloads, compiles and validates.
struct Installer<H: AgentHost> {
    client: ServerClient,
    slots: SlotStore,
    keys: TrustedKeys,
    host: Arc<H>,
    agent_version: Version,
}

impl<H: AgentHost> Installer<H> {
    /// Downloads, checks, verifies, stages and activates one release; `Ok(false)` when it
    /// already runs. A release the host refuses leaves the slots as they were.
    fn install(&self, assignment: &Assignment, deadline: Instant) -> Result<bool, InstallError> {
        let version = Version::parse(&assignment.version)
            .map_err(|e| InstallError::BadVersion(format!("{}: {e}", assignment.version)))?;
        let state = self
            .slots
            .state(&assignment.channel)
            .map_err(InstallError::Slots)?;
        if state.current.as_ref() == Some(&version) {
            return Ok(false);
        }
        if !self.slots.is_staged(&assignment.channel, &version) {
            let bytes = self
                .client
                .blob(&assignment.bundle_sha256)
                .map_err(InstallError::Download)?;
            let got = hex::encode(Sha256::digest(&bytes));
            if got != assignment.bundle_sha256 {
                return Err(InstallError::HashMismatch {
                    got,
                    expected: assignment.bundle_sha256.clone(),
                });
            }
            let bundle = Bundle::read(&bytes).map_err(InstallError::Bundle)?;
            let directive: Option<SignedRollbackDirective> = match &assignment.rollback_directive {
                Some(value) => {
                    Some(serde_json::from_value(value.clone()).map_err(InstallError::Directive)?)
                }
                None => None,
            };
            let options = VerifyOptions {
                agent_version: Some(&self.agent_version),
                now: ringfence_protocol::clock::unix_secs(),
                rollback: directive.as_ref(),
            };
            let verified =
                verify(&bundle, &self.keys, &state, &options).map_err(InstallError::Unverified)?;
            if verified.manifest().name != assignment.channel
                || verified.manifest().version != version
            {
                return Err(InstallError::NotAssigned);
            }
            self.slots.stage(&verified).map_err(InstallError::Slots)?;
        }
        // The agent switches first and the slots follow: a release the agent refuses (or a
        // crash while it switches) never becomes the slots' current, so nothing lists it as
        // running, blesses it, or starts it after a restart.
        let loaded = self
            .slots
            .load(&assignment.channel, &version, &self.keys)
            .map_err(InstallError::Slots)?;
        self.host
            .activate(&assignment.channel, &loaded, deadline)
            .map_err(InstallError::Refused)?;
        self.slots
            .activate(&assignment.channel, &version)
            .map_err(|e| {
                tracing::error!(
                    channel = %assignment.channel,
                    "the agent runs {version}, but it could not be recorded as current: {e}"
                );
                InstallError::NotRecorded(e)
            })?;
        Ok(true)
    }
}

/// Why an install runs, which decides the report it ends with.
enum Origin {
    Assignment,
    Plan(Remediation),
}

/// An install running on its own thread.
struct InstallJob {
    channel: String,
    version: String,
    deadline: Instant,
    origin: Origin,
    outcome: mpsc::Receiver<Result<bool, InstallError>>,
    /// The timeout was reported; the thread has yet to finish (a compile cannot be stopped,
    /// but the host gives up before switching engines).
    timed_out: bool,
}

impl InstallJob {
    fn label(&self) -> String {
        format!("{}@{}", self.channel, self.version)
    }
}

/// What the link's thread owns: the server client, the spool, the slots and the agent, and the
/// state of its heartbeats, installs and uploads. (Not a "worker": in ringfence that word is an
/// agent thread deciding permission events.)
struct LinkThread<H: AgentHost> {
    client: ServerClient,
    /// What `client` was made from; replaced when the client certificate is renewed.
    identity: Identity,
    spool: Arc<Spool>,
    slots: SlotStore,
    keys: TrustedKeys,
    host: Arc<H>,
    config: LinkConfig,
    /// When each channel's current release was activated, for blessing.
    activated: HashMap<String, Instant>,
    /// Assignments that failed, and when to try again.
    refused: HashMap<(String, String), Instant>,
    /// Remediation plans already carried out (or being carried out).
    remediated: std::collections::HashSet<String>,
    renewal: RenewalBackoff,
    /// The install in progress; one at a time, the rest wait for a later heartbeat.
    job: Option<InstallJob>,
    /// The channels audited at the last heartbeat answered.
    audited: BTreeSet<String>,
}

impl<H: AgentHost> LinkThread<H> {
    fn installed(&self) -> Vec<InstalledRelease> {
        let channels = self.slots.channels().unwrap_or_default();
        channels
            .into_iter()
            .filter_map(|channel| {
                let state = self.slots.state(&channel).ok()?;
                // The slot store's current is what runs: a guard's restore moves current to
                // the LKG rather than running a different slot, and an install makes a release
                // current only once the agent runs it.
                Some(InstalledRelease {
                    current: state.current.map(|v| v.to_string()),
                    lkg: state.lkg.map(|v| v.to_string()),
                    running: Slot::Current,
                    channel,
                })
            })
            .collect()
    }

    /// True when `version` already runs on `channel` (nothing to install).
    fn is_current(&self, channel: &str, version: &str) -> bool {
        let Ok(version) = Version::parse(version) else {
            return false;
        };
        self.slots
            .state(channel)
            .is_ok_and(|state| state.current.as_ref() == Some(&version))
    }

    /// Starts installing `assignment` on a thread of its own.
    fn start_install(&mut self, assignment: Assignment, origin: Origin) {
        let deadline = Instant::now() + self.config.install_timeout;
        let installer = Installer {
            client: self.client.clone(),
            slots: self.slots.clone(),
            keys: self.keys.clone(),
            host: Arc::clone(&self.host),
            agent_version: self.config.agent_version.clone(),
        };
        let (tx, outcome) = mpsc::sync_channel(1);
        let job = InstallJob {
            channel: assignment.channel.clone(),
            version: assignment.version.clone(),
            deadline,
            origin,
            outcome,
            timed_out: false,
        };
        tracing::info!(release = %job.label(), "installing");
        let spawned = std::thread::Builder::new()
            .name("ringfence-install".into())
            .spawn(move || {
                let _ = tx.send(installer.install(&assignment, deadline));
            });
        match spawned {
            Ok(_) => self.job = Some(job),
            Err(error) => self.finish(job, Err(InstallError::Thread(error))),
        }
    }

    /// Ends the install in progress if it finished, or reports it failed once its time is up.
    fn poll_install(&mut self) {
        let Some(job) = &mut self.job else { return };
        let outcome = match job.outcome.try_recv() {
            Ok(outcome) => outcome,
            Err(mpsc::TryRecvError::Disconnected) => Err(InstallError::ThreadDied),
            Err(mpsc::TryRecvError::Empty) => {
                if !job.timed_out && Instant::now() >= job.deadline {
                    job.timed_out = true;
                    let outcome = Err(InstallError::TimedOut(self.config.install_timeout));
                    if let Err(reason) = &outcome {
                        tracing::warn!(release = %job.label(), "{reason}");
                    }
                    let body = match &job.origin {
                        Origin::Assignment => install_body(&job.channel, &job.version, &outcome),
                        Origin::Plan(plan) => remediation_body(plan, &outcome),
                    };
                    let key = (job.channel.clone(), job.version.clone());
                    self.refused
                        .insert(key, Instant::now() + Duration::from_secs(30));
                    self.spool_report(body);
                }
                return;
            }
        };
        if let Some(job) = self.job.take() {
            self.finish(job, outcome);
        }
    }

    /// Records and reports how an install ended.
    fn finish(&mut self, job: InstallJob, outcome: Result<bool, InstallError>) {
        let label = job.label();
        match &outcome {
            Ok(true) => {
                tracing::info!(release = %label, "release installed and running");
                self.activated.insert(job.channel.clone(), Instant::now());
            }
            Ok(false) => {}
            Err(reason) => {
                tracing::warn!(release = %label, "release refused: {reason}");
                self.refused.insert(
                    (job.channel.clone(), job.version.clone()),
                    Instant::now() + Duration::from_secs(30),
                );
                if job.timed_out {
                    // Reported when its time ran out.
                    return;
                }
            }
        }
        let body = match &job.origin {
            Origin::Assignment if matches!(outcome, Ok(false)) => return,
            Origin::Assignment => install_body(&job.channel, &job.version, &outcome),
            Origin::Plan(plan) => remediation_body(plan, &outcome),
        };
        self.spool_report(body);
    }

    fn spool_report(&self, body: ReportBody) {
        let kind = body.kind();
        if let Err(error) = self.spool.push(&report(body)) {
            tracing::warn!("could not spool an {kind} report: {error}");
        }
    }

    fn follow(&mut self, assignments: &[Assignment]) {
        if self.job.is_some() {
            return;
        }
        for assignment in assignments {
            let key = (assignment.channel.clone(), assignment.version.clone());
            if self
                .refused
                .get(&key)
                .is_some_and(|until| Instant::now() < *until)
                || self.is_current(&assignment.channel, &assignment.version)
            {
                continue;
            }
            self.start_install(assignment.clone(), Origin::Assignment);
            return;
        }
    }

    /// Carries out remediation plans, once each: a pin is installed like an assignment (on
    /// the install thread), a disable takes the channel's engine away.
    fn remediate(&mut self, plans: &[Remediation]) {
        for plan in plans {
            if self.remediated.contains(&plan.id) {
                continue;
            }
            let outcome = match (plan.action.as_str(), &plan.version, &plan.bundle_sha256) {
                ("pin", Some(version), Some(bundle)) => {
                    if self.is_current(&plan.channel, version) {
                        Ok(false)
                    } else if self.job.is_some() {
                        // One install at a time: the plan waits for a later heartbeat.
                        continue;
                    } else {
                        let assignment = Assignment {
                            channel: plan.channel.clone(),
                            version: version.clone(),
                            bundle_sha256: bundle.clone(),
                            rollout_id: None,
                            rollback_directive: plan.rollback_directive.clone(),
                            mode: Enforcement::Enforce,
                        };
                        self.remediated.insert(plan.id.clone());
                        self.start_install(assignment, Origin::Plan(plan.clone()));
                        continue;
                    }
                }
                ("disable", _, _) => self
                    .host
                    .disable(&plan.channel)
                    .map(|()| true)
                    .map_err(InstallError::Plan),
                // Carried out with the assignments' mode at every heartbeat (see `beat`).
                ("audit", None, _) => Ok(true),
                (action, _, _) => Err(InstallError::UnknownAction(action.to_owned())),
            };
            // A refused plan is reported once too; the operator sees why and writes another.
            self.remediated.insert(plan.id.clone());
            self.spool_report(remediation_body(plan, &outcome));
        }
    }

    /// Blesses releases that ran long enough without engine failures.
    fn bless(&mut self, failures_seen: bool) {
        if failures_seen {
            // Failures restart the clock: only a quiet release becomes the LKG.
            for started in self.activated.values_mut() {
                *started = Instant::now();
            }
            return;
        }
        let installing = self.job.as_ref().map(|job| job.channel.clone());
        let due: Vec<String> = self
            .activated
            .iter()
            .filter(|(_, started)| started.elapsed() >= self.config.bless_after)
            // The slots' current of a channel being installed may change under our feet.
            .filter(|(channel, _)| installing.as_ref() != Some(*channel))
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in due {
            match self.slots.bless(&channel) {
                Ok(_) => {
                    tracing::info!(%channel, "current release blessed as last known good");
                    self.activated.remove(&channel);
                }
                Err(error) => tracing::warn!(%channel, "could not bless: {error}"),
            }
        }
    }

    fn upload(&self) -> Result<(), ClientError> {
        loop {
            let mut batch = self.spool.peek(self.config.upload_batch);
            if batch.is_empty() {
                return Ok(());
            }
            // A report no server accepts would be refused with every batch it is in, forever:
            // it is set aside here, and the rest go on.
            batch.retain(|(path, report)| match report.validate() {
                Ok(()) => true,
                Err(error) => {
                    self.spool.set_aside(path, &error.to_string());
                    false
                }
            });
            if batch.is_empty() {
                continue;
            }
            let reports: Vec<Report> = batch.iter().map(|(_, report)| report.clone()).collect();
            match self.client.upload(&ReportBatch { reports }) {
                Ok(_) => {
                    let paths: Vec<_> = batch.into_iter().map(|(path, _)| path).collect();
                    self.spool.ack(&paths);
                }
                // The server judges by its own limits, which may be stricter than ours: find
                // the report it refuses by sending them one at a time.
                Err(error) if refuses_content(&error) && batch.len() > 1 => {
                    for (path, report) in batch {
                        match self.client.upload(&ReportBatch {
                            reports: vec![report],
                        }) {
                            Ok(_) => self.spool.ack(std::slice::from_ref(&path)),
                            Err(error) if refuses_content(&error) => {
                                self.spool.set_aside(&path, &error.to_string())
                            }
                            Err(error) => return Err(error),
                        }
                    }
                }
                Err(error) if refuses_content(&error) => {
                    if let Some((path, _)) = batch.first() {
                        self.spool.set_aside(path, &error.to_string());
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The heartbeat to send now, and whether engines failed since the previous one.
    fn heartbeat(&mut self) -> (Heartbeat, bool) {
        self.poll_install();
        let mut health = self.host.health();
        let failures = health.engine_failures > 0;
        let stats = self.spool.stats();
        health.spool_pending = stats.pending;
        health.spool_dropped = stats.dropped + stats.set_aside;
        health.installing = self.job.as_ref().map(InstallJob::label);
        let heartbeat = Heartbeat {
            agent_version: self.config.agent_version.to_string(),
            releases: self.installed(),
            health,
        };
        if let Some(path) = &self.config.health_path {
            write_last_heartbeat(path, &heartbeat);
        }
        (heartbeat, failures)
    }

    fn beat(&mut self) -> Option<Duration> {
        let (heartbeat, failures) = self.heartbeat();
        // Upload first: the server's gates should see failures before the next decision.
        if let Err(error) = self.upload() {
            tracing::debug!("report upload deferred: {error}");
        }
        let interval = match self.client.heartbeat(&heartbeat) {
            Ok(response) => {
                self.remediate(&response.remediations);
                self.follow(&response.assignments);
                let audited = audited_channels(
                    &response.assignments,
                    &response.remediations,
                    &self.audited,
                    |a| self.is_current(&a.channel, &a.version),
                );
                self.host.assign_audited_channels(&audited);
                self.audited = audited;
                self.renew_certificate();
                Some(Duration::from_secs(response.interval_s.max(1)))
            }
            // A refusal (a revoked credential, a certificate the server wants and we lack) does
            // not go away by waiting: say it where people look.
            Err(error) if !error.is_transient() => {
                tracing::warn!("heartbeat refused, will retry: {error}");
                None
            }
            Err(error) => {
                tracing::debug!("heartbeat failed, will retry: {error}");
                None
            }
        };
        self.bless(failures);
        interval
    }
}

/// The body of an `install` report: `running`, or `refused` with the reason.
fn install_body(channel: &str, version: &str, outcome: &Result<bool, InstallError>) -> ReportBody {
    let (outcome, reason) = match outcome {
        Ok(_) => (InstallOutcome::Running, None),
        Err(reason) => (InstallOutcome::Refused, Some(reason.to_string())),
    };
    ReportBody::Install(InstallReport {
        channel: channel.to_owned(),
        outcome,
        reason,
        version: version.to_owned(),
    })
}

/// The body of a `remediation` report.
fn remediation_body(plan: &Remediation, outcome: &Result<bool, InstallError>) -> ReportBody {
    match outcome {
        Ok(_) => {
            tracing::warn!(plan = %plan.id, channel = %plan.channel, "remediation plan applied: {}", plan.reason)
        }
        Err(reason) => tracing::warn!(plan = %plan.id, "remediation plan refused: {reason}"),
    }
    ReportBody::Remediation(RemediationReport {
        action: plan.action.clone(),
        channel: plan.channel.clone(),
        outcome: if outcome.is_ok() {
            RemediationOutcome::Applied
        } else {
            RemediationOutcome::Refused
        },
        plan: plan.id.clone(),
        reason: outcome.as_ref().err().map(ToString::to_string),
    })
}

/// Replaces the host's copy of its last heartbeat (temporary file and rename: a reader never
/// sees half of one). Best effort: the copy is for people on the host, the server has the
/// original.
fn write_last_heartbeat(path: &std::path::Path, heartbeat: &Heartbeat) {
    let Ok(bytes) = serde_json::to_vec_pretty(heartbeat) else {
        return;
    };
    let temporary = path.with_extension("json.tmp");
    let written =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = written {
        tracing::debug!(path = %path.display(), "could not write the last heartbeat: {error}");
    }
}

/// The server refused what was sent, not who sent it or when: too large (`413`) or outside the
/// protocol (`400`, `422`). Sending the same report again can never succeed.
fn refuses_content(error: &ClientError) -> bool {
    matches!(error, ClientError::Refused { status, .. } if matches!(status, 400 | 413 | 422))
}

impl<H: AgentHost> LinkThread<H> {
    /// Renews the client certificate while the server still accepts the old one: once it has
    /// expired, no handshake succeeds and only a new enrollment helps.
    fn renew_certificate(&mut self) {
        let due = self
            .identity
            .client_cert
            .as_ref()
            .is_some_and(|certificate| certificate.renewal_due(SystemTime::now()));
        if !due || !self.renewal.ready(Instant::now()) {
            return;
        }
        match self.renewed() {
            Ok((identity, client)) => {
                self.identity = identity;
                self.client = client;
                let still_due = self
                    .identity
                    .client_cert
                    .as_ref()
                    .is_some_and(|certificate| certificate.renewal_due(SystemTime::now()));
                if still_due {
                    // A certificate due the moment it is issued (a host clock far ahead of the
                    // server's, or a very short validity) would be renewed on every heartbeat.
                    let pause = self.renewal.failed(Instant::now());
                    tracing::warn!(
                        "client certificate renewed, but it is already due again (is this host's \
                         clock ahead of the server's?); next renewal in {} min",
                        pause.as_secs() / 60
                    );
                } else {
                    self.renewal.succeeded();
                    tracing::info!("client certificate renewed");
                }
            }
            Err(error) => {
                let pause = self.renewal.failed(Instant::now());
                tracing::warn!(
                    "could not renew the client certificate (next try in {} min): {error}",
                    pause.as_secs() / 60
                );
            }
        }
    }

    fn renewed(&self) -> Result<(Identity, ServerClient), LinkError> {
        let key = AgentKey::generate()?;
        let response = self
            .client
            .renew_certificate(&CertificateRenewal {
                csr: key.csr_pem().to_owned(),
            })
            .map_err(LinkError::Renewal)?;
        let mut identity = self.identity.clone();
        identity.client_cert = Some(key.certified(response.client_cert)?);
        let client = identity.client(CLIENT_TIMEOUT)?;
        // On disk before in use: a restart must not come back with the old one.
        if let Some(path) = &self.config.identity_path {
            identity.save(path)?;
        }
        Ok((identity, client))
    }
}

impl Link {
    /// Starts the uplink thread.
    pub fn start<H: AgentHost>(
        identity: &Identity,
        spool: Arc<Spool>,
        slots: SlotStore,
        host: Arc<H>,
        config: LinkConfig,
    ) -> Result<Link, LinkError> {
        let client = identity.client(CLIENT_TIMEOUT)?;
        let keys = trusted_keys(identity)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut uplink = LinkThread {
            client,
            identity: identity.clone(),
            spool,
            slots,
            keys,
            host,
            config,
            activated: HashMap::new(),
            refused: HashMap::new(),
            remediated: std::collections::HashSet::new(),
            renewal: RenewalBackoff::default(),
            job: None,
            audited: BTreeSet::new(),
        };
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ringfence-uplink".into())
            .spawn(move || {
                let mut retry = Backoff::default();
                let mut urgent_retry = Backoff::default();
                let mut urgent_at = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    let interval = match uplink.beat() {
                        Some(next) => {
                            retry.reset();
                            next.min(uplink.config.interval.max(Duration::from_secs(1)) * 10)
                        }
                        // The server is away: keep what we have, try again later, and do not
                        // let a whole fleet come back in lockstep.
                        None => retry.next(),
                    };
                    let deadline = Instant::now() + interval;
                    while Instant::now() < deadline && !flag.load(Ordering::Relaxed) {
                        // Failures and crashes go out at once, not with the next heartbeat:
                        // the rollout's crash gate is waiting for them.
                        if uplink.spool.urgent() > 0 && Instant::now() >= urgent_at {
                            urgent_at = match uplink.upload() {
                                Ok(()) => {
                                    urgent_retry.reset();
                                    Instant::now()
                                }
                                Err(_) => Instant::now() + urgent_retry.next(),
                            };
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                let _ = uplink.upload();
            })
            .map_err(LinkError::Thread)?;
        Ok(Link {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that never gets asked to do anything in these tests.
    struct IdleHost;

    impl AgentHost for IdleHost {
        fn activate(&self, _: &str, _: &LoadedRelease, _: Instant) -> Result<(), HostError> {
            Ok(())
        }

        fn disable(&self, _: &str) -> Result<(), HostError> {
            Ok(())
        }

        fn health(&self) -> HealthFigures {
            HealthFigures::default()
        }
    }

    fn offline_link_thread(dir: &std::path::Path) -> LinkThread<IdleHost> {
        let identity = Identity {
            agent_id: "a".into(),
            credential: "c".into(),
            // Nothing listens on port 1: these tests never reach a server.
            server: "http://127.0.0.1:1".into(),
            release_keys: Vec::new(),
            server_ca: None,
            client_cert: None,
        };
        LinkThread {
            client: identity.client(CLIENT_TIMEOUT).expect("client"),
            identity,
            spool: Arc::new(Spool::open(&dir.join("spool"), 1 << 20).expect("spool")),
            slots: SlotStore::open(dir.join("slots")).expect("slots"),
            keys: TrustedKeys::new(),
            host: Arc::new(IdleHost),
            config: LinkConfig::default(),
            activated: HashMap::new(),
            refused: HashMap::new(),
            remediated: std::collections::HashSet::new(),
            renewal: RenewalBackoff::default(),
            job: None,
            audited: BTreeSet::new(),
        }
    }

    /// An install whose thread the test plays: it ends when the test sends its outcome.
    fn blocked_install(
        uplink: &mut LinkThread<IdleHost>,
    ) -> mpsc::SyncSender<Result<bool, InstallError>> {
        let (tx, outcome) = mpsc::sync_channel(1);
        uplink.job = Some(InstallJob {
            channel: "detection".into(),
            version: "2.0.0".into(),
            deadline: Instant::now() + Duration::from_secs(3600),
            origin: Origin::Assignment,
            outcome,
            timed_out: false,
        });
        tx
    }

    fn install_reports(spool: &Spool) -> Vec<InstallReport> {
        spool
            .peek(100)
            .into_iter()
            .filter_map(|(_, report)| match report.body {
                ReportBody::Install(install) => Some(install),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn heartbeats_carry_the_install_under_way_until_it_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut uplink = offline_link_thread(dir.path());
        assert_eq!(uplink.heartbeat().0.health.installing, None);
        let finish = blocked_install(&mut uplink);
        for _ in 0..3 {
            let (heartbeat, _) = uplink.heartbeat();
            assert_eq!(
                heartbeat.health.installing.as_deref(),
                Some("detection@2.0.0")
            );
        }
        finish.send(Ok(true)).expect("install thread");
        let (heartbeat, _) = uplink.heartbeat();
        assert_eq!(heartbeat.health.installing, None);
        assert!(
            uplink.activated.contains_key("detection"),
            "blessing clock runs"
        );
        let reports = install_reports(&uplink.spool);
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].outcome, InstallOutcome::Running);
    }

    #[test]
    fn an_install_past_its_timeout_is_reported_refused_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut uplink = offline_link_thread(dir.path());
        let finish = blocked_install(&mut uplink);
        if let Some(job) = uplink.job.as_mut() {
            job.deadline = Instant::now();
        }
        uplink.poll_install();
        let reports = install_reports(&uplink.spool);
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].outcome, InstallOutcome::Refused);
        let reason = reports[0].reason.as_deref().expect("reason");
        assert!(reason.contains("install timeout"), "{reason}");
        assert!(
            uplink
                .refused
                .contains_key(&("detection".to_owned(), "2.0.0".to_owned())),
            "not retried at once"
        );
        // The compile still runs: the host is still busy with it, and says so.
        assert!(uplink.heartbeat().0.health.installing.is_some());
        uplink.poll_install();
        assert_eq!(install_reports(&uplink.spool).len(), 1, "reported once");

        // The host gives up before switching engines; that ending is not reported again.
        finish
            .send(Err(InstallError::Refused(HostError::TimedOut)))
            .expect("install thread");
        uplink.poll_install();
        assert!(uplink.job.is_none());
        assert_eq!(install_reports(&uplink.spool).len(), 1);
        assert!(!uplink.activated.contains_key("detection"), "never blessed");
    }

    #[test]
    fn an_install_thread_that_dies_is_a_refused_install() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut uplink = offline_link_thread(dir.path());
        drop(blocked_install(&mut uplink));
        uplink.poll_install();
        assert!(uplink.job.is_none());
        let reports = install_reports(&uplink.spool);
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(
            reports[0].reason.as_deref(),
            Some("the install thread died")
        );
    }

    #[test]
    fn a_channel_being_installed_is_not_blessed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut uplink = offline_link_thread(dir.path());
        let _finish = blocked_install(&mut uplink);
        uplink
            .activated
            .insert("detection".into(), Instant::now() - Duration::from_secs(60));
        uplink.bless(false);
        assert!(
            uplink.activated.contains_key("detection"),
            "a channel being installed is not blessed"
        );
    }

    #[test]
    fn audit_starts_at_once_and_ends_only_once_the_assigned_release_runs() {
        let assignment = |channel: &str, version: &str, mode: Enforcement| Assignment {
            channel: channel.into(),
            version: version.into(),
            bundle_sha256: String::new(),
            rollout_id: None,
            rollback_directive: None,
            mode,
        };
        let set = |names: &[&str]| {
            names
                .iter()
                .map(|n| (*n).to_owned())
                .collect::<BTreeSet<_>>()
        };
        let audit = [
            assignment("detection", "2.0.0", Enforcement::Audit),
            assignment("allowlist", "1.0.0", Enforcement::Enforce),
        ];
        // Assigned in audit: that channel audits now, installed or not; the other enforces.
        assert_eq!(
            audited_channels(&audit, &[], &set(&[]), |_| false),
            set(&["detection"])
        );
        // Halted: the previous release comes back in enforce mode, but until it runs the
        // audited one still runs here and must not start blocking.
        let back = [assignment("detection", "1.0.0", Enforcement::Enforce)];
        let auditing = set(&["detection"]);
        assert_eq!(audited_channels(&back, &[], &auditing, |_| false), auditing);
        assert_eq!(audited_channels(&back, &[], &auditing, |_| true), set(&[]));
        // A channel that was enforcing keeps enforcing while it installs an enforced release.
        assert_eq!(audited_channels(&back, &[], &set(&[]), |_| false), set(&[]));
        // An audit plan audits its channel, assignment or not.
        let plan = Remediation {
            id: "rm-1".into(),
            channel: "allowlist".into(),
            action: "audit".into(),
            version: None,
            bundle_sha256: None,
            reason: "watch".into(),
            rollback_directive: None,
        };
        assert_eq!(
            audited_channels(&back, &[plan], &set(&[]), |_| true),
            set(&["allowlist"])
        );
    }

    #[test]
    fn backoff_grows_caps_and_resets() {
        let mut backoff = Backoff::default();
        let first = backoff.next();
        assert!(
            first >= Duration::from_millis(250) && first <= Duration::from_millis(375),
            "{first:?}"
        );
        let mut last = first;
        for _ in 0..20 {
            last = backoff.next();
        }
        assert!(
            last >= Duration::from_secs(30) && last <= Duration::from_secs(45),
            "{last:?}"
        );
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(375));
    }

    #[test]
    fn renewal_waits_an_hour_after_a_failure_doubling_to_a_day() {
        let start = Instant::now();
        let mut renewal = RenewalBackoff::default();
        assert!(renewal.ready(start));
        let hour = Duration::from_secs(3600);
        assert_eq!(renewal.failed(start), hour);
        assert!(!renewal.ready(start + hour - Duration::from_secs(1)));
        assert!(renewal.ready(start + hour));
        assert_eq!(renewal.failed(start + hour), hour * 2);
        assert!(!renewal.ready(start + hour * 3 - Duration::from_secs(1)));
        assert!(renewal.ready(start + hour * 3));
        for _ in 0..10 {
            let _ = renewal.failed(start);
        }
        assert!(!renewal.ready(start + hour * 24 - Duration::from_secs(1)));
        assert!(renewal.ready(start + hour * 24), "at most a day");
        renewal.succeeded();
        assert!(renewal.ready(start));
    }
}
