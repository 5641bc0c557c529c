//! The two acts, driven through the server's API, narrated on the timeline.

use crate::fleet::Fleet;
use crate::releases::{self, CHANNEL};
use crate::summary::Summary;
use crate::timeline::{Timeline, Tone};
use crate::{DemoError, io};
use ringfence_uplink::{CaCert, ClientError, ServerClient};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
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
}

const GOOD: &str = "1.0.0";
const BAD: &str = "2.0.0";
const BAD_AGAIN: &str = "2.0.1";
const POLL: Duration = Duration::from_millis(250);

struct Demo {
    fleet: Fleet,
    client: ServerClient,
    timeline: Timeline,
    interrupted: Arc<AtomicBool>,
}

impl Demo {
    fn check(&self) -> Result<(), DemoError> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(DemoError::Interrupted);
        }
        Ok(())
    }

    fn get(&self, path: &str) -> Result<Value, DemoError> {
        Ok(self.client.get_json("demo", path)?)
    }

    /// Waits for `done` while checking for Ctrl-C; fails after `timeout` saying `what`.
    fn wait(
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

    fn publish(
        &self,
        version: &str,
        content: &str,
        notes: &str,
        skip_preflight: bool,
    ) -> Result<Result<Value, String>, DemoError> {
        let key = self.fleet.server_dir().join("release.key");
        let bundle = releases::build(&key, version, content, notes)?;
        let path = format!("/api/v1/releases?skip_preflight={skip_preflight}");
        match self.client.post_bytes::<Value>("publish", &path, &bundle) {
            Ok(release) => Ok(Ok(release)),
            Err(ClientError::Refused {
                status: 422,
                message,
                ..
            }) => Ok(Err(message)),
            Err(error) => Err(error.into()),
        }
    }

    fn start_rollout(&self, version: &str, bake_s: f64) -> Result<Value, DemoError> {
        let body = json!({"channel": CHANNEL, "version": version, "rings": "1,10,50,100", "bake_s": bake_s});
        Ok(self
            .client
            .post_json("rollout", "/api/v1/rollouts", &body)?)
    }

    /// Hostname → the version of the channel it reports running.
    fn versions(&self) -> Result<BTreeMap<String, Option<String>>, DemoError> {
        let agents = self.get("/api/v1/agents")?;
        let mut out = BTreeMap::new();
        for agent in agents["agents"].as_array().cloned().unwrap_or_default() {
            let host = agent["hostname"].as_str().unwrap_or("?").to_owned();
            let version = agent["status"]["releases"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["channel"] == CHANNEL))
                .and_then(|r| r["current"].as_str())
                .map(str::to_owned);
            out.insert(host, version);
        }
        Ok(out)
    }

    /// True when every host has reported, after `since_ms`, that it runs `version`: a report
    /// from before the halt says nothing about recovery.
    fn all_on_since(&self, version: &str, since_ms: i64) -> Result<bool, DemoError> {
        let agents = self.get("/api/v1/agents")?;
        Ok(agents["agents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .all(|agent| {
                let current = agent["status"]["releases"]
                    .as_array()
                    .and_then(|r| r.iter().find(|r| r["channel"] == CHANNEL))
                    .and_then(|r| r["current"].as_str());
                current == Some(version)
                    && agent["last_seen_at_ms"].as_i64().unwrap_or(0) > since_ms
            }))
    }

    /// Agents whose install reports say they ran `version`.
    fn reached(&self, version: &str) -> Result<BTreeSet<String>, DemoError> {
        let reports = self.get("/api/v1/reports?kind=install")?;
        Ok(reports["reports"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|r| r["body"]["version"] == version && r["body"]["outcome"] == "running")
            .filter_map(|r| r["agent_id"].as_str().map(str::to_owned))
            .collect())
    }

    /// Follows a rollout until it is final, narrating ring changes; returns its last state.
    fn follow_rollout(&self, id: &str, timeout: Duration) -> Result<Value, DemoError> {
        let mut last_ring = u64::MAX;
        let mut last_phase = String::new();
        let started = Instant::now();
        loop {
            self.check()?;
            let rollout = self.get(&format!("/api/v1/rollouts/{id}"))?;
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
    let ca = CaCert::read_file(&fleet.ca_file())
        .map_err(|e| DemoError::Failed(format!("the server's CA: {e}")))?;
    let client = ServerClient::new(&fleet.url, Duration::from_secs(120))
        .with_ca(&ca)
        .with_credential(&fleet.operator);
    let mut demo = Demo {
        fleet,
        client,
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
            let status = d.get("/api/v1/status")?;
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
        .publish(GOOD, "ok", "healthy detection content", false)?
        .map_err(DemoError::Failed)?;
    demo.timeline.say(
        Tone::Good,
        format!(
            "  preflight passed: {}",
            good["preflight_report"]["reason"].as_str().unwrap_or("")
        ),
    );
    let rollout = demo.start_rollout(GOOD, options.bake_s)?;
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
        |d| Ok(d.versions()?.values().all(|v| v.as_deref() == Some(GOOD))),
    )?;
    demo.timeline.say(
        Tone::Good,
        format!("  {GOOD} runs on every host; waiting for hosts to bless it as last known good"),
    );
    std::thread::sleep(Duration::from_secs(4));

    demo.timeline.say(Tone::Step, format!("A vendor in a hurry: content {BAD} (a 21st field read from a 20-field template, like Channel File 291), preflight skipped"));
    demo.publish(BAD, "cf291", "channel file 291", true)?
        .map_err(DemoError::Failed)?;
    demo.timeline.say(
        Tone::Bad,
        "  published with --skip-preflight (recorded in the audit log)",
    );
    let rollout = demo.start_rollout(BAD, 60.0)?;
    let bad_id = rollout["id"].as_str().unwrap_or_default().to_owned();
    let started = Instant::now();
    let mut seen_hosts = BTreeSet::new();
    let mut seen_groups = 0usize;
    let final_state = loop {
        demo.check()?;
        for (host, version) in demo.versions()? {
            if version.as_deref() == Some(BAD) && seen_hosts.insert(host.clone()) {
                demo.timeline
                    .say(Tone::Bad, format!("  {host} now runs {BAD}"));
            }
        }
        let groups = demo.get("/api/v1/crash-groups")?;
        let groups = groups["groups"].as_array().cloned().unwrap_or_default();
        let bad_groups: Vec<&Value> = groups
            .iter()
            .filter(|g| g["release"] == format!("{CHANNEL}@{BAD}"))
            .collect();
        if bad_groups.len() > seen_groups {
            for group in &bad_groups[seen_groups..] {
                demo.timeline.say(
                    Tone::Note,
                    format!(
                        "  crash report: {}",
                        group["summary"].as_str().unwrap_or("")
                    ),
                );
            }
            seen_groups = bad_groups.len();
        }
        let rollout = demo.get(&format!("/api/v1/rollouts/{bad_id}"))?;
        if rollout["phase"] != "running" {
            break rollout;
        }
        if started.elapsed() > Duration::from_secs(180) {
            return Err(DemoError::Failed(
                "the bad rollout neither finished nor halted in 180 s".into(),
            ));
        }
        std::thread::sleep(POLL);
    };
    for gate in final_state["gates"].as_array().cloned().unwrap_or_default() {
        if gate["passed"] == false {
            demo.timeline.say(
                Tone::Bad,
                format!(
                    "  gate tripped: {}",
                    gate["explanation"].as_str().unwrap_or("")
                ),
            );
        }
    }
    demo.timeline.say(
        Tone::Good,
        format!(
            "  {}",
            final_state["reason"].as_str().unwrap_or("rollout stopped")
        ),
    );
    demo.wait(
        "every host back on the good release",
        Duration::from_secs(120),
        |d| d.all_on_since(GOOD, final_state["ended_ms"].as_i64().unwrap_or(0)),
    )?;
    // Measured from the server's own halt time, not from when we noticed it.
    let halted_at_s = final_state["ended_ms"].as_i64().unwrap_or(0) as f64 / 1000.0;
    let time_to_recover_s = (now_s() - halted_at_s).max(0.0);
    demo.timeline.say(
        Tone::Good,
        format!("  every host runs {GOOD} again, {time_to_recover_s:.1} s after the halt"),
    );

    // Act two.
    demo.timeline.say(
        Tone::Step,
        format!("Act two: the same content as {BAD_AGAIN}, with preflight on"),
    );
    let (preflight_blocked, preflight_reason) =
        match demo.publish(BAD_AGAIN, "cf291", "channel file 291, again", false)? {
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

    let groups = demo.get("/api/v1/crash-groups")?;
    let crash_groups = groups["groups"].as_array().map(Vec::len).unwrap_or(0);
    let reached = demo.reached(BAD)?.len().max(seen_hosts.len());
    let time_to_halt_s = (final_state["ended_ms"].as_i64().unwrap_or(0)
        - final_state["started_ms"].as_i64().unwrap_or(0)) as f64
        / 1000.0;
    let restores = demo.get("/api/v1/reports?kind=restore")?["reports"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    // Trap time is in the failure record (the sandbox's clock); arrival is the server's.
    let mut latencies: Vec<f64> = demo.get("/api/v1/reports?kind=failure")?["reports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|r| r["body"]["kind"] == "trap")
        .filter_map(|r| {
            let trapped_ms = r["body"]["at_unix_ns"].as_f64()? / 1e6;
            let received_ms = r["received_at"].as_f64()?;
            Some(((received_ms - trapped_ms) / 1000.0).max(0.0))
        })
        .collect();
    latencies.sort_by(f64::total_cmp);

    demo.timeline.say(Tone::Step, "Stopping the fleet");
    demo.fleet.stop_hosts();
    let mut summary = Summary {
        hosts_total: total,
        canary_hosts: options.canaries,
        live_host: live,
        hosts_reached_by_bad_release: reached,
        bad_release_max_ring: final_state["ring"].as_u64().unwrap_or(0),
        time_to_halt_s,
        time_to_recover_s,
        crash_groups,
        preflight_blocked,
        preflight_reason,
        guard_restores: restores,
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
