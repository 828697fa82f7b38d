//! Demo `impersonate`: a client tries to act as another one. Roles
//! `imp-victim` (maps a buffer, publishes its IOVA, reports the verdict)
//! and `imp-impostor`.

use abi::{Error, PAGE_SIZE};
use iommu_api::{ApiError, ENTRY_BYTES, Extent, HEADER_BYTES, Op, Request};
use iommu_client::{ClientError, Iommu};
use userlib::{TaskInfo, log};

use crate::narrate::{Demo, await_peers, log_stats, raw_bytes};

const NAME: &str = "impersonate";
/// Victim → impostor: the notification bits that carry the victim's IOVA
/// (page-aligned, below 2^28: the edu device's DMA width). The system
/// description gives the victim's notify capability exactly these bits.
const IOVA_BITS: u64 = 0x0fff_f000;
/// Impostor → victim.
const IMPOSTOR_OK: u64 = 1;
const IMPOSTOR_BROKEN: u64 = 2;
/// Bytes the edu device copies.
const COPY: u64 = 2048;

/// Maps a page for its edu device, tells the impostor the IOVA, and once
/// the impostor is done checks that its mapping is intact and works.
pub fn victim(info: &TaskInfo<'_>) -> i32 {
    let mut d = Demo::new(NAME);
    let Some([ep, dev, peer]) = d.caps(info, ["iommu", "dev", "peer"]) else {
        return d.finish();
    };
    victim_run(&mut d, &Iommu::new(ep), dev, peer);
    d.finish()
}

fn victim_run(d: &mut Demo, iommu: &Iommu, dev: u32, peer: u32) -> Option<()> {
    let (sid, mut edu, mut buf, iova) = d.edu_with_page(iommu, dev)?;
    log!(
        "victim: edu is StreamID {:#x}; mapped a page at IOVA {:#x}; telling the impostor",
        sid.0,
        iova.get()
    );
    if iova.get() == 0 || iova.get() & !IOVA_BITS != 0 {
        d.fail(alloc::format!(
            "IOVA {:#x} does not fit the notification bits {IOVA_BITS:#x}",
            iova.get()
        ));
        return None;
    }
    d.step("publish the IOVA", userlib::notify(peer, iova.get()))?;
    let seen = d.step(
        "wait for the impostor",
        await_peers(&[IMPOSTOR_OK | IMPOSTOR_BROKEN]),
    )?;
    d.check(
        "the impostor's attempts were all stopped",
        seen & IMPOSTOR_BROKEN == 0,
    );

    let s = d.step("Stats", iommu.stats())?;
    log_stats("the victim", &s);
    d.check(
        "the victim's mapping is still there (1 map, 0 unmaps, one page of IOVA in use)",
        s.maps == 1 && s.unmaps == 0 && s.iova_bytes_in_use == PAGE_SIZE,
    );
    d.owner_unaffected("the victim", iommu, &mut edu, &mut buf, iova, COPY)?;
    Some(())
}

/// Learns the victim's IOVA and tries to act on it as the victim.
pub fn impostor(info: &TaskInfo<'_>) -> i32 {
    let mut d = Demo::new(NAME);
    let Some([ep, dev, peer]) = d.caps(info, ["iommu", "dev", "peer"]) else {
        return 1;
    };
    let victim_badge = userlib::arg_u64(info, "victim_badge", 0).unwrap_or(0);
    impostor_run(&mut d, ep, dev, victim_badge, info.badge());
    d.report("impostor", peer, IMPOSTOR_OK, IMPOSTOR_BROKEN)
}

fn impostor_run(d: &mut Demo, ep: u32, dev: u32, victim_badge: u64, own_badge: u32) -> Option<()> {
    let iommu = Iommu::new(ep);
    // A device of our own, so that the server knows us as an attached
    // client: what follows is refused for whose IOVA it is, not because
    // we have no domain.
    let sid = d.step("attach our own device", iommu.attach(dev, 48))?;
    let seen = d.step("wait for the victim's IOVA", await_peers(&[IOVA_BITS]))?;
    let iova = seen & IOVA_BITS;
    log!(
        "impostor: we are badge {own_badge}, StreamID {:#x}; the victim (badge {victim_badge}) has a page mapped at IOVA {iova:#x}",
        sid.0
    );

    log!(
        "ATTEMPT: ask for the victim's Stats as badge {victim_badge} (a call has no badge field: the badge comes from our capability)"
    );
    let s = d.step("Stats", iommu.stats())?;
    if s.maps == 0 && s.iova_bytes_in_use == 0 {
        log!(
            "STOPPED: the server answered for our own domain: {} maps, {} bytes of IOVA in use, not the victim's 1 map (by the kernel: it stamps the badge the system description gave our capability)",
            s.maps,
            s.iova_bytes_in_use
        );
    } else {
        d.fail(alloc::format!(
            "Stats answered {} maps, {} bytes in use: someone else's domain",
            s.maps,
            s.iova_bytes_in_use
        ));
    }

    // A Stats request with the victim's badge in an extra entry.
    let mut msg = [0u8; HEADER_BYTES + ENTRY_BYTES];
    msg[..2].copy_from_slice(&(Op::Stats as u16).to_le_bytes());
    msg[2..4].copy_from_slice(&1u16.to_le_bytes());
    msg[HEADER_BYTES..HEADER_BYTES + 8].copy_from_slice(&victim_badge.to_le_bytes());
    d.refused(
        "Stats with the victim's badge written into the message",
        raw_bytes(ep, &Request::Stats, &msg, None, None),
        ClientError::Api(ApiError::Malformed),
        "the server: a Stats request has no fields; the caller is the kernel's badge",
    );

    d.refused(
        &alloc::format!("Unmap the victim's IOVA {iova:#x} (one page)"),
        iommu.unmap(&[Extent::new(iova, PAGE_SIZE)]),
        ClientError::Api(ApiError::UnknownIova),
        "the server: IOVAs are looked up in the caller's own domain only",
    );
    d.refused(
        &alloc::format!("Unmap the victim's IOVA {iova:#x} through forged capability index 40"),
        Iommu::new(40).unmap(&[Extent::new(iova, PAGE_SIZE)]),
        ClientError::Sys(Error::BadCap),
        "the kernel: no capability in that slot",
    );
    d.refused(
        "Stats through forged capability index 40",
        Iommu::new(40).stats(),
        ClientError::Sys(Error::BadCap),
        "the kernel: no capability in that slot",
    );
    d.nothing_mapped(&iommu);
    Some(())
}
