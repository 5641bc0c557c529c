//! `ringfence bench sigma`: Sigma rule throughput in the wasm engine and the same matcher
//! natively, at 10, 100 and 1000 generated rules, in one run so the ratio means something;
//! plus content load time and instance memory.

use crate::stats::{Row, print};
use anyhow::Context;
use ringfence_engine_host::{EngineSettings, EngineWorker, LoadedEngine, Runtime};
use ringfence_protocol::{Action, Event};
use ringfence_sigma::{Config, Scratch, testgen};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options for `ringfence bench sigma`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Events per measurement (drawn from the generated corpus, exec and open events only).
    #[arg(long, default_value_t = 50_000)]
    pub events: usize,
    /// Rule counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 100, 1000])]
    pub rules: Vec<usize>,
    /// Seed for the rules and the corpus.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Events rules can see; fork/exit would flatter both sides equally and say nothing.
fn corpus(count: usize, seed: u64) -> Vec<Event> {
    let mut events: Vec<Event> = ringfence_protocol::corpus::generate(count * 2, seed)
        .into_iter()
        .filter(|e| matches!(e, Event::Exec(_) | Event::Open(_)))
        .collect();
    events.truncate(count);
    events
}

struct Measured {
    per_second: f64,
    alerts: usize,
}

fn native(content: &str, events: &[Event]) -> anyhow::Result<Measured> {
    let loaded = ringfence_sigma::load(content.as_bytes(), &Config::default())?;
    anyhow::ensure!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    let mut scratch = Scratch::default();
    // Warm up caches and branch predictors on a slice of the corpus.
    for event in events.iter().take(1000) {
        ringfence_sigma::protocol::decide(&loaded.rules, event, &mut scratch);
    }
    best(|| {
        let mut alerts = 0;
        let started = Instant::now();
        for event in events {
            let verdict = ringfence_sigma::protocol::decide(&loaded.rules, event, &mut scratch);
            alerts += usize::from(verdict.action != Action::Allow);
        }
        Ok(Measured {
            per_second: events.len() as f64 / started.elapsed().as_secs_f64(),
            alerts,
        })
    })
}

struct Wasm {
    measured: Measured,
    /// `on-events` in batches of [`BATCH`]: the matcher with the per-call host cost amortised.
    batched_per_second: f64,
    /// Component compile + link + first content load (what a new release costs).
    load: Duration,
    /// A fresh instance running `init` + `load-content` (what a respawn or hot swap costs).
    content_load: Duration,
    peak_memory: usize,
}

const BATCH: usize = 256;

/// Best of `REPEAT` runs: the machine is shared, and the fastest run is the least disturbed.
const REPEAT: usize = 3;

fn best(mut f: impl FnMut() -> anyhow::Result<Measured>) -> anyhow::Result<Measured> {
    let mut best = f()?;
    for _ in 1..REPEAT {
        let next = f()?;
        if next.per_second > best.per_second {
            best = next;
        }
    }
    Ok(best)
}

fn wasm(runtime: &Runtime, content: &str, events: &[Event]) -> anyhow::Result<Wasm> {
    let started = Instant::now();
    // The deadline is generous: this measures throughput, not containment.
    let settings = EngineSettings::new("sigma").with_deadline(Duration::from_millis(100));
    let engine = LoadedEngine::load(
        runtime,
        settings,
        ringfence_bundled_engines::sigma(),
        content.as_bytes(),
    )?;
    let load = started.elapsed();
    anyhow::ensure!(
        engine.content_summary().warnings.is_empty(),
        "{:?}",
        engine.content_summary().warnings
    );
    let started = Instant::now();
    let mut worker = EngineWorker::new(Arc::clone(&engine))?;
    let content_load = started.elapsed();
    worker.wait_for_spare(Duration::from_secs(30));
    for event in events.iter().take(1000) {
        worker.decide(event);
    }
    let measured = best(|| {
        let mut alerts = 0;
        let started = Instant::now();
        for event in events {
            let decision = worker.decide(event);
            anyhow::ensure!(decision.failure.is_none(), "{:?}", decision.failure);
            alerts += usize::from(decision.verdict.action != Action::Allow);
        }
        Ok(Measured {
            per_second: events.len() as f64 / started.elapsed().as_secs_f64(),
            alerts,
        })
    })?;
    let batched = best(|| {
        let started = Instant::now();
        let mut alerts = 0;
        for chunk in events.chunks(BATCH) {
            for decision in worker.decide_batch(chunk) {
                anyhow::ensure!(decision.failure.is_none(), "{:?}", decision.failure);
                alerts += usize::from(decision.verdict.action != Action::Allow);
            }
        }
        Ok(Measured {
            per_second: events.len() as f64 / started.elapsed().as_secs_f64(),
            alerts,
        })
    })?;
    Ok(Wasm {
        measured,
        batched_per_second: batched.per_second,
        load,
        content_load,
        peak_memory: worker.peak_memory(),
    })
}

/// Runs the benchmark and prints its report.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let events = corpus(options.events, options.seed);
    let runtime = Runtime::new().context("wasm runtime")?;
    let mut rows = Vec::new();
    for &count in &options.rules {
        let content = testgen::rules(count, options.seed);
        let started = Instant::now();
        let loaded = ringfence_sigma::load(content.as_bytes(), &Config::default())?;
        let native_load = started.elapsed();
        drop(loaded);
        let native = native(&content, &events)?;
        let wasm = wasm(&runtime, &content, &events)?;
        anyhow::ensure!(
            native.alerts == wasm.measured.alerts,
            "wasm and native disagree at {count} rules: {} vs {} alerts",
            wasm.measured.alerts,
            native.alerts
        );
        let goal = (count == 100).then_some("≥ 200k/s with 100 rules");
        let mut row = Row::new(
            format!("wasm, {count} rules"),
            wasm.measured.per_second,
            "events/s",
        )
        .ratio(
            native.per_second / wasm.measured.per_second,
            "slower than native (goal ≤ 1.5×)",
        );
        if let Some(goal) = goal {
            row = row.goal(goal);
        }
        rows.push(row);
        rows.push(
            Row::new(
                format!("wasm batched ({BATCH}/call), {count} rules"),
                wasm.batched_per_second,
                "events/s",
            )
            .ratio(
                native.per_second / wasm.batched_per_second,
                "slower than native",
            ),
        );
        rows.push(Row::new(
            format!("native, {count} rules"),
            native.per_second,
            "events/s",
        ));
        rows.push(Row::new(
            format!("alerts, {count} rules"),
            native.alerts as f64,
            "events",
        ));
        rows.push(Row::new(
            format!("wasm engine load (component compile + first content), {count} rules"),
            wasm.load.as_secs_f64() * 1000.0,
            "ms",
        ));
        rows.push(Row::new(
            format!("wasm content load (new instance: init + load-content), {count} rules"),
            wasm.content_load.as_secs_f64() * 1000.0,
            "ms",
        ));
        rows.push(Row::new(
            format!("native load, {count} rules"),
            native_load.as_secs_f64() * 1000.0,
            "ms",
        ));
        rows.push(Row::new(
            format!("instance peak memory, {count} rules"),
            wasm.peak_memory as f64 / (1024.0 * 1024.0),
            "MiB",
        ));
    }
    print(
        &format!(
            "sigma: {} exec/open events per measurement, one thread (per core)",
            events.len()
        ),
        &rows,
        options.json,
    )
}
