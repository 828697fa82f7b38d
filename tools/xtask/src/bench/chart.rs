//! The benchmark chart (`chart.svg`), drawn by hand as SVG text: per device
//! and workload, IOPS as a ratio of bypass (bypass itself is the reference
//! line) and absolute IOPS on a log scale beside the ceiling run's point of
//! the same queue depth (each bar's tooltip gives its `x_ceiling`), both
//! with 95% interval bars and the projection marker; then the mixed run beside the same points measured
//! alone; a caption says what was run where. Nothing is clipped: every axis
//! is sized to the largest value it shows.

use std::fmt::Write as _;

use super::report::{PointReport, Report};

/// Mode order and colours (colour-blind-safe Okabe-Ito palette).
const MODES: [(&str, &str); 4] = [
    ("bypass", "#999999"),
    ("strict-per-unmap", "#D55E00"),
    ("strict", "#0072B2"),
    ("deferred", "#009E73"),
];
/// The ceiling run's bars (absolute IOPS panels only).
const CEILING: (&str, &str) = ("ceiling", "#E69F00");
const PANEL_W: f64 = 470.0;
const PANEL_H: f64 = 250.0;
/// Left margin of a panel (tick labels and the axis title).
const AXIS_W: f64 = 62.0;
const GAP: f64 = 40.0;
/// Widest bar, so that a panel with few bars stays readable.
const MAX_BAR_W: f64 = 70.0;
const TOP: f64 = 136.0;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn colour(mode: &str) -> &'static str {
    [CEILING]
        .iter()
        .chain(MODES.iter())
        .find(|(m, _)| *m == mode)
        .map_or("#CC79A7", |(_, c)| c)
}

/// Where a mode's bar goes within its group: the ceiling first, then
/// the modes in [`MODES`] order, anything else last.
fn bar_order(mode: &str) -> usize {
    if mode == CEILING.0 {
        return 0;
    }
    MODES
        .iter()
        .position(|(m, _)| *m == mode)
        .map_or(MODES.len() + 1, |i| i + 1)
}

/// A "nice" upper bound at or above `v`: 1, 1.2, 1.5, 2, 2.5, 3, 4, 5 × 10^k.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let exp = v.log10().floor();
    let base = 10f64.powf(exp);
    for m in [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if m * base >= v * 0.999_999 {
            return m * base;
        }
    }
    10.0 * base
}

/// The panel's y mapping.
enum Scale {
    Linear { max: f64 },
    Log { lo: f64, hi: f64 },
}

impl Scale {
    /// 0 (bottom) ..= 1 (top).
    fn frac(&self, v: f64) -> f64 {
        match *self {
            Scale::Linear { max } => v / max,
            Scale::Log { lo, hi } => (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()),
        }
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        match *self {
            Scale::Linear { max } => {
                let step = nice_ceiling(max / 6.0);
                let mut v = Vec::new();
                let mut t = 0.0;
                while t <= max * 1.000_001 {
                    v.push((t, format!("{}", (t * 100.0).round() / 100.0)));
                    t += step;
                }
                v
            }
            Scale::Log { lo, hi } => {
                let mut v = Vec::new();
                let mut t = lo;
                // 1-2-5 steps while they fit, decades alone beyond three.
                let steps: &[f64] = if hi / lo > 1000.0 {
                    &[1.0]
                } else {
                    &[1.0, 2.0, 5.0]
                };
                while t <= hi * 1.000_001 {
                    for &m in steps {
                        let x = t * m;
                        if x <= hi * 1.000_001 {
                            let label = if x >= 1000.0 {
                                format!("{}k", x / 1000.0)
                            } else {
                                format!("{x}")
                            };
                            v.push((x, label));
                        }
                    }
                    t *= 10.0;
                }
                v
            }
        }
    }
}

/// One bar of a panel.
struct Bar<'a> {
    group: String,
    label: &'a str,
    colour: &'a str,
    value: f64,
    low: f64,
    high: f64,
    projected: Option<f64>,
    title: String,
}

/// Draws one panel of grouped bars at (`x`, `y`).
#[allow(clippy::too_many_arguments)]
fn panel(
    s: &mut String,
    x: f64,
    y: f64,
    title: &str,
    y_title: &str,
    x_title: &str,
    scale: &Scale,
    bars: &[Bar<'_>],
    reference: Option<f64>,
    width: f64,
) {
    let (left, right) = (x + AXIS_W, x + width - 8.0);
    let (top, bottom) = (y + 24.0, y + PANEL_H - 40.0);
    let y_of = |v: f64| bottom - scale.frac(v).clamp(0.0, 1.0) * (bottom - top);
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        left,
        y + 14.0,
        esc(title)
    );
    for (v, label) in scale.ticks() {
        let ty = y_of(v);
        let _ = writeln!(
            s,
            "<line x1=\"{left:.1}\" x2=\"{right:.1}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"#e4e4e4\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            left - 4.0,
            ty + 4.0
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{left:.1}\" x2=\"{left:.1}\" y1=\"{top:.1}\" y2=\"{bottom:.1}\" stroke=\"#333\"/>\
         <line x1=\"{left:.1}\" x2=\"{right:.1}\" y1=\"{bottom:.1}\" y2=\"{bottom:.1}\" stroke=\"#333\"/>"
    );
    let mid = (top + bottom) / 2.0;
    let _ = writeln!(
        s,
        "<text transform=\"translate({:.1},{mid:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        x + 14.0,
        esc(y_title)
    );
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        (left + right) / 2.0,
        bottom + 32.0,
        esc(x_title)
    );
    if let Some(v) = reference {
        let ry = y_of(v);
        let _ = writeln!(
            s,
            "<line x1=\"{left:.1}\" x2=\"{right:.1}\" y1=\"{ry:.1}\" y2=\"{ry:.1}\" stroke=\"#555\" stroke-dasharray=\"5,3\"/>"
        );
    }
    let mut groups: Vec<&str> = Vec::new();
    for b in bars {
        if !groups.contains(&b.group.as_str()) {
            groups.push(&b.group);
        }
    }
    let group_w = (right - left) / groups.len().max(1) as f64;
    for (gi, g) in groups.iter().enumerate() {
        let gx = left + gi as f64 * group_w;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            gx + group_w / 2.0,
            bottom + 14.0,
            esc(g)
        );
        let in_group: Vec<&Bar<'_>> = bars.iter().filter(|b| b.group == *g).collect();
        let bw = ((group_w - 10.0) / in_group.len().max(1) as f64).min(MAX_BAR_W);
        let indent = (group_w - bw * in_group.len() as f64) / 2.0;
        for (bi, b) in in_group.iter().enumerate() {
            let bx = gx + indent + bi as f64 * bw;
            let cx = bx + (bw - 2.0) / 2.0;
            let by = y_of(b.value);
            let _ = writeln!(
                s,
                "<rect x=\"{bx:.1}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}</title></rect>",
                bw - 2.0,
                (bottom - by).max(0.0),
                b.colour,
                esc(&b.title)
            );
            if b.high > b.low {
                let (ly, hy) = (y_of(b.low), y_of(b.high));
                let _ = writeln!(
                    s,
                    "<path d=\"M{cx:.1} {ly:.1} V{hy:.1} M{:.1} {ly:.1} H{:.1} M{:.1} {hy:.1} H{:.1}\" stroke=\"black\" stroke-width=\"1.2\"/>",
                    cx - 3.0,
                    cx + 3.0,
                    cx - 3.0,
                    cx + 3.0
                );
            }
            if let Some(p) = b.projected {
                let py = y_of(p);
                let _ = writeln!(
                    s,
                    "<path d=\"M{cx:.1} {:.1} l4.5 4.5 l-4.5 4.5 l-4.5 -4.5 z\" fill=\"white\" stroke=\"black\" stroke-width=\"1.3\"><title>{} projected: {p:.3}</title></path>",
                    py - 4.5,
                    esc(b.label)
                );
            }
        }
    }
}

/// The whole chart.
pub fn svg(r: &Report) -> String {
    let matrix: Vec<&PointReport> = r.points.iter().filter(|p| p.run == "matrix").collect();
    let mixed: Vec<&PointReport> = r.points.iter().filter(|p| p.run == "mixed").collect();
    let ceiling: Vec<&PointReport> = r.points.iter().filter(|p| p.run == "ceiling").collect();
    let mut panels: Vec<(&str, &str)> = Vec::new();
    for p in &matrix {
        if !panels.contains(&(p.device.as_str(), p.workload.as_str())) {
            panels.push((&p.device, &p.workload));
        }
    }
    let rows = panels.len() + usize::from(!mixed.is_empty());
    let width = 2.0 * PANEL_W + GAP + 20.0;
    let height = TOP + rows as f64 * (PANEL_H + 10.0) + 20.0;
    let m = &r.meta;
    let reps = if m.repeats > 1 {
        format!(
            "Bars: median of {} boots (mode order rotated each boot); error bars: 95% bootstrap interval of the median.",
            m.repeats
        )
    } else {
        "Bars: one boot (no repetitions, so no error bars).".to_owned()
    };
    let caption = [
        format!("{}; {} ms per point.", m.workload, m.ms_per_point),
        reps,
        format!(
            "{} ({}), -cpu {}, accelerator {}, host with {} CPUs.",
            m.qemu_version, m.qemu_binary, m.cpu_model, m.accelerator, m.host_cpus
        ),
        format!(
            "Run {} at commit {}{}. Left: IOPS / bypass IOPS of the same boot. Right: absolute IOPS, log scale{}.",
            m.date,
            m.commit.get(..12).unwrap_or(&m.commit),
            if m.dirty {
                " (with uncommitted changes)"
            } else {
                ""
            },
            if ceiling.is_empty() {
                ""
            } else {
                ", the ceiling first at each QD"
            }
        ),
    ];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">Block I/O through the IOMMU server: each mode against bypass, measured under QEMU</text>\n"
    );
    for (i, line) in caption.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{}\">{}</text>",
            42 + 16 * i,
            esc(line)
        );
    }
    // Legend: the ceiling if run, the modes, then the projection marker.
    let mut lx = 10.0;
    let legend = (!ceiling.is_empty()).then_some(CEILING);
    for (mode, c) in legend.into_iter().chain(MODES) {
        let _ = writeln!(
            s,
            "<rect x=\"{lx}\" y=\"104\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"115\">{mode}</text>",
            lx + 16.0
        );
        lx += 28.0 + 7.5 * mode.len() as f64;
    }
    let _ = writeln!(
        s,
        "<path d=\"M{:.1} 105 l5 5 l-5 5 l-5 -5 z\" fill=\"white\" stroke=\"black\" stroke-width=\"1.3\"/><text x=\"{:.1}\" y=\"115\">projected onto SMMUv3 hardware latencies (model, tools/projection)</text>",
        lx + 5.0,
        lx + 14.0
    );
    let mut y = TOP;
    for (dev, wl) in &panels {
        let pts: Vec<&&PointReport> = matrix
            .iter()
            .filter(|p| p.device == *dev && p.workload == *wl)
            .collect();
        let mut sorted = pts.clone();
        sorted.sort_by_key(|p| (p.queue_depth, bar_order(&p.mode)));
        // Ratio panel: every mode but bypass (its ratio is 1 by definition).
        let ratio_bars: Vec<Bar<'_>> = sorted
            .iter()
            .filter(|p| p.mode != "bypass")
            .filter_map(|p| {
                let r = p.ratio_to_bypass_milli?;
                let f = |v: u64| v as f64 / 1000.0;
                Some(Bar {
                    group: format!("QD {}", p.queue_depth),
                    label: &p.mode,
                    colour: colour(&p.mode),
                    value: f(r.median),
                    low: f(r.ci95_low),
                    high: f(r.ci95_high),
                    projected: p.projected_ratio_milli.map(f),
                    title: format!(
                        "{} QD{}: {:.3} of bypass [{:.3}-{:.3}]",
                        p.mode,
                        p.queue_depth,
                        f(r.median),
                        f(r.ci95_low),
                        f(r.ci95_high)
                    ),
                })
            })
            .collect();
        let top = ratio_bars
            .iter()
            .flat_map(|b| [b.high, b.value, b.projected.unwrap_or(0.0)])
            .fold(1.0, f64::max);
        panel(
            &mut s,
            10.0,
            y,
            &format!("{dev} {wl}: IOPS relative to bypass (dashed = 1)"),
            "IOPS / bypass IOPS",
            "queue depth",
            &Scale::Linear {
                max: nice_ceiling(top * 1.05),
            },
            &ratio_bars,
            Some(1.0),
            PANEL_W,
        );
        // The ceiling's point first in each queue depth's group.
        let mut with_ceiling: Vec<&PointReport> = ceiling
            .iter()
            .copied()
            .filter(|p| p.device == *dev && p.workload == *wl)
            .chain(sorted.iter().map(|p| **p))
            .collect();
        with_ceiling.sort_by_key(|p| (p.queue_depth, bar_order(&p.mode)));
        let abs_bars: Vec<Bar<'_>> = with_ceiling
            .iter()
            .map(|p| iops_bar(p, format!("QD {}", p.queue_depth)))
            .collect();
        panel(
            &mut s,
            10.0 + PANEL_W + GAP,
            y,
            &format!("{dev} {wl}: absolute IOPS"),
            "IOPS (log scale)",
            "queue depth",
            &log_scale(&abs_bars),
            &abs_bars,
            None,
            PANEL_W,
        );
        y += PANEL_H + 10.0;
    }
    if !mixed.is_empty() {
        // Each mixed point beside the same point measured alone.
        let mut bars: Vec<Bar<'_>> = Vec::new();
        for p in &mixed {
            if let Some(alone) = matrix.iter().find(|a| {
                a.device == p.device
                    && a.workload == p.workload
                    && a.queue_depth == p.queue_depth
                    && a.mode == p.mode
            }) {
                let mut b = iops_bar(alone, p.device.clone());
                b.colour = "#9ecae1";
                bars.push(b);
            }
            bars.push(iops_bar(p, p.device.clone()));
        }
        let first = mixed[0];
        panel(
            &mut s,
            10.0,
            y,
            &format!(
                "mixed run: both devices driven at once, {} {} QD {} (dark); light: the same point measured alone in the matrix",
                first.mode, first.workload, first.queue_depth
            ),
            "IOPS (log scale)",
            "device",
            &log_scale(&bars),
            &bars,
            None,
            2.0 * PANEL_W + GAP,
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A bar of absolute IOPS with its interval and projection.
fn iops_bar<'a>(p: &'a PointReport, group: String) -> Bar<'a> {
    Bar {
        group,
        label: &p.mode,
        colour: colour(&p.mode),
        value: p.iops.median as f64,
        low: p.iops.ci95_low as f64,
        high: p.iops.ci95_high as f64,
        projected: p.projected_iops.map(|v| v as f64),
        title: format!(
            "{} {} QD{} {}: {} IOPS [{}-{}]{}",
            p.run,
            p.device,
            p.queue_depth,
            p.mode,
            p.iops.median,
            p.iops.ci95_low,
            p.iops.ci95_high,
            p.ratio_to_ceiling_milli.map_or(String::new(), |c| format!(
                ", {:.3} of the ceiling [{:.3}-{:.3}]",
                c.median as f64 / 1000.0,
                c.ci95_low as f64 / 1000.0,
                c.ci95_high as f64 / 1000.0
            ))
        ),
    }
}

/// Decades that hold every bar, interval and projection.
fn log_scale(bars: &[Bar<'_>]) -> Scale {
    let values: Vec<f64> = bars
        .iter()
        .flat_map(|b| [b.low, b.high, b.value, b.projected.unwrap_or(b.value)])
        .filter(|v| *v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::MAX, f64::min).max(1.0);
    let hi = values.iter().copied().fold(1.0, f64::max);
    Scale::Log {
        lo: 10f64.powf(lo.log10().floor()),
        hi: 10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings_never_cut_a_value() {
        for v in [0.3, 0.95, 1.0, 1.04, 1.21, 7.3, 88.0, 1234.0] {
            let c = nice_ceiling(v);
            assert!(c >= v && c <= v * 2.5, "{v} -> {c}");
        }
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(1.1), 1.2);
    }

    #[test]
    fn log_scale_spans_every_value() {
        let bar = |v: f64, p: Option<f64>| Bar {
            group: "g".into(),
            label: "m",
            colour: "#000",
            value: v,
            low: v * 0.9,
            high: v * 1.1,
            projected: p,
            title: String::new(),
        };
        let Scale::Log { lo, hi } = log_scale(&[bar(1200.0, Some(576_494.0)), bar(8000.0, None)])
        else {
            panic!("not log");
        };
        assert_eq!((lo, hi), (1000.0, 1_000_000.0));
    }
}
