//! `ringfence bench engine`: what running detection in wasm costs.
//!
//! Every figure is measured in this run against a baseline from the same run: trivial engine
//! throughput (unbatched and batched), the host→wasm call cost, the same allow-list logic native
//! and in wasm, the time from a trap to a fresh instance serving again, and the cost of
//! enforcing deadlines with epoch interruption.

use crate::stats::{Percentiles, Row, nanos, print, throughput};
use anyhow::Context;
use ringfence_allowlist::RuleSet;
use ringfence_bundled_engines as bundled;
use ringfence_engine_host::{EngineSettings, EngineWorker, LoadedEngine, Runtime, RuntimeConfig};
use ringfence_protocol::{Event, ExecEvent, corpus};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options for `ringfence bench engine`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Events per measurement.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Trap/recover cycles to measure.
    #[arg(long, default_value_t = 300)]
    pub traps: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// 100 rules in the shape real allow-lists have: specific denies first, then broad allows.
pub fn allowlist_100() -> String {
    let mut rules = String::from("# generated: 100 rules\n");
    for i in 0..88 {
        rules.push_str(&format!("deny /opt/vendor{i}/bin/*\n"));
    }
    for dir in [
        "/tmp/**",
        "/var/tmp/**",
        "/dev/shm/**",
        "/home/*/.cache/**",
        "/usr/bin/nc*",
        "/usr/bin/ncat",
    ] {
        rules.push_str(&format!("deny {dir}\n"));
    }
    for dir in [
        "/usr/bin/*",
        "/usr/sbin/*",
        "/usr/lib/**",
        "/bin/*",
        "/sbin/*",
        "/opt/app/**",
    ] {
        rules.push_str(&format!("allow {dir}\n"));
    }
    rules
}

fn worker(
    runtime: &Runtime,
    name: &str,
    wasm: &[u8],
    content: &[u8],
) -> anyhow::Result<EngineWorker> {
    let mut settings = EngineSettings::new(name);
    // The trap benchmark fails on purpose, hundreds of times.
    settings.quarantine.failures = u32::MAX;
    let engine = LoadedEngine::load(runtime, settings, wasm, content)?;
    let mut worker = EngineWorker::new(engine)?;
    worker.wait_for_spare(Duration::from_secs(10));
    Ok(worker)
}

fn per_second_unbatched(worker: &mut EngineWorker, events: &[Event]) -> f64 {
    throughput(events.len(), |i| {
        std::hint::black_box(worker.decide(&events[i]));
    })
}

fn per_second_batched(worker: &mut EngineWorker, events: &[Event], batch: usize) -> f64 {
    let batches: Vec<&[Event]> = events.chunks(batch).collect();
    let started = Instant::now();
    for chunk in &batches {
        std::hint::black_box(worker.decide_batch(chunk));
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

fn exec(exe: &str) -> Event {
    Event::Exec(ExecEvent {
        pid: 1,
        ppid: 1,
        uid: 0,
        gid: 0,
        exe: exe.to_owned(),
        argv: vec![exe.to_owned()],
        cwd: "/".to_owned(),
        parent_exe: "/usr/bin/bash".to_owned(),
        user: String::new(),
        group: String::new(),
        ancestors: Vec::new(),
    })
}

/// Runs the benchmark and prints its report.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let events = corpus::generate(options.events, 42);
    let runtime = Runtime::new()?;
    let mut rows = Vec::new();

    // Trivial engine: the floor of what a wasm engine costs.
    let mut trivial = worker(&runtime, "faulty", bundled::faulty(), b"ok")?;
    per_second_unbatched(&mut trivial, &events[..events.len().min(10_000)]);
    let unbatched = per_second_unbatched(&mut trivial, &events);
    let batched = per_second_batched(&mut trivial, &events, 64);
    rows.push(Row::new("trivial engine, unbatched", unbatched, "events/s").goal("≥ 1M/s per core"));
    rows.push(
        Row::new("trivial engine, batches of 64", batched, "events/s")
            .ratio(batched / unbatched, "of unbatched")
            .goal("≥ 1M/s per core"),
    );
    rows.push(Row::new(
        "host→wasm call, full cost",
        1e9 / unbatched,
        "ns/call",
    ));

    // Deadlines: the same trivial engine with epoch interruption compiled out.
    let no_deadlines = Runtime::with_config(RuntimeConfig { deadlines: false })?;
    let mut unguarded = worker(&no_deadlines, "faulty", bundled::faulty(), b"ok")?;
    per_second_unbatched(&mut unguarded, &events[..events.len().min(10_000)]);
    let unguarded_rate = per_second_unbatched(&mut unguarded, &events);
    rows.push(
        Row::new(
            "trivial engine without deadlines",
            unguarded_rate,
            "events/s",
        )
        .ratio(unguarded_rate / unbatched, "speed-up without epoch checks"),
    );

    // The same allow-list logic, native and in wasm.
    let rules_text = allowlist_100();
    let rules = RuleSet::parse(rules_text.as_bytes()).context("parse generated rules")?;
    let paths: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::Exec(exec) => exec.exe.as_str(),
            Event::Open(open) => open.path.as_str(),
            _ => "/usr/bin/true",
        })
        .collect();
    let native = throughput(paths.len(), |i| {
        std::hint::black_box(rules.evaluate(paths[i]));
    });
    let mut allowlist = worker(
        &runtime,
        "exec-allowlist",
        bundled::exec_allowlist(),
        rules_text.as_bytes(),
    )?;
    per_second_unbatched(&mut allowlist, &events[..events.len().min(10_000)]);
    let wasm = per_second_unbatched(&mut allowlist, &events);
    let wasm_batched = per_second_batched(&mut allowlist, &events, 64);
    rows.push(Row::new(
        "allow-list (100 rules), native",
        native,
        "events/s",
    ));
    rows.push(
        Row::new("allow-list (100 rules), wasm", wasm, "events/s")
            .ratio(native / wasm, "slower than native")
            .goal("≤ 1.5× slower"),
    );
    rows.push(
        Row::new(
            "allow-list (100 rules), wasm batched",
            wasm_batched,
            "events/s",
        )
        .ratio(native / wasm_batched, "slower than native")
        .goal("≤ 1.5× slower"),
    );
    let logic_ns = (1e9 / wasm) - (1e9 / unbatched);
    rows.push(
        Row::new(
            "allow-list logic in wasm, minus call cost",
            logic_ns.max(0.0),
            "ns/event",
        )
        .ratio(logic_ns.max(0.0) / (1e9 / native), "of native logic"),
    );

    // Trap → fresh instance serving again.
    let mut faulty = worker(
        &runtime,
        "faulty",
        bundled::faulty(),
        b"trap /usr/bin/crashme",
    )?;
    let crash = exec("/usr/bin/crashme");
    let good = exec("/usr/bin/ls");
    let mut recoveries = Vec::with_capacity(options.traps);
    let mut steady = Vec::with_capacity(options.traps);
    for _ in 0..options.traps {
        faulty.wait_for_spare(Duration::from_secs(5));
        let t = Instant::now();
        std::hint::black_box(faulty.decide(&good));
        steady.push(t.elapsed());
        let t = Instant::now();
        let crashed = faulty.decide(&crash);
        let served = faulty.decide(&good);
        recoveries.push(t.elapsed());
        anyhow::ensure!(
            crashed.failure.is_some() && served.failure.is_none(),
            "trap cycle misbehaved"
        );
    }
    let recovery = Percentiles::of(&mut recoveries);
    let baseline = Percentiles::of(&mut steady);
    rows.push(
        Row::new(
            "trap + fresh instance serving, p50",
            recovery.p50_ns as f64 / 1000.0,
            "µs",
        )
        .ratio(
            recovery.p50_ns as f64 / baseline.p50_ns.max(1) as f64,
            "of a normal call",
        )
        .goal("≤ 1 ms"),
    );
    rows.push(
        Row::new(
            "trap + fresh instance serving, p99",
            recovery.p99_ns as f64 / 1000.0,
            "µs",
        )
        .goal("≤ 1 ms"),
    );

    // Cold path, for reference: what the warm spare saves.
    let engine = Arc::clone(faulty.engine());
    let t = Instant::now();
    let cold = EngineWorker::new(engine)?;
    let cold_ns = nanos(t.elapsed());
    drop(cold);
    rows.push(Row::new(
        "cold instance: instantiate + init + load-content",
        cold_ns as f64 / 1000.0,
        "µs",
    ));

    print("ringfence bench engine", &rows, options.json)
}
