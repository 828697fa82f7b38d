//! IOMMU client tasks. Roles (`arg("role")`):
//! - `edu-dma`: attaches the `edu` device through the IOMMU server, maps
//!   two of its own DMA pages, has the device copy one into the other (the
//!   data must land), unmaps the destination, has the device write there
//!   again (the SMMU must fault it, the server must attribute the fault to
//!   this client, and the page must be unchanged). With a strict policy
//!   the fault is certain; the task reads its policy from `arg("policy")`
//!   only to word its log.
//! - `churn`: attaches its device (never starting it), then for
//!   `arg("rounds")` rounds maps `arg("pages")` pages in batched `Map`
//!   requests and unmaps them in batched `Unmap` requests, then prints its
//!   counters: several churn tasks at once show syncs shared across clients.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use abi::{Iova, PAGE_SIZE};
use edu::{Direction, Edu};
use iommu_api::{Dir, Extent, FaultRecord, MAX_FAULT_RECORDS, MAX_MAP_ENTRIES, MAX_UNMAP_ENTRIES};
use iommu_client::Iommu;
use userlib::{DmaBuffer, TaskInfo, log};

userlib::entry!(main);

/// SMMUv3 event number of a translation fault.
const F_TRANSLATION: u16 = 0x10;

fn main(info: &TaskInfo<'static>) -> i32 {
    let Some(iommu) = info.cap("iommu").map(Iommu::new) else {
        log!("dma-demo: needs capability `iommu`");
        return 1;
    };
    let Some(dev) = info.cap("dev") else {
        log!("dma-demo: needs capability `dev` (a PCI device)");
        return 1;
    };
    let result = match info.arg("role") {
        Some("edu-dma") => edu_dma(&iommu, dev),
        Some("churn") => churn(info, &iommu, dev),
        other => {
            log!("dma-demo: unknown role {other:?}");
            return 1;
        }
    };
    match result {
        Ok(()) => 0,
        Err(why) => {
            log!("dma-demo: FAILED: {why}");
            1
        }
    }
}

/// Turns any displayable error into a logged failure.
macro_rules! check {
    ($e:expr, $what:literal) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                log!("dma-demo: {} failed: {}", $what, e);
                return Err($what);
            }
        }
    };
}

fn edu_dma(iommu: &Iommu, dev: u32) -> Result<(), &'static str> {
    let sid = check!(iommu.attach(dev, edu::DMA_BITS), "attach");
    check!(userlib::pci_enable_bus_master(dev), "bus master enable");
    let mut edu = check!(Edu::open(dev), "edu open");
    log!(
        "edu-dma: edu attached as StreamID {:#x}, bus mastering on",
        sid.0
    );

    // Page 0: source, page 1: destination; the device copies `copy` bytes
    // (its largest transfer is one byte short of a page).
    let mut buf = check!(DmaBuffer::alloc(2), "dma_alloc");
    let len = PAGE_SIZE;
    let copy = 2048;
    for i in 0..len {
        buf.write::<u8>(i, (i as u8).wrapping_mul(7).wrapping_add(3))
            .ok_or("fill")?;
        buf.write::<u8>(len + i, 0).ok_or("fill")?;
    }
    let src = check!(
        iommu.map_one(buf.grant(), Dir::ToDevice, 0, len),
        "map source"
    );
    let dst = check!(
        iommu.map_one(buf.grant(), Dir::FromDevice, len, len),
        "map destination"
    );
    log!(
        "edu-dma: mapped source at IOVA {:#x}, destination at IOVA {:#x}",
        src.get(),
        dst.get()
    );

    check!(
        edu.dma(Direction::ToDevice, src.get(), 0, copy),
        "DMA to the device"
    );
    check!(edu.dma(Direction::ToRam, dst.get(), 0, copy), "DMA to RAM");
    for i in 0..copy {
        let want = (i as u8).wrapping_mul(7).wrapping_add(3);
        if buf.read::<u8>(len + i) != Some(want) {
            log!("edu-dma: byte {i} of the destination is wrong after the DMA");
            return Err("data did not land");
        }
    }
    log!(
        "edu-dma: the device copied {copy} bytes through the SMMU: data landed in the client's buffer"
    );

    check!(
        iommu.unmap(&[Extent::new(dst.get(), len)]),
        "unmap destination"
    );
    log!("edu-dma: destination unmapped (the reply came after the covering CMD_SYNC)");
    for i in 0..len {
        buf.write::<u8>(len + i, 0x5a).ok_or("fill")?;
    }
    // The device still holds the pattern and is told to write it to the
    // old IOVA: the SMMU must refuse every byte.
    check!(
        edu.dma(Direction::ToRam, dst.get(), 0, copy),
        "DMA to the unmapped IOVA"
    );
    let untouched = (0..len).all(|i| buf.read::<u8>(len + i) == Some(0x5a));
    if !untouched {
        return Err("the device wrote to an unmapped IOVA: the buffer changed");
    }
    log!("edu-dma: DMA to the unmapped IOVA left the buffer unchanged");

    let mut faults = [FaultRecord {
        sid,
        kind: 0,
        write: false,
        iova: Iova::new(0),
        count: 0,
    }; MAX_FAULT_RECORDS];
    let n = check!(iommu.faults(&mut faults), "fault query");
    let page = dst.get() & !(PAGE_SIZE - 1);
    let ours = faults[..n].iter().find(|f| {
        f.sid == sid
            && f.kind == F_TRANSLATION
            && f.write
            && f.iova.get() & !(PAGE_SIZE - 1) == page
    });
    match ours {
        Some(f) => log!(
            "edu-dma: the server reported the fault against this client: F_TRANSLATION write at IOVA {:#x}, {} records",
            f.iova.get(),
            f.count
        ),
        None => return Err("no fault record for the unmapped IOVA"),
    }
    check!(iommu.unmap(&[Extent::new(src.get(), len)]), "unmap source");
    let s = check!(iommu.stats(), "stats");
    log!(
        "edu-dma: stats: {} maps, {} unmaps, {} TLBIs, {} syncs, {} fault records",
        s.maps,
        s.unmaps,
        s.tlbi_commands,
        s.syncs,
        s.faults
    );
    Ok(())
}

fn churn(info: &TaskInfo<'_>, iommu: &Iommu, dev: u32) -> Result<(), &'static str> {
    let rounds = userlib::arg_u64(info, "rounds", 8).map_err(|_| "bad rounds")?;
    let pages = userlib::arg_u64(info, "pages", 42).map_err(|_| "bad pages")? as usize;
    let dma_bits = userlib::arg_u64(info, "dma_bits", 48).map_err(|_| "bad dma_bits")? as u8;
    let sid = check!(iommu.attach(dev, dma_bits), "attach");
    let buf = check!(DmaBuffer::alloc(pages as u64), "dma_alloc");
    let mut iovas = [Iova::new(0); 512];
    if pages > iovas.len() {
        return Err("too many pages");
    }
    for _ in 0..rounds {
        // Map every page, MAX_MAP_ENTRIES per request.
        let mut mapped = 0;
        while mapped < pages {
            let n = (pages - mapped).min(MAX_MAP_ENTRIES);
            let mut ranges = [Extent::new(0, 0); MAX_MAP_ENTRIES];
            for (i, r) in ranges[..n].iter_mut().enumerate() {
                *r = Extent::new((mapped + i) as u64 * PAGE_SIZE, PAGE_SIZE);
            }
            let got = check!(
                iommu.map(
                    buf.grant(),
                    Dir::Bidirectional,
                    &ranges[..n],
                    &mut iovas[mapped..mapped + n]
                ),
                "map"
            );
            if got != n {
                return Err("short map reply");
            }
            mapped += n;
        }
        // Unmap them, MAX_UNMAP_ENTRIES per request.
        let mut done = 0;
        while done < pages {
            let n = (pages - done).min(MAX_UNMAP_ENTRIES);
            let mut ranges = [Extent::new(0, 0); MAX_UNMAP_ENTRIES];
            for (r, iova) in ranges[..n].iter_mut().zip(&iovas[done..done + n]) {
                *r = Extent::new(iova.get(), PAGE_SIZE);
            }
            check!(iommu.unmap(&ranges[..n]), "unmap");
            done += n;
        }
    }
    let s = check!(iommu.stats(), "stats");
    log!(
        "churn: StreamID {:#x}: {rounds} rounds x {pages} pages: {} maps, {} unmaps, {} TLBI commands, {} syncs shared, {} bytes of IOVA still in use",
        sid.0,
        s.maps,
        s.unmaps,
        s.tlbi_commands,
        s.syncs,
        s.iova_bytes_in_use
    );
    Ok(())
}
