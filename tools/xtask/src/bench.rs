//! `cargo xtask bench`: boots the benchmark systems, shows each point as it
//! is measured, parses the `bench-result` lines, and reports: a table with
//! every mode as a ratio of bypass measured in the same boot, the per-I/O
//! counts, the projection onto real SMMUv3 latencies (`projection`), and
//! JSON, CSV and an SVG chart written to `docs/bench/`. It reports figures;
//! it judges nothing (the counter checks are a test scenario).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::artifacts::{self, Workspace};
use crate::qemu::{self, QemuConfig};
use crate::suite;

/// Options of `cargo xtask bench`.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct BenchOptions {
    /// Milliseconds per point (default: the system description's).
    pub ms: Option<u64>,
    /// Where the report files go (default: docs/bench).
    pub out: Option<PathBuf>,
    /// Boots of each run (mode order rotated each time).
    pub repeat: u64,
}

/// The matrix: every mode, queue depth and workload on both devices.
const MATRIX: &str = "systems/bench.toml";
/// Both devices driven at once in strict mode: syncs shared across them.
const MIXED: &str = "systems/bench-mixed.toml";
/// A whole matrix run may take this long under emulation.
const TIMEOUT_S: u64 = 1800;

/// One measured point.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Which run it came from ("matrix", "mixed").
    pub run: String,
    /// The task that measured it.
    pub task: String,
    /// Key/value pairs of its `bench-result` line.
    pub fields: BTreeMap<String, String>,
}

impl Point {
    pub(crate) fn s(&self, k: &str) -> &str {
        self.fields.get(k).map_or("", String::as_str)
    }
    pub(crate) fn f(&self, k: &str) -> f64 {
        self.s(k).parse().unwrap_or(0.0)
    }
    /// (device, workload, queue depth): what ratios are taken within.
    fn group(&self) -> (String, String, String, u64) {
        (
            self.run.clone(),
            self.s("dev").to_owned(),
            self.s("wl").to_owned(),
            self.f("qd") as u64,
        )
    }
}

/// Parses `[task] bench-result k=v k=v ...` lines of a serial log.
pub fn parse(run: &str, serial: &str) -> Vec<Point> {
    serial
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix('[')?;
            let (task, rest) = rest.split_once("] ")?;
            let rest = rest.strip_prefix("bench-result ")?;
            let fields = rest
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            Some(Point {
                run: run.to_owned(),
                task: task.to_owned(),
                fields,
            })
        })
        .collect()
}

/// Ratio of each point's IOPS to the bypass point of its group, if any.
pub fn ratios(points: &[Point]) -> Vec<Option<f64>> {
    points
        .iter()
        .map(|p| {
            let base = points
                .iter()
                .find(|b| b.group() == p.group() && b.s("mode") == "bypass")?;
            let b = base.f("iops");
            (b > 0.0).then(|| p.f("iops") / b)
        })
        .collect()
}

/// `cargo xtask bench`.
pub fn bench(opts: &BenchOptions) -> Result<ExitCode, String> {
    let ws = Workspace::locate()?;
    crate::prereq::ensure_all(&ws)?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| ws.root.join("docs/bench"));
    let mut points = Vec::new();
    let mut logs = Vec::new();
    for (run, file) in [("matrix", MATRIX), ("mixed", MIXED)] {
        println!("xtask: bench run `{run}` ({file})");
        let mut system = suite::load_system(&ws, Path::new(file))?;
        if let Some(ms) = opts.ms {
            for t in system.tasks.iter_mut().filter(|t| t.package == "blk-bench") {
                t.args.insert("ms".into(), ms.to_string());
            }
        }
        let images = artifacts::build(&ws, None, &system.packages())?;
        let scratch = ws.scratch_dir(&format!("bench-{run}"));
        let mut cfg = QemuConfig::new(&images.kernel, &scratch);
        qemu::prepare_scratch(&scratch, &cfg)?;
        let image = scratch.join("boot.img");
        let len = artifacts::write_boot_image(&system, &images, &image)?;
        cfg.check_boot_image_fits(len)?;
        cfg.boot_image = Some(image);
        let log = scratch.join("serial.log");
        let outcome = qemu::run(&cfg, &log, Duration::from_secs(TIMEOUT_S), true)?;
        if outcome.timed_out || outcome.exit_code != Some(0) {
            let why = if outcome.timed_out {
                format!("TIMEOUT after {TIMEOUT_S} s")
            } else {
                format!("exit status {:?}", outcome.exit_code)
            };
            return Err(format!(
                "bench run `{run}` failed ({why}); serial log {}",
                log.display()
            ));
        }
        let got = parse(run, &outcome.serial);
        if got.is_empty() {
            return Err(format!(
                "bench run `{run}` printed no results; serial log {}",
                log.display()
            ));
        }
        points.extend(got);
        logs.push((run, outcome.serial));
    }
    let projected = project(&points);
    let table = table(&points, &projected);
    println!("{table}");
    let sharing: Vec<&str> = logs
        .iter()
        .flat_map(|(_, s)| s.lines())
        .filter(|l| {
            l.contains("syncs were shared across clients") || l.contains("per-client sync counts")
        })
        .collect();
    for l in &sharing {
        println!("{l}");
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let write = |name: &str, text: String| -> Result<(), String> {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        println!("xtask: wrote {}", p.display());
        Ok(())
    };
    write("results.json", json(&points, &projected))?;
    write("results.csv", csv(&points, &projected))?;
    write("chart.svg", svg(&points, &projected))?;
    write("table.txt", format!("{table}\n{}\n", sharing.join("\n")))?;
    Ok(ExitCode::SUCCESS)
}

/// Projected IOPS and ratio to the projected bypass, per point.
fn project(points: &[Point]) -> Vec<Option<(f64, f64)>> {
    crate::projection_glue::project(points)
}

/// The human table.
pub fn table(points: &[Point], projected: &[Option<(f64, f64)>]) -> String {
    let ratios = ratios(points);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<7} {:<10} {:<9} {:>3} {:<16} {:>8} {:>6} {:>7} {:>7} {:>6} {:>6} {:>6} {:>7} {:>9} {:>9} {:>6}",
        "run",
        "device",
        "workload",
        "qd",
        "mode",
        "IOPS",
        "xbyp",
        "p50us",
        "p99us",
        "ipc/io",
        "tlbi",
        "sync",
        "server",
        "stale_us",
        "proj_IOPS",
        "pxbyp"
    );
    for (i, p) in points.iter().enumerate() {
        let r = ratios[i].map_or("-".into(), |r| format!("{r:.3}"));
        let (pi, pr) = projected[i].map_or(("-".into(), "-".into()), |(iops, r)| {
            (format!("{iops:.0}"), format!("{r:.3}"))
        });
        let _ = writeln!(
            t,
            "{:<7} {:<10} {:<9} {:>3} {:<16} {:>8} {:>6} {:>7} {:>7} {:>6} {:>6} {:>6} {:>7} {:>9} {:>9} {:>6}",
            p.run,
            p.s("dev"),
            p.s("wl"),
            p.s("qd"),
            p.s("mode"),
            p.s("iops"),
            r,
            p.s("p50_us"),
            p.s("p99_us"),
            p.s("ipc"),
            p.s("tlbi"),
            p.s("sync"),
            p.s("server_us"),
            p.s("stale_max_us"),
            pi,
            pr
        );
    }
    t
}

const COLUMNS: [&str; 19] = [
    "dev",
    "wl",
    "qd",
    "mode",
    "ios",
    "us",
    "iops",
    "p50_us",
    "p99_us",
    "max_us",
    "ipc",
    "tlbi",
    "sync",
    "doorbells",
    "server_us",
    "maps",
    "unmaps",
    "stale_max_us",
    "errors",
];

fn csv(points: &[Point], projected: &[Option<(f64, f64)>]) -> String {
    let ratios = ratios(points);
    let mut s = format!(
        "run,task,{},ratio_to_bypass,projected_iops,projected_ratio\n",
        COLUMNS.join(",")
    );
    for (i, p) in points.iter().enumerate() {
        let cols: Vec<&str> = COLUMNS.iter().map(|c| p.s(c)).collect();
        let (pi, pr) = projected[i].map_or((String::new(), String::new()), |(a, b)| {
            (format!("{a:.0}"), format!("{b:.4}"))
        });
        let _ = writeln!(
            s,
            "{},{},{},{},{pi},{pr}",
            p.run,
            p.task,
            cols.join(","),
            ratios[i].map_or(String::new(), |r| format!("{r:.4}"))
        );
    }
    s
}

fn json(points: &[Point], projected: &[Option<(f64, f64)>]) -> String {
    let ratios = ratios(points);
    let rows: Vec<serde_json::Value> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut m = serde_json::Map::new();
            m.insert("run".into(), p.run.clone().into());
            m.insert("task".into(), p.task.clone().into());
            for (k, v) in &p.fields {
                let value = v.parse::<f64>().map_or_else(
                    |_| serde_json::Value::from(v.clone()),
                    serde_json::Value::from,
                );
                m.insert(k.clone(), value);
            }
            m.insert("ratio_to_bypass".into(), ratios[i].into());
            m.insert("projected_iops".into(), projected[i].map(|x| x.0).into());
            m.insert("projected_ratio".into(), projected[i].map(|x| x.1).into());
            serde_json::Value::Object(m)
        })
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_default()
}

/// A grouped bar chart: for each (device, workload) panel, one group of bars
/// per queue depth, one bar per mode, height = IOPS as a ratio of bypass
/// (measured, solid) with the projected ratio as a marker.
pub fn svg(points: &[Point], projected: &[Option<(f64, f64)>]) -> String {
    let ratios = ratios(points);
    let modes = ["bypass", "strict-per-unmap", "strict", "deferred"];
    let colours = ["#7f7f7f", "#d62728", "#1f77b4", "#2ca02c"];
    let matrix: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].run == "matrix")
        .collect();
    let mut panels: Vec<(String, String)> = Vec::new();
    for &i in &matrix {
        let k = (points[i].s("dev").to_owned(), points[i].s("wl").to_owned());
        if !panels.contains(&k) {
            panels.push(k);
        }
    }
    let (pw, ph, margin) = (460.0, 260.0, 50.0);
    let width = 2.0 * pw + margin;
    let height = (panels.len().div_ceil(2) as f64) * (ph + margin) + 70.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"18\" font-size=\"14\">IOPS as a ratio of bypass, measured under QEMU (bars) and projected onto SMMUv3 hardware latencies (diamonds)</text>\n"
    );
    for (m, (mode, colour)) in modes.iter().zip(colours).enumerate() {
        let x = 10.0 + 150.0 * m as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{x}\" y=\"28\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{}\" y=\"38\">{mode}</text>",
            x + 16.0
        );
    }
    for (pi, (dev, wl)) in panels.iter().enumerate() {
        let ox = (pi % 2) as f64 * (pw + margin) + 30.0;
        let oy = (pi / 2) as f64 * (ph + margin) + 60.0;
        let _ = writeln!(
            s,
            "<text x=\"{ox}\" y=\"{}\" font-size=\"12\">{dev} {wl}</text>",
            oy + 12.0
        );
        let (top, bottom) = (oy + 20.0, oy + ph - 20.0);
        let y_of = |r: f64| bottom - (r.clamp(0.0, 1.2) / 1.2) * (bottom - top);
        for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let y = y_of(tick);
            let _ = writeln!(
                s,
                "<line x1=\"{ox}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{tick}</text>",
                ox + pw - 40.0,
                ox - 3.0,
                y + 4.0
            );
        }
        let qds: Vec<u64> = {
            let mut q: Vec<u64> = matrix
                .iter()
                .filter(|&&i| points[i].s("dev") == dev && points[i].s("wl") == wl)
                .map(|&i| points[i].f("qd") as u64)
                .collect();
            q.sort_unstable();
            q.dedup();
            q
        };
        let group_w = (pw - 50.0) / qds.len().max(1) as f64;
        for (gi, qd) in qds.iter().enumerate() {
            let gx = ox + 5.0 + gi as f64 * group_w;
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">QD {qd}</text>",
                gx + group_w / 2.0,
                bottom + 14.0
            );
            for (m, (mode, colour)) in modes.iter().zip(colours).enumerate() {
                let Some(&i) = matrix.iter().find(|&&i| {
                    points[i].s("dev") == dev
                        && points[i].s("wl") == wl
                        && points[i].f("qd") as u64 == *qd
                        && points[i].s("mode") == *mode
                }) else {
                    continue;
                };
                let bw = group_w / 5.0;
                let x = gx + m as f64 * bw;
                if let Some(r) = ratios[i] {
                    let y = y_of(r);
                    let _ = writeln!(
                        s,
                        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{mode} QD{qd}: {r:.3} of bypass</title></rect>",
                        bw - 2.0,
                        bottom - y
                    );
                }
                if let Some((_, pr)) = projected[i] {
                    let y = y_of(pr);
                    let cx = x + (bw - 2.0) / 2.0;
                    let _ = writeln!(
                        s,
                        "<path d=\"M{cx:.1} {:.1} l4 4 l-4 4 l-4 -4 z\" fill=\"black\"><title>{mode} QD{qd} projected: {pr:.3} of bypass</title></path>",
                        y - 4.0
                    );
                }
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[bench] bench-result dev=nvme mode=bypass wl=randread qd=8 ios=100 us=1000 iops=1000 p50_us=5 p99_us=9 max_us=10 ipc=3.000 tlbi=0.000 sync=0.000 doorbells=0.000 server_us=1.000 maps=1.000 unmaps=1.000 stale_max_us=0 errors=0 point=1/2
[bench] something else
[bench] bench-result dev=nvme mode=strict wl=randread qd=8 ios=95 us=1000 iops=950 p50_us=6 p99_us=9 max_us=12 ipc=3.000 tlbi=0.100 sync=0.050 doorbells=0.050 server_us=2.000 maps=1.000 unmaps=1.000 stale_max_us=0 errors=0 point=2/2
";

    #[test]
    fn parses_results_and_takes_ratios_within_a_group() {
        let p = parse("matrix", LOG);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].task, "bench");
        assert_eq!(p[1].s("mode"), "strict");
        let r = ratios(&p);
        assert_eq!(r[0], Some(1.0));
        assert!((r[1].unwrap() - 0.95).abs() < 1e-9);
        let t = table(&p, &[None, None]);
        assert!(t.contains("0.950"));
        let svg = svg(&p, &[None, Some((900.0, 0.9))]);
        assert!(
            svg.starts_with("<svg")
                && svg.contains("strict QD8: 0.950 of bypass")
                && svg.contains("projected: 0.900")
        );
        let csv = csv(&p, &[None, None]);
        assert_eq!(csv.lines().count(), 3);
    }

    #[test]
    fn a_point_without_its_bypass_has_no_ratio() {
        let p = parse("matrix", LOG.lines().nth(2).unwrap());
        assert_eq!(ratios(&p), vec![None]);
    }
}
