//! Use after unmap: a client unmaps a buffer its device used, then the
//! device writes to the old IOVA. A strict client's unmap returns only
//! after the TLBI and CMD_SYNC that removed the translation from every
//! IOTLB, so the write faults at once. A deferred client's unmap returns
//! at once and its invalidation waits in the flush queue: until that flush
//! (at most N entries or T µs later) the IOTLB may still translate the old
//! IOVA, which is why only trusted clients may be deferred.

use alloc::format;

use abi::PAGE_SIZE;
use edu::{Direction, Edu};
use iommu_api::Extent;
use iommu_client::Iommu;
use userlib::{DmaBuffer, TaskInfo, log};

use crate::{Outcome, edu_round_trip, fault_on, faults_of, open_edu};

/// Bytes per edu transfer.
const COPY: u64 = 2048;
/// How far past its bound T a measured stale window may run (the server's
/// timer and scheduling under emulation).
const WINDOW_SLACK_US: u64 = 100_000;

fn pattern(i: u64) -> u8 {
    (i as u8).wrapping_mul(13).wrapping_add(1)
}

/// The demo; `arg("policy")` is `strict` or `deferred` (as the system
/// description's trust), `arg("window_us")` / `arg("window_entries")` the
/// deferred bounds T and N.
pub fn run(info: &TaskInfo<'_>) -> Outcome {
    let who = info.arg("demo").unwrap_or("use-after-unmap");
    let deferred = match info.arg("policy") {
        Some("strict") | None => false,
        Some("deferred") => true,
        Some(other) => return Err(format!("unknown policy {other:?}")),
    };
    let window_us = userlib::arg_u64(info, "window_us", 300_000).map_err(|_| "bad window_us")?;
    let window_entries =
        userlib::arg_u64(info, "window_entries", 64).map_err(|_| "bad window_entries")?;
    let iommu = info
        .cap("iommu")
        .map(Iommu::new)
        .ok_or("needs capability `iommu`")?;
    let dev = info.cap("dev").ok_or("needs capability `dev` (edu)")?;
    let (sid, mut edu) = open_edu(&iommu, dev)?;
    let kind = if deferred {
        format!("deferred client (trusted; flush after {window_entries} entries or {window_us} us)")
    } else {
        "strict client (untrusted: the default)".into()
    };
    log!("{who}: {kind}, edu StreamID {:#x}", sid.0);

    let (mut buf, src, dst) = edu_round_trip(&iommu, &mut edu, COPY, pattern)?;
    let dma = |edu: &mut Edu, dir, iova: u64| {
        edu.dma(dir, iova, 0, COPY).map_err(|e| format!("DMA: {e}"))
    };
    log!(
        "{who}: the device wrote the buffer through its mapping at IOVA {:#x} (the SMMU's IOTLB now caches that translation)",
        dst.get()
    );

    let dst_extent = [Extent::new(dst.get(), PAGE_SIZE)];
    iommu
        .unmap(&dst_extent)
        .map_err(|e| format!("unmap: {e}"))?;
    let unmapped_at = userlib::counter();
    log!(
        "{who}: buffer unmapped{}",
        if deferred {
            " (deferred: the reply came at once, the invalidation waits in the flush queue)"
        } else {
            " (strict: the reply came after the covering TLBI + CMD_SYNC)"
        }
    );
    let marked = |buf: &mut DmaBuffer| -> Outcome {
        for i in 0..PAGE_SIZE {
            buf.write::<u8>(PAGE_SIZE + i, 0x5a).ok_or("fill")?;
        }
        Ok(())
    };
    let untouched =
        |buf: &DmaBuffer| (0..PAGE_SIZE).all(|i| buf.read::<u8>(PAGE_SIZE + i) == Some(0x5a));
    marked(&mut buf)?;
    log!(
        "ATTEMPT: right after the unmap, the device writes {COPY} bytes to the old IOVA {:#x}",
        dst.get()
    );
    dma(&mut edu, Direction::ToRam, dst.get())?;
    let (_, hz) = userlib::time().unwrap_or((0, 1));
    let after_us = userlib::counter()
        .wrapping_sub(unmapped_at)
        .saturating_mul(1_000_000)
        / hz.max(1);

    if deferred {
        if untouched(&buf) {
            return Err(format!(
                "the stale window was not observed: {after_us} us after the unmap the device no longer reached the page"
            ));
        }
        let s = iommu.stats().map_err(|e| format!("stats: {e}"))?;
        log!(
            "WINDOW: {} ms after the deferred unmap returned, the device still wrote the page: the IOTLB still held the translation ({} unmap(s) awaiting their flush)",
            after_us / 1000,
            s.pending_unmaps
        );
        log!(
            "{who}: (here the buffer still belongs to this client; had it been freed and reused, the device would have written someone else's memory)"
        );
        userlib::sleep(2 * window_us).map_err(|e| format!("sleep: {e}"))?;
        let s = iommu.stats().map_err(|e| format!("stats: {e}"))?;
        log!(
            "{who}: the flush queue drained; the server counted a largest stale window of {} us (bound: {window_entries} entries or {window_us} us)",
            s.max_stale_window_us
        );
        if s.pending_unmaps != 0 {
            return Err(format!(
                "{} unmaps still pending {} us after the unmap",
                s.pending_unmaps,
                2 * window_us
            ));
        }
        if s.max_stale_window_us == 0 {
            return Err("the stale window was not counted".into());
        }
        if s.max_stale_window_us > window_us + WINDOW_SLACK_US {
            return Err(format!(
                "the stale window ({} us) exceeded its bound ({window_us} us)",
                s.max_stale_window_us
            ));
        }
        marked(&mut buf)?;
        log!(
            "ATTEMPT: after waiting {} ms (longer than T), the device writes to the old IOVA {:#x} again",
            2 * window_us / 1000,
            dst.get()
        );
        dma(&mut edu, Direction::ToRam, dst.get())?;
    }
    if !untouched(&buf) {
        return Err("the device wrote through an IOVA whose unmap had completed".into());
    }
    let records = faults_of(&iommu, sid)?;
    let Some(f) = fault_on(&records, dst.get()) else {
        return Err("the buffer is untouched but no fault was reported".into());
    };
    log!(
        "STOPPED: the DMA faulted and the buffer is untouched (by the SMMU: {}); the IOMMU server attributed {} fault records at IOVA {:#x} to this client",
        if deferred {
            "the flush's TLBI + CMD_SYNC removed the cached translation"
        } else {
            "the translation was gone from every IOTLB before the unmap returned"
        },
        f.count,
        f.iova.get()
    );
    if deferred {
        log!(
            "{who}: why untrusted clients are strict: a deferred unmap leaves the device up to {window_us} us (or {window_entries} unmaps) of access to memory its driver already gave up, so the server refuses deferred policies to untrusted clients"
        );
    } else {
        log!(
            "{who}: why untrusted clients are strict: their unmap returns only when no IOTLB can translate the IOVA any more, so a device cannot reach memory its driver gave up, not even for a moment"
        );
    }
    iommu
        .unmap(&[Extent::new(src.get(), PAGE_SIZE)])
        .map_err(|e| format!("unmap: {e}"))?;
    Ok(())
}
