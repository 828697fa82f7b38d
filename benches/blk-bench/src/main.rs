//! The benchmark task: 4 KiB random reads and writes through the block
//! service at fixed queue depths for a fixed time, under each IOMMU mode
//! (switched inside one boot, so every mode shares the machine's
//! conditions). For every point it prints one `bench-result` line that
//! `cargo xtask bench` parses: IOPS, latency mean/p50/p99/p99.9/max (over
//! the kept samples), and per I/O the IPC round trips, TLBI commands,
//! CMD_SYNCs, doorbells and server time that the driver and the IOMMU
//! server counted. With `arg("check") = on`
//! it also checks that the counters are consistent (every I/O's buffer
//! unmapped, no more syncs than unmaps, no DMA fault) and says so.
//!
//! With a monitor capability `kstats` it also reports, per I/O, what the
//! kernel counted (address-space switches, syscalls, IPC calls and
//! replies, notifications, interrupts, timer wake-ups) and the CPU time of
//! the client (this task), the driver and the IOMMU server, in µs.
//!
//! Arguments: `modes` (comma list of bypass, strict-per-unmap, strict,
//! deferred), `qds` (comma list), `workloads` (randread, randwrite), `ms`
//! per point, `deferred_n`, `deferred_us`; the task names of the drivers
//! and the server for the CPU times: `nvme_task` (default `nvme`),
//! `vblk_task` (`vblk`), `iommu_task` (`iommu`). Capabilities: `blk` (and
//! `blk2` for a second device, driven one after the other, or at the same
//! time as another bench task when the system runs two), `kstats`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use block_api::{BenchMode, BlockStats, Completion, Info, Io, IoKind, MAX_COMPLETIONS, MAX_IOS};
use block_client::Block;
use userlib::bench::{Histogram, Latencies, PerIo};
use userlib::{DmaBuffer, TaskInfo, log};

userlib::entry!(main);

/// Sectors per I/O: 4 KiB.
const IO_SECTORS: u32 = 8;

fn main(info: &TaskInfo<'static>) -> i32 {
    let hz = userlib::time().map(|(_, hz)| hz).unwrap_or(1).max(1);
    let arg = |k: &str, d: &'static str| info.arg(k).unwrap_or(d);
    let ms = userlib::arg_u64(info, "ms", 500).unwrap_or(500);
    let deferred = BenchMode::Deferred {
        max_entries: userlib::arg_u64(info, "deferred_n", 256).unwrap_or(256) as u32,
        max_age_us: userlib::arg_u64(info, "deferred_us", 1000).unwrap_or(1000) as u32,
    };
    let modes: Vec<BenchMode> = arg("modes", "bypass,strict-per-unmap,strict,deferred")
        .split(',')
        .filter_map(|m| match m.trim() {
            "bypass" => Some(BenchMode::Bypass),
            "strict-per-unmap" => Some(BenchMode::StrictPerUnmap),
            "strict" => Some(BenchMode::Strict),
            "deferred" => Some(deferred),
            _ => None,
        })
        .collect();
    let qds: Vec<u16> = arg("qds", "1,8,32,64")
        .split(',')
        .filter_map(|q| q.trim().parse().ok())
        .collect();
    let workloads: Vec<IoKind> = arg("workloads", "randread,randwrite")
        .split(',')
        .filter_map(|w| match w.trim() {
            "randread" => Some(IoKind::Read),
            "randwrite" => Some(IoKind::Write),
            _ => None,
        })
        .collect();
    let check = info.arg("check") == Some("on");
    let kstats = info.cap("kstats");
    let devices: Vec<u32> = ["blk", "blk2"].iter().filter_map(|c| info.cap(c)).collect();
    if devices.is_empty() || modes.is_empty() || qds.is_empty() || workloads.is_empty() {
        log!("bench: needs capability blk and non-empty modes, qds, workloads");
        return 1;
    }
    let total = devices.len() * modes.len() * qds.len() * workloads.len();
    let mut done = 0;
    let mut inconsistent = 0;
    let max_qd = qds.iter().copied().max().unwrap_or(1);
    let Ok(mut buf) = DmaBuffer::alloc(u64::from(max_qd)) else {
        log!("bench: no DMA memory for {max_qd} buffers (quota?)");
        return 1;
    };
    for &cap in &devices {
        let blk = Block::new(cap);
        let Ok(geometry) = blk.info() else {
            log!("bench: device info refused");
            return 1;
        };
        let device = if geometry.device_kind == 1 {
            "nvme"
        } else {
            "virtio-blk"
        };
        for &mode in &modes {
            if let Err(e) = blk.set_mode(mode) {
                log!("bench: {device}: mode {} refused: {e}", mode.name());
                return 1;
            }
            for &wl in &workloads {
                for &qd in &qds {
                    done += 1;
                    let qd = qd.min(geometry.queue_depth).max(1);
                    // Peaks (the largest stale window, the kernel's
                    // latency peaks) are then this point's alone.
                    if let Err(e) = blk.reset_stats() {
                        log!("bench: {device}: stats reset refused: {e}");
                        return 1;
                    }
                    let k_before = kstats.and_then(|c| KernelView::read(c, true));
                    let before = match blk.stats() {
                        Ok(s) => s,
                        Err(e) => {
                            log!("bench: stats refused: {e}");
                            return 1;
                        }
                    };
                    let r = match run_point(&blk, &mut buf, &geometry, wl, qd, ms, hz) {
                        Ok(r) => r,
                        Err(why) => {
                            log!("bench: {device} {} qd {qd}: {why}", mode.name());
                            return 1;
                        }
                    };
                    let after = blk.stats().unwrap_or_default();
                    let k_after = kstats.and_then(|c| KernelView::read(c, false));
                    let d = delta(&after, &before);
                    report(device, mode, wl, qd, &r, &d, hz, done, total);
                    if let (Some(a), Some(b)) = (&k_after, &k_before) {
                        let driver = if geometry.device_kind == 1 {
                            arg("nvme_task", "nvme")
                        } else {
                            arg("vblk_task", "vblk")
                        };
                        let names = [info.name(), driver, arg("iommu_task", "iommu")];
                        report_costs(device, mode, wl, qd, d.ios, a, b, names, hz);
                    }
                    if check && !consistent(device, mode, &r, &d) {
                        inconsistent += 1;
                    }
                }
            }
        }
    }
    if check {
        if inconsistent > 0 {
            log!("bench: counters INCONSISTENT in {inconsistent} of {total} points");
            return 1;
        }
        log!("bench: counters consistent in all {total} points");
    }
    log!("bench: done, {total} points");
    0
}

/// What one point measured.
struct Point {
    ios: u64,
    ticks: u64,
    lat: Histogram,
    errors: u64,
}

/// Keeps `qd` 4 KiB I/Os in flight for `ms` milliseconds: each call
/// starts as many new I/Os as the last one returned completions, and
/// waits until at least three quarters of the queue (at least one I/O)
/// completed (`SubmitWait`: one call per batch; fio's
/// `iodepth_batch_complete_min` at `qd - qd / 4`; at `qd / 2` the batches
/// at QD8 flipped between 4 and 8 from run to run). The same in every
/// mode; the ceiling run reaps whatever one poll finds.
fn run_point(
    blk: &Block,
    buf: &mut DmaBuffer,
    g: &Info,
    kind: IoKind,
    qd: u16,
    ms: u64,
    hz: u64,
) -> Result<Point, &'static str> {
    let slots = g.sectors / u64::from(IO_SECTORS);
    let mut rng =
        userlib::rng::XorShift::new(0x9e37_79b9_7f4a_7c15 ^ u64::from(qd) ^ (kind as u64) << 20);
    let mut started = [0u64; 1024];
    let mut free: Vec<u16> = (0..qd).rev().collect();
    let mut in_flight = 0u16;
    let mut p = Point {
        ios: 0,
        ticks: 0,
        lat: Histogram::new(),
        errors: 0,
    };
    let mut comps = [Completion {
        tag: 0,
        status: Ok(()),
    }; MAX_COMPLETIONS];
    let min = (qd - qd / 4).max(1);
    let start = userlib::counter();
    let end = start + ms * hz / 1000;
    // Starts up to `n` I/Os on free tags and waits for at least `min`
    // completions, in one `SubmitWait` (a batch over `MAX_IOS` sends its
    // first part with `Submit`); returns the completions in `comps`.
    let mut refill = |free: &mut Vec<u16>,
                      in_flight: &mut u16,
                      n: usize,
                      started: &mut [u64; 1024],
                      comps: &mut [Completion]|
     -> Result<usize, &'static str> {
        let mut batch: Vec<Io> = Vec::with_capacity(MAX_IOS);
        for left in (0..n).rev() {
            let Some(tag) = free.pop() else { break };
            let lba = (rng.next_u64() % slots) * u64::from(IO_SECTORS);
            batch.push(Io {
                tag,
                kind,
                flags: 0,
                sectors: IO_SECTORS,
                lba,
                offset: u64::from(tag) * abi::PAGE_SIZE,
            });
            if batch.len() == MAX_IOS && left > 0 && !free.is_empty() {
                let now = userlib::counter();
                for io in &batch {
                    started[usize::from(io.tag)] = now;
                }
                blk.submit(buf, &batch).map_err(|_| "submit refused")?;
                *in_flight += batch.len() as u16;
                batch.clear();
            }
        }
        if batch.is_empty() {
            return blk
                .reap(min.min(*in_flight).max(1), comps)
                .map_err(|_| "reap refused");
        }
        let now = userlib::counter();
        for io in &batch {
            started[usize::from(io.tag)] = now;
        }
        *in_flight += batch.len() as u16;
        blk.submit_wait(buf, &batch, min, comps)
            .map_err(|_| "submit-wait refused")
    };
    let mut n = refill(
        &mut free,
        &mut in_flight,
        usize::from(qd),
        &mut started,
        &mut comps,
    )?;
    loop {
        let now = userlib::counter();
        for c in &comps[..n] {
            if c.status.is_err() {
                p.errors += 1;
            }
            let t = now - started[usize::from(c.tag)];
            p.lat.record_us(t, hz);
            free.push(c.tag);
        }
        p.ios += n as u64;
        in_flight -= n as u16;
        if now >= end {
            break;
        }
        n = refill(&mut free, &mut in_flight, n, &mut started, &mut comps)?;
    }
    // Drain what is still in flight (not timed).
    while in_flight > 0 {
        let n = blk.reap(1, &mut comps).map_err(|_| "reap refused")?;
        in_flight -= n as u16;
        p.ios += n as u64;
    }
    p.ticks = userlib::counter() - start;
    let _ = buf;
    Ok(p)
}

fn delta(a: &BlockStats, b: &BlockStats) -> BlockStats {
    BlockStats {
        ios: a.ios - b.ios,
        submits: a.submits - b.submits,
        reaps: a.reaps - b.reaps,
        iommu_map_calls: a.iommu_map_calls - b.iommu_map_calls,
        iommu_unmap_calls: a.iommu_unmap_calls - b.iommu_unmap_calls,
        iommu_fault_calls: a.iommu_fault_calls - b.iommu_fault_calls,
        dma_faults: a.dma_faults - b.dma_faults,
        unmapped_ranges: a.unmapped_ranges - b.unmapped_ranges,
        tlbi_commands: a.tlbi_commands - b.tlbi_commands,
        cmd_syncs: a.cmd_syncs - b.cmd_syncs,
        doorbells: a.doorbells - b.doorbells,
        server_ticks: a.server_ticks - b.server_ticks,
        max_stale_window_us: a.max_stale_window_us,
        server_map_ticks: a.server_map_ticks - b.server_map_ticks,
        server_unmap_ticks: a.server_unmap_ticks - b.server_unmap_ticks,
        server_flush_ticks: a.server_flush_ticks - b.server_flush_ticks,
        server_pin_ticks: a.server_pin_ticks - b.server_pin_ticks,
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    device: &str,
    mode: BenchMode,
    kind: IoKind,
    qd: u16,
    p: &Point,
    d: &BlockStats,
    hz: u64,
    done: usize,
    total: usize,
) {
    let us = p.ticks * 1_000_000 / hz;
    let iops = p.ios * 1_000_000 / us.max(1);
    let ios = d.ios.max(1);
    // Client↔driver round trips (submit + reap) and driver↔server ones.
    let ipc = d.submits + d.reaps + d.iommu_map_calls + d.iommu_unmap_calls + d.iommu_fault_calls;
    let to_us = |ticks: u64| ticks * 1_000_000 / hz;
    let server_us = to_us(d.server_ticks);
    log!(
        "bench-result dev={device} mode={} wl={} qd={qd} ios={} us={us} iops={iops} {} ipc={} tlbi={} sync={} doorbells={} server_us={} maps={} unmaps={} stale_max_us={} errors={} point={done}/{total} srv_map_us={} srv_unmap_us={} srv_flush_us={} srv_pin_us={}",
        mode.name(),
        if kind == IoKind::Read {
            "randread"
        } else {
            "randwrite"
        },
        p.ios,
        Latencies(&p.lat),
        PerIo(ipc, ios),
        PerIo(d.tlbi_commands, ios),
        PerIo(d.cmd_syncs, ios),
        PerIo(d.doorbells, ios),
        PerIo(server_us, ios),
        PerIo(d.iommu_map_calls, ios),
        PerIo(d.iommu_unmap_calls, ios),
        d.max_stale_window_us,
        p.errors,
        PerIo(to_us(d.server_map_ticks), ios),
        PerIo(to_us(d.server_unmap_ticks), ios),
        PerIo(to_us(d.server_flush_ticks), ios),
        PerIo(to_us(d.server_pin_ticks), ios),
    );
}

/// What the kernel counted at one moment (`kstats` capability).
struct KernelView {
    counters: abi::KernelCounters,
    peaks: abi::LatencyPeaks,
    tasks: [userlib::TaskTime; userlib::KERNEL_STATS_TASKS],
    slots: usize,
}

impl KernelView {
    /// With `reset_peaks`, the kernel's latency peaks start afresh after
    /// this read.
    fn read(cap: u32, reset_peaks: bool) -> Option<Self> {
        let mut tasks = [userlib::TaskTime::default(); userlib::KERNEL_STATS_TASKS];
        let s = userlib::kernel_stats(cap, &mut tasks, reset_peaks).ok()?;
        Some(Self {
            counters: s.counters,
            peaks: s.peaks,
            tasks,
            slots: s.slots,
        })
    }

    /// Ticks the task named `name` ran (0 if there is none).
    fn ticks(&self, name: &str) -> u64 {
        self.tasks[..self.slots]
            .iter()
            .find(|t| t.name() == name)
            .map_or(0, |t| t.ticks)
    }
}

/// The per-I/O kernel costs of one point and its kernel latency peaks
/// (µs): one `bench-costs` line, keyed like its `bench-result` line.
#[allow(clippy::too_many_arguments)]
fn report_costs(
    device: &str,
    mode: BenchMode,
    kind: IoKind,
    qd: u16,
    ios: u64,
    after: &KernelView,
    before: &KernelView,
    names: [&str; 3],
    hz: u64,
) {
    let c = after.counters.since(&before.counters);
    let ios = ios.max(1);
    let cpu_us = |name: &str| {
        let ticks = after.ticks(name).saturating_sub(before.ticks(name));
        ticks * 1_000_000 / hz.max(1)
    };
    log!(
        "bench-costs dev={device} mode={} wl={} qd={qd} as_switches={} syscalls={} ipc_calls={} ipc_replies={} notifications={} interrupts={} timer_wakeups={} timer_writes={} client_cpu_us={} driver_cpu_us={} server_cpu_us={} timer_irq_late_max_us={} wake_late_max_us={} irqs_masked_max_us={}",
        mode.name(),
        if kind == IoKind::Read {
            "randread"
        } else {
            "randwrite"
        },
        PerIo(c.as_switches, ios),
        PerIo(c.syscalls, ios),
        PerIo(c.ipc_calls, ios),
        PerIo(c.ipc_replies, ios),
        PerIo(c.notifications, ios),
        PerIo(c.interrupts, ios),
        PerIo(c.timer_wakeups, ios),
        PerIo(c.timer_writes, ios),
        PerIo(cpu_us(names[0]), ios),
        PerIo(cpu_us(names[1]), ios),
        PerIo(cpu_us(names[2]), ios),
        after.peaks.timer_irq_late_us,
        after.peaks.wake_late_us,
        after.peaks.irqs_masked_us,
    );
}

/// Every I/O completed was unmapped, no more syncs than unmaps, no fault,
/// and bypass invalidated nothing.
fn consistent(device: &str, mode: BenchMode, p: &Point, d: &BlockStats) -> bool {
    let mut ok = true;
    let mut fail = |what: &str| {
        log!("bench: {device} {}: INCONSISTENT: {what}", mode.name());
        ok = false;
    };
    if d.ios != p.ios {
        fail("the driver completed a different number of I/Os than were reaped");
    }
    if d.unmapped_ranges != d.ios {
        fail("not every I/O's buffer was unmapped");
    }
    if d.cmd_syncs > d.unmapped_ranges {
        fail("more CMD_SYNCs than unmaps");
    }
    if d.dma_faults != 0 || p.errors != 0 {
        fail("an I/O failed or faulted");
    }
    if mode == BenchMode::Bypass && (d.tlbi_commands != 0 || d.cmd_syncs != 0) {
        fail("bypass invalidated");
    }
    ok
}
