//! The comparison table `ringfence sim` prints: one row per strategy, columns aligned.

use crate::report::{Outcome, SimReport, StrategyResult};

fn minutes(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |m| format!("{m:.1} min"))
}

fn outcome(result: &StrategyResult) -> String {
    match result.outcome {
        Outcome::RolledBack => format!("halted in {}, rolled back", result.max_ring_name),
        Outcome::Completed => "completed: gates never tripped".to_owned(),
        Outcome::Unfinished => "unfinished at the time limit".to_owned(),
    }
}

fn rings(result: &StrategyResult) -> String {
    let percents: Vec<String> = result.rings.iter().map(|p| format!("{p}")).collect();
    percents.join(",")
}

/// Renders the report as an aligned plain-text table.
pub fn render_table(report: &SimReport) -> String {
    let header = [
        "strategy",
        "fault",
        "rings %",
        "hosts reached",
        "blast radius",
        "crashed",
        "hands-on",
        "time to halt",
        "signal to halt",
        "time to recover",
        "outcome",
    ];
    let rows: Vec<[String; 11]> = report
        .strategies
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.fault.to_string(),
                rings(r),
                r.hosts_reached.to_string(),
                format!("{:.2} %", r.blast_radius_pct),
                r.hosts_crashed.to_string(),
                r.hands_on_hosts.to_string(),
                minutes(r.time_to_halt_min),
                minutes(r.halt_after_signal_min),
                minutes(r.time_to_recover_min),
                outcome(r),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // Text columns align left, numbers right; the last column is not padded.
    let numeric = [
        false, false, false, true, true, true, true, true, true, true, false,
    ];
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (k, cell) in cells.iter().enumerate() {
            let pad = widths[k].saturating_sub(cell.chars().count());
            if k > 0 {
                out.push_str("  ");
            }
            if numeric[k] {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if k + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push('\n');
        out
    };
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = line(&header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}
