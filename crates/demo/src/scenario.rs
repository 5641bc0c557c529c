//! The acts, driven through the server's API, narrated on the timeline.

use crate::control::Control;
use crate::fleet::Fleet;
use crate::releases::CHANNEL;
use crate::summary::Summary;
use crate::timeline::{Timeline, Tone};
use crate::{DemoError, io};
use ringfence_protocol::FailureKind;
use ringfence_protocol::report::ReportBody;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The `ringfence` binary to run the server, guards and agents with.
    pub exe: PathBuf,
    pub hosts: usize,
    pub canaries: usize,
    /// Add one agent on the live fanotify sensor (needs root).
    pub live: bool,
    /// Permission events per second per replayed host.
    pub rate: u64,
    /// Bake time per ring for the good release, seconds.
    pub bake_s: f64,
    /// Print nothing but the summary (as JSON).
    pub quiet: bool,
    /// After the story, keep the fleet running (dashboard and CLI work against it) until
    /// Ctrl-C; the summary follows then.
    pub keep: bool,
}

const GOOD: &str = "1.0.0";
const BAD: &str = "2.0.0";
const BAD_AGAIN: &str = "2.0.1";
const STALL: &str = "3.0.0";
const POLL: Duration = Duration::from_millis(250);

/// What one bad rollout did.
struct BadRun {
    /// The rollout's last state.
    last: Value,
    /// Hosts seen running the bad release.
    hosts: BTreeSet<String>,
    /// Explanations of the gates that tripped.
    tripped: Vec<String>,
    time_to_recover_s: f64,
}

pub(crate) struct Demo {
    pub(crate) fleet: Fleet,
    pub(crate) control: Control,
    pub(crate) timeline: Timeline,
    interrupted: Arc<AtomicBool>,
}

impl Demo {
    pub(crate) fn check(&self) -> Result<(), DemoError> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(DemoError::Interrupted);
        }
        Ok(())
    }

    /// Waits for `done` while checking for Ctrl-C; fails after `timeout` saying `what`.
    pub(crate) fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Demo) -> Result<bool, DemoError>,
    ) -> Result<(), DemoError> {
        let started = Instant::now();
        loop {
            self.check()?;
            if done(self)? {
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

    /// How to reach the running fleet from another terminal or a browser.
    fn say_how_to_look(&self) {
        let fleet = &self.fleet;
        self.timeline.say(
            Tone::Note,
            format!("  dashboard: {}/#token={}", fleet.url, fleet.operator),
        );
        self.timeline.say(
            Tone::Note,
            format!(
                "  CLI: export RINGFENCE_SERVER={} RINGFENCE_CA={} RINGFENCE_TOKEN={}; ringfence status",
                fleet.url,
                fleet.ca_file().display(),
                fleet.operator
            ),
        );
    }

    /// Rolls `version` out with a long bake, narrates hosts it reaches, crash groups and the
    /// gates that trip, then waits until every host runs the good release again.
    fn watch_bad_rollout(&self, version: &str) -> Result<BadRun, DemoError> {
        let rollout = self.control.start_rollout(version, 60.0)?;
        let id = rollout["id"].as_str().unwrap_or_default().to_owned();
        let started = Instant::now();
        let mut hosts = BTreeSet::new();
        let mut seen_groups = 0usize;
        let last = loop {
            self.check()?;
            for (host, running) in self.control.versions()? {
                if running.as_deref() == Some(version) && hosts.insert(host.clone()) {
                    self.timeline
                        .say(Tone::Bad, format!("  {host} now runs {version}"));
                }
            }
            let groups = self.control.get("/api/v1/crash-groups")?;
            let groups = groups["groups"].as_array().cloned().unwrap_or_default();
            let release = format!("{CHANNEL}@{version}");
            let bad_groups: Vec<&Value> =
                groups.iter().filter(|g| g["release"] == release).collect();
            for group in bad_groups.iter().skip(seen_groups) {
                self.timeline.say(
                    Tone::Note,
                    format!(
                        "  crash report: {}",
                        group["summary"].as_str().unwrap_or("")
                    ),
                );
            }
            seen_groups = seen_groups.max(bad_groups.len());
            let rollout = self.control.rollout(&id)?;
            if rollout["phase"] != "running" {
                break rollout;
            }
            if started.elapsed() > Duration::from_secs(180) {
                return Err(DemoError::Failed(format!(
                    "the rollout of {version} neither finished nor halted in 180 s"
                )));
            }
            std::thread::sleep(POLL);
        };
        let mut tripped = Vec::new();
        for gate in last["gates"].as_array().cloned().unwrap_or_default() {
            if gate["passed"] == false {
                let explanation = gate["explanation"].as_str().unwrap_or("").to_owned();
                self.timeline
                    .say(Tone::Bad, format!("  gate tripped: {explanation}"));
                tripped.push(explanation);
            }
        }
        self.timeline.say(
            Tone::Good,
            format!("  {}", last["reason"].as_str().unwrap_or("rollout stopped")),
        );
        let ended_ms = last["ended_ms"].as_i64().unwrap_or(0);
        self.wait(
            "every host back on the good release",
            Duration::from_secs(120),
            |d| d.control.all_on_since(GOOD, ended_ms),
        )?;
        // Measured from the server's own halt time, not from when we noticed it.
        let time_to_recover_s = (now_s() - ended_ms as f64 / 1000.0).max(0.0);
        self.timeline.say(
            Tone::Good,
            format!("  every host runs {GOOD} again, {time_to_recover_s:.1} s after the halt"),
        );
        Ok(BadRun {
            last,
            hosts,
            tripped,
            time_to_recover_s,
        })
    }

    /// Follows a rollout until it is final, narrating ring changes; returns its last state.
    fn follow_rollout(&self, id: &str, timeout: Duration) -> Result<Value, DemoError> {
        let mut last_ring = u64::MAX;
        let mut last_phase = String::new();
        let started = Instant::now();
        loop {
            self.check()?;
            let rollout = self.control.rollout(id)?;
            let ring = rollout["ring"].as_u64().unwrap_or(0);
            let phase = rollout["phase"].as_str().unwrap_or("?").to_owned();
            if ring != last_ring && phase == "running" {
                let name = rollout["ring_name"].as_str().unwrap_or("?");
                let percent = &rollout["rings"][ring as usize]["percent"];
                let canaries = if ring == 0 {
                    " plus the hosts tagged canary"
                } else {
                    ""
                };
                self.timeline.say(
                    Tone::Note,
                    format!("  ring {ring} ({name}: {percent}% of hosts{canaries}) is baking"),
                );
                last_ring = ring;
            }
            if phase != last_phase && phase != "running" {
                return Ok(rollout);
            }
            last_phase = phase;
            if started.elapsed() > timeout {
                return Err(DemoError::Failed(format!(
                    "rollout {id} did not finish within {} s",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(POLL);
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn run(options: DemoOptions) -> Result<Summary, DemoError> {
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        // A second demo in the same process keeps the first handler; both set flags only.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed));
    }
    let timeline = Timeline::new(options.quiet);
    let live = options.live && is_root();
    if options.live && !live {
        timeline.say(Tone::Note, "not root: no live fanotify agent this time (fanotify permission events need CAP_SYS_ADMIN); every host replays recorded traffic");
    }
    timeline.say(
        Tone::Step,
        "Starting a control plane: ringfence server with SQLite in a temporary directory",
    );
    let fleet = Fleet::start_server(&options.exe)?;
    timeline.say(
        Tone::Note,
        format!(
            "  listening on {} — data in {}",
            fleet.url,
            fleet.dir.path().display()
        ),
    );
    timeline.say(
        Tone::Note,
        format!(
            "  HTTPS with its own CA, fingerprint {} — agents pin it at enrollment",
            fleet.ca_fingerprint
        ),
    );
    let control = Control::new(&fleet)?;
    let demo_dashboard = format!("{}/#token={}", fleet.url, fleet.operator);
    timeline.say(
        Tone::Note,
        format!("  dashboard (logged in by the link): {demo_dashboard}"),
    );
    let mut demo = Demo {
        fleet,
        control,
        timeline,
        interrupted,
    };

    let corpus = demo.fleet.dir.path().join("traffic.jsonl");
    let events = ringfence_protocol::corpus::generate(2_000, 2024);
    let file = std::fs::File::create(&corpus).map_err(io("write the traffic corpus"))?;
    ringfence_protocol::corpus::write(std::io::BufWriter::new(file), &events)
        .map_err(io("write the traffic corpus"))?;

    let total = options.hosts + usize::from(live);
    demo.timeline.say(
        Tone::Step,
        format!(
            "Starting {total} hosts, each an agent under its own guard ({} tagged canary{})",
            options.canaries,
            if live { ", one on live fanotify" } else { "" }
        ),
    );
    let tokens = demo.fleet.enroll_tokens(total)?;
    demo.fleet
        .start_hosts(&tokens, options.canaries, live, &corpus, options.rate)?;
    demo.wait(
        "every host to enroll and report",
        Duration::from_secs(120),
        |d| {
            let status = d.control.get("/api/v1/status")?;
            Ok(status["online"].as_u64() == Some(total as u64))
        },
    )?;
    demo.timeline.say(
        Tone::Good,
        format!("  {total} hosts enrolled and heartbeating"),
    );

    // Act one.
    demo.timeline.say(
        Tone::Step,
        format!("Act one: publish detection content {GOOD} and roll it out"),
    );
    let good = demo
        .control
        .publish(GOOD, "faulty", "ok", "healthy detection content", false)?
        .map_err(DemoError::Failed)?;
    demo.timeline.say(
        Tone::Good,
        format!(
            "  preflight passed: {}",
            good["preflight_report"]["reason"].as_str().unwrap_or("")
        ),
    );
    let rollout = demo.control.start_rollout(GOOD, options.bake_s)?;
    let id = rollout["id"].as_str().unwrap_or_default().to_owned();
    let done = demo.follow_rollout(&id, Duration::from_secs(180))?;
    if done["phase"] != "completed" {
        return Err(DemoError::Failed(format!(
            "the good release did not complete: {}",
            done["reason"]
        )));
    }
    demo.wait(
        "every host on the good release",
        Duration::from_secs(60),
        |d| {
            Ok(d.control
                .versions()?
                .values()
                .all(|v| v.as_deref() == Some(GOOD)))
        },
    )?;
    demo.timeline.say(
        Tone::Good,
        format!("  {GOOD} runs on every host; waiting for hosts to bless it as last known good"),
    );
    std::thread::sleep(Duration::from_secs(4));

    demo.timeline.say(Tone::Step, format!("A vendor in a hurry: content {BAD} (a 21st field read from a 20-field template, like Channel File 291), preflight skipped"));
    demo.control
        .publish(BAD, "faulty", "cf291", "channel file 291", true)?
        .map_err(DemoError::Failed)?;
    demo.timeline.say(
        Tone::Bad,
        "  published with --skip-preflight (recorded in the audit log)",
    );
    let act_one = demo.watch_bad_rollout(BAD)?;
    let final_state = act_one.last.clone();
    let seen_hosts = act_one.hosts.clone();
    let time_to_recover_s = act_one.time_to_recover_s;
    let refused = demo.control.refused(BAD)?.len();
    if refused > 0 {
        demo.timeline.say(
            Tone::Good,
            format!(
                "  {refused} host(s) tried {BAD} on their own recent events before switching, \
                 saw it trap, kept the good release serving and reported the trap: it never \
                 answered a single live event"
            ),
        );
    }

    // Act two.
    demo.timeline.say(
        Tone::Step,
        format!("Act two: the same content as {BAD_AGAIN}, with preflight on"),
    );
    let (preflight_blocked, preflight_reason) = match demo.control.publish(
        BAD_AGAIN,
        "faulty",
        "cf291",
        "channel file 291, again",
        false,
    )? {
        Ok(_) => (false, String::new()),
        Err(reason) => (true, reason),
    };
    if preflight_blocked {
        demo.timeline
            .say(Tone::Good, format!("  {preflight_reason}"));
        demo.timeline.say(
            Tone::Good,
            "  the release never reaches a host: a rollout of it is refused",
        );
    } else {
        demo.timeline.say(Tone::Bad, "  preflight let it through");
    }

    // Act three.
    demo.timeline.say(
        Tone::Step,
        format!("Act three: content {STALL} never crashes — it stalls every call past its deadline; preflight skipped"),
    );
    demo.control
        .publish(STALL, "faulty", "slow", "stalls every call", true)?
        .map_err(DemoError::Failed)?;
    demo.timeline.say(
        Tone::Note,
        "  no trap, no crash: only the time its calls take can tell (the canary's own check before switching, then latency, deadline failures and quarantine)",
    );
    let act_three = demo.watch_bad_rollout(STALL)?;

    // Act four.
    demo.timeline.say(
        Tone::Step,
        "Act four: a crash outside the sandbox — the agent process itself dies (SIGSEGV, as a bug in native code would), again and again",
    );
    let restore = demo.crash_loop()?;

    let groups = demo.crash_groups()?;
    let crash_group_summaries: Vec<String> = groups
        .iter()
        .map(|group| group["summary"].as_str().unwrap_or("").to_owned())
        .collect();
    let failure_reports = demo.control.get("/api/v1/reports?kind=failure")?["reports"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let reached = demo.control.reached(BAD)?.len().max(seen_hosts.len());
    let time_to_halt_s = (final_state["ended_ms"].as_i64().unwrap_or(0)
        - final_state["started_ms"].as_i64().unwrap_or(0)) as f64
        / 1000.0;
    let restores = demo.control.get("/api/v1/reports?kind=restore")?["reports"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    // Trap time is in the failure record (the sandbox's clock); arrival is the server's.
    let mut latencies: Vec<f64> = demo.control.get("/api/v1/reports?kind=failure")?["reports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            let id = r["id"].as_str().unwrap_or_default();
            let ReportBody::Failure(failure) =
                ReportBody::decode(id, "failure", r["body"].clone()).ok()?
            else {
                return None;
            };
            if failure.record.kind != FailureKind::Trap {
                return None;
            }
            let trapped_ms = failure.record.at_unix_ns as f64 / 1e6;
            let received_ms = r["received_at"].as_f64()?;
            Some(((received_ms - trapped_ms) / 1000.0).max(0.0))
        })
        .collect();
    latencies.sort_by(f64::total_cmp);

    if options.keep {
        demo.timeline.say(
            Tone::Step,
            "The fleet keeps running: open the dashboard or point the CLI at it; Ctrl-C stops it and prints the summary",
        );
        demo.say_how_to_look();
        while !demo.interrupted.swap(false, Ordering::Relaxed) {
            std::thread::sleep(POLL);
        }
    }
    demo.timeline.say(Tone::Step, "Stopping the fleet");
    demo.fleet.stop_hosts();
    let mut summary = Summary {
        hosts_total: total,
        canary_hosts: options.canaries,
        live_host: live,
        hosts_reached_by_bad_release: reached,
        hosts_refused_bad_release: refused,
        bad_release_max_ring: final_state["ring"].as_u64().unwrap_or(0),
        time_to_halt_s,
        time_to_recover_s,
        crash_groups: crash_group_summaries.len(),
        crash_group_summaries,
        failure_reports,
        guard_restore_host: restore.host,
        guard_restore_s: restore.restored_in_s,
        guard_restore_reported: restore.reported,
        preflight_blocked,
        preflight_reason,
        guard_restores: restores,
        stall_hosts_reached: demo
            .control
            .reached(STALL)?
            .len()
            .max(act_three.hosts.len()),
        stall_hosts_refused: demo.control.refused(STALL)?.len(),
        stall_max_ring: act_three.last["ring"].as_u64().unwrap_or(0),
        stall_halted: act_three.last["phase"] == "rolled_back",
        stall_gates: act_three.tripped,
        crash_report_latency_s: latencies.get(latencies.len() / 2).copied().unwrap_or(0.0),
        crash_report_latency_max_s: latencies.last().copied().unwrap_or(0.0),
        ..Summary::default()
    };
    for host in &demo.fleet.hosts {
        let Ok(text) = std::fs::read_to_string(host.dir.join("stats.json")) else {
            demo.timeline
                .say(Tone::Bad, format!("  {} left no final counters", host.name));
            continue;
        };
        let stats: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        summary.events_lost += stats["traffic_unanswered"].as_u64().unwrap_or(0);
        summary.events_answered +=
            stats["allowed"].as_u64().unwrap_or(0) + stats["denied"].as_u64().unwrap_or(0);
        summary.wrong_denies += stats["denied"].as_u64().unwrap_or(0);
        summary.engine_failures_contained += stats["engine_failures"].as_u64().unwrap_or(0);
    }
    summary.wall_time_s = demo.timeline.seconds();
    Ok(summary)
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
