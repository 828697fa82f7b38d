//! Demo `attach-no-cap`: attaching a device without holding its
//! capability, and stealing a device another client attached. Roles
//! `attach-owner` (attaches edu first and reports the verdict),
//! `attach-thief` (holds edu too, comes second) and `attach-nocap` (holds
//! no device capability at all).

use abi::{Error, PAGE_SIZE};
use iommu_api::{ApiError, Dir, Request};
use iommu_client::{ClientError, Iommu};
use userlib::{DmaBuffer, TaskInfo, log};

use crate::narrate::{Demo, await_peers, raw_request};

const NAME: &str = "attach-no-cap";
/// Owner → thief: the device is attached.
const ATTACHED: u64 = 1;
/// Thief → owner.
const THIEF_OK: u64 = 1;
const THIEF_BROKEN: u64 = 2;
/// No-cap task → owner.
const NOCAP_OK: u64 = 4;
const NOCAP_BROKEN: u64 = 8;
/// Bytes the edu device copies (its largest transfer is a page less one).
const COPY: u64 = 2048;

/// Attaches edu, maps a page, lets the others try, then shows its device
/// still works: DMA through its mapping, unmap, map and unmap again.
pub fn owner(info: &TaskInfo<'_>) -> i32 {
    let mut d = Demo::new(NAME);
    let Some([ep, dev, peer]) = d.caps(info, ["iommu", "dev", "peer"]) else {
        return d.finish();
    };
    owner_run(&mut d, &Iommu::new(ep), dev, peer);
    d.finish()
}

fn owner_run(d: &mut Demo, iommu: &Iommu, dev: u32, peer: u32) -> Option<()> {
    let (sid, mut edu, mut buf, iova) = d.edu_with_page(iommu, dev)?;
    log!("owner: edu attached as StreamID {:#x}", sid.0);
    log!("owner: mapped a page at IOVA {:#x}", iova.get());
    d.step("notify the thief", userlib::notify(peer, ATTACHED))?;
    let seen = d.step(
        "wait for the other tasks",
        await_peers(&[THIEF_OK | THIEF_BROKEN, NOCAP_OK | NOCAP_BROKEN]),
    )?;
    d.check(
        "the thief's attempts were all stopped",
        seen & THIEF_BROKEN == 0,
    );
    d.check(
        "the capability-less task's attempts were all stopped",
        seen & NOCAP_BROKEN == 0,
    );

    // The device is still ours and still translated: a round trip through
    // the mapping (RAM → device → RAM) must bring the pattern back.
    d.owner_unaffected("the owner", iommu, &mut edu, &mut buf, iova, COPY)?;
    Some(())
}

/// Holds the same edu capability and tries to attach it after the owner.
pub fn thief(info: &TaskInfo<'_>) -> i32 {
    let mut d = Demo::new(NAME);
    let Some([ep, dev, peer]) = d.caps(info, ["iommu", "dev", "peer"]) else {
        return 1;
    };
    let iommu = Iommu::new(ep);
    if d.step("wait for the owner", await_peers(&[ATTACHED]))
        .is_some()
    {
        for bits in [edu::DMA_BITS, 48] {
            d.refused(
                &alloc::format!(
                    "Attach edu ({bits}-bit DMA), which the owner attached first, presenting our own edu capability"
                ),
                iommu.attach(dev, bits),
                ClientError::Api(ApiError::AlreadyAttached),
                "the server: a StreamID belongs to one client's domain",
            );
        }
        if let Some(buf) = d.step("dma_alloc", DmaBuffer::alloc(1)) {
            d.refused(
                "Map a page of our own with no device attached to us",
                iommu.map_one(buf.grant(), Dir::Bidirectional, 0, PAGE_SIZE),
                ClientError::Api(ApiError::NotAttached),
                "the server: this client has no domain",
            );
        }
        d.nothing_mapped(&iommu);
    }
    d.report("thief", peer, THIEF_OK, THIEF_BROKEN)
}

/// Holds no device capability and tries to attach one anyway.
pub fn nocap(info: &TaskInfo<'_>) -> i32 {
    let mut d = Demo::new(NAME);
    let Some([ep, peer]) = d.caps(info, ["iommu", "peer"]) else {
        return 1;
    };
    let attach = Request::Attach {
        dma_bits: edu::DMA_BITS,
    };
    d.refused(
        "Attach presenting no capability",
        raw_request(ep, &attach, None, None),
        ClientError::Api(ApiError::NoDevice),
        "the server: Attach attaches only the device the call presents",
    );
    d.refused(
        "Attach presenting capability index 40, which we do not hold",
        raw_request(ep, &attach, None, Some(40)),
        ClientError::Sys(Error::BadCap),
        "the kernel: no capability in that slot",
    );
    d.refused(
        "Attach presenting our endpoint capability as if it were a device",
        raw_request(ep, &attach, None, Some(ep)),
        ClientError::Sys(Error::WrongCapKind),
        "the kernel: only a PCI capability can be presented",
    );
    d.refused(
        "Attach presenting our notification capability as if it were a device",
        raw_request(ep, &attach, None, Some(peer)),
        ClientError::Sys(Error::WrongCapKind),
        "the kernel: only a PCI capability can be presented",
    );
    d.nothing_mapped(&Iommu::new(ep));
    d.report("nocap", peer, NOCAP_OK, NOCAP_BROKEN)
}
