//! `cargo xtask bench`: boots the benchmark systems (K times each with
//! `--repeat`), shows each point as it is measured, parses the
//! `bench-result` and `bench-costs` lines, and reports: a table with every
//! mode as a ratio of bypass measured in the same boot and as a ratio of
//! the ceiling (the same workload in one polled task with no IPC,
//! systems/bench-ceiling.toml, booted first in each repetition), the
//! per-I/O counts,
//! the projection onto real SMMUv3 latencies (`projection`), and the typed
//! JSON ([`report`]), CSV and SVG chart ([`chart`]) written to
//! target/bench/<timestamp>/ or `--out`. It reports figures; it judges
//! nothing (the counter checks are a test scenario).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod chart;
pub mod report;
mod targets;

use crate::artifacts::{self, Workspace};
use crate::qemu::{self, QemuConfig};
use crate::suite;

/// Options of `cargo xtask bench`.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct BenchOptions {
    /// Milliseconds per point (default: the system description's).
    pub ms: Option<u64>,
    /// Where the report files go (default: target/bench/<timestamp>/).
    pub out: Option<PathBuf>,
    /// Boots of each run (mode order rotated each time).
    pub repeat: Repeat,
}

/// How many times each run boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Exactly this many times.
    Fixed(u64),
    /// At least `min` and at most `max` times, stopping as soon as every
    /// matrix and ceiling point's 95% IOPS interval lies within
    /// ±`within_pct`% of its median.
    Until { min: u64, max: u64, within_pct: u64 },
}

impl Repeat {
    /// `bench`'s default: intervals within ±5%, 3 to 24 boots of each run.
    /// (After 10 boots the widest interval was ±7.8% in the run of
    /// 2026-12-07 15:49 UTC, on a quiet host; a median's interval narrows
    /// about as one over the square root of the boots, so ±5% takes about
    /// (7.8 / 5)² × 10 ≈ 24.)
    pub const AUTO: Repeat = Repeat::Until {
        min: 3,
        max: 24,
        within_pct: 5,
    };

    /// The most repetitions it may make.
    fn max(self) -> u64 {
        match self {
            Repeat::Fixed(k) => k.max(1),
            Repeat::Until { max, .. } => max.max(1),
        }
    }
}

impl Default for Repeat {
    fn default() -> Self {
        Repeat::Fixed(1)
    }
}

/// The point whose IOPS interval is widest relative to its median (the
/// matrix's and the ceiling's), and that half-width in per mille.
fn widest_interval(points: &[report::PointReport]) -> Option<(u64, String)> {
    points
        .iter()
        .filter(|p| p.run == "matrix" || p.run == "ceiling")
        .map(|p| {
            let half = p.iops.ci95_high.saturating_sub(p.iops.ci95_low) * 1000 / 2;
            let rel = half / p.iops.median.max(1);
            (
                rel,
                format!(
                    "{} {} {} QD{} {}",
                    p.run, p.device, p.workload, p.queue_depth, p.mode
                ),
            )
        })
        .max()
}

/// The ceiling: the matrix's workloads on both devices in one polled task
/// that owns the SMMU and the devices, mapping and strictly unmapping
/// every buffer, no IPC.
const CEILING: &str = "systems/bench-ceiling.toml";
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
    // What is measured is the tree as it is now, not after the run.
    let commit = git(&ws, &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&ws, &["status", "--porcelain"]).is_some_and(|s| !s.trim().is_empty());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let date = report::utc_date(started);
    let out = opts.out.clone().unwrap_or_else(|| {
        let stamp: String = date.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        ws.target_dir.join("bench").join(stamp)
    });
    let max_repeats = opts.repeat.max();
    let mut samples: Vec<(report::PointKey, report::Sample)> = Vec::new();
    let mut mode_orders: Vec<Vec<String>> = Vec::new();
    let mut ms_per_point = 0;
    let mut sharing: Vec<String> = Vec::new();
    const RUNS: [(&str, &str); 3] = [("ceiling", CEILING), ("matrix", MATRIX), ("mixed", MIXED)];
    // The ceiling's samples of the current repetition.
    let mut ceiling: Vec<(report::PointKey, report::Sample)> = Vec::new();
    // Seconds each boot of a run took so far, for the time left.
    let mut boot_secs: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let boots = max_repeats * RUNS.len() as u64;
    let mut boot = 0u64;
    let mut repeats = 0u64;
    let mut stop_rule = None;
    for rep in 0..max_repeats {
        for (run, file) in RUNS {
            let mut system = suite::load_system(&ws, Path::new(file))?;
            for t in system.tasks.iter_mut().filter(|t| t.package == "ceiling") {
                if let Some(ms) = opts.ms {
                    t.args.insert("ms".into(), ms.to_string());
                }
            }
            for t in system.tasks.iter_mut().filter(|t| t.package == "blk-bench") {
                if let Some(ms) = opts.ms {
                    t.args.insert("ms".into(), ms.to_string());
                }
                // The matrix's (the mixed run's points may be longer).
                if run == "matrix" {
                    ms_per_point = t.args.get("ms").and_then(|m| m.parse().ok()).unwrap_or(500);
                }
                let order: Vec<String> = t
                    .args
                    .get("modes")
                    .map(|m| m.split(',').map(str::to_owned).collect())
                    .unwrap_or_default();
                let order = report::rotated(&order, usize::try_from(rep).unwrap_or(0));
                if run == "matrix" {
                    mode_orders.push(order.clone());
                }
                t.args.insert("modes".into(), order.join(","));
            }
            boot += 1;
            // The boots after this one, each estimated from its run's mean.
            let mean = |run: &str| {
                boot_secs
                    .get(run)
                    .filter(|v| !v.is_empty())
                    .map(|v| v.iter().sum::<f64>() / v.len() as f64)
            };
            let after: Option<f64> = (boot..boots)
                .map(|b| mean(RUNS[usize::try_from(b).unwrap_or(0) % RUNS.len()].0))
                .sum();
            println!(
                "xtask: bench boot {boot}/{boots}: run `{run}` ({file}), repetition {}/{max_repeats}{}{}",
                rep + 1,
                if matches!(opts.repeat, Repeat::Until { .. }) {
                    " at most"
                } else {
                    ""
                },
                mean(run)
                    .zip(after)
                    .map_or(String::new(), |(this, after)| format!(
                        ", about {:.0} s left in all",
                        this + after
                    ))
            );
            let images = artifacts::build(&ws, None, &system.packages())?;
            let scratch = ws.scratch_dir(&format!("bench-{run}"));
            let mut cfg = QemuConfig::new(&images.kernel, &scratch);
            qemu::prepare_scratch(&scratch, &cfg)?;
            let image = scratch.join("boot.img");
            let len = artifacts::write_boot_image(&system, &images, &image)?;
            cfg.check_boot_image_fits(len)?;
            cfg.boot_image = Some(image);
            let log = scratch.join("serial.log");
            let t0 = std::time::Instant::now();
            let outcome = qemu::run_watched(
                &cfg,
                &log,
                Duration::from_secs(TIMEOUT_S),
                qemu::Watch::Lines(Box::new(progress(after))),
            )?;
            boot_secs
                .entry(run)
                .or_default()
                .push(t0.elapsed().as_secs_f64());
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
            let mut got = samples_of(run, rep, &outcome.serial)
                .map_err(|e| format!("bench run `{run}`: {e}; serial log {}", log.display()))?;
            if run == "ceiling" {
                ceiling = got.clone();
            } else {
                against_ceiling(&mut got, &ceiling);
            }
            samples.extend(got);
            sharing.extend(
                outcome
                    .serial
                    .lines()
                    .filter(|l| {
                        l.contains("syncs were shared across clients")
                            || l.contains("per-client sync counts")
                    })
                    .map(|l| format!("rep {}: {l}", rep + 1)),
            );
        }
        repeats = rep + 1;
        if let Repeat::Until {
            min,
            max,
            within_pct,
        } = opts.repeat
        {
            let widest = widest_interval(&report::aggregate(samples.clone()));
            let (permille, point) = widest.unwrap_or_default();
            let reached = permille <= within_pct * 10;
            println!(
                "xtask: after {repeats} repetition(s) the widest IOPS interval is ±{}.{}% ({point}); the goal is ±{within_pct}%",
                permille / 10,
                permille % 10
            );
            if repeats >= min && (reached || repeats >= max) {
                stop_rule = Some(if reached {
                    format!(
                        "repeated until every matrix and ceiling point's 95% IOPS interval was within ±{within_pct}% of its median: {repeats} repetitions (at least {min})"
                    )
                } else {
                    format!(
                        "repeated until every matrix and ceiling point's 95% IOPS interval was within ±{within_pct}% of its median, at most {max} times: NOT reached, the widest after {repeats} is ±{}.{}% ({point})",
                        permille / 10,
                        permille % 10
                    )
                });
                break;
            }
        }
    }
    let machine = qemu::machine();
    let report = report::Report {
        schema_version: report::SCHEMA_VERSION,
        meta: report::Meta {
            commit,
            dirty,
            qemu_version: crate::prereq::qemu_version().unwrap_or_default(),
            qemu_binary: machine.binary.display().to_string(),
            cpu_model: machine.cpu.clone(),
            accelerator: "tcg".into(),
            ms_per_point,
            repeats,
            stop_rule,
            mode_orders,
            date,
            host_cpus: std::thread::available_parallelism()
                .map_or(0, |n| u64::try_from(n.get()).unwrap_or(0)),
            workload: format!(
                "{} KiB random reads and writes, one mode per point, modes switched inside one boot",
                report::IO_BYTES / 1024
            ),
        },
        points: report::aggregate(samples),
    };
    write_report(&report, &sharing, &out, true)?;
    Ok(ExitCode::SUCCESS)
}

/// `bench --replot DIR`: the table, CSV and chart again from
/// DIR/results.json, written to `out`.
pub fn replot(dir: &Path, out: &Path) -> Result<ExitCode, String> {
    let path = dir.join("results.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let report: report::Report =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if !report::READABLE_SCHEMAS.contains(&report.schema_version) {
        return Err(format!(
            "{}: schema_version {} (this xtask reads {:?})",
            path.display(),
            report.schema_version,
            report::READABLE_SCHEMAS
        ));
    }
    // The shared-sync lines of the run are kept in its table.txt.
    let old_table = std::fs::read_to_string(dir.join("table.txt")).unwrap_or_default();
    let sharing: Vec<String> = old_table
        .lines()
        .filter(|l| l.starts_with("rep "))
        .map(str::to_owned)
        .collect();
    write_report(&report, &sharing, out, out != dir)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the table and writes the report files into `out` (results.json
/// only if `json`).
fn write_report(
    report: &report::Report,
    sharing: &[String],
    out: &Path,
    json: bool,
) -> Result<(), String> {
    let table = table(report);
    println!("{table}");
    for l in sharing {
        println!("{l}");
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let write = |name: &str, text: String| -> Result<(), String> {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        println!("xtask: wrote {}", p.display());
        Ok(())
    };
    if json {
        let text =
            serde_json::to_string_pretty(report).map_err(|e| format!("results.json: {e}"))?;
        write("results.json", text + "\n")?;
    }
    write("results.csv", csv(report))?;
    write("chart.svg", chart::svg(report))?;
    write("table.txt", format!("{table}\n{}\n", sharing.join("\n")))?;
    Ok(())
}

/// One boot's points as samples of repetition `rep`: each `bench-result`
/// line joined with its `bench-costs` line, its ratio to the bypass point
/// of the same boot, and its projection.
pub fn samples_of(
    run: &str,
    rep: u64,
    serial: &str,
) -> Result<Vec<(report::PointKey, report::Sample)>, String> {
    let points = parse(run, serial);
    if points.is_empty() {
        return Err("no bench-result lines".into());
    }
    let costs = parse_costs(serial);
    let ratios = ratios(&points);
    let projected = project(&points);
    let mut out = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let key = report::PointKey {
            run: p.run.clone(),
            task: p.task.clone(),
            device: p.s("dev").to_owned(),
            workload: p.s("wl").to_owned(),
            queue_depth: p
                .s("qd")
                .parse()
                .map_err(|_| format!("qd `{}` is not an integer", p.s("qd")))?,
            mode: p.s("mode").to_owned(),
        };
        let cost = costs.iter().find(|(task, c)| {
            *task == p.task
                && ["dev", "mode", "wl", "qd"]
                    .iter()
                    .all(|k| c.get(*k).map(String::as_str) == Some(p.s(k)))
        });
        let mut sample = report::sample(&p.fields, cost.map(|(_, c)| c))?;
        sample.repetition = u32::try_from(rep).unwrap_or(u32::MAX);
        sample.ratio_to_bypass_milli = ratios[i].map(|r| (r * 1000.0).round() as u64);
        sample.projected_iops = projected[i].map(|(iops, _)| iops.round() as u64);
        sample.projected_ratio_milli = projected[i].map(|(_, r)| (r * 1000.0).round() as u64);
        out.push((key, sample));
    }
    Ok(out)
}

/// Sets each sample's ratios to the ceiling sample of the same repetition
/// with the same device, workload and queue depth (IOPS over the ceiling's
/// IOPS; p50 latency over the ceiling's p50), where there is one.
pub fn against_ceiling(
    samples: &mut [(report::PointKey, report::Sample)],
    ceiling: &[(report::PointKey, report::Sample)],
) {
    for (key, s) in samples.iter_mut() {
        let Some((_, c)) = ceiling.iter().find(|(k, _)| {
            k.device == key.device && k.workload == key.workload && k.queue_depth == key.queue_depth
        }) else {
            continue;
        };
        let ratio = |a: u64, b: u64| (b > 0).then(|| (a * 1000 + b / 2) / b);
        s.ratio_to_ceiling_milli = ratio(s.iops, c.iops);
        s.p50_to_ceiling_milli = ratio(s.latency_us.p50, c.latency_us.p50);
    }
}

/// A serial-line watcher that prints each finished point with the time
/// left: in this boot (from its pace so far) plus `after`, the estimate for
/// the boots after it (unknown until each run has booted once).
fn progress(after: Option<f64>) -> impl FnMut(&str) + Send + 'static {
    // The pace is taken from the first point on: the boot before it is not
    // a point's worth of time.
    let mut first: Option<(std::time::Instant, u64)> = None;
    move |line: &str| {
        let line = line.trim_end_matches('\r');
        let Some(p) = parse("", line).pop() else {
            if line.contains("INCONSISTENT") || line.contains("panic") {
                println!("  {line}");
            }
            return;
        };
        let (done, total) = p
            .s("point")
            .split_once('/')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .unwrap_or((0, 0));
        let (t0, d0) = *first.get_or_insert((std::time::Instant::now(), done));
        let here = if done > d0 {
            t0.elapsed().as_secs_f64() / (done - d0) as f64 * total.saturating_sub(done) as f64
        } else {
            0.0
        };
        let left = match after {
            Some(after) => format!("~{:.0} s left", here + after),
            None => format!("~{here:.0} s left in this boot"),
        };
        println!(
            "  [{done}/{total}] {} {} qd {} {}: {} IOPS, p99 {} us ({left})",
            p.s("dev"),
            p.s("wl"),
            p.s("qd"),
            p.s("mode"),
            p.s("iops"),
            p.s("p99_us"),
        );
    }
}

/// `[task] bench-costs k=v ...` lines: the task and the fields.
fn parse_costs(serial: &str) -> Vec<(String, report::Fields)> {
    serial
        .lines()
        .filter_map(|line| {
            let (task, rest) = line.strip_prefix('[')?.split_once("] ")?;
            let rest = rest.strip_prefix("bench-costs ")?;
            let fields = rest
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            Some((task.to_owned(), fields))
        })
        .collect()
}

/// `git ARGS` in the workspace, its stdout if it ran.
fn git(ws: &Workspace, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .current_dir(&ws.root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Projected IOPS and ratio to the projected bypass, per point.
fn project(points: &[Point]) -> Vec<Option<(f64, f64)>> {
    crate::projection_glue::project(points)
}

/// A median with its interval, as `m [lo-hi]` (just `m` for one sample).
fn with_ci(s: &report::Stat, scale: f64, places: usize) -> String {
    let f = |v: u64| format!("{:.*}", places, v as f64 / scale);
    if s.ci95_low == s.ci95_high {
        f(s.median)
    } else {
        format!("{} [{}-{}]", f(s.median), f(s.ci95_low), f(s.ci95_high))
    }
}

/// The human table: medians over the repetitions, 95% intervals in brackets.
pub fn table(r: &report::Report) -> String {
    let m = &r.meta;
    let mut t = format!(
        "{}; {} (-cpu {}, {}), {} ms per matrix point, {} boot(s) of each run, {} (commit {}{})\n\
         medians over the repetitions; [95% bootstrap interval]; latencies and per-I/O counts: median of the repetitions\n",
        m.workload,
        m.qemu_version,
        m.cpu_model,
        m.accelerator,
        m.ms_per_point,
        m.repeats,
        m.date,
        m.commit.get(..12).unwrap_or(&m.commit),
        if m.dirty { ", dirty" } else { "" },
    );
    if let Some(rule) = &m.stop_rule {
        let _ = writeln!(t, "{rule}");
    }
    let _ = writeln!(
        t,
        "{:<7} {:<10} {:<9} {:>3} {:<16} {:>22} {:>7} {:>19} {:>19} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>6} {:>8} {:>9} {:>6}",
        "run",
        "device",
        "workload",
        "qd",
        "mode",
        "IOPS",
        "MiB/s",
        "xbypass",
        "x_ceiling",
        "p50xc",
        "mean",
        "p50",
        "p99",
        "p99.9",
        "max",
        "ipc/io",
        "sync",
        "stale_us",
        "proj_IOPS",
        "pxbyp"
    );
    for p in &r.points {
        let med = |f: fn(&report::Sample) -> u64| {
            report::median(&p.samples.iter().map(f).collect::<Vec<_>>())
        };
        let milli = |v: u64| format!("{:.3}", v as f64 / 1000.0);
        let _ = writeln!(
            t,
            "{:<7} {:<10} {:<9} {:>3} {:<16} {:>22} {:>7} {:>19} {:>19} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>6} {:>8} {:>9} {:>6}",
            p.run,
            p.device,
            p.workload,
            p.queue_depth,
            p.mode,
            with_ci(&p.iops, 1.0, 0),
            milli(p.mib_per_s_milli.median),
            p.ratio_to_bypass_milli
                .as_ref()
                .map_or("-".into(), |s| with_ci(s, 1000.0, 3)),
            p.ratio_to_ceiling_milli
                .as_ref()
                .map_or("-".into(), |s| with_ci(s, 1000.0, 3)),
            p.p50_to_ceiling_milli
                .as_ref()
                .map_or("-".into(), |s| milli(s.median)),
            med(|s| s.latency_us.mean),
            med(|s| s.latency_us.p50),
            med(|s| s.latency_us.p99),
            med(|s| s.latency_us.p99_9),
            med(|s| s.latency_us.max),
            milli(med(|s| s.per_io_milli.ipc)),
            milli(med(|s| s.per_io_milli.sync)),
            med(|s| s.stale_max_us),
            p.projected_iops.map_or("-".into(), |v| v.to_string()),
            p.projected_ratio_milli.map_or("-".into(), milli),
        );
    }
    phase_table(r, &mut t);
    kernel_table(r, &mut t);
    t.push_str(&targets::table(&targets::judge(r)));
    t
}

/// What the kernel counted per I/O, and each side's CPU time per I/O, for
/// the points whose guest printed a `bench-costs` line: medians of the
/// repetitions that carry one. Timer writes read `-` where the guest did
/// not count them (reports made before it did).
fn kernel_table(r: &report::Report, t: &mut String) {
    let counted =
        |p: &&report::PointReport| p.samples.iter().any(|s| s.kernel_per_io_milli.is_some());
    if !r.points.iter().any(|p| counted(&p)) {
        return;
    }
    let _ = writeln!(
        t,
        "\nKernel counts per I/O: address-space switches, syscalls, IPC calls, notifications, interrupts, timer wake-ups, timer compare-value writes; CPU µs per I/O of the client, the driver and the IOMMU server (kernel time on their behalf included)"
    );
    let _ = writeln!(
        t,
        "{:<7} {:<10} {:<9} {:>3} {:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "run",
        "device",
        "workload",
        "qd",
        "mode",
        "switches",
        "syscalls",
        "calls",
        "notif",
        "irqs",
        "wakeups",
        "twrites",
        "client",
        "driver",
        "server"
    );
    for p in r.points.iter().filter(counted) {
        let kernel: Vec<&report::KernelPerIo> = p
            .samples
            .iter()
            .filter_map(|s| s.kernel_per_io_milli.as_ref())
            .collect();
        let med = |f: fn(&report::KernelPerIo) -> u64| {
            report::median(&kernel.iter().map(|k| f(k)).collect::<Vec<_>>())
        };
        let count = |v: u64| format!("{:.3}", v as f64 / 1000.0);
        let us = |v: u64| format!("{:.1}", v as f64 / 1000.0);
        let writes: Vec<u64> = kernel.iter().filter_map(|k| k.timer_writes).collect();
        let _ = writeln!(
            t,
            "{:<7} {:<10} {:<9} {:>3} {:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            p.run,
            p.device,
            p.workload,
            p.queue_depth,
            p.mode,
            count(med(|k| k.as_switches)),
            count(med(|k| k.syscalls)),
            count(med(|k| k.ipc_calls)),
            count(med(|k| k.notifications)),
            count(med(|k| k.interrupts)),
            count(med(|k| k.timer_wakeups)),
            if writes.is_empty() {
                "-".into()
            } else {
                count(report::median(&writes))
            },
            us(med(|k| k.client_cpu_us)),
            us(med(|k| k.driver_cpu_us)),
            us(med(|k| k.server_cpu_us)),
        );
    }
}

/// The IOMMU server's time per I/O by phase, for the points that carry it
/// (schema 6): medians of the repetitions, each phase on its own.
fn phase_table(r: &report::Report, t: &mut String) {
    let phased = |p: &&report::PointReport| p.has_server_phases();
    if !r.points.iter().any(|p| phased(&p)) {
        return;
    }
    let _ = writeln!(
        t,
        "\nIOMMU server µs per I/O by phase: handling Map and Unmap requests and the share of flushes, each less the kernel's pin and unpin calls (pins); other: the rest of server_us"
    );
    let _ = writeln!(
        t,
        "{:<10} {:<9} {:>3} {:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "device", "workload", "qd", "mode", "server", "map", "unmap", "flush", "pins", "other"
    );
    for p in r.points.iter().filter(phased) {
        let med = |f: &dyn Fn(&report::Sample) -> Option<u64>| {
            report::median(&p.samples.iter().filter_map(f).collect::<Vec<_>>())
        };
        let phase = |f: fn(&report::ServerPhases) -> u64| {
            move |s: &report::Sample| s.per_io_milli.server_phases.as_ref().map(f)
        };
        let other = |s: &report::Sample| {
            let ph = s.per_io_milli.server_phases?;
            Some(
                s.per_io_milli
                    .server_us
                    .saturating_sub(ph.map_us + ph.unmap_us + ph.flush_us + ph.pin_us),
            )
        };
        let us = |v: u64| format!("{:.1}", v as f64 / 1000.0);
        let _ = writeln!(
            t,
            "{:<10} {:<9} {:>3} {:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            p.device,
            p.workload,
            p.queue_depth,
            p.mode,
            us(med(&|s| Some(s.per_io_milli.server_us))),
            us(med(&phase(|ph| ph.map_us))),
            us(med(&phase(|ph| ph.unmap_us))),
            us(med(&phase(|ph| ph.flush_us))),
            us(med(&phase(|ph| ph.pin_us))),
            us(med(&other)),
        );
    }
}

/// One CSV row per point: medians, intervals, per-I/O counts (thousandths).
/// A report with a ceiling (schema 4) has four more columns at the end:
/// `ratio_ceiling_milli` with its interval, and `p50_ceiling_milli`; a
/// schema-3 report's CSV is as it always was. A report with the server's
/// phases (schema 6) has four more after those: `srv_map_us_milli`,
/// `srv_unmap_us_milli`, `srv_flush_us_milli`, `srv_pin_us_milli` (empty on
/// points without them). A report whose guest counted the kernel's timer
/// writes has `timer_writes_milli` last.
fn csv(r: &report::Report) -> String {
    let with_ceiling = r.points.iter().any(|p| p.ratio_to_ceiling_milli.is_some());
    let with_phases = r.points.iter().any(report::PointReport::has_server_phases);
    let timer_writes = |s: &report::Sample| s.kernel_per_io_milli.and_then(|k| k.timer_writes);
    let with_timer_writes = r
        .points
        .iter()
        .any(|p| p.samples.iter().any(|s| timer_writes(s).is_some()));
    let mut s = String::from(
        "run,task,dev,wl,qd,mode,repeats,iops,iops_ci95_low,iops_ci95_high,mib_per_s_milli,\
         ratio_milli,ratio_ci95_low_milli,ratio_ci95_high_milli,mean_us,p50_us,p99_us,p999_us,max_us,\
         ipc_milli,tlbi_milli,sync_milli,doorbells_milli,server_us_milli,maps_milli,unmaps_milli,\
         as_switches_milli,syscalls_milli,ipc_calls_milli,interrupts_milli,client_cpu_us_milli,\
         driver_cpu_us_milli,server_cpu_us_milli,stale_max_us,stale_max_us_worst,\
         timer_irq_late_us_worst,wake_late_us_worst,irqs_masked_us_worst,errors,projected_iops,\
         projected_ratio_milli",
    );
    if with_ceiling {
        s.push_str(
            ",ratio_ceiling_milli,ratio_ceiling_ci95_low_milli,ratio_ceiling_ci95_high_milli,\
             p50_ceiling_milli",
        );
    }
    if with_phases {
        s.push_str(",srv_map_us_milli,srv_unmap_us_milli,srv_flush_us_milli,srv_pin_us_milli");
    }
    if with_timer_writes {
        s.push_str(",timer_writes_milli");
    }
    s.push('\n');
    // The median of the repetitions that have a value; empty if none has.
    let cell = |v: &[u64]| {
        if v.is_empty() {
            String::new()
        } else {
            report::median(v).to_string()
        }
    };
    for p in &r.points {
        let med = |f: &dyn Fn(&report::Sample) -> u64| {
            report::median(&p.samples.iter().map(f).collect::<Vec<_>>())
        };
        let kmed = |f: fn(&report::KernelPerIo) -> u64| {
            cell(
                &p.samples
                    .iter()
                    .filter_map(|s| s.kernel_per_io_milli.as_ref().map(f))
                    .collect::<Vec<_>>(),
            )
        };
        let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        // The largest over the repetitions: a bound holds only if it holds
        // in every one.
        let worst =
            |f: &dyn Fn(&report::Sample) -> Option<u64>| opt(p.samples.iter().filter_map(f).max());
        let ratio = p.ratio_to_bypass_milli;
        let mut cols: Vec<String> = vec![
            p.run.clone(),
            p.task.clone(),
            p.device.clone(),
            p.workload.clone(),
            p.queue_depth.to_string(),
            p.mode.clone(),
            p.samples.len().to_string(),
            p.iops.median.to_string(),
            p.iops.ci95_low.to_string(),
            p.iops.ci95_high.to_string(),
            p.mib_per_s_milli.median.to_string(),
            opt(ratio.map(|s| s.median)),
            opt(ratio.map(|s| s.ci95_low)),
            opt(ratio.map(|s| s.ci95_high)),
            med(&|s| s.latency_us.mean).to_string(),
            med(&|s| s.latency_us.p50).to_string(),
            med(&|s| s.latency_us.p99).to_string(),
            med(&|s| s.latency_us.p99_9).to_string(),
            med(&|s| s.latency_us.max).to_string(),
            med(&|s| s.per_io_milli.ipc).to_string(),
            med(&|s| s.per_io_milli.tlbi).to_string(),
            med(&|s| s.per_io_milli.sync).to_string(),
            med(&|s| s.per_io_milli.doorbells).to_string(),
            med(&|s| s.per_io_milli.server_us).to_string(),
            med(&|s| s.per_io_milli.maps).to_string(),
            med(&|s| s.per_io_milli.unmaps).to_string(),
            kmed(|k| k.as_switches),
            kmed(|k| k.syscalls),
            kmed(|k| k.ipc_calls),
            kmed(|k| k.interrupts),
            kmed(|k| k.client_cpu_us),
            kmed(|k| k.driver_cpu_us),
            kmed(|k| k.server_cpu_us),
            med(&|s| s.stale_max_us).to_string(),
            worst(&|s| Some(s.stale_max_us)),
            worst(&|s| s.kernel_peaks_us.map(|k| k.timer_irq_late)),
            worst(&|s| s.kernel_peaks_us.map(|k| k.wake_late)),
            worst(&|s| s.kernel_peaks_us.map(|k| k.irqs_masked)),
            p.samples.iter().map(|s| s.errors).sum::<u64>().to_string(),
            opt(p.projected_iops),
            opt(p.projected_ratio_milli),
        ];
        if with_ceiling {
            let c = p.ratio_to_ceiling_milli;
            cols.extend([
                opt(c.map(|s| s.median)),
                opt(c.map(|s| s.ci95_low)),
                opt(c.map(|s| s.ci95_high)),
                opt(p.p50_to_ceiling_milli.map(|s| s.median)),
            ]);
        }
        if with_phases {
            let phases: Vec<report::ServerPhases> = p
                .samples
                .iter()
                .filter_map(|s| s.per_io_milli.server_phases)
                .collect();
            for f in [
                |ph: &report::ServerPhases| ph.map_us,
                |ph: &report::ServerPhases| ph.unmap_us,
                |ph: &report::ServerPhases| ph.flush_us,
                |ph: &report::ServerPhases| ph.pin_us,
            ] {
                cols.push(cell(&phases.iter().map(f).collect::<Vec<_>>()));
            }
        }
        if with_timer_writes {
            cols.push(cell(
                &p.samples
                    .iter()
                    .filter_map(timer_writes)
                    .collect::<Vec<_>>(),
            ));
        }
        let _ = writeln!(s, "{}", cols.join(","));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[bench] bench-result dev=nvme mode=bypass wl=randread qd=8 ios=100 us=1000 iops=1000 p50_us=5 p99_us=9 p999_us=10 max_us=10 mean_us=6 ipc=3.000 tlbi=0.000 sync=0.000 doorbells=0.000 server_us=1.000 maps=1.000 unmaps=1.000 stale_max_us=0 errors=0 point=1/2
[bench] something else
[bench] bench-costs dev=nvme mode=bypass wl=randread qd=8 as_switches=6.000 syscalls=9.000 ipc_calls=3.000 ipc_replies=3.000 notifications=1.000 interrupts=1.000 timer_wakeups=0.000 client_cpu_us=10.000 driver_cpu_us=20.000 server_cpu_us=30.000
[bench] bench-result dev=nvme mode=strict wl=randread qd=8 ios=95 us=1000 iops=950 p50_us=6 p99_us=9 p999_us=11 max_us=12 mean_us=7 ipc=3.000 tlbi=0.100 sync=0.050 doorbells=0.050 server_us=2.000 maps=1.000 unmaps=1.000 stale_max_us=0 errors=0 point=2/2
";

    fn report_of(serials: &[&str]) -> report::Report {
        let mut samples = Vec::new();
        for (rep, serial) in serials.iter().enumerate() {
            samples.extend(samples_of("matrix", rep as u64, serial).unwrap());
        }
        report::Report {
            schema_version: report::SCHEMA_VERSION,
            meta: report::Meta {
                commit: "0123456789abcdef".into(),
                dirty: false,
                qemu_version: "QEMU emulator version 10.0.2".into(),
                qemu_binary: "qemu-system-aarch64".into(),
                cpu_model: "max".into(),
                accelerator: "tcg".into(),
                ms_per_point: 1,
                repeats: serials.len() as u64,
                stop_rule: Some("repeated until the test said so".into()),
                mode_orders: Vec::new(),
                date: report::utc_date(0),
                host_cpus: 2,
                workload: "4 KiB random I/O".into(),
            },
            points: report::aggregate(samples),
        }
    }

    #[test]
    fn parses_results_and_takes_ratios_within_a_group() {
        let p = parse("matrix", LOG);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].task, "bench");
        assert_eq!(p[1].s("mode"), "strict");
        let r = ratios(&p);
        assert_eq!(r[0], Some(1.0));
        assert!((r[1].unwrap() - 0.95).abs() < 1e-9);
    }

    #[test]
    fn a_report_joins_costs_and_repetitions() {
        let slower = LOG.replace("ios=95 us=1000 iops=950", "ios=90 us=1000 iops=900");
        let r = report_of(&[LOG, &slower, LOG]);
        assert_eq!(r.points.len(), 2);
        let strict = &r.points[1];
        assert_eq!(strict.samples.len(), 3);
        assert_eq!(strict.iops.median, 950);
        assert_eq!(strict.ratio_to_bypass_milli.unwrap().median, 950);
        assert!(strict.iops.ci95_low >= 900 && strict.iops.ci95_high == 950);
        assert_eq!(strict.samples[1].repetition, 1);
        assert_eq!(strict.samples[0].latency_us.p99_9, 11);
        assert!(r.points[0].samples[0].kernel_per_io_milli.is_some());
        assert!(strict.samples[0].kernel_per_io_milli.is_none());
        let t = table(&r);
        assert!(t.contains("0.950 [0.900-0.950]"), "{t}");
        assert_eq!(csv(&r).lines().count(), 3);
        // This guest counted no timer writes: no column for them.
        assert!(!csv(&r).contains("timer_writes"));
        let svg = chart::svg(&r);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(
            svg.contains("strict QD8: 0.950 of bypass [0.900-0.950]"),
            "{svg}"
        );
        assert!(svg.contains("IOPS / bypass IOPS") && svg.contains("IOPS (log scale)"));
        assert!(svg.contains("projected onto SMMUv3"));
        assert!(svg.contains("commit 0123456789ab"));
        assert!(t.contains("repeated until the test said so"), "{t}");
        // No point printed phases: no phase table.
        assert!(!t.contains("by phase"), "{t}");
        // The bypass point printed its kernel counts (no timer writes),
        // the strict one none: one row.
        assert!(t.contains("Kernel counts per I/O"), "{t}");
        let rows: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.starts_with("Kernel counts"))
            .skip(2)
            .take_while(|l| l.starts_with("matrix"))
            .collect();
        assert_eq!(rows.len(), 1, "{t}");
        let cols: Vec<&str> = rows[0].split_whitespace().collect();
        assert_eq!(
            &cols[5..],
            [
                "6.000", "9.000", "3.000", "1.000", "1.000", "0.000", "-", "10.0", "20.0", "30.0"
            ],
            "{t}"
        );
    }

    /// The server's phases: one row per point that has them, `other` the
    /// rest of `server_us`.
    #[test]
    fn the_phase_table_splits_server_time() {
        let line = LOG.lines().nth(3).unwrap().to_owned()
            + " srv_map_us=0.500 srv_unmap_us=0.250 srv_flush_us=0.750 srv_pin_us=0.125";
        let r = report_of(&[&line]);
        let t = table(&r);
        assert!(t.contains("by phase"), "{t}");
        let row = t
            .lines()
            .find(|l| l.starts_with("nvme") && l.contains("strict"))
            .unwrap_or_else(|| panic!("no strict row: {t}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            &cols[4..],
            ["2.0", "0.5", "0.2", "0.8", "0.1", "0.4"],
            "{row}"
        );
        let csv = csv(&r);
        assert!(
            csv.lines().next().unwrap().ends_with(",srv_pin_us_milli"),
            "{csv}"
        );
        assert!(
            csv.lines().nth(1).unwrap().ends_with(",500,250,750,125"),
            "{csv}"
        );
    }

    /// A guest that counts the kernel's timer writes: their median per
    /// I/O is in the kernel table and the CSV's last column, empty where a
    /// point has none.
    #[test]
    fn timer_writes_reach_the_table_and_the_csv() {
        let log = LOG.replace(
            "timer_wakeups=0.000",
            "timer_wakeups=0.000 timer_writes=0.250",
        );
        let slower = log.replace("timer_writes=0.250", "timer_writes=0.500");
        let r = report_of(&[&log, &slower, &log]);
        // The kernel table's timer-writes column: the median, 0.250.
        let t = table(&r);
        let row = t
            .lines()
            .skip_while(|l| !l.starts_with("Kernel counts"))
            .nth(2)
            .unwrap_or_else(|| panic!("no kernel row: {t}"));
        assert_eq!(row.split_whitespace().nth(11), Some("0.250"), "{row}");
        let csv = csv(&r);
        let mut lines = csv.lines();
        assert!(
            lines.next().unwrap().ends_with(",timer_writes_milli"),
            "{csv}"
        );
        assert!(lines.next().unwrap().ends_with(",250"), "{csv}");
        // The strict point printed no costs line.
        assert!(lines.next().unwrap().ends_with(','), "{csv}");
    }

    /// The default repetition rule stops on the widest interval: strict's
    /// 900-950 around 950 is ±2.6%, within 5% but not within 2%.
    #[test]
    fn the_widest_interval_decides_when_to_stop() {
        let slower = LOG.replace("ios=95 us=1000 iops=950", "ios=90 us=1000 iops=900");
        let r = report_of(&[LOG, &slower, LOG]);
        let (permille, point) = widest_interval(&r.points).unwrap();
        assert_eq!(permille, 26);
        assert!(point.contains("strict"), "{point}");
        let same = report_of(&[LOG, LOG, LOG]);
        assert_eq!(widest_interval(&same.points).unwrap().0, 0);
        assert_eq!(Repeat::AUTO.max(), 24);
        assert_eq!(Repeat::Fixed(0).max(), 1);
    }

    /// The published report (docs/bench/results.json) must parse as the
    /// current schema and write back byte for byte: a field renamed, added,
    /// retyped (a float where an integer belongs) or dropped fails here.
    #[test]
    fn the_published_report_round_trips_through_its_struct() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/bench");
        let text = std::fs::read_to_string(dir.join("results.json")).unwrap();
        let report: report::Report = serde_json::from_str(&text).unwrap();
        assert!(
            report::READABLE_SCHEMAS.contains(&report.schema_version),
            "schema {}",
            report.schema_version
        );
        assert_eq!(serde_json::to_string_pretty(&report).unwrap() + "\n", text);
        assert!(report.meta.repeats >= 1 && !report.meta.commit.is_empty());
        for p in &report.points {
            assert_eq!(p.samples.len() as u64, report.meta.repeats, "{p:?}");
            assert!(p.iops.ci95_low <= p.iops.median && p.iops.median <= p.iops.ci95_high);
        }
        // The committed table and CSV are what this report draws.
        let csv_text = std::fs::read_to_string(dir.join("results.csv")).unwrap();
        assert_eq!(
            csv(&report),
            csv_text,
            "redraw with `cargo xtask bench --replot docs/bench`"
        );
    }

    const CEILING_LOG: &str = "\
[ceiling] bench-result dev=nvme mode=ceiling wl=randread qd=8 ios=200 us=1000 iops=2000 p50_us=4 p99_us=8 p999_us=9 max_us=9 mean_us=4 ipc=0.000 tlbi=0.250 sync=0.250 doorbells=0.500 server_us=3.000 maps=1.000 unmaps=1.000 stale_max_us=0 errors=0 point=1/1 unmap_us=2.000
";

    #[test]
    fn every_point_is_a_ratio_of_the_ceiling_of_its_repetition() {
        let ceiling = samples_of("ceiling", 0, CEILING_LOG).unwrap();
        assert_eq!(ceiling.len(), 1);
        assert_eq!(ceiling[0].0.mode, "ceiling");
        let mut got = samples_of("matrix", 0, LOG).unwrap();
        against_ceiling(&mut got, &ceiling);
        // bypass 1000 IOPS, strict 950, against 2000; p50 5 and 6 against 4.
        assert_eq!(got[0].1.ratio_to_ceiling_milli, Some(500));
        assert_eq!(got[1].1.ratio_to_ceiling_milli, Some(475));
        assert_eq!(got[0].1.p50_to_ceiling_milli, Some(1250));
        assert_eq!(got[1].1.p50_to_ceiling_milli, Some(1500));
        // Another queue depth, workload or device has no ceiling.
        let mut other = samples_of("matrix", 0, &LOG.replace("qd=8", "qd=32")).unwrap();
        against_ceiling(&mut other, &ceiling);
        assert!(
            other
                .iter()
                .all(|(_, s)| s.ratio_to_ceiling_milli.is_none())
        );
        let mut all = ceiling.clone();
        all.extend(got);
        let mut r = report_of(&[]);
        r.points = report::aggregate(all);
        assert_eq!(r.points[0].ratio_to_ceiling_milli, None);
        assert_eq!(r.points[2].ratio_to_ceiling_milli.unwrap().median, 475);
        let t = table(&r);
        assert!(t.contains("x_ceiling") && t.contains("0.475"), "{t}");
        let c = csv(&r);
        assert!(
            c.lines().next().unwrap().ends_with(",p50_ceiling_milli"),
            "{c}"
        );
        assert!(
            c.lines().nth(3).unwrap().ends_with(",475,475,475,1500"),
            "{c}"
        );
        assert!(chart::svg(&r).ends_with("</svg>\n"));
        let text = serde_json::to_string_pretty(&r).unwrap();
        let back: report::Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }

    /// Every device and workload the ceiling measured gets its own ratios:
    /// a virtio-blk random-write point is taken against the virtio-blk
    /// random-write ceiling, not against NVMe's or the reads'.
    #[test]
    fn each_device_and_workload_has_its_own_ceiling() {
        let vblk_write = |log: &str, iops: &str| {
            log.replace("dev=nvme", "dev=virtio-blk")
                .replace("wl=randread", "wl=randwrite")
                .replace("iops=2000", iops)
        };
        let ceiling_log = format!(
            "{CEILING_LOG}{}",
            vblk_write(CEILING_LOG, "iops=4000").replace("p50_us=4", "p50_us=3")
        );
        let ceiling = samples_of("ceiling", 0, &ceiling_log).unwrap();
        assert_eq!(ceiling.len(), 2);
        let matrix_log = format!("{LOG}{}", vblk_write(LOG, "iops=2000"));
        let mut got = samples_of("matrix", 0, &matrix_log).unwrap();
        against_ceiling(&mut got, &ceiling);
        let ratio = |dev: &str, wl: &str, mode: &str| {
            let (_, s) = got
                .iter()
                .find(|(k, _)| k.device == dev && k.workload == wl && k.mode == mode)
                .unwrap();
            (s.ratio_to_ceiling_milli, s.p50_to_ceiling_milli)
        };
        // NVMe reads against 2000 IOPS, p50 4; virtio-blk writes (bypass
        // 1000 and strict 950 IOPS, p50 5 and 6 in LOG) against 4000, p50 3.
        assert_eq!(ratio("nvme", "randread", "bypass"), (Some(500), Some(1250)));
        assert_eq!(
            ratio("virtio-blk", "randwrite", "bypass"),
            (Some(250), Some(1667))
        );
        assert_eq!(
            ratio("virtio-blk", "randwrite", "strict"),
            (Some(238), Some(2000))
        );
        let mut all = ceiling.clone();
        all.extend(got);
        let mut r = report_of(&[]);
        r.points = report::aggregate(all);
        let t = table(&r);
        assert!(
            t.lines().any(|l| l.contains("virtio-blk")
                && l.contains("randwrite")
                && l.contains("0.238")),
            "{t}"
        );
        // The chart draws each ceiling in its own panel, and says how far
        // each bar is from it.
        let svg = chart::svg(&r);
        assert!(
            svg.contains("ceiling virtio-blk QD8 ceiling: 4000 IOPS"),
            "{svg}"
        );
        assert!(
            svg.contains("matrix virtio-blk QD8 strict: 950 IOPS"),
            "{svg}"
        );
        assert!(svg.contains(", 0.238 of the ceiling"), "{svg}");
        assert!(svg.contains(">ceiling</text>"), "{svg}");
    }

    #[test]
    fn a_point_without_its_bypass_has_no_ratio() {
        let p = parse("matrix", LOG.lines().nth(3).unwrap());
        assert_eq!(ratios(&p), vec![None]);
        assert!(samples_of("matrix", 0, "no results").is_err());
    }
}
