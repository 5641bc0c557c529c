//! Timing helpers and report printing shared by the benchmarks.

use serde::Serialize;
use std::time::{Duration, Instant};

/// Percentiles of a set of durations, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Percentiles {
    pub fn of(samples: &mut [Duration]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            nanos(samples[index])
        };
        Percentiles {
            p50_ns: at(0.5),
            p99_ns: at(0.99),
            max_ns: nanos(samples[samples.len() - 1]),
        }
    }
}

pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Runs `f` `iterations` times and returns operations per second.
pub fn throughput(iterations: usize, mut f: impl FnMut(usize)) -> f64 {
    let started = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    iterations as f64 / started.elapsed().as_secs_f64()
}

/// One line of a benchmark report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// Against the baseline named in `baseline`, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// The goal from the brief, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<&'static str>,
}

impl Row {
    pub fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Row {
        Row {
            name: name.into(),
            value,
            unit,
            ratio: None,
            baseline: None,
            goal: None,
        }
    }

    pub fn ratio(mut self, ratio: f64, baseline: impl Into<String>) -> Row {
        self.ratio = Some(ratio);
        self.baseline = Some(baseline.into());
        self
    }

    pub fn goal(mut self, goal: &'static str) -> Row {
        self.goal = Some(goal);
        self
    }
}

/// Prints rows as an aligned table, or as one JSON object with `rows`.
pub fn print(title: &str, rows: &[Row], json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "bench": title, "rows": rows }))?
        );
        return Ok(());
    }
    println!("{title}");
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for row in rows {
        let value = if row.value >= 1000.0 {
            format!("{:>12.0}", row.value)
        } else {
            format!("{:>12.2}", row.value)
        };
        let ratio = match (&row.ratio, &row.baseline) {
            (Some(ratio), Some(baseline)) => format!("  {ratio:>6.2}× {baseline}"),
            _ => String::new(),
        };
        let goal = row
            .goal
            .map(|g| format!("  (goal: {g})"))
            .unwrap_or_default();
        println!(
            "  {:<width$}  {value} {:<8}{ratio}{goal}",
            row.name, row.unit
        );
    }
    Ok(())
}
