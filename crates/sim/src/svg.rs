//! The chart `ringfence sim --svg` writes: hosts on the bad release over time, one line per
//! strategy, in two panels on the same time axis. The upper one is logarithmic, so a 1 % canary
//! and a whole fleet fit on the same axes; the lower one is linear, so the eye sees how much
//! bigger one blast radius is than another. Each halt is a dashed line labelled with the ring it
//! happened in (named as the server names it), and hosts that need hands-on recovery are
//! labelled where their curve ends.

use crate::report::{SimReport, StrategyResult};
use std::fmt::Write as _;

const WIDTH: f64 = 1060.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 320.0;
const TOP: f64 = 40.0;
const PANEL: f64 = 300.0;
const GAP: f64 = 70.0;
const BOTTOM: f64 = 60.0;
const HEIGHT: f64 = TOP + PANEL + GAP + PANEL + BOTTOM;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const COLOURS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];
/// A white outline behind labels drawn over curves, so they stay readable.
const HALO: &str = r#"paint-order="stroke" stroke="white" stroke-width="3""#;
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

/// How a panel maps hosts to height.
#[derive(Clone, Copy)]
enum Scale {
    /// log10(1 + hosts) over this many decades, so zero hosts sits on the axis.
    Log { decades: f64 },
    /// Hosts over this many.
    Linear { top: f64 },
}

struct Panel {
    top: f64,
    scale: Scale,
}

impl Panel {
    fn y(&self, hosts: u64) -> f64 {
        let share = match self.scale {
            Scale::Log { decades } => (1.0 + hosts as f64).log10() / decades,
            Scale::Linear { top } => hosts as f64 / top,
        };
        self.top + PANEL - share.clamp(0.0, 1.0) * PANEL
    }

    /// The horizontal grid with host counts on the left, and the axis title.
    fn grid(&self, svg: &mut String) {
        let ticks: Vec<u64> = match self.scale {
            Scale::Log { decades } => (0..=decades as u32).map(|d| 10u64.pow(d)).collect(),
            Scale::Linear { top } => {
                let step = nice_step(top / 5.0);
                (0..=5)
                    .map(|k| (f64::from(k) * step) as u64)
                    .filter(|&hosts| hosts as f64 <= top + 1e-9)
                    .collect()
            }
        };
        for hosts in ticks {
            let yy = match self.scale {
                // The decade lines sit at 10^d, labelled with it, as log paper does.
                Scale::Log { decades } => {
                    self.top + PANEL - ((hosts as f64).log10() / decades) * PANEL
                }
                Scale::Linear { .. } => self.y(hosts),
            };
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{hosts}</text>"##,
                LEFT + PLOT_W,
                LEFT - 6.0,
                yy + 4.0
            );
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{:.1}" width="{PLOT_W}" height="{PANEL}" fill="none" stroke="#333"/>"##,
            self.top
        );
        let title = match self.scale {
            Scale::Log { .. } => "hosts on the bad release (log scale)",
            Scale::Linear { .. } => "hosts on the bad release (linear scale)",
        };
        let _ = writeln!(
            svg,
            r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{title}</text>"#,
            self.top + PANEL / 2.0
        );
    }
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
    let log = Panel {
        top: TOP,
        scale: Scale::Log {
            decades: (peak as f64).log10().ceil().max(1.0),
        },
    };
    let linear = Panel {
        top: TOP + PANEL + GAP,
        scale: Scale::Linear {
            top: nice_step(peak as f64 / 5.0) * 5.0,
        },
    };
    let x = |minutes: f64| LEFT + minutes / end * PLOT_W;

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
        LEFT + PLOT_W / 2.0,
        report.config.endpoints,
        report.config.seed
    );
    log.grid(&mut svg);
    linear.grid(&mut svg);
    // Vertical grid through both panels: about eight round ticks in minutes.
    let step = nice_step(end / 8.0);
    let mut tick = 0.0;
    while tick <= end + 1e-9 {
        let xx = x(tick);
        for panel in [&log, &linear] {
            let _ = writeln!(
                svg,
                r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                panel.top,
                panel.top + PANEL,
                panel.top + PANEL + 16.0,
                trim(tick)
            );
        }
        tick += step;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">minutes since the rollout started</text>"#,
        LEFT + PLOT_W / 2.0,
        HEIGHT - 15.0
    );
    for (k, strategy) in report.strategies.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        for panel in [&log, &linear] {
            curve(&mut svg, strategy, panel, colour, end, &x);
            halt_line(&mut svg, strategy, panel, colour, &x);
        }
        halt_label(&mut svg, strategy, &log, colour, k, &x);
        hands_on_label(&mut svg, strategy, &linear, colour, k);
        legend(&mut svg, strategy, colour, k);
    }
    svg.push_str("</svg>\n");
    svg
}

/// A step curve: each value holds until the next change.
fn curve(
    svg: &mut String,
    strategy: &StrategyResult,
    panel: &Panel,
    colour: &str,
    end: f64,
    x: &impl Fn(f64) -> f64,
) {
    let mut points = String::new();
    let mut previous: Option<u64> = None;
    for (t, n) in thin(&strategy.series) {
        if let Some(p) = previous {
            let _ = write!(points, "{:.1},{:.1} ", x(t), panel.y(p));
        }
        let _ = write!(points, "{:.1},{:.1} ", x(t), panel.y(n));
        previous = Some(n);
    }
    if let Some(p) = previous {
        let _ = write!(points, "{:.1},{:.1}", x(end), panel.y(p));
    }
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>"#
    );
}

/// The controller's halt, where the curve should turn.
fn halt_line(
    svg: &mut String,
    strategy: &StrategyResult,
    panel: &Panel,
    colour: &str,
    x: &impl Fn(f64) -> f64,
) {
    if let Some(halt) = strategy.time_to_halt_min {
        let hx = x(halt);
        let _ = writeln!(
            svg,
            r#"<line x1="{hx:.1}" y1="{:.1}" x2="{hx:.1}" y2="{:.1}" stroke="{colour}" stroke-dasharray="4 4" opacity="0.6"/>"#,
            panel.top,
            panel.top + PANEL
        );
    }
}

/// "rings: halted in ring0, 3.4 min" beside the halt line, one row per strategy so labels of
/// halts close in time do not overlap.
fn halt_label(
    svg: &mut String,
    strategy: &StrategyResult,
    panel: &Panel,
    colour: &str,
    k: usize,
    x: &impl Fn(f64) -> f64,
) {
    let Some(halt) = strategy.time_to_halt_min else {
        return;
    };
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="{colour}" {HALO}>{}: halted in {}, {:.1} min</text>"#,
        x(halt) + 4.0,
        panel.top + 14.0 + k as f64 * 13.0,
        escape(&strategy.name),
        escape(&strategy.max_ring_name),
        halt
    );
}

/// Hosts that cannot recover by themselves, where the curve ends: they stay on the chart
/// until a person reaches them.
fn hands_on_label(
    svg: &mut String,
    strategy: &StrategyResult,
    panel: &Panel,
    colour: &str,
    k: usize,
) {
    if strategy.hands_on_hosts == 0 {
        return;
    }
    let last = strategy.series.last().map_or(0, |&(_, n)| n);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="{colour}" text-anchor="end" {HALO}>{} hands-on</text>"#,
        LEFT + PLOT_W - 4.0,
        (panel.y(last) - 4.0 - k as f64 * 12.0).max(panel.top + 10.0),
        strategy.hands_on_hosts
    );
}

fn legend(svg: &mut String, strategy: &StrategyResult, colour: &str, k: usize) {
    let ly = TOP + 10.0 + k as f64 * 62.0;
    let lx = LEFT + PLOT_W + 16.0;
    let rings: Vec<String> = strategy
        .ring_names
        .iter()
        .zip(&strategy.rings)
        .map(|(name, percent)| format!("{name} {percent}%"))
        .collect();
    let outcome = match strategy.time_to_halt_min {
        Some(_) => format!("halted in {}", strategy.max_ring_name),
        None => "never halted".to_owned(),
    };
    let _ = writeln!(
        svg,
        r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text><text x="{}" y="{}" font-size="10" fill="#555">{} hosts ({:.2} %), {outcome}</text><text x="{}" y="{}" font-size="10" fill="#555">{} hands-on</text><text x="{}" y="{}" font-size="10" fill="#555">{}</text>"##,
        lx + 20.0,
        lx + 26.0,
        ly + 4.0,
        escape(&strategy.name),
        lx + 26.0,
        ly + 18.0,
        strategy.hosts_reached,
        strategy.blast_radius_pct,
        lx + 26.0,
        ly + 31.0,
        strategy.hands_on_hosts,
        lx + 26.0,
        ly + 44.0,
        escape(&rings.join(", "))
    );
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
