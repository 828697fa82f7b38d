//! The ceiling benchmark: the same workloads as the benchmark matrix (4 KiB
//! random reads and writes at fixed queue depths, on NVMe and on
//! virtio-blk) with the least software possible, so that every other
//! figure can be read as a fraction of it. One task owns the SMMU, the
//! SMMU-owner capability and the block functions; no IPC, no interrupts,
//! no sleeping: it spins on the completion queue (NVMe's CQ, virtio-blk's
//! used ring). It keeps the per-I/O IOMMU work of the real path: each
//! buffer is mapped (through the IOMMU server's own logic, in-process:
//! `inproc`; device-writable for a read, device-readable for a write, as
//! the block service maps) before its command is submitted, and unmapped
//! after its completion, strictly (TLBI by IOVA, one CMD_SYNC per reaped
//! batch) before the buffer is used again. Each device is its own strict
//! client of the server logic, as each driver task is.
//!
//! For every device, workload and queue depth it prints one
//! `bench-result` line (the blk-bench format, `mode=ceiling`) that
//! `cargo xtask bench` parses, then a summary of the invalidations. Every
//! wait has a deadline: a completion that never comes fails the run with
//! a message.
//!
//! Arguments: `qds` (comma list, default 1,8,32), `workloads` (comma list
//! of `randread`, `randwrite`; default both), `ms` per point,
//! `nvme_bdf` and `vblk_bdf` (the functions' PCI addresses, as their
//! capabilities name them: their RIDs and StreamIDs), `pool_pages` (SMMU
//! tables and queues). Capabilities: `smmu` (mmio), `owner`
//! (smmu_owner), and `nvme` and/or `vblk` (pci): each device present is
//! measured, NVMe first.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod inproc;
mod report;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use abi::{Iova, StreamId};
use block_api::IoKind;
use block_server::{BlockDevice, DeviceIo};
use iommu_api::{Dir, Extent, InvalidationPolicy};
use iommu_core::policy::TrustLevel;
use iommu_core::server::{Presented, Server, ServerConfig};
use iommu_hw::{Pool, Smmu};
use nvme::Nvme;
use userlib::bench::Histogram;
use userlib::{DeviceRegion, DmaBuffer, TaskInfo, log};
use virtio_blk::VirtioBlk;

use crate::inproc::{InProcess, InProcessServer, OwnedHw};
use crate::report::{check, counts, report};

userlib::entry!(main);

/// Sectors (512 bytes) per I/O: 4 KiB.
const IO_SECTORS: u32 = 8;
/// A completion that takes longer than this fails the run.
const COMPLETION_TIMEOUT_US: u64 = 2_000_000;
/// log2 of the event-queue records (no faults are expected).
const EVTQ_LOG2: u8 = 10;

/// The devices the ceiling can drive, in the order it measures them: the
/// capability and argument names, the name in `bench-result` lines (as
/// blk-bench prints it) and the badge of its in-process client.
const DEVICES: [Device; 2] = [
    Device {
        library: Library::Nvme,
        cap: "nvme",
        bdf_arg: "nvme_bdf",
        name: "nvme",
        badge: 1,
    },
    Device {
        library: Library::VirtioBlk,
        cap: "vblk",
        bdf_arg: "vblk_bdf",
        name: "virtio-blk",
        badge: 2,
    },
];

/// The driver library a device is opened with.
#[derive(Clone, Copy)]
enum Library {
    Nvme,
    VirtioBlk,
}

/// One device the ceiling may own.
struct Device {
    library: Library,
    cap: &'static str,
    bdf_arg: &'static str,
    name: &'static str,
    badge: u32,
}

/// What a run measures: its queue depths, workloads and time per point.
struct Plan {
    qds: Vec<u16>,
    max_qd: u16,
    workloads: Vec<IoKind>,
    ms: u64,
    hz: u64,
    /// Points of the whole run.
    total: usize,
}

fn main(info: &TaskInfo<'static>) -> i32 {
    match run(info) {
        Ok(()) => 0,
        Err(e) => {
            log!("ceiling: FAILED: {e}");
            1
        }
    }
}

/// The workload's name in `bench-result` lines.
fn workload_name(kind: IoKind) -> &'static str {
    match kind {
        IoKind::Write => "randwrite",
        _ => "randread",
    }
}

fn run(info: &TaskInfo<'static>) -> Result<(), String> {
    let hz = userlib::time().map(|(_, hz)| hz).unwrap_or(1).max(1);
    let ms = userlib::arg_u64(info, "ms", 500).unwrap_or(500);
    let qds: Vec<u16> = info
        .arg("qds")
        .unwrap_or("1,8,32")
        .split(',')
        .filter_map(|q| q.trim().parse().ok())
        .filter(|&q| q > 0)
        .collect();
    let max_qd = qds.iter().copied().max().ok_or("argument qds is empty")?;
    let mut workloads = Vec::new();
    for w in info
        .arg("workloads")
        .unwrap_or("randread,randwrite")
        .split(',')
    {
        workloads.push(match w.trim() {
            "randread" => IoKind::Read,
            "randwrite" => IoKind::Write,
            other => return Err(format!("argument workloads: unknown workload `{other}`")),
        });
    }
    let (Some(smmu_cap), Some(owner)) = (info.cap("smmu"), info.cap("owner")) else {
        return Err("needs capabilities smmu (mmio), owner (smmu_owner)".into());
    };
    // Each device present: its PCI capability and RID.
    let mut present: Vec<(&Device, u32, u32)> = Vec::new();
    for d in &DEVICES {
        if let Some(cap) = info.cap(d.cap) {
            let rid = info.arg(d.bdf_arg).and_then(parse_bdf).ok_or_else(|| {
                format!(
                    "argument {} (bus:dev.fn of cap {}) missing or malformed",
                    d.bdf_arg, d.cap
                )
            })?;
            present.push((d, cap, rid));
        }
    }
    if present.is_empty() {
        return Err("needs a block device capability: nvme or vblk (pci)".into());
    }

    // The SMMU, brought up exactly as the IOMMU server task does.
    let regs = DeviceRegion::mmio(smmu_cap).map_err(|e| format!("mapping the SMMU: {e}"))?;
    let pool_pages = userlib::arg_u64(info, "pool_pages", 256).unwrap_or(256);
    let mem = DmaBuffer::alloc(pool_pages).map_err(|e| format!("pool: {e}"))?;
    let pool = Pool::new(mem).map_err(|e| format!("pool: {e:?}"))?;
    let smmu = Smmu::probe(regs, pool, EVTQ_LOG2).map_err(|e| format!("SMMU unusable: {e}"))?;
    let (used, total) = smmu.pool().usage();
    let config = ServerConfig {
        table_budget: Some(total.saturating_sub(used as u64).saturating_sub(8)),
        ..ServerConfig::default()
    };
    let mut server: Server<OwnedHw, u64> =
        Server::new(OwnedHw(smmu), config).map_err(|e| format!("stream table: {e:?}"))?;
    let (base, cfg) = server
        .strtab_registers()
        .ok_or("stream table does not encode")?;
    server
        .hw_mut()
        .0
        .enable(base, cfg)
        .map_err(|e| format!("enabling the SMMU: {e:?}"))?;
    userlib::smmu_enabled(owner).map_err(|e| format!("SMMU-enabled declaration: {e}"))?;
    let ip = InProcessServer::new(server, hz);

    let plan = Plan {
        total: present.len() * workloads.len() * qds.len(),
        qds,
        max_qd,
        workloads,
        ms,
        hz,
    };
    let mut done = 0;
    for &(d, cap, rid) in &present {
        ip.server_mut()
            .add_client(
                d.badge,
                d.name,
                InvalidationPolicy::Strict,
                TrustLevel::Trusted,
            )
            .map_err(|e| format!("{}: client: {e:?}", d.name))?;
        let device = Presented {
            rid,
            // QEMU virt's iommu-map is the identity: StreamID = RID.
            sid: StreamId(rid),
        };
        let iommu = ip.client(d.badge, device);
        // The device polled (no interrupt), deep enough for every point.
        match d.library {
            Library::Nvme => {
                let mut dev =
                    Nvme::open(&iommu, cap, None, max_qd).map_err(|e| format!("nvme: {e}"))?;
                measure(&ip, &iommu, &mut dev, d.name, &plan, &mut done)?;
            }
            Library::VirtioBlk => {
                let mut dev = VirtioBlk::open(&iommu, cap, None, max_qd)
                    .map_err(|e| format!("virtio-blk: {e}"))?;
                measure(&ip, &iommu, &mut dev, d.name, &plan, &mut done)?;
            }
        }
    }
    let s = ip.server().server_stats();
    log!(
        "ceiling: done, {done} points; strict invalidations: {} TLBI commands, {} CMD_SYNCs",
        s.tlbi_commands,
        s.syncs
    );
    Ok(())
}

/// Every workload and queue depth of `plan` on one opened device; `done`
/// counts the run's points measured so far.
fn measure(
    ip: &InProcessServer,
    iommu: &InProcess<'_>,
    dev: &mut impl BlockDevice,
    name: &'static str,
    plan: &Plan,
    done: &mut usize,
) -> Result<(), String> {
    let info = dev.info();
    if info.queue_depth < plan.max_qd {
        return Err(format!(
            "{name}: queue depth {} where {} is needed",
            info.queue_depth, plan.max_qd
        ));
    }
    let slots = info.sectors / u64::from(IO_SECTORS);
    if slots == 0 {
        return Err(format!("{name}: smaller than one I/O"));
    }
    let buf = DmaBuffer::alloc(u64::from(plan.max_qd)).map_err(|e| format!("buffers: {e}"))?;
    let frames = inproc::frames_of(&buf).ok_or("buffers have no physical address")?;
    log!(
        "ceiling: SMMU on, {name} {slots} 4 KiB slots, strict map/unmap per I/O in-process, polled, {} ms per point",
        plan.ms
    );
    for &kind in &plan.workloads {
        for &qd in &plan.qds {
            let at = Where {
                name,
                kind,
                qd,
                slots,
            };
            let before = counts(ip);
            let p = run_point(iommu, dev, &buf, &frames, &at, plan.ms, plan.hz)?;
            ip.drain_events();
            let after = counts(ip);
            *done += 1;
            report(&at, &p, &before, &after, plan.hz, *done, plan.total);
            check(&at, &p, &before, &after)?;
        }
    }
    Ok(())
}

/// Which point: device, workload, queue depth, and the device's 4 KiB
/// slots (the random LBAs' range).
struct Where {
    name: &'static str,
    kind: IoKind,
    qd: u16,
    slots: u64,
}

impl core::fmt::Display for Where {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} {} qd {}",
            self.name,
            workload_name(self.kind),
            self.qd
        )
    }
}

/// `bus:dev.fn` as a PCI requester ID.
fn parse_bdf(s: &str) -> Option<u32> {
    let (bus, rest) = s.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let bus = u32::from_str_radix(bus, 16).ok().filter(|&b| b < 256)?;
    let dev = u32::from_str_radix(dev, 16).ok().filter(|&d| d < 32)?;
    let func = u32::from_str_radix(func, 16).ok().filter(|&f| f < 8)?;
    Some(bus << 8 | dev << 3 | func)
}

/// What one point measured.
struct Point {
    ios: u64,
    ticks: u64,
    lat: Histogram,
    errors: u64,
    maps: u64,
    unmaps: u64,
    /// Ticks spent in the server logic (map and unmap, the syncs included).
    iommu_ticks: u64,
    /// Of which in unmaps (their invalidations and syncs included).
    unmap_ticks: u64,
    /// Reaped batches (each unmapped with one call).
    batches: u64,
}

/// The direction the block service maps a buffer in for an I/O of
/// `kind`: the device writes a read's buffer and reads a write's.
fn direction(kind: IoKind) -> Dir {
    match kind {
        IoKind::Write => Dir::ToDevice,
        _ => Dir::FromDevice,
    }
}

/// Keeps `at.qd` I/Os in flight for `ms` milliseconds, as blk-bench does:
/// every reaped batch is unmapped (one sync), then as many new I/Os are
/// mapped (one Map) and submitted (one doorbell). An I/O's latency runs
/// from before its map to after its unmap's sync.
/// Unmaps the buffers of the completed slots `done` (one request, one
/// strict sync) and counts it in `p`.
fn unmap_done(
    iommu: &InProcess<'_>,
    iovas: &[Iova],
    done: &[(u16, Result<(), block_api::BlockError>)],
    p: &mut Point,
) -> Result<(), String> {
    let unmap: Vec<Extent> = done
        .iter()
        .map(|&(slot, _)| Extent::new(iovas[usize::from(slot)].get(), abi::PAGE_SIZE))
        .collect();
    iommu.unmap(&unmap).map_err(|e| format!("unmap: {e}"))?;
    p.unmaps += unmap.len() as u64;
    p.batches += 1;
    Ok(())
}

fn run_point<D: BlockDevice>(
    iommu: &InProcess<'_>,
    dev: &mut D,
    buf: &DmaBuffer,
    frames: &[abi::PhysAddr],
    at: &Where,
    ms: u64,
    hz: u64,
) -> Result<Point, String> {
    let (qd, kind, slots) = (at.qd, at.kind, at.slots);
    let dir = direction(kind);
    let mut rng =
        userlib::rng::XorShift::new(0x9e37_79b9_7f4a_7c15 ^ u64::from(qd) ^ (kind as u64) << 20);
    let mut free: Vec<u16> = (0..qd).rev().collect();
    let mut started = alloc::vec![0u64; usize::from(qd)];
    let mut iovas = alloc::vec![Iova::new(0); usize::from(qd)];
    let mut in_flight = 0u16;
    let mut p = Point {
        ios: 0,
        ticks: 0,
        lat: Histogram::new(),
        errors: 0,
        maps: 0,
        unmaps: 0,
        iommu_ticks: 0,
        unmap_ticks: 0,
        batches: 0,
    };
    let mut done: Vec<(u16, Result<(), block_api::BlockError>)> = Vec::new();
    let mut ranges: Vec<Extent> = Vec::with_capacity(usize::from(qd));
    let mut batch: Vec<u16> = Vec::with_capacity(usize::from(qd));
    let mut ios: Vec<DeviceIo> = Vec::with_capacity(usize::from(qd));
    let mut got = alloc::vec![Iova::new(0); usize::from(qd)];
    let timeout = COMPLETION_TIMEOUT_US * hz / 1_000_000;

    let mut submit = |dev: &mut D,
                      n: usize,
                      free: &mut Vec<u16>,
                      in_flight: &mut u16,
                      started: &mut [u64],
                      iovas: &mut [Iova],
                      p: &mut Point|
     -> Result<(), String> {
        batch.clear();
        ranges.clear();
        for _ in 0..n {
            let Some(slot) = free.pop() else { break };
            batch.push(slot);
            ranges.push(Extent::new(
                u64::from(slot) * abi::PAGE_SIZE,
                abi::PAGE_SIZE,
            ));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let t0 = userlib::counter();
        let n = iommu
            .map(buf, frames, dir, &ranges, &mut got)
            .map_err(|e| format!("map: {e}"))?;
        let t1 = userlib::counter();
        p.iommu_ticks += t1 - t0;
        p.maps += n as u64;
        ios.clear();
        for (k, &slot) in batch.iter().enumerate() {
            started[usize::from(slot)] = t0;
            iovas[usize::from(slot)] = got[k];
            ios.push(DeviceIo {
                slot,
                kind,
                lba: (rng.next_u64() % slots) * u64::from(IO_SECTORS),
                sectors: IO_SECTORS,
                iova: got[k],
                bytes: abi::PAGE_SIZE,
            });
        }
        dev.submit(&ios).map_err(|e| format!("submit: {e:?}"))?;
        *in_flight += batch.len() as u16;
        Ok(())
    };

    let start = userlib::counter();
    let end = start + ms * hz / 1000;
    submit(
        dev,
        usize::from(qd),
        &mut free,
        &mut in_flight,
        &mut started,
        &mut iovas,
        &mut p,
    )?;
    loop {
        // Spin on the completion queue, with a deadline.
        done.clear();
        let spin_from = userlib::counter();
        while done.is_empty() {
            dev.completions(&mut done);
            if done.is_empty() && userlib::counter() - spin_from > timeout {
                return Err(format!(
                    "{at}: no completion within {COMPLETION_TIMEOUT_US} us ({in_flight} in flight)"
                ));
            }
        }
        let t0 = userlib::counter();
        unmap_done(iommu, &iovas, &done, &mut p)?;
        let now = userlib::counter();
        p.iommu_ticks += now - t0;
        p.unmap_ticks += now - t0;
        let n = done.len();
        for &(slot, status) in &done {
            if status.is_err() {
                p.errors += 1;
            }
            let t = now - started[usize::from(slot)];
            p.lat.record_us(t, hz);
            free.push(slot);
        }
        p.ios += n as u64;
        in_flight -= n as u16;
        if now >= end {
            break;
        }
        submit(
            dev,
            n,
            &mut free,
            &mut in_flight,
            &mut started,
            &mut iovas,
            &mut p,
        )?;
    }
    // Drain what is still in flight (counted, not timed), unmapping it.
    let drain_from = userlib::counter();
    while in_flight > 0 {
        done.clear();
        dev.completions(&mut done);
        if !done.is_empty() {
            unmap_done(iommu, &iovas, &done, &mut p)?;
            in_flight -= done.len() as u16;
            p.ios += done.len() as u64;
            for &(slot, status) in &done {
                if status.is_err() {
                    p.errors += 1;
                }
                free.push(slot);
            }
        } else if userlib::counter() - drain_from > timeout {
            return Err(format!("{at}: {in_flight} I/Os never completed"));
        }
    }
    p.ticks = userlib::counter() - start;
    Ok(p)
}
