//! Act four: a crash the sandbox cannot contain. Content and engines fail inside wasm and cost
//! one verdict; a bug in the agent's own native code (or a kernel interface turning on it) kills
//! the process. That is the guard's job, and this act shows it doing it: one host's agent is
//! sent SIGSEGV three times in a row, the guard calls it a crash loop, starts the agent on the
//! last known good release within seconds, and the host reports the restore to the server. The
//! crash monitor's minidump becomes a crash group like any other.

use crate::DemoError;
use crate::fleet::Host;
use crate::scenario::Demo;
use crate::timeline::Tone;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The guard's default crash-loop threshold (`ringfence guard --failures`).
const CRASHES: usize = 3;

/// What the guard did for the crashed host.
pub(crate) struct GuardRestore {
    pub host: String,
    /// From the last crash to the agent serving on the last known good release.
    pub restored_in_s: f64,
    /// The host's `restore` report reached the server.
    pub reported: bool,
}

/// The guard's status file of `host`, when it can be read.
fn guard_status(host: &Host) -> Option<Value> {
    let text = std::fs::read_to_string(host.dir.join("guard/status.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The pid of the agent `host`'s guard runs, once it serves and is not `previous`.
fn serving_agent(host: &Host, previous: Option<u32>) -> Option<u32> {
    let status = guard_status(host)?;
    let pid = u32::try_from(status["agent_pid"].as_u64()?).ok()?;
    (status["phase"] == "running" && status["agent_ready"] == true && Some(pid) != previous)
        .then_some(pid)
}

impl Demo {
    pub(crate) fn crash_loop(&self) -> Result<GuardRestore, DemoError> {
        let host = self
            .fleet
            .hosts
            .iter()
            .rev()
            .find(|host| !host.name.ends_with("-live"))
            .ok_or_else(|| DemoError::Failed("no replaying host to crash".to_owned()))?;
        let known_groups = self.crash_group_signatures()?;
        let mut previous = None;
        let mut last_crash = Instant::now();
        for crash in 1..=CRASHES {
            let mut pid = None;
            self.wait(
                &format!("the agent of {} to serve", host.name),
                Duration::from_secs(60),
                |_| {
                    pid = serving_agent(host, previous);
                    Ok(pid.is_some())
                },
            )?;
            let Some(pid) = pid else { continue };
            let raw = i32::try_from(pid)
                .map_err(|_| DemoError::Failed(format!("agent pid {pid} out of range")))?;
            kill(Pid::from_raw(raw), Signal::SIGSEGV).map_err(|errno| {
                DemoError::Failed(format!("send SIGSEGV to the agent {pid}: {errno}"))
            })?;
            last_crash = Instant::now();
            self.timeline.say(
                Tone::Bad,
                format!(
                    "  crash {crash}/{CRASHES}: the agent of {} (pid {pid}) dies of SIGSEGV",
                    host.name
                ),
            );
            previous = Some(pid);
        }
        self.wait(
            &format!(
                "the guard of {} to restore the last known good release",
                host.name
            ),
            Duration::from_secs(60),
            |_| {
                Ok(guard_status(host).is_some_and(|status| {
                    status["slot"] == "lkg"
                        && status["agent_ready"] == true
                        && status["agent_pid"]
                            .as_u64()
                            .and_then(|p| u32::try_from(p).ok())
                            != previous
                }))
            },
        )?;
        let restored_in_s = last_crash.elapsed().as_secs_f64();
        let release = guard_status(host)
            .and_then(|status| status["release"].as_str().map(|r| format!("{r}, ")))
            .unwrap_or_default();
        self.timeline.say(
            Tone::Good,
            format!(
                "  the guard saw {CRASHES} crashes within its window: a crash loop. It started the \
                 agent on {release}its last known good release, serving {restored_in_s:.1} s after the \
                 last crash, with no person involved"
            ),
        );
        let agent_id = self.control.agent_id(&host.name)?;
        let mut reported = false;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !reported {
            self.check()?;
            reported = self.control.get("/api/v1/reports?kind=restore")?["reports"]
                .as_array()
                .is_some_and(|reports| reports.iter().any(|r| r["agent_id"] == agent_id.as_str()));
            if !reported {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        if reported {
            self.timeline.say(
                Tone::Good,
                format!("  {} reported the restore to the server", host.name),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut narrated = false;
        while Instant::now() < deadline && !narrated {
            for group in self.crash_groups()? {
                if !known_groups.contains(&group["signature"]) {
                    narrated = true;
                    self.timeline.say(
                        Tone::Note,
                        format!(
                            "  crash report (minidump from the crash monitor): {}",
                            group["summary"].as_str().unwrap_or("")
                        ),
                    );
                }
            }
            if !narrated {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        Ok(GuardRestore {
            host: host.name.clone(),
            restored_in_s,
            reported,
        })
    }

    pub(crate) fn crash_groups(&self) -> Result<Vec<Value>, DemoError> {
        Ok(self.control.get("/api/v1/crash-groups")?["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    fn crash_group_signatures(&self) -> Result<Vec<Value>, DemoError> {
        Ok(self
            .crash_groups()?
            .into_iter()
            .map(|group| group["signature"].clone())
            .collect())
    }
}
