//! What each point reports: the IOMMU counters sampled around it, its
//! `bench-result` line (blk-bench's format, `mode=ceiling`), and the check
//! that its counters show the per-I/O work the ceiling claims to keep. It
//! measures nothing itself.

use alloc::format;
use alloc::string::String;

use userlib::bench::{Latencies, PerIo};
use userlib::log;

use crate::inproc::InProcessServer;
use crate::{Point, Where, workload_name};

/// Counters sampled around a point.
#[derive(Clone, Copy)]
pub struct Counts {
    tlbi: u64,
    syncs: u64,
    doorbells: u64,
    /// Event records read (faults).
    events: u64,
    /// CMD_SYNCs the hardware layer issued and saw complete.
    hw_syncs: u64,
}

pub fn counts(ip: &InProcessServer) -> Counts {
    let s = ip.server();
    let stats = s.server_stats();
    Counts {
        tlbi: stats.tlbi_commands,
        syncs: stats.syncs,
        doorbells: s.hw().0.counters.doorbells,
        events: stats.events,
        hw_syncs: s.hw().0.counters.syncs,
    }
}

/// The point's counters must show the work the ceiling claims to keep:
/// every I/O's buffer mapped and unmapped, strict invalidations (at least
/// one TLBI and one CMD_SYNC, no more syncs than reaped batches, each
/// completed by the SMMU), no I/O failed, no DMA fault recorded.
pub fn check(at: &Where, p: &Point, a: &Counts, b: &Counts) -> Result<(), String> {
    let (tlbi, syncs, faults) = (b.tlbi - a.tlbi, b.syncs - a.syncs, b.events - a.events);
    let fails = [
        (p.ios == 0, "no I/O completed"),
        (
            p.maps != p.ios || p.unmaps != p.ios,
            "not every I/O's buffer was mapped and unmapped",
        ),
        (tlbi == 0, "no TLBI was issued"),
        (syncs == 0, "no CMD_SYNC was issued"),
        (
            b.hw_syncs - a.hw_syncs != syncs,
            "the SMMU completed another number of CMD_SYNCs than the server logic issued",
        ),
        (syncs > p.batches, "more CMD_SYNCs than reaped batches"),
        (p.errors > 0, "I/Os failed"),
        (faults > 0, "the SMMU recorded DMA faults"),
    ];
    if let Some((_, why)) = fails.iter().find(|(bad, _)| *bad) {
        log!(
            "ceiling: {at}: INCONSISTENT: {why} ({} I/Os, {} maps, {} unmaps, {tlbi} TLBI, {syncs} CMD_SYNC, {} batches, {faults} fault records)",
            p.ios,
            p.maps,
            p.unmaps,
            p.batches
        );
        return Err(format!("{at}: counters inconsistent"));
    }
    log!(
        "ceiling: {at}: consistent: {} I/Os, each buffer mapped and unmapped; {tlbi} TLBI, {syncs} CMD_SYNC for {} reaped batches; no fault",
        p.ios,
        p.batches
    );
    Ok(())
}

pub fn report(at: &Where, p: &Point, a: &Counts, b: &Counts, hz: u64, done: usize, total: usize) {
    let us = p.ticks * 1_000_000 / hz;
    let iops = p.ios * 1_000_000 / us.max(1);
    let ios = p.ios.max(1);
    log!(
        "bench-result dev={} mode=ceiling wl={} qd={} ios={} us={us} iops={iops} {} ipc=0.000 tlbi={} sync={} doorbells={} server_us={} maps={} unmaps={} stale_max_us=0 errors={} point={done}/{total} unmap_us={}",
        at.name,
        workload_name(at.kind),
        at.qd,
        p.ios,
        Latencies(&p.lat),
        PerIo(b.tlbi - a.tlbi, ios),
        PerIo(b.syncs - a.syncs, ios),
        PerIo(b.doorbells - a.doorbells, ios),
        PerIo(p.iommu_ticks * 1_000_000 / hz, ios),
        PerIo(p.maps, ios),
        PerIo(p.unmaps, ios),
        p.errors,
        PerIo(p.unmap_ticks * 1_000_000 / hz, ios),
    );
}
