//! Agent self-upgrade: on `SIGUSR2` the agent replaces its own image with the binary it was
//! started from (typically just replaced by the package manager) without closing its fanotify
//! group, so no exec on the host runs unchecked and none is lost.
//!
//! The order matters, and each step is there for a failure seen or reasoned about:
//! 1. **Verify and probe** the new binary: with `--upgrade-pub`, its `<binary>.sig` must be a
//!    trusted signature of exactly these bytes (`ringfence release sign-binary`); then it runs
//!    `--version` in a child, bounded. A truncated file, an unsigned build, a binary for
//!    another machine or one missing a library is refused here, and the running agent carries
//!    on untouched. The file is opened once: what was verified is what is probed and executed
//!    (through `/proc/self/fd`), even if the path is replaced meanwhile.
//! 2. **Hand off** ([`Agent::handoff`]): readers stop without unmarking, events already read
//!    are decided by the engines and answered; new events wait in the kernel queue.
//! 3. **Ignore our own exec**: `execve` of the new binary (and its ELF interpreter) raises exec
//!    permission events on our own group, which no thread of ours can answer any more; an
//!    ignore mark lets it through, and the new image removes it at start.
//! 4. **Exec** with the group and the process-connector socket inheritable and named in
//!    [`ringfence_sensor::HANDOFF_ENV`]. The pid does not change: the guard's child, systemd's
//!    `MAINPID` and the guard heartbeat pipe (inherited) stay valid.
//! 5. If `execve` itself fails, the old image starts serving again on the same channels. If the
//!    new image dies after the exec, the guard sees its child exit and restarts the agent.

use crate::HostError;
use ringfence_agent::Agent;
use ringfence_release::{ArtifactSignature, TrustedKeys, signature_path};
use ringfence_sensor::{Channels, HANDOFF_ENV};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the new binary may take to answer `--version`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the next image comes from, and who must have signed it.
#[derive(Debug, Clone)]
pub struct SelfUpgrade {
    binary: PathBuf,
    trusted: Option<TrustedKeys>,
}

/// The next binary, opened once, verified and probed.
#[derive(Debug)]
pub struct Prepared {
    file: File,
}

impl Prepared {
    /// The path that names exactly the opened file, whatever happens to its name meanwhile.
    fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

impl SelfUpgrade {
    /// The binary at `binary`, or else the path this process was started from. Call it at
    /// start: once the package manager has replaced the file, `/proc/self/exe` reads
    /// "… (deleted)".
    ///
    /// With `trusted` keys, the binary must carry a valid `<binary>.sig` by one of them.
    pub fn new(
        binary: Option<PathBuf>,
        trusted: Option<TrustedKeys>,
    ) -> Result<SelfUpgrade, HostError> {
        let binary = match binary {
            Some(binary) => binary,
            None => {
                let exe = std::env::current_exe()
                    .map_err(|e| HostError::io("find this executable", e))?;
                let text = exe.to_string_lossy();
                match text.strip_suffix(" (deleted)") {
                    Some(path) => PathBuf::from(path),
                    None => exe,
                }
            }
        };
        Ok(SelfUpgrade { binary, trusted })
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Opens the binary, checks its signature when keys are trusted, and runs it with
    /// `--version` in a child; the prepared file, or why the binary is unfit.
    pub fn prepare(&self) -> Result<(Prepared, String), HostError> {
        let file = File::open(&self.binary)
            .map_err(|e| HostError::io(format!("open {}", self.binary.display()), e))?;
        if let Some(keys) = &self.trusted {
            let mut bytes = Vec::new();
            (&file)
                .read_to_end(&mut bytes)
                .map_err(|e| HostError::io(format!("read {}", self.binary.display()), e))?;
            let sig_path = signature_path(&self.binary);
            let sig = std::fs::read(&sig_path).map_err(|e| {
                HostError::io(
                    format!(
                        "{} is not signed: read {}",
                        self.binary.display(),
                        sig_path.display()
                    ),
                    e,
                )
            })?;
            let keyid = ArtifactSignature::parse(&sig)
                .and_then(|s| s.verify(keys, &bytes))
                .map_err(|source| HostError::Unverified {
                    binary: self.binary.display().to_string(),
                    source,
                })?;
            tracing::info!(%keyid, "new agent binary verified");
        }
        let prepared = Prepared { file };
        let version = self.probe(&prepared)?;
        Ok((prepared, version))
    }

    fn probe(&self, prepared: &Prepared) -> Result<String, HostError> {
        let mut child = Command::new(prepared.fd_path())
            .arg0(&self.binary)
            .arg("--version")
            .env_remove(HANDOFF_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| HostError::io(format!("{} does not start", self.binary.display()), e))?;
        let until = Instant::now() + PROBE_TIMEOUT;
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| HostError::io("wait for the probe", e))?
            {
                break status;
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HostError::Probe(format!(
                    "{} did not answer --version within {PROBE_TIMEOUT:?}",
                    self.binary.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let output = child
            .wait_with_output()
            .map_err(|e| HostError::io("read the probe's output", e))?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !(status.success() && version.starts_with("ringfence ")) {
            return Err(HostError::Probe(format!(
                "{} --version: {status}, printed {version:?}; not a ringfence binary that runs here",
                self.binary.display()
            )));
        }
        Ok(version)
    }

    /// Replaces this process image with the `prepared` binary, handing `agent`'s live channels
    /// over. Returns only when the exec failed: `Ok` with an agent serving again, started by
    /// `restart` on the same channels, after logging why.
    pub fn exec_or_resume(
        &self,
        agent: Agent,
        prepared: &Prepared,
        restart: impl FnOnce(Channels) -> Result<Agent, HostError>,
    ) -> Result<Agent, HostError> {
        let started = Instant::now();
        let (channels, _error) = self.handoff_and_exec(agent, prepared, || {});
        let agent = restart(channels)?;
        tracing::info!(gap = ?started.elapsed(), "serving again after the failed upgrade");
        Ok(agent)
    }

    /// [`SelfUpgrade::prepare`], saying why on standard error and in the log when it refuses.
    pub fn prepare_logged(&self) -> Result<Prepared, HostError> {
        match self.prepare() {
            Ok((prepared, version)) => {
                tracing::info!(binary = %self.binary.display(), %version, "upgrading in place");
                Ok(prepared)
            }
            Err(error) => {
                tracing::error!(%error, "upgrade refused; this agent keeps serving");
                eprintln!("ringfence agent: upgrade refused: {error}");
                Err(error)
            }
        }
    }

    /// Hands `agent` over, runs `handed_off` (what must be finished with the agent stopped and
    /// before this image is gone, such as spooling the failures of its last events), and
    /// executes the new image. Returns only if the exec failed, with the live channels (for
    /// the caller to serve again, or drop: closing the group makes the kernel allow whatever
    /// waits) and why.
    pub fn handoff_and_exec(
        &self,
        agent: Agent,
        prepared: &Prepared,
        handed_off: impl FnOnce(),
    ) -> (Channels, HostError) {
        let (mut channels, stats) = agent.handoff();
        handed_off();
        tracing::info!(?stats, "handed off; executing the new image");
        let error = match self.exec(&mut channels, prepared) {
            Ok(never) => match never {},
            Err(error) => error,
        };
        tracing::error!(%error, "upgrade failed after the handoff");
        eprintln!("ringfence agent: upgrade failed: {error}");
        (channels, error)
    }

    fn exec(
        &self,
        channels: &mut Channels,
        prepared: &Prepared,
    ) -> Result<std::convert::Infallible, HostError> {
        let path = prepared.fd_path();
        if let Some(fan) = &mut channels.fanotify {
            let files = ringfence_sensor::handoff::exec_opens(&path)
                .map_err(|e| HostError::io(format!("read {}", self.binary.display()), e))?;
            fan.ignore_exec_of(&files)?;
        }
        let inheritable = channels.inheritable()?;
        let mut command = Command::new(&path);
        command
            .arg0(&self.binary)
            .args(std::env::args_os().skip(1))
            .env(HANDOFF_ENV, inheritable.env_value());
        // The filter in force survives the exec; the next image need not stack a copy of it.
        match ringfence_hardening::agent_filter_in_force() {
            Some(id) => command.env(ringfence_hardening::INHERITED_FILTER_ENV, id),
            None => command.env_remove(ringfence_hardening::INHERITED_FILTER_ENV),
        };
        let error = command.exec();
        Err(HostError::io(
            format!("execve {}", self.binary.display()),
            error,
        ))
    }
}
