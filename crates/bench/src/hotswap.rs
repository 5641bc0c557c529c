//! `ringfence bench hotswap`: what a live engine swap costs while permission events stream in.
//!
//! Submits replayed permission events to an in-process agent at a fixed rate (default 100k/s)
//! for a few seconds, swaps the engine set once in the middle, and reports: how long the swap
//! took (the `swap_engines` call, and until every worker serves the new generation), how many
//! events were never answered (`dropped`) or counted as answered twice (`duplicated`), and the
//! p99 verdict latency of events submitted during the swap window against steady state.
//!
//! A ticket is answered with one compare-and-swap, so a second kernel answer is impossible by
//! construction; `duplicated` counts answers the agent *counted* beyond the tickets it was
//! given, and `second_attempts_refused` how often a late verdict found the ticket answered.
//! No root needed: tickets are detached, exactly as the replay sensor uses them.

use crate::stats::{Percentiles, Row, print};
use anyhow::Context;
use ringfence_agent::{Agent, AgentConfig, MuteSet};
use ringfence_engine_host::{EngineSettings, LoadedEngine, Runtime};
use ringfence_protocol::{Event, FailurePolicy};
use ringfence_sensor::Ticket;
use serde::Serialize;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Options for `ringfence bench hotswap`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Permission events submitted per second.
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    /// Length of the run; the swap happens halfway.
    #[arg(long = "duration", default_value = "4s", value_parser = crate::seconds)]
    pub seconds: f64,
    /// Agent worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// The agent's permission deadline.
    #[arg(long = "perm-deadline", default_value = "20ms", value_parser = ringfence_protocol::duration::parse_millis)]
    pub perm_deadline_ms: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The measured result; `dropped`, `duplicated` and `swap_us` are the keys the issue asks for.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub submitted: u64,
    pub target_rate: u64,
    pub achieved_rate: f64,
    pub dropped: u64,
    pub duplicated: u64,
    pub second_attempts_refused: u64,
    /// The `swap_engines` call plus the wait until every worker serves the new generation.
    pub swap_us: f64,
    /// The `swap_engines` call alone (instantiation of every worker's engines included).
    pub swap_call_us: f64,
    pub steady: Percentiles,
    pub during_swap: Percentiles,
    pub during_swap_events: u64,
    pub queue_full: u64,
    pub deadline_answers: u64,
    pub lazy_engine_builds: u64,
    pub generation: u64,
}

fn engine(runtime: &Runtime, content: &[u8]) -> anyhow::Result<Arc<LoadedEngine>> {
    let wasm = ringfence_bundled_engines::get("exec-allowlist")
        .context("bundled engine exec-allowlist")?
        .wasm;
    let settings = EngineSettings::new("exec-allowlist").with_policy(FailurePolicy::FailOpen);
    Ok(LoadedEngine::load(runtime, settings, wasm, content)?)
}

/// One answered event: when it was submitted (from the run's start) and how long it waited.
struct Sample {
    at: Duration,
    waited: Duration,
}

/// Watches submitted tickets and times each answer; returns the samples and what never got
/// an answer within `grace` after the feeder stopped.
fn collect(
    started: Instant,
    submitted: &mpsc::Receiver<(Arc<Ticket>, Instant)>,
    grace: Duration,
) -> (Vec<Sample>, u64) {
    let mut pending: Vec<(Arc<Ticket>, Instant)> = Vec::new();
    let mut samples = Vec::new();
    let mut closed = false;
    let mut closed_at = None;
    loop {
        loop {
            match submitted.try_recv() {
                Ok(entry) => pending.push(entry),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let now = Instant::now();
        pending.retain(|(ticket, at)| {
            if ticket.answer().is_some() {
                samples.push(Sample {
                    at: at.duration_since(started),
                    waited: now.duration_since(*at),
                });
                false
            } else {
                true
            }
        });
        if closed {
            let since = *closed_at.get_or_insert(now);
            if pending.is_empty() || now.duration_since(since) > grace {
                return (samples, pending.len() as u64);
            }
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}

pub fn measure(options: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(
        options.rate > 0 && options.seconds > 0.0,
        "rate and seconds must be positive"
    );
    let runtime = Runtime::new()?;
    let before = engine(&runtime, b"deny /usr/bin/curl\nallow /**\n")?;
    let after = engine(
        &runtime,
        b"deny /usr/bin/curl\ndeny /usr/bin/wget\nallow /**\n",
    )?;
    let agent = Arc::new(Agent::start(
        AgentConfig {
            sensors: Vec::new(),
            discard_alerts: true,
            mute: MuteSet::default(),
            perm_deadline: Duration::from_millis(options.perm_deadline_ms),
            workers: options.workers.max(1),
            queue_capacity: 65_536,
            cache: false,
            ..AgentConfig::default()
        },
        vec![before],
    )?);
    let events: Vec<Event> = ringfence_protocol::corpus::generate(30_000, 17)
        .into_iter()
        .filter(|e| matches!(e, Event::Exec(_) | Event::Open(_)))
        .collect();
    anyhow::ensure!(!events.is_empty(), "the corpus has no permission events");
    let total = (options.rate as f64 * options.seconds) as u64;
    let interval = Duration::from_secs_f64(1.0 / options.rate as f64);

    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let grace = Duration::from_millis(options.perm_deadline_ms) * 50 + Duration::from_secs(2);
    let collector = std::thread::Builder::new()
        .name("bench-collect".into())
        .spawn(move || collect(started, &rx, grace))?;
    // The swap runs on its own thread, as a control-plane update would, while the feeder keeps
    // submitting at the set rate.
    let swapper = {
        let agent = Arc::clone(&agent);
        let at = started + Duration::from_secs_f64(options.seconds / 2.0);
        std::thread::Builder::new()
            .name("bench-swap".into())
            .spawn(move || {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let from = Instant::now();
                let generation = agent.swap_engines(vec![after]);
                let call = from.elapsed();
                let served = agent.wait_serving(generation, Duration::from_secs(5));
                (
                    from.duration_since(started),
                    call,
                    from.elapsed(),
                    served,
                    generation,
                )
            })?
    };
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        // Sleep only for long gaps; at 100k/s the gaps are 10 µs and sleep is far coarser.
        while Instant::now() < due {
            if due.saturating_duration_since(Instant::now()) > Duration::from_micros(200) {
                std::thread::sleep(Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
        }
        let ticket = Arc::new(Ticket::detached());
        let at = Instant::now();
        let event = events[(i % events.len() as u64) as usize].clone();
        agent.submit(event, Arc::clone(&ticket));
        if tx.send((ticket, at)).is_err() {
            anyhow::bail!("the collector stopped early");
        }
    }
    let fed = started.elapsed();
    drop(tx);
    let (swap_at, swap_call, swap_total, served, generation) = swapper
        .join()
        .map_err(|_| anyhow::anyhow!("the swap thread panicked"))?;
    anyhow::ensure!(
        served,
        "workers did not all switch to the new engines within 5 s"
    );
    let (samples, dropped) = collector
        .join()
        .map_err(|_| anyhow::anyhow!("the collector panicked"))?;
    let stats = agent.stats();

    // The swap window: from the call until every worker switched, plus 50 ms for the queue
    // that built up meanwhile to drain. Steady state: the first half after 0.5 s of warm-up.
    let window_end = swap_at + swap_total + Duration::from_millis(50);
    let mut during: Vec<Duration> = samples
        .iter()
        .filter(|s| s.at >= swap_at && s.at <= window_end)
        .map(|s| s.waited)
        .collect();
    let mut steady: Vec<Duration> = samples
        .iter()
        .filter(|s| s.at >= Duration::from_millis(500) && s.at < swap_at)
        .map(|s| s.waited)
        .collect();
    Ok(Report {
        submitted: total,
        target_rate: options.rate,
        achieved_rate: total as f64 / fed.as_secs_f64(),
        dropped,
        duplicated: (stats.allowed + stats.denied).saturating_sub(total - dropped),
        second_attempts_refused: stats.late_verdicts,
        swap_us: swap_total.as_secs_f64() * 1e6,
        swap_call_us: swap_call.as_secs_f64() * 1e6,
        during_swap_events: during.len() as u64,
        steady: Percentiles::of(&mut steady),
        during_swap: Percentiles::of(&mut during),
        queue_full: stats.queue_full,
        deadline_answers: stats.deadline_answers,
        lazy_engine_builds: stats.lazy_engine_builds,
        generation,
    })
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let report = measure(options)?;
    if options.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    let rows = vec![
        Row::new("events submitted", report.submitted as f64, "events"),
        Row::new("achieved submit rate", report.achieved_rate, "events/s"),
        Row::new("swap (call + all workers switched)", report.swap_us, "µs").goal("≤ 1000 µs"),
        Row::new("swap_engines call", report.swap_call_us, "µs"),
        Row::new("dropped", report.dropped as f64, "events").goal("0"),
        Row::new("duplicated", report.duplicated as f64, "events").goal("0"),
        Row::new(
            "second answer attempts refused",
            report.second_attempts_refused as f64,
            "events",
        ),
        Row::new("steady p99 verdict", us(report.steady.p99_ns), "µs"),
        Row::new(
            "during-swap p99 verdict",
            us(report.during_swap.p99_ns),
            "µs",
        )
        .ratio(
            report.during_swap.p99_ns as f64 / report.steady.p99_ns.max(1) as f64,
            "steady p99",
        ),
        Row::new(
            "during-swap max verdict",
            us(report.during_swap.max_ns),
            "µs",
        ),
        Row::new(
            "answered by policy: queue full",
            report.queue_full as f64,
            "events",
        ),
        Row::new(
            "answered by policy: deadline",
            report.deadline_answers as f64,
            "events",
        ),
        Row::new(
            "engine builds on the event path",
            report.lazy_engine_builds as f64,
            "builds",
        ),
    ];
    print("hotswap", &rows, false)
}
