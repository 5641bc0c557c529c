//! The fault matrix: every way a release can be bad — it crashes, crashes rarely, stalls,
//! loops, eats memory, or denies everything — published with preflight skipped against a
//! fleet that runs a good release, as a vendor in a hurry would. Each must halt in the first
//! ring and every host must come back to the good release without a person.
//!
//! The end-to-end test and `ringfence bench fleet-faults` both drive this, so the figures in
//! `bench/RESULTS.md` come from the same fleet the test asserts on.

use crate::control::Control;
use crate::fleet::Fleet;
use crate::{DemoError, io};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One kind of bad release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Traps on every event (a crash in the sandbox).
    Trap,
    /// Traps only on execs of `/usr/bin/ls`, a few percent of events.
    RareTrap,
    /// Stays busy for twice the deadline on every event: it never crashes.
    Slow,
    /// Never returns.
    Loop,
    /// Allocates without bound.
    Oom,
    /// A logical failure: an allow-list that denies every exec.
    DenyAll,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::Trap,
        Fault::RareTrap,
        Fault::Slow,
        Fault::Loop,
        Fault::Oom,
        Fault::DenyAll,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Trap => "trap",
            Fault::RareTrap => "rare-trap",
            Fault::Slow => "slow",
            Fault::Loop => "loop",
            Fault::Oom => "oom",
            Fault::DenyAll => "deny-all",
        }
    }

    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|fault| fault.name() == name)
    }

    /// The bundled engine and the content that make this fault.
    pub fn release(self) -> (&'static str, &'static str) {
        match self {
            Fault::Trap => ("faulty", "trap"),
            Fault::RareTrap => ("faulty", "trap /usr/bin/ls"),
            Fault::Slow => ("faulty", "slow"),
            Fault::Loop => ("faulty", "loop"),
            Fault::Oom => ("faulty", "oom"),
            Fault::DenyAll => ("exec-allowlist", "default deny\n"),
        }
    }

    /// What the release does, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::Trap => "traps on every event",
            Fault::RareTrap => "traps on execs of /usr/bin/ls only",
            Fault::Slow => "never crashes but stalls every call past its deadline",
            Fault::Loop => "never returns from a call",
            Fault::Oom => "allocates memory without bound",
            Fault::DenyAll => "denies every exec (a logical failure, no crash at all)",
        }
    }
}

/// What happened to one bad release.
#[derive(Debug, Clone, Serialize)]
pub struct FaultOutcome {
    pub fault: Fault,
    pub version: String,
    /// The rollout's final phase: `rolled_back` when the gates caught it.
    pub phase: String,
    /// The deepest ring the release was given (0 = the first).
    pub furthest_ring: u64,
    /// Hosts that reported running the bad release.
    pub hosts_reached: usize,
    /// Hosts that tried it on their own recent events before switching and refused it: it
    /// never served there.
    pub hosts_refused: usize,
    pub hosts_total: usize,
    /// From the rollout's start to its halt, by the server's clock.
    pub time_to_halt_s: f64,
    /// From the halt until every host reported the good release again.
    pub time_to_recover_s: f64,
    /// Every host runs the good release again.
    pub all_back: bool,
    /// The gates that tripped, each with its numbers.
    pub tripped: Vec<String>,
    pub reason: String,
}

impl FaultOutcome {
    /// Halted in the first ring and every host back on the good release.
    pub fn contained(&self) -> bool {
        self.phase == "rolled_back" && self.furthest_ring == 0 && self.all_back
    }
}

#[derive(Debug, Clone)]
pub struct FaultFleetOptions {
    /// The `ringfence` binary.
    pub exe: PathBuf,
    pub hosts: usize,
    pub canaries: usize,
    /// Permission events per second per host.
    pub rate: u64,
    /// Bake time per ring of every bad rollout, seconds.
    pub bake_s: f64,
}

impl Default for FaultFleetOptions {
    fn default() -> Self {
        FaultFleetOptions {
            exe: PathBuf::from("ringfence"),
            hosts: 6,
            canaries: 2,
            rate: 100,
            bake_s: 15.0,
        }
    }
}

const GOOD: &str = "1.0.0";
const POLL: Duration = Duration::from_millis(250);

/// A fleet running a good release, ready to be given bad ones.
pub struct FaultFleet {
    pub fleet: Fleet,
    pub control: Control,
    options: FaultFleetOptions,
    hosts_total: usize,
    next_minor: u32,
}

impl FaultFleet {
    /// Starts a server and `hosts` agents under guards replaying a generated corpus, then
    /// rolls the good release out to all of them.
    pub fn start(options: FaultFleetOptions) -> Result<FaultFleet, DemoError> {
        let this = FaultFleet::launch(options)?;
        this.install_good()?;
        Ok(this)
    }

    /// Starts a server and `hosts` agents under guards replaying a generated corpus, with no
    /// release on any channel yet.
    pub fn launch(options: FaultFleetOptions) -> Result<FaultFleet, DemoError> {
        let mut fleet = Fleet::start_server(&options.exe)?;
        let control = Control::new(&fleet)?;
        let corpus = fleet.dir.path().join("traffic.jsonl");
        let events = ringfence_protocol::corpus::generate(2_000, 2024);
        let file = std::fs::File::create(&corpus).map_err(io("write the traffic corpus"))?;
        ringfence_protocol::corpus::write(std::io::BufWriter::new(file), &events)
            .map_err(io("write the traffic corpus"))?;
        let tokens = fleet.enroll_tokens(options.hosts)?;
        fleet.start_hosts(&tokens, options.canaries, false, &corpus, options.rate)?;
        let this = FaultFleet {
            fleet,
            control,
            hosts_total: options.hosts,
            options,
            next_minor: 1,
        };
        let hosts = this.hosts_total as u64;
        this.wait("every host to enroll", Duration::from_secs(120), |c| {
            Ok(c.get("/api/v1/status")?["online"].as_u64() == Some(hosts))
        })?;
        Ok(this)
    }

    /// Publishes the good release (preflight on) and rolls it out to every host.
    pub fn install_good(&self) -> Result<(), DemoError> {
        self.control
            .publish(GOOD, "faulty", "ok", "healthy detection content", false)?
            .map_err(DemoError::Failed)?;
        let rollout = self.control.start_rollout(GOOD, 1.0)?;
        let id = rollout["id"].as_str().unwrap_or_default().to_owned();
        let done = self.follow(&id, Duration::from_secs(180))?;
        if done["phase"] != "completed" {
            return Err(DemoError::Failed(format!(
                "the good release did not complete: {}; reports: {}",
                done["reason"],
                self.evidence()?
            )));
        }
        self.wait(
            "every host on the good release",
            Duration::from_secs(60),
            |c| Ok(c.versions()?.values().all(|v| v.as_deref() == Some(GOOD))),
        )
    }

    pub fn hosts_total(&self) -> usize {
        self.hosts_total
    }

    /// Waits for `done`, failing after `timeout` saying `what`.
    pub fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Control) -> Result<bool, DemoError>,
    ) -> Result<(), DemoError> {
        let started = Instant::now();
        loop {
            if done(&self.control)? {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(DemoError::Failed(format!(
                    "timed out after {} s waiting for {what}",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The failure and crash reports the server holds, for a message that explains a halt.
    pub fn evidence(&self) -> Result<String, DemoError> {
        let mut out = Vec::new();
        for kind in ["failure", "crash"] {
            let reports = self.control.get(&format!("/api/v1/reports?kind={kind}"))?;
            for report in reports["reports"].as_array().cloned().unwrap_or_default() {
                out.push(format!("{kind}: {}", report["body"]));
            }
        }
        Ok(out.join("; "))
    }

    /// Follows a rollout until it leaves the running phase.
    pub fn follow(&self, id: &str, timeout: Duration) -> Result<Value, DemoError> {
        let started = Instant::now();
        loop {
            let rollout = self.control.rollout(id)?;
            if rollout["phase"] != "running" {
                return Ok(rollout);
            }
            if started.elapsed() > timeout {
                return Err(DemoError::Failed(format!(
                    "rollout {id} neither finished nor halted within {} s",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Publishes the next version of the good content (preflight on) and follows its rollout
    /// to its end: the final rollout record.
    pub fn release_good(&mut self, bake_s: f64) -> Result<Value, DemoError> {
        let version = format!("1.{}.0", self.next_minor);
        self.next_minor += 1;
        self.control
            .publish(&version, "faulty", "ok", "healthy detection content", false)?
            .map_err(DemoError::Failed)?;
        let rollout = self.control.start_rollout(&version, bake_s)?;
        let id = rollout["id"].as_str().unwrap_or_default().to_owned();
        self.follow(&id, Duration::from_secs_f64(bake_s * 6.0 + 120.0))
    }

    /// Publishes a release with `fault` (preflight skipped), rolls it out, and follows it to
    /// its end and the fleet back to the good release.
    pub fn inject(&mut self, fault: Fault) -> Result<FaultOutcome, DemoError> {
        let version = format!("1.{}.0", self.next_minor);
        self.next_minor += 1;
        let (engine, content) = fault.release();
        self.control
            .publish(&version, engine, content, fault.describe(), true)?
            .map_err(DemoError::Failed)?;
        let rollout = self.control.start_rollout(&version, self.options.bake_s)?;
        let id = rollout["id"].as_str().unwrap_or_default().to_owned();
        // Four rings of bake plus installs: a release the gates miss completes well within.
        let limit = Duration::from_secs_f64(self.options.bake_s * 6.0 + 120.0);
        let last = self.follow(&id, limit)?;
        let ended_ms = last["ended_ms"].as_i64().unwrap_or(0);
        let phase = last["phase"].as_str().unwrap_or("?").to_owned();
        let tripped = last["gates"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|gate| gate["passed"] == false)
            .filter_map(|gate| gate["explanation"].as_str().map(str::to_owned))
            .collect();
        let back = self.wait(
            "every host back on the good release",
            Duration::from_secs(120),
            |c| c.all_on_since(GOOD, ended_ms),
        );
        let time_to_recover_s =
            (ringfence_protocol::clock::unix_ms() - ended_ms).max(0) as f64 / 1000.0;
        Ok(FaultOutcome {
            fault,
            hosts_reached: self.control.reached(&version)?.len(),
            hosts_refused: self.control.refused(&version)?.len(),
            hosts_total: self.hosts_total,
            furthest_ring: last["ring"].as_u64().unwrap_or(0),
            time_to_halt_s: (ended_ms - last["started_ms"].as_i64().unwrap_or(ended_ms)) as f64
                / 1000.0,
            time_to_recover_s,
            all_back: back.is_ok(),
            tripped,
            reason: last["reason"].as_str().unwrap_or_default().to_owned(),
            phase,
            version,
        })
    }
}

/// The outcomes as a table for people.
pub fn table(outcomes: &[FaultOutcome]) -> String {
    let mut out = format!(
        "{:<10} {:<12} {:>5} {:>8} {:>8} {:>8} {:>10}  {}\n",
        "fault", "phase", "ring", "ran it", "refused", "halt s", "recover s", "gate that tripped"
    );
    for o in outcomes {
        out.push_str(&format!(
            "{:<10} {:<12} {:>5} {:>8} {:>8} {:>8.1} {:>10.1}  {}\n",
            o.fault.name(),
            o.phase,
            o.furthest_ring,
            format!("{}/{}", o.hosts_reached, o.hosts_total),
            o.hosts_refused,
            o.time_to_halt_s,
            o.time_to_recover_s,
            o.tripped.first().map(String::as_str).unwrap_or("-"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::releases::CHANNEL;

    #[test]
    fn every_fault_has_a_name_that_parses_back() {
        for fault in Fault::ALL {
            assert_eq!(Fault::parse(fault.name()), Some(fault));
            let (engine, _) = fault.release();
            assert!(
                ringfence_bundled_engines::get(engine).is_some(),
                "{engine} is bundled"
            );
        }
        assert_eq!(Fault::parse("meteor"), None);
    }

    #[test]
    fn the_channel_is_the_demo_channel() {
        assert_eq!(CHANNEL, "detection");
    }
}
