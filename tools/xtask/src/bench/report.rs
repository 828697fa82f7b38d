//! The benchmark report as a typed, versioned document (`results.json`):
//! run metadata, and per point every repetition's raw figures plus their
//! median and a 95% bootstrap interval. Integers only: counts per I/O are in
//! thousandths (`_milli`), as the guest prints them. Pure, host-tested.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped whenever a field changes meaning or disappears. 4: the ceiling
/// run (`run = "ceiling"`, `mode = "ceiling"`: benches/ceiling, booted
/// first in each repetition) and every point's ratios to it
/// (`ratio_to_ceiling_milli`, `p50_to_ceiling_milli`). 5: `meta.stop_rule`,
/// why a run without `--repeat` stopped where it did (a schema-4 report
/// has none and replots as it did). 6: `per_io_milli.server_phases`, the
/// IOMMU server's time per I/O by phase (absent on ceiling points and in
/// older reports).
pub const SCHEMA_VERSION: u32 = 6;
/// Schema versions this xtask reads: a schema-3 report has no ceiling and
/// no `*_to_ceiling_milli` fields (they are absent, not null, and stay
/// absent when it is written back), and replots as it did.
pub const READABLE_SCHEMAS: [u32; 4] = [3, 4, 5, SCHEMA_VERSION];
/// Bytes per I/O: every workload moves 4 KiB blocks.
pub const IO_BYTES: u64 = 4096;
/// Bootstrap resamples for each interval.
const RESAMPLES: usize = 2000;

/// The whole `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub schema_version: u32,
    pub meta: Meta,
    pub points: Vec<PointReport>,
}

/// How, where and when the numbers were taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// `git rev-parse HEAD` of the tree that was measured.
    pub commit: String,
    /// The tree had uncommitted changes.
    pub dirty: bool,
    /// First line of `qemu-system-aarch64 --version`.
    pub qemu_version: String,
    pub qemu_binary: String,
    /// The `-cpu` model.
    pub cpu_model: String,
    /// QEMU's accelerator (`tcg`: the guest CPU is emulated).
    pub accelerator: String,
    /// Milliseconds each matrix point runs (the system's unless `--ms` said;
    /// the mixed run's points may run longer).
    pub ms_per_point: u64,
    /// Boots of each run.
    pub repeats: u64,
    /// Why it stopped after `repeats` boots, when the count was not fixed
    /// (`bench` without `--repeat`). Absent before schema 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_rule: Option<String>,
    /// The mode order of each repetition (rotated by one each time).
    pub mode_orders: Vec<Vec<String>>,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`, when the run started.
    pub date: String,
    /// CPUs the host offered (`available_parallelism`).
    pub host_cpus: u64,
    /// What each I/O is.
    pub workload: String,
}

/// One point of the matrix (or the mixed run) over every repetition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointReport {
    /// "matrix" or "mixed".
    pub run: String,
    /// The benchmark task that measured it.
    pub task: String,
    pub device: String,
    pub workload: String,
    pub queue_depth: u32,
    pub mode: String,
    /// Median IOPS over the repetitions with its 95% bootstrap interval.
    pub iops: Stat,
    /// The same for MiB/s, in thousandths of a MiB/s.
    pub mib_per_s_milli: Stat,
    /// IOPS as a ratio of bypass in the same boot, in thousandths (none
    /// where the boot measured no bypass point of this group).
    pub ratio_to_bypass_milli: Option<Stat>,
    /// IOPS as a ratio of the ceiling run's point of the same device,
    /// workload and queue depth in the same repetition, in thousandths
    /// (schema 4; absent where there is no such ceiling point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_ceiling_milli: Option<Stat>,
    /// p50 latency as a ratio of that ceiling point's p50, in thousandths
    /// (schema 4; absent likewise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_to_ceiling_milli: Option<Stat>,
    /// The projection onto SMMUv3 hardware latencies (median).
    pub projected_iops: Option<u64>,
    pub projected_ratio_milli: Option<u64>,
    /// Each repetition's figures, in repetition order.
    pub samples: Vec<Sample>,
}

impl PointReport {
    /// Whether any boot of the point carries the IOMMU server's time by
    /// phase (schema 6, blk-bench points).
    pub fn has_server_phases(&self) -> bool {
        self.samples
            .iter()
            .any(|s| s.per_io_milli.server_phases.is_some())
    }
}

/// A median and its 95% bootstrap interval (`low <= median <= high`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stat {
    pub median: u64,
    pub ci95_low: u64,
    pub ci95_high: u64,
}

/// One repetition's figures of one point, as the guest printed them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Repetition index (0-based) and the point's place in its boot.
    pub repetition: u32,
    pub position: u32,
    pub ios: u64,
    pub us: u64,
    pub iops: u64,
    pub mib_per_s_milli: u64,
    pub latency_us: Latency,
    /// Per I/O, counted by the driver and the IOMMU server.
    pub per_io_milli: PerIo,
    /// Per I/O, counted by the kernel (the `bench-costs` line), if printed.
    pub kernel_per_io_milli: Option<KernelPerIo>,
    /// The kernel's latency peaks during the point (the `bench-costs`
    /// line, schema 3), if printed.
    pub kernel_peaks_us: Option<KernelPeaks>,
    pub stale_max_us: u64,
    pub errors: u64,
    pub ratio_to_bypass_milli: Option<u64>,
    /// IOPS over the same repetition's ceiling point (same device,
    /// workload and queue depth), in thousandths (schema 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_ceiling_milli: Option<u64>,
    /// p50 latency over that ceiling point's p50, in thousandths (schema 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_to_ceiling_milli: Option<u64>,
    pub projected_iops: Option<u64>,
    pub projected_ratio_milli: Option<u64>,
}

/// Latency over the samples the guest kept, in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    pub mean: u64,
    pub p50: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
}

/// The `bench-result` line's per-I/O counts, in thousandths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerIo {
    pub ipc: u64,
    pub tlbi: u64,
    pub sync: u64,
    pub doorbells: u64,
    pub server_us: u64,
    pub maps: u64,
    pub unmaps: u64,
    /// `server_us` by what it was spent on (schema 6; the blk-bench's
    /// points only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_phases: Option<ServerPhases>,
}

/// The IOMMU server's µs per I/O (thousandths) by phase: handling maps and
/// unmaps and the share of flushes, each less the kernel's pin and unpin
/// calls, which are `pins`. The rest of `server_us` is other requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerPhases {
    pub map_us: u64,
    pub unmap_us: u64,
    pub flush_us: u64,
    pub pin_us: u64,
}

/// The `bench-costs` line's per-I/O counts, in thousandths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelPerIo {
    pub as_switches: u64,
    pub syscalls: u64,
    pub ipc_calls: u64,
    pub ipc_replies: u64,
    pub notifications: u64,
    pub interrupts: u64,
    pub timer_wakeups: u64,
    /// Writes of the kernel's timer compare value; absent (`None`) from
    /// guests before it was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_writes: Option<u64>,
    pub client_cpu_us: u64,
    pub driver_cpu_us: u64,
    pub server_cpu_us: u64,
}

/// The kernel's latency peaks during one point, in µs: what a wake-up of
/// the IOMMU server (a deferred window's deadline) waited for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelPeaks {
    /// Largest delay from the timer's compare value to its handler.
    pub timer_irq_late: u64,
    /// Largest delay from a task's deadline to the kernel waking it.
    pub wake_late: u64,
    /// Longest trap the kernel ran with IRQs masked.
    pub irqs_masked: u64,
}

/// `"12.345"` (or `"12"`) in thousandths: 12345. `None` if not a
/// non-negative decimal with at most three places.
pub fn milli(text: &str) -> Option<u64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value: u64 = format!("{frac:0<3}").parse().ok()?;
    whole
        .parse::<u64>()
        .ok()?
        .checked_mul(1000)?
        .checked_add(frac_value)
}

/// The key/value fields of one guest line.
pub type Fields = BTreeMap<String, String>;

/// A sample from a `bench-result` line's fields and, if any, its
/// `bench-costs` line's. Errors name the missing or malformed field.
pub fn sample(result: &Fields, costs: Option<&Fields>) -> Result<Sample, String> {
    let int = |f: &Fields, k: &str| -> Result<u64, String> {
        f.get(k)
            .ok_or_else(|| format!("no field `{k}`"))?
            .parse()
            .map_err(|_| format!("field `{k}` is not an integer"))
    };
    let per_io = |f: &Fields, k: &str| -> Result<u64, String> {
        milli(f.get(k).ok_or_else(|| format!("no field `{k}`"))?)
            .ok_or_else(|| format!("field `{k}` is not a decimal"))
    };
    let r = result;
    let (ios, us) = (int(r, "ios")?, int(r, "us")?);
    let kernel = costs
        .map(|c| -> Result<KernelPerIo, String> {
            Ok(KernelPerIo {
                as_switches: per_io(c, "as_switches")?,
                syscalls: per_io(c, "syscalls")?,
                ipc_calls: per_io(c, "ipc_calls")?,
                ipc_replies: per_io(c, "ipc_replies")?,
                notifications: per_io(c, "notifications")?,
                interrupts: per_io(c, "interrupts")?,
                timer_wakeups: per_io(c, "timer_wakeups")?,
                timer_writes: c
                    .contains_key("timer_writes")
                    .then(|| per_io(c, "timer_writes"))
                    .transpose()?,
                client_cpu_us: per_io(c, "client_cpu_us")?,
                driver_cpu_us: per_io(c, "driver_cpu_us")?,
                server_cpu_us: per_io(c, "server_cpu_us")?,
            })
        })
        .transpose()?;
    // Guests before schema 3 printed no peaks: then there are none.
    let peaks = costs.and_then(|c| {
        Some(KernelPeaks {
            timer_irq_late: int(c, "timer_irq_late_max_us").ok()?,
            wake_late: int(c, "wake_late_max_us").ok()?,
            irqs_masked: int(c, "irqs_masked_max_us").ok()?,
        })
    });
    let position = r
        .get("point")
        .and_then(|p| p.split_once('/'))
        .and_then(|(i, _)| i.parse().ok())
        .unwrap_or(0);
    Ok(Sample {
        repetition: 0,
        position,
        ios,
        us,
        iops: int(r, "iops")?,
        mib_per_s_milli: mib_per_s_milli(ios, us),
        latency_us: Latency {
            // Older guests printed neither; 0 then means "not measured".
            mean: int(r, "mean_us").unwrap_or(0),
            p50: int(r, "p50_us")?,
            p99: int(r, "p99_us")?,
            p99_9: int(r, "p999_us").unwrap_or(0),
            max: int(r, "max_us")?,
        },
        per_io_milli: PerIo {
            ipc: per_io(r, "ipc")?,
            tlbi: per_io(r, "tlbi")?,
            sync: per_io(r, "sync")?,
            doorbells: per_io(r, "doorbells")?,
            server_us: per_io(r, "server_us")?,
            maps: per_io(r, "maps")?,
            unmaps: per_io(r, "unmaps")?,
            // Older guests and the ceiling print none.
            server_phases: if r.contains_key("srv_map_us") {
                Some(ServerPhases {
                    map_us: per_io(r, "srv_map_us")?,
                    unmap_us: per_io(r, "srv_unmap_us")?,
                    flush_us: per_io(r, "srv_flush_us")?,
                    pin_us: per_io(r, "srv_pin_us")?,
                })
            } else {
                None
            },
        },
        kernel_per_io_milli: kernel,
        kernel_peaks_us: peaks,
        stale_max_us: int(r, "stale_max_us")?,
        errors: int(r, "errors")?,
        ratio_to_bypass_milli: None,
        ratio_to_ceiling_milli: None,
        p50_to_ceiling_milli: None,
        projected_iops: None,
        projected_ratio_milli: None,
    })
}

/// Thousandths of a MiB/s for `ios` 4 KiB I/Os in `us` microseconds.
pub fn mib_per_s_milli(ios: u64, us: u64) -> u64 {
    let bytes = u128::from(ios) * u128::from(IO_BYTES);
    let v = bytes * 1_000_000 * 1000 / (u128::from(us.max(1)) << 20);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// The median of `values` (for an even count, the mean of the two middle
/// ones, rounded down); 0 if empty.
pub fn median(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => {
            let (a, b) = (v[n / 2 - 1], v[n / 2]);
            a + (b - a) / 2
        }
    }
}

/// The median of `values` with a 95% percentile-bootstrap interval
/// ([`RESAMPLES`] resamples from a fixed seed, so a report is
/// reproducible from its samples). One value: a zero-width interval.
pub fn stat(values: &[u64]) -> Stat {
    let m = median(values);
    if values.len() < 2 {
        return Stat {
            median: m,
            ci95_low: m,
            ci95_high: m,
        };
    }
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        // xorshift64*: good enough to pick indices.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let n = values.len() as u64;
    let mut medians: Vec<u64> = (0..RESAMPLES)
        .map(|_| {
            let resample: Vec<u64> = (0..n)
                .map(|_| values[usize::try_from(next() % n).unwrap_or(0)])
                .collect();
            median(&resample)
        })
        .collect();
    medians.sort_unstable();
    let at = |q: f64| medians[((RESAMPLES as f64 - 1.0) * q).round() as usize];
    Stat {
        median: m,
        ci95_low: at(0.025).min(m),
        ci95_high: at(0.975).max(m),
    }
}

/// One point per (run, task, device, workload, depth, mode) with its
/// samples from every repetition, in first-seen order.
pub fn aggregate(samples: Vec<(PointKey, Sample)>) -> Vec<PointReport> {
    let mut order: Vec<PointKey> = Vec::new();
    let mut groups: BTreeMap<PointKey, Vec<Sample>> = BTreeMap::new();
    for (key, sample) in samples {
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(sample);
    }
    order
        .into_iter()
        .map(|key| {
            let samples = groups.remove(&key).unwrap_or_default();
            let of = |f: fn(&Sample) -> u64| samples.iter().map(f).collect::<Vec<_>>();
            let opt = |f: fn(&Sample) -> Option<u64>| {
                let v: Vec<u64> = samples.iter().filter_map(f).collect();
                (!v.is_empty()).then_some(v)
            };
            PointReport {
                iops: stat(&of(|s| s.iops)),
                mib_per_s_milli: stat(&of(|s| s.mib_per_s_milli)),
                ratio_to_bypass_milli: opt(|s| s.ratio_to_bypass_milli).map(|v| stat(&v)),
                ratio_to_ceiling_milli: opt(|s| s.ratio_to_ceiling_milli).map(|v| stat(&v)),
                p50_to_ceiling_milli: opt(|s| s.p50_to_ceiling_milli).map(|v| stat(&v)),
                projected_iops: opt(|s| s.projected_iops).map(|v| median(&v)),
                projected_ratio_milli: opt(|s| s.projected_ratio_milli).map(|v| median(&v)),
                run: key.run,
                task: key.task,
                device: key.device,
                workload: key.workload,
                queue_depth: key.queue_depth,
                mode: key.mode,
                samples,
            }
        })
        .collect()
}

/// What identifies a point across repetitions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PointKey {
    pub run: String,
    pub task: String,
    pub device: String,
    pub workload: String,
    pub queue_depth: u32,
    pub mode: String,
}

/// `order` rotated left by `repetition` places.
pub fn rotated(order: &[String], repetition: usize) -> Vec<String> {
    let mut v = order.to_vec();
    if !v.is_empty() {
        let k = repetition % v.len();
        v.rotate_left(k);
    }
    v
}

/// `YYYY-MM-DDTHH:MM:SSZ` for `secs` since the Unix epoch (UTC).
pub fn utc_date(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Fields {
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    const RESULT: &str = "dev=nvme mode=strict wl=randread qd=8 ios=950 us=1000000 iops=950 \
        p50_us=6 p99_us=9 p999_us=11 max_us=12 mean_us=7 ipc=3.000 tlbi=0.100 sync=0.050 \
        doorbells=0.050 server_us=2.125 maps=1.000 unmaps=1.000 stale_max_us=0 errors=0 point=2/2";
    const COSTS: &str = "dev=nvme mode=strict wl=randread qd=8 as_switches=6.500 syscalls=9.000 \
        ipc_calls=3.000 ipc_replies=3.000 notifications=1.000 interrupts=0.900 \
        timer_wakeups=0.000 timer_writes=0.250 client_cpu_us=10.000 driver_cpu_us=20.000 \
        server_cpu_us=30.500 \
        timer_irq_late_max_us=120 wake_late_max_us=95 irqs_masked_max_us=400";

    #[test]
    fn milli_parses_the_guests_decimals_exactly() {
        assert_eq!(milli("4.000"), Some(4000));
        assert_eq!(milli("0.127"), Some(127));
        assert_eq!(milli("12"), Some(12_000));
        assert_eq!(milli("1.5"), Some(1500));
        for bad in ["", ".5", "1.2345", "-1.000", "x", "1.x"] {
            assert_eq!(milli(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_sample_takes_every_field_and_refuses_a_missing_one() {
        let s = sample(&fields(RESULT), Some(&fields(COSTS))).unwrap();
        assert_eq!((s.ios, s.iops, s.position), (950, 950, 2));
        assert_eq!(
            s.latency_us,
            Latency {
                mean: 7,
                p50: 6,
                p99: 9,
                p99_9: 11,
                max: 12
            }
        );
        assert_eq!(s.per_io_milli.server_us, 2125);
        assert_eq!(s.per_io_milli.tlbi, 100);
        assert_eq!(s.per_io_milli.server_phases, None);
        // A guest that prints the server's phases: all four, or an error.
        let mut phased = fields(RESULT);
        for (k, v) in [
            ("srv_map_us", "0.500"),
            ("srv_unmap_us", "0.250"),
            ("srv_flush_us", "1.000"),
            ("srv_pin_us", "0.125"),
        ] {
            phased.insert(k.into(), v.into());
        }
        let p = sample(&phased, None).unwrap().per_io_milli.server_phases;
        assert_eq!(
            p,
            Some(ServerPhases {
                map_us: 500,
                unmap_us: 250,
                flush_us: 1000,
                pin_us: 125
            })
        );
        phased.remove("srv_pin_us");
        assert!(sample(&phased, None).unwrap_err().contains("srv_pin_us"));
        let k = s.kernel_per_io_milli.unwrap();
        assert_eq!((k.as_switches, k.server_cpu_us), (6500, 30_500));
        assert_eq!(k.timer_writes, Some(250));
        // A guest before timer writes were counted has none; a malformed
        // count is an error.
        let mut old = fields(COSTS);
        old.remove("timer_writes");
        let k = sample(&fields(RESULT), Some(&old))
            .unwrap()
            .kernel_per_io_milli;
        assert_eq!(k.unwrap().timer_writes, None);
        old.insert("timer_writes".into(), "x".into());
        assert!(
            sample(&fields(RESULT), Some(&old))
                .unwrap_err()
                .contains("timer_writes")
        );
        assert_eq!(
            s.kernel_peaks_us,
            Some(KernelPeaks {
                timer_irq_late: 120,
                wake_late: 95,
                irqs_masked: 400
            })
        );
        // A guest that printed no peaks has none (not zeros).
        let mut old = fields(COSTS);
        old.remove("wake_late_max_us");
        let s = sample(&fields(RESULT), Some(&old)).unwrap();
        assert_eq!(s.kernel_peaks_us, None);
        // 950 × 4 KiB in 1 s = 3.710... MiB/s.
        assert_eq!(s.mib_per_s_milli, 3710);
        let mut broken = fields(RESULT);
        broken.remove("iops");
        assert!(sample(&broken, None).unwrap_err().contains("iops"));
        let mut broken = fields(RESULT);
        broken.insert("tlbi".into(), "0.1234".into());
        assert!(sample(&broken, None).unwrap_err().contains("tlbi"));
    }

    #[test]
    fn median_and_bootstrap_interval() {
        assert_eq!(median(&[]), 0);
        assert_eq!(median(&[5, 1, 3]), 3);
        assert_eq!(median(&[4, 1, 3, 2]), 2);
        assert_eq!(median(&[4, 1, 3, 8]), 3);
        assert_eq!(median(&[u64::MAX, u64::MAX]), u64::MAX);
        let one = stat(&[7]);
        assert_eq!((one.median, one.ci95_low, one.ci95_high), (7, 7, 7));
        let values = [100, 102, 98, 140, 60, 101, 99];
        let s = stat(&values);
        assert_eq!(s.median, 100);
        assert!(s.ci95_low <= 100 && s.ci95_high >= 100);
        assert!(s.ci95_low >= 60 && s.ci95_high <= 140);
        assert!(s.ci95_high > s.ci95_low, "{s:?}");
        // Identical values leave no doubt.
        assert_eq!(stat(&[9, 9, 9]).ci95_low, 9);
    }

    #[test]
    fn rotation_and_dates() {
        let order: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(rotated(&order, 0), order);
        assert_eq!(rotated(&order, 1), ["b", "c", "a"].map(String::from));
        assert_eq!(rotated(&order, 4), ["b", "c", "a"].map(String::from));
        assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date(951_827_696), "2000-02-29T12:34:56Z");
        assert_eq!(utc_date(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn a_report_round_trips_through_json() {
        let mut a = sample(&fields(RESULT), Some(&fields(COSTS))).unwrap();
        a.ratio_to_bypass_milli = Some(950);
        let mut b = a.clone();
        b.repetition = 1;
        b.iops = 1000;
        b.kernel_per_io_milli = None;
        let key = PointKey {
            run: "matrix".into(),
            task: "bench".into(),
            device: "nvme".into(),
            workload: "randread".into(),
            queue_depth: 8,
            mode: "strict".into(),
        };
        let points = aggregate(vec![(key.clone(), a), (key, b)]);
        assert_eq!(points.len(), 1);
        assert_eq!(
            points[0].iops.median, 975,
            "the mean of the two middle values"
        );
        let report = Report {
            schema_version: SCHEMA_VERSION,
            meta: Meta {
                commit: "f75dae1".into(),
                dirty: true,
                qemu_version: "QEMU emulator version 10.0.2".into(),
                qemu_binary: "qemu-system-aarch64".into(),
                cpu_model: "max".into(),
                accelerator: "tcg".into(),
                ms_per_point: 500,
                repeats: 2,
                stop_rule: None,
                mode_orders: vec![vec!["bypass".into(), "strict".into()]],
                date: utc_date(0),
                host_cpus: 2,
                workload: "4 KiB random I/O".into(),
            },
            points,
        };
        let text = serde_json::to_string_pretty(&report).unwrap();
        assert!(
            text.contains("\"queue_depth\": 8,"),
            "integers stay integers"
        );
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        // The schema is strict: a stray or mistyped field is refused.
        let stray = text.replacen("\"dirty\": true", "\"dirty\": true, \"extra\": 1", 1);
        assert!(serde_json::from_str::<Report>(&stray).is_err());
        let float = text.replacen("\"queue_depth\": 8", "\"queue_depth\": 8.0", 1);
        assert!(serde_json::from_str::<Report>(&float).is_err());
    }
}
