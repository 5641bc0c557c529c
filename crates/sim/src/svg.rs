//! The chart `ringfence sim --svg` writes: hosts on the bad release over time, one line per
//! strategy (dashed: where the controller halted it), on a logarithmic scale so a 1% canary and
//! a whole fleet fit on the same axes.

use crate::report::SimReport;
use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];
/// Polylines are thinned to about this many points; the curve keeps its peaks.
const MAX_POINTS: usize = 2_000;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Keeps at most about `MAX_POINTS` points, taking the highest point of each stretch.
fn thin(series: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let stride = series.len().div_ceil(MAX_POINTS).max(1);
    if stride == 1 {
        return series.to_vec();
    }
    let mut out: Vec<(f64, u64)> = series
        .chunks(stride)
        .filter_map(|chunk| chunk.iter().copied().max_by_key(|&(_, n)| n))
        .collect();
    if let (Some(&last), Some(&kept)) = (series.last(), out.last())
        && last != kept
    {
        out.push(last);
    }
    out
}

/// Renders the affected-hosts chart as a standalone SVG document.
pub fn render_svg(report: &SimReport) -> String {
    let end = report
        .strategies
        .iter()
        .filter_map(|s| s.series.last().map(|&(t, _)| t))
        .fold(1.0_f64, f64::max);
    let peak = report
        .strategies
        .iter()
        .map(|s| s.peak_affected)
        .max()
        .unwrap_or(0)
        .max(1);
    let decades = (peak as f64).log10().ceil().max(1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |minutes: f64| LEFT + minutes / end * plot_w;
    // log10(1 + n), so zero hosts sits on the axis.
    let y = |hosts: u64| TOP + plot_h - ((1.0 + hosts as f64).log10() / decades).min(1.0) * plot_h;

    let mut svg = String::new();
    // Writing to a String cannot fail; the results are ignored throughout.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">Hosts on the bad release over time ({} endpoints, seed {})</text>"#,
        LEFT + plot_w / 2.0,
        report.config.endpoints,
        report.config.seed
    );
    // Horizontal grid: one line per decade.
    for d in 0..=decades as u32 {
        let hosts = 10u64.pow(d);
        let yy = TOP + plot_h - (f64::from(d) / decades) * plot_h;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{hosts}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    // Vertical grid: about eight round ticks in minutes.
    let step = nice_step(end / 8.0);
    let mut tick = 0.0;
    while tick <= end + 1e-9 {
        let xx = x(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            trim(tick)
        );
        tick += step;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">minutes since the rollout started</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">hosts running or down from the bad release (log scale)</text>"#,
        TOP + plot_h / 2.0
    );
    for (k, strategy) in report.strategies.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        // A step curve: each value holds until the next change.
        let mut points = String::new();
        let mut previous: Option<u64> = None;
        for (t, n) in thin(&strategy.series) {
            if let Some(p) = previous {
                let _ = write!(points, "{:.1},{:.1} ", x(t), y(p));
            }
            let _ = write!(points, "{:.1},{:.1} ", x(t), y(n));
            previous = Some(n);
        }
        if let Some(p) = previous {
            let _ = write!(points, "{:.1},{:.1}", x(end), y(p));
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>"#
        );
        // The controller's halt, where the curve should turn.
        if let Some(halt) = strategy.time_to_halt_min {
            let hx = x(halt);
            let _ = writeln!(
                svg,
                r#"<line x1="{hx:.1}" y1="{TOP}" x2="{hx:.1}" y2="{:.1}" stroke="{colour}" stroke-dasharray="4 4" opacity="0.6"/>"#,
                TOP + plot_h
            );
        }
        let ly = TOP + 10.0 + k as f64 * 36.0;
        let lx = LEFT + plot_w + 16.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text><text x="{}" y="{}" font-size="10" fill="#555">{} hosts, {:.2} %</text>"##,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(&strategy.name),
            lx + 26.0,
            ly + 18.0,
            strategy.hosts_reached,
            strategy.blast_radius_pct
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-3);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}
