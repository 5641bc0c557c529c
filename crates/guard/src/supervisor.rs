//! The supervision loop: one thread, one `poll` over the agent's pidfd, its heartbeat pipe and
//! the shutdown fd; every decision is delegated to [`Machine`], every effect happens here.

use crate::heartbeat::{self, BPF_OFF_ENV, GUARD_FD_ENV, HeartbeatReader};
use crate::notify::{Notifier, SYSTEMD_ENV};
use crate::policy::{self, Decision, Ending, Failure, Machine, Policy};
use crate::slot::{AgentCommand, Slot, SlotError, SlotSwitch};
use crate::state::{self, GuardState};
use crate::status::{self, Phase, Status};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use ringfence_backoff::{ExpBackoff, Jitter};
use ringfence_protocol::clock::unix_secs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Everything the guard is told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// State and status live in `<data_dir>/guard/`.
    pub data_dir: PathBuf,
    pub agent: AgentCommand,
    pub policy: Policy,
    /// `None` disables the heartbeat (for an agent that does not speak it yet).
    pub heartbeat_timeout: Option<Duration>,
    /// Healthy this long (heartbeating, or just alive without a heartbeat) blesses the release.
    pub bless_after: Duration,
    pub backoff: ExpBackoff,
    /// Between SIGTERM and SIGKILL when the guard stops.
    pub stop_grace: Duration,
    /// The guard is the whole process: become a child subreaper and reap orphans. Off when the
    /// supervisor runs inside another program (tests), whose other children are not ours.
    pub own_process: bool,
}

impl Config {
    pub fn guard_dir(&self) -> PathBuf {
        guard_dir(&self.data_dir)
    }
}

pub fn guard_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("guard")
}

pub fn state_path(data_dir: &Path) -> PathBuf {
    guard_dir(data_dir).join("state.json")
}

pub fn status_path(data_dir: &Path) -> PathBuf {
    guard_dir(data_dir).join("status.json")
}

/// A request to stop, readable as an fd.
pub trait Shutdown: AsFd {
    /// Consumes the pending request; true if the guard should stop.
    fn take(&self) -> bool;

    /// True once per request to upgrade the agent in place (consumed by [`Shutdown::take`]).
    fn take_upgrade(&self) -> bool {
        false
    }

    /// A request waits to be taken (the fd is readable now), without consuming it. Used to
    /// tell an agent that exited because systemd signalled the whole unit from a crash.
    fn pending(&self) -> bool {
        readable(self.as_fd())
    }
}

/// The fd is readable (or closed) right now.
fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

impl Shutdown for crate::signals::ShutdownSignals {
    fn take(&self) -> bool {
        match crate::signals::ShutdownSignals::take(self) {
            Some(Signal::SIGUSR2) => {
                self.request_upgrade();
                false
            }
            Some(signal) => {
                tracing::info!(%signal, "guard asked to stop");
                true
            }
            None => false,
        }
    }

    fn take_upgrade(&self) -> bool {
        crate::signals::ShutdownSignals::take_upgrade(self)
    }
}

/// A pipe-based [`Shutdown`] for embedding the supervisor (tests, the benchmark).
#[derive(Debug)]
pub struct StopPipe {
    read: OwnedFd,
}

/// Writing to it (or dropping it) stops the supervisor.
#[derive(Debug)]
pub struct StopTrigger {
    write: Option<OwnedFd>,
}

impl StopTrigger {
    pub fn stop(&mut self) {
        self.write = None;
    }
}

pub fn stop_pipe() -> std::io::Result<(StopTrigger, StopPipe)> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    Ok((StopTrigger { write: Some(write) }, StopPipe { read }))
}

impl AsFd for StopPipe {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl Shutdown for StopPipe {
    fn take(&self) -> bool {
        // Readable means closed (EOF) or written: both mean stop.
        true
    }
}

/// Why the guard could not start supervising at all.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// the guard directory could not be created
    #[error("cannot create the guard directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

struct Running {
    pid: Pid,
    pidfd: OwnedFd,
    heartbeat: HeartbeatReader,
    last_beat: Instant,
    first_beat: Option<Instant>,
    started: Instant,
    ready: bool,
    blessed: bool,
    killing: Option<Instant>,
    /// The agent said `stopping`: a termination signal reached it.
    said_stopping: bool,
}

/// The supervisor. Build it with [`Guard::new`], then [`Guard::run`] until shutdown.
pub struct Guard<'a> {
    config: Config,
    slots: &'a mut dyn SlotSwitch,
    machine: Machine,
    notifier: Notifier,
    jitter: Jitter,
    epoch: Instant,
    agent: Option<Running>,
    next_start: Instant,
    last_failure: Option<String>,
    last_stop: Option<String>,
    slot: Slot,
    ready_sent: bool,
}

/// Healthy time counts from the first heartbeat, or from the start when heartbeats are off.
fn healthy_since(heartbeat: Option<Duration>, agent: &Running) -> Option<Instant> {
    match heartbeat {
        Some(_) => agent.first_beat,
        None => Some(agent.started),
    }
}

/// Why the guard could not start an agent. Recorded in the crash report as its message: a
/// host whose agent cannot even start is as broken as one whose agent crashes.
#[derive(Debug, thiserror::Error)]
enum SpawnError {
    #[error("no command for the slot: {0}")]
    Slot(#[from] SlotError),
    #[error("heartbeat pipe: {0}")]
    HeartbeatPipe(#[source] std::io::Error),
    #[error("{}: {source}", program.to_string_lossy())]
    Exec {
        program: std::ffi::OsString,
        #[source]
        source: std::io::Error,
    },
    #[error("the child's pid {0} does not fit a pid_t")]
    PidOutOfRange(u32),
    #[error("pidfd_open (Linux 5.3 or later is needed): {0}")]
    Pidfd(#[source] std::io::Error),
}

fn signal_name(signal: Signal) -> String {
    signal.as_str().to_owned()
}

impl<'a> Guard<'a> {
    /// Loads the persistent state; a corrupt state file is logged and replaced by the safe
    /// default (start on LKG), never fatal.
    pub fn new(
        config: Config,
        slots: &'a mut dyn SlotSwitch,
        notifier: Notifier,
    ) -> Result<Self, GuardError> {
        let dir = config.guard_dir();
        std::fs::create_dir_all(&dir).map_err(|source| GuardError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = state_path(&config.data_dir);
        let tries = config.policy.boot_tries;
        let state = match state::load(&path) {
            Ok(Some(state)) => state,
            Ok(None) => GuardState::fresh(tries),
            Err(error) => {
                tracing::error!(
                    %error,
                    "guard state unusable; taking the safe default: starting on the last known good slot"
                );
                GuardState::safe_default(tries, unix_secs(), &error.to_string())
            }
        };
        let machine = Machine::new(config.policy, state, slots.current_release());
        if config.own_process
            && let Err(error) = nix::sys::prctl::set_child_subreaper(true)
        {
            tracing::warn!(%error, "cannot become a child subreaper; orphans go to init");
        }
        let now = Instant::now();
        Ok(Self {
            config,
            slots,
            slot: machine.slot(),
            machine,
            notifier,
            jitter: Jitter::from_entropy(),
            epoch: now,
            agent: None,
            next_start: now,
            last_failure: None,
            last_stop: None,
            ready_sent: false,
        })
    }

    /// Supervises until `shutdown` fires, then stops the agent (SIGTERM, grace, SIGKILL).
    pub fn run(&mut self, shutdown: &dyn Shutdown) {
        let watchdog_every = self.notifier.watchdog_every();
        let mut next_watchdog = watchdog_every.map(|every| Instant::now() + every);
        loop {
            let now = Instant::now();
            // A stop request already waiting (systemd signalled the unit and the agent left
            // first) is served before any restart: starting an agent only to kill it helps no one.
            if self.agent.is_none() && now >= self.next_start && !shutdown.pending() {
                self.start();
                if !self.ready_sent {
                    self.notifier.ready();
                    self.ready_sent = true;
                }
                continue;
            }
            if let (Some(at), Some(every)) = (next_watchdog, watchdog_every)
                && now >= at
            {
                self.notifier.watchdog();
                next_watchdog = Some(now + every);
            }
            self.check_deadlines(now);
            let timeout = self.next_wakeup(now, next_watchdog);

            let (stop, exited, beat) = {
                let mut fds = vec![PollFd::new(shutdown.as_fd(), PollFlags::POLLIN)];
                if let Some(agent) = &self.agent {
                    fds.push(PollFd::new(agent.pidfd.as_fd(), PollFlags::POLLIN));
                    if !agent.heartbeat.eof() && agent.killing.is_none() {
                        fds.push(PollFd::new(agent.heartbeat.as_fd(), PollFlags::POLLIN));
                    }
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(error) => {
                        // Should never happen with valid fds; sleep briefly rather than spin.
                        tracing::error!(%error, "poll failed");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
                let ready = |i: usize| {
                    fds.get(i)
                        .and_then(|f| f.revents())
                        .is_some_and(|r| !r.is_empty())
                };
                (ready(0), ready(1), ready(2))
            };
            if stop && shutdown.take() {
                self.stop(shutdown);
                return;
            }
            if shutdown.take_upgrade() {
                self.forward_upgrade();
            }
            if beat {
                self.on_heartbeat();
            }
            if exited {
                self.on_agent_exit(shutdown);
            }
            if self.config.own_process {
                self.reap_orphans(shutdown);
            }
        }
    }

    fn start(&mut self) {
        let (slot, restore) = self.machine.before_start(unix_secs());
        if let Some(restore) = restore {
            tracing::warn!(reason = %restore.reason, detail = %restore.detail, "restoring the last known good slot");
        }
        self.slot = slot;
        self.save_state();
        match self.spawn(slot) {
            Ok(running) => {
                tracing::info!(
                    pid = running.pid.as_raw(),
                    slot = slot.as_str(),
                    "agent started"
                );
                self.agent = Some(running);
                self.write_status(Phase::Running);
            }
            Err(why) => {
                tracing::error!(%why, "cannot start the agent");
                self.on_failure(Failure::SpawnFailed(why.to_string()));
            }
        }
    }

    fn spawn(&mut self, slot: Slot) -> Result<Running, SpawnError> {
        // See `bpf_off` for why a pinned LKG also means no BPF sensor.
        let cmd = self.slots.command_for(slot, &self.config.agent)?;
        let (reader, write) = heartbeat::pipe().map_err(SpawnError::HeartbeatPipe)?;
        let mut command = Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .env(GUARD_FD_ENV, write.as_raw_fd().to_string())
            .stdin(Stdio::null())
            // Its own process group, so a stop or a kill reaches the agent's helpers too.
            .process_group(0);
        for key in SYSTEMD_ENV {
            command.env_remove(key);
        }
        match bpf_off(self.machine.state()) {
            Some(why) => {
                tracing::warn!(%why, "the agent starts without its BPF sensor");
                command.env(BPF_OFF_ENV, why);
            }
            None => {
                command.env_remove(BPF_OFF_ENV);
            }
        }
        ringfence_sys::process::supervise_on_spawn(&mut command, write.as_raw_fd());
        let child = command.spawn().map_err(|source| SpawnError::Exec {
            program: cmd.program.clone(),
            source,
        })?;
        drop(write);
        let raw = i32::try_from(child.id()).map_err(|_| SpawnError::PidOutOfRange(child.id()))?;
        let pid = Pid::from_raw(raw);
        let pidfd = match ringfence_sys::process::pidfd_open(raw) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err(SpawnError::Pidfd(e));
            }
        };
        let now = Instant::now();
        Ok(Running {
            pid,
            pidfd,
            heartbeat: reader,
            last_beat: now,
            first_beat: None,
            started: now,
            ready: false,
            blessed: false,
            killing: None,
            said_stopping: false,
        })
    }

    fn check_deadlines(&mut self, now: Instant) {
        let Some(agent) = &mut self.agent else { return };
        if agent.killing.is_some() {
            return;
        }
        if let Some(timeout) = self.config.heartbeat_timeout
            && now >= agent.last_beat + timeout
        {
            tracing::warn!(
                pid = agent.pid.as_raw(),
                ?timeout,
                "agent missed its heartbeat; killing it"
            );
            // The whole group: a hung agent holding fanotify must go so blocked execs proceed.
            if let Err(error) = killpg(agent.pid, Signal::SIGKILL) {
                tracing::error!(%error, "cannot kill the hung agent");
            }
            agent.killing = Some(now);
            self.write_status(Phase::Killing);
            return;
        }
        let since = healthy_since(self.config.heartbeat_timeout, agent);
        if !agent.blessed && since.is_some_and(|t| now >= t + self.config.bless_after) {
            agent.blessed = true;
            self.machine.on_healthy();
            tracing::info!(slot = self.slot.as_str(), "agent healthy; release blessed");
            self.save_state();
            self.write_status(Phase::Running);
        }
    }

    fn next_wakeup(&self, now: Instant, watchdog: Option<Instant>) -> PollTimeout {
        let mut at: Vec<Instant> = watchdog.into_iter().collect();
        match &self.agent {
            None => at.push(self.next_start),
            Some(agent) if agent.killing.is_none() => {
                if let Some(timeout) = self.config.heartbeat_timeout {
                    at.push(agent.last_beat + timeout);
                }
                if !agent.blessed
                    && let Some(t) = healthy_since(self.config.heartbeat_timeout, agent)
                {
                    at.push(t + self.config.bless_after);
                }
            }
            Some(_) => {}
        }
        if self.config.own_process {
            // Orphans reparented to us are reaped at least this often.
            at.push(now + Duration::from_secs(30));
        }
        match at.into_iter().min() {
            None => PollTimeout::NONE,
            Some(t) => {
                // Round up so a wake-up is never a hair early and then spins.
                let ms = t.saturating_duration_since(now).as_micros().div_ceil(1000);
                PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
        }
    }

    fn on_heartbeat(&mut self) {
        let Some(agent) = &mut self.agent else { return };
        let drained = agent.heartbeat.drain();
        if drained.bytes > 0 {
            let now = Instant::now();
            agent.last_beat = now;
            agent.first_beat.get_or_insert(now);
        }
        if drained.stopping && !agent.said_stopping {
            agent.said_stopping = true;
            tracing::info!(pid = agent.pid.as_raw(), "agent asked to stop; stopping");
        }
        if drained.ready && !agent.ready {
            agent.ready = true;
            tracing::info!(
                pid = agent.pid.as_raw(),
                slot = self.slot.as_str(),
                "agent ready"
            );
            self.write_status(Phase::Running);
        }
    }

    fn on_agent_exit(&mut self, shutdown: &dyn Shutdown) {
        let Some(agent) = &self.agent else { return };
        // Zombie now: its pid cannot be reused, so the group kill cannot hit a stranger.
        let _ = killpg(agent.pid, Signal::SIGKILL);
        let status = match waitpid(agent.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return,
            other => other,
        };
        self.agent_gone(status, shutdown);
    }

    /// The agent is gone: a requested stop is logged and restarted (the host must not stay
    /// unprotected), a crash is reported and counted. Exactly one of the two, once per run.
    fn agent_gone(&mut self, status: nix::Result<WaitStatus>, shutdown: &dyn Shutdown) {
        let Some(mut agent) = self.agent.take() else {
            return;
        };
        // Asked now, after the exit: the agent may have been faster than our own signal.
        let stop_pending = shutdown.pending();
        // A `stopping` line may sit unread in the pipe next to the exit.
        if !agent.heartbeat.eof() && agent.heartbeat.drain().stopping {
            agent.said_stopping = true;
        }
        let outcome = if agent.killing.is_some() {
            Failure::Hung
        } else {
            match status {
                Ok(WaitStatus::Exited(_, code)) => Failure::Exited(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => Failure::Signaled(signal_name(signal)),
                Ok(other) => Failure::Signaled(format!("{other:?}")),
                Err(error) => Failure::Signaled(format!("unknown ({error})")),
            }
        };
        let failure = match policy::classify(outcome, agent.said_stopping, stop_pending) {
            Ending::Requested(why) => {
                tracing::info!(pid = agent.pid.as_raw(), %why, ran = ?agent.started.elapsed(), "agent stopped on request");
                self.on_requested_stop(format!("agent {why}"));
                return;
            }
            Ending::Failed(failure) => failure,
        };
        tracing::warn!(pid = agent.pid.as_raw(), %failure, ran = ?agent.started.elapsed(), "agent stopped");
        let ran_ms = u64::try_from(agent.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Err(error) =
            crate::crash_report::write(&self.config.data_dir, &failure, self.slot, ran_ms)
        {
            tracing::warn!("could not write the crash report: {error}");
        }
        self.on_failure(failure);
    }

    /// Not a failure: no report, no crash window, the boot try given back; the agent comes back
    /// after the first backoff step unless the guard itself is stopping (the run loop serves a
    /// pending stop before any start).
    fn on_requested_stop(&mut self, why: String) {
        self.machine.on_requested_stop();
        self.last_stop = Some(why);
        self.next_start = Instant::now() + self.config.backoff.delay(0, self.jitter.next_unit());
        self.save_state();
        self.write_status(Phase::Backoff);
    }

    fn on_failure(&mut self, failure: Failure) {
        let now = Instant::now();
        let decision = self
            .machine
            .on_failure(now - self.epoch, unix_secs(), &failure);
        self.last_failure = Some(format!("agent {failure}"));
        match decision {
            Decision::Restart { attempt } => {
                let delay = self.config.backoff.delay(attempt, self.jitter.next_unit());
                tracing::info!(?delay, attempt, "restarting the agent after backoff");
                self.next_start = now + delay;
            }
            Decision::RestoreLkg(restore) => {
                tracing::warn!(reason = %restore.reason, detail = %restore.detail, "restoring the last known good slot now");
                self.next_start = now;
            }
        }
        self.save_state();
        self.write_status(Phase::Backoff);
    }

    /// Orphans of the agent reparented to us (we are a subreaper): reap them so no zombies pile
    /// up. If the agent itself is among them, handle its exit.
    fn reap_orphans(&mut self, shutdown: &dyn Shutdown) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if status.pid().is_some() && status.pid() == self.agent.as_ref().map(|a| a.pid)
                    {
                        self.agent_gone(Ok(status), shutdown);
                    }
                }
            }
        }
    }

    /// Passes an upgrade request to the agent alone (not its process group: the crash monitor
    /// is not an agent). The agent re-executes itself under the same pid, so nothing here
    /// changes; if the new image dies, that is an agent exit like any other.
    fn forward_upgrade(&mut self) {
        match &self.agent {
            Some(agent) => {
                tracing::info!(
                    pid = agent.pid.as_raw(),
                    "asking the agent to upgrade in place"
                );
                if let Err(error) = kill(agent.pid, Signal::SIGUSR2) {
                    tracing::warn!(%error, "could not signal the agent");
                }
            }
            None => tracing::warn!(
                "upgrade requested while no agent runs; it starts on the new binary anyway"
            ),
        }
    }

    fn stop(&mut self, shutdown: &dyn Shutdown) {
        self.notifier.stopping();
        self.write_status(Phase::Stopping);
        if let Some(agent) = &self.agent {
            tracing::info!(pid = agent.pid.as_raw(), grace = ?self.config.stop_grace, "stopping the agent");
            let _ = killpg(agent.pid, Signal::SIGTERM);
            let deadline = Instant::now() + self.config.stop_grace;
            let mut exited = false;
            while !exited {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let mut fds = [
                    PollFd::new(agent.pidfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(shutdown.as_fd(), PollFlags::POLLIN),
                ];
                let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
                if poll(
                    &mut fds,
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                )
                .is_err()
                {
                    continue;
                }
                exited = fds[0].revents().is_some_and(|r| !r.is_empty());
                // A second stop request while waiting means: do not wait any longer.
                if fds[1].revents().is_some_and(|r| !r.is_empty()) && shutdown.take() {
                    break;
                }
            }
            if !exited {
                tracing::warn!(
                    pid = agent.pid.as_raw(),
                    "agent ignored SIGTERM; killing it"
                );
            }
            // Always: the agent's helpers in its group must not outlive it.
            let _ = killpg(agent.pid, Signal::SIGKILL);
            let mut fds = [PollFd::new(agent.pidfd.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(5000u16));
            let _ = waitpid(agent.pid, Some(WaitPidFlag::WNOHANG));
            self.agent = None;
            // We asked: whatever it died of, this is no crash and no boot try spent.
            self.machine.on_requested_stop();
            self.last_stop = Some("agent stopped by the guard".to_owned());
            self.save_state();
        }
        self.write_status(Phase::Stopped);
    }

    fn save_state(&self) {
        if let Err(error) = state::save(&state_path(&self.config.data_dir), self.machine.state()) {
            // Keep supervising: an agent without a boot counter beats no agent.
            tracing::error!(%error, "cannot persist guard state");
        }
    }

    /// The status as it would be written now.
    pub fn status(&self, phase: Phase) -> Status {
        let state = self.machine.state();
        Status {
            guard_pid: std::process::id(),
            phase,
            agent_pid: self.agent.as_ref().map(|a| a.pid.as_raw() as u32),
            slot: self.slot,
            release: state.release.clone(),
            agent_ready: self.agent.as_ref().is_some_and(|a| a.ready),
            restarts: state.restarts,
            failures_in_window: self.machine.failures_in_window(),
            last_failure: self.last_failure.clone(),
            last_stop: self.last_stop.clone(),
            boot_tries_left: state.boot_tries_left,
            boot_tries_max: state.boot_tries_max,
            blessed: state.blessed,
            last_restore: state.last_restore.clone(),
            pinned_lkg: state.pinned_lkg.clone(),
            updated_at_unix: unix_secs(),
        }
    }

    fn write_status(&self, phase: Phase) {
        let status = self.status(phase);
        self.notifier.status(&status.summary());
        if let Err(error) = status::write(&status_path(&self.config.data_dir), &status) {
            tracing::warn!(%error, "cannot write guard status");
        }
    }
}

/// Why the agent must start without its BPF sensor, if it must: while the guard runs the last
/// known good slot after a boot loop or crash loop. The guard cannot tell an agent crash from a
/// kernel panic the sensor caused (both look like a start that never got healthy), so kernel
/// code is the first thing a host in trouble gives up; the pin's end (a new release,
/// `ringfence guard reset`) brings the sensor back.
fn bpf_off(state: &GuardState) -> Option<String> {
    state.pinned_lkg.as_ref().map(|pin| {
        format!(
            "switched off by the guard after a {} ({}); it returns with the next release or \
             `ringfence guard reset`",
            pin.reason, pin.detail
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Restore, RestoreReason};

    #[test]
    fn a_pinned_lkg_switches_the_bpf_sensor_off_with_why() {
        let mut state = GuardState::fresh(3);
        assert_eq!(bpf_off(&state), None);
        state.pinned_lkg = Some(Restore {
            at_unix: 1,
            reason: RestoreReason::BootLoop,
            detail: "3 starts never became healthy".into(),
        });
        let why = bpf_off(&state).expect("off");
        assert!(
            why.contains("boot loop") && why.contains("3 starts never became healthy"),
            "{why}"
        );
    }
}
