//! The rogue-DMA demo's two attackers: compromised drivers that aim their
//! devices at memory they never mapped. Each holds exactly what a driver
//! holds (its PCI function and a call capability on the IOMMU server);
//! what stops them is the SMMU (no translation in their domain) and the
//! IOMMU server (fault attribution, quarantine).

use alloc::format;
use alloc::string::String;

use abi::PAGE_SIZE;
use block_api::IoKind;
use block_server::{BlockDevice, DeviceIo};
use edu::Direction;
use iommu_api::{ApiError, Dir, Extent};
use iommu_client::{ClientError, Iommu};
use nvme::Nvme;
use userlib::{DmaBuffer, TaskInfo, log};

use crate::{Outcome, edu_round_trip, fault_on, faults_of, kernel_unchanged, open_edu};

/// Physical address of the kernel image on QEMU `virt` (the kernel's
/// linker script: KERNEL_PHYS). Its first bytes are the boot code, which
/// never runs again after boot.
pub const KERNEL_IMAGE: u64 = 0x4020_0000;
/// The NVMe sector that carries the payload.
const PAYLOAD_LBA: u64 = 64;
/// The payload: AArch64 `RET`, 128 times (one 512-byte sector). Should it
/// ever land on kernel code, each overwritten function returns at once
/// instead of running garbage, so the kernel survives to report.
const RET: u32 = 0xd65f_03c0;
/// Bytes per sector, the only block size the payload fits.
const SECTOR: u64 = 512;
/// First IOVA the edu attacker aims at: inside its 28-bit window, far
/// above anything the server hands out (from 0x10_0000 up).
const EDU_TARGET: u64 = 0x0800_0000;
/// Spacing of the edu attacker's targets: each in a page of its own.
const EDU_STRIDE: u64 = 0x10_0000;
/// Bytes per edu transfer.
const COPY: u64 = 2048;

fn caps(info: &TaskInfo<'_>) -> Result<(Iommu, u32), String> {
    let iommu = info
        .cap("iommu")
        .map(Iommu::new)
        .ok_or("needs capability `iommu`")?;
    let dev = info
        .cap("dev")
        .ok_or("needs capability `dev` (a PCI device)")?;
    Ok((iommu, dev))
}

fn fill(buf: &mut DmaBuffer, offset: u64, len: u64, f: impl Fn(u64) -> u8) -> Outcome {
    for i in 0..len {
        buf.write::<u8>(offset + i, f(i)).ok_or("buffer write")?;
    }
    Ok(())
}

fn holds(buf: &DmaBuffer, offset: u64, len: u64, f: impl Fn(u64) -> u8) -> bool {
    (0..len).all(|i| buf.read::<u8>(offset + i) == Some(f(i)))
}

fn pattern(i: u64) -> u8 {
    (i as u8).wrapping_mul(7).wrapping_add(3)
}

/// The edu attacker: DMA to never-mapped IOVAs until quarantined.
pub fn edu(info: &TaskInfo<'_>) -> Outcome {
    let (iommu, dev) = caps(info)?;
    let pages = userlib::arg_u64(info, "pages", 6).map_err(|_| "bad pages")?;
    let (sid, mut edu) = open_edu(&iommu, dev)?;
    log!(
        "rogue-edu: edu attached as StreamID {:#x}, bus mastering on",
        sid.0
    );

    // Its own buffer works: the device is fine, the driver is the threat.
    let (mut buf, _src, dst) = edu_round_trip(&iommu, &mut edu, COPY, pattern)?;
    log!(
        "rogue-edu: DMA through its own mapping works (IOVA {:#x})",
        dst.get()
    );
    let sum = kernel_unchanged("rogue-edu")?;

    let target = |i: u64| EDU_TARGET + i * EDU_STRIDE;
    log!(
        "ATTEMPT: rogue-edu programs the edu DMA engine to write {COPY} bytes to each of {pages} IOVAs it never mapped ({:#x}, {:#x}, ...)",
        target(0),
        target(1)
    );
    for i in 0..pages {
        // The device reports success whatever the SMMU did.
        edu.dma(Direction::ToRam, target(i), 0, COPY)
            .map_err(|e| format!("DMA: {e}"))?;
    }
    let records = faults_of(&iommu, sid)?;
    let hit = (0..pages)
        .filter(|&i| fault_on(&records, target(i)).is_some())
        .count();
    if hit == 0 {
        return Err("no fault reported for DMA to never-mapped IOVAs".into());
    }
    log!(
        "STOPPED: every write to a never-mapped IOVA was blocked (by the SMMU: no translation in this client's domain); the IOMMU server attributed translation faults on {hit} distinct pages to this client (StreamID {:#x})",
        sid.0
    );

    match iommu.map_one(buf.grant(), Dir::FromDevice, 0, PAGE_SIZE) {
        Err(ClientError::Api(ApiError::Quarantined)) => log!(
            "STOPPED: rogue-edu's next request (Map) was refused Quarantined (by the IOMMU server: quarantine after repeated faults)"
        ),
        Ok(_) => return Err("not quarantined: a Map after the faults was accepted".into()),
        Err(e) => {
            return Err(format!(
                "a Map after the faults failed with {e}, not Quarantined"
            ));
        }
    }
    fill(&mut buf, PAGE_SIZE, PAGE_SIZE, |_| 0x5a)?;
    edu.dma(Direction::ToRam, dst.get(), 0, COPY)
        .map_err(|e| format!("DMA: {e}"))?;
    if !holds(&buf, PAGE_SIZE, PAGE_SIZE, |_| 0x5a) {
        return Err("the quarantined device still wrote to memory".into());
    }
    log!(
        "STOPPED: the device cannot reach even the buffer it still has mapped (by the SMMU: the quarantined stream's STE aborts all DMA)"
    );
    kernel_unchanged("rogue-edu")?;
    log!("rogue-edu: kernel code and read-only data unchanged (checksum {sum:#018x})");
    Ok(())
}

/// The NVMe attacker: a read whose PRP1 is the kernel image.
pub fn nvme(info: &TaskInfo<'_>) -> Outcome {
    let (iommu, dev) = caps(info)?;
    let target = userlib::arg_u64(info, "target", KERNEL_IMAGE).map_err(|_| "bad target")?;
    if target % PAGE_SIZE + SECTOR > PAGE_SIZE {
        return Err("the target must leave room for one sector in its page".into());
    }
    let before = kernel_unchanged("rogue-nvme")?;
    log!("rogue-nvme: kernel checksum before the attack {before:#018x}");
    let mut nvme = Nvme::open(&iommu, dev, None, 4).map_err(|e| format!("NVMe open: {e}"))?;
    // Already attached by the open: this only names the stream.
    let sid = iommu.attach(dev, 64).map_err(|e| format!("attach: {e}"))?;
    if nvme.info().sector_size != SECTOR as u32 {
        return Err("the demo needs 512-byte NVMe blocks".into());
    }
    log!(
        "rogue-nvme: NVMe controller opened normally (StreamID {:#x}, its queues mapped through the IOMMU server)",
        sid.0
    );

    // The payload goes to disk the legitimate way, through its own buffer.
    let mut buf = DmaBuffer::alloc(1).map_err(|e| format!("dma_alloc: {e}"))?;
    for k in 0..SECTOR / 4 {
        buf.write::<u32>(4 * k, RET).ok_or("buffer write")?;
    }
    let iova = iommu
        .map_one(buf.grant(), Dir::ToDevice, 0, SECTOR)
        .map_err(|e| format!("map: {e}"))?;
    let write = DeviceIo {
        slot: 1,
        kind: IoKind::Write,
        lba: PAYLOAD_LBA,
        sectors: 1,
        iova,
        bytes: SECTOR,
    };
    let written = io(&mut nvme, write);
    iommu
        .unmap(&[Extent::new(iova.get(), SECTOR)])
        .map_err(|e| format!("unmap: {e}"))?;
    written?;
    log!(
        "rogue-nvme: sector {PAYLOAD_LBA} of its disk holds the payload: 128 AArch64 RET instructions (written through its own mapped buffer)"
    );

    log!(
        "ATTEMPT: rogue-nvme submits an NVMe Read of sector {PAYLOAD_LBA} with a forged PRP1 = {target:#x}, the kernel image's physical address, which it never mapped"
    );
    let r = nvme.demo_rogue_read(PAYLOAD_LBA, target);
    log!(
        "rogue-nvme: the controller completed the forged read: {} (DMA faults are silent towards the device)",
        if r.is_ok() { "status OK" } else { "error" }
    );
    let records = faults_of(&iommu, sid)?;
    let after = userlib::kernel_integrity().map_err(|e| format!("kernel checksum: {e}"))?;
    let outcome = match (after, fault_on(&records, target)) {
        ((false, sum), _) => {
            log!("BREACH: kernel image changed (checksum {before:#018x} -> {sum:#018x})");
            Err("BREACH: kernel image changed".into())
        }
        ((true, _), None) => {
            Err("kernel unchanged, but no fault reported for the forged PRP".into())
        }
        ((true, _), Some(f)) => {
            log!(
                "STOPPED: the read never reached the kernel (by the SMMU: IOVA {target:#x} has no translation in this driver's domain); the IOMMU server attributed {} fault records at IOVA {:#x} to this client (StreamID {:#x})",
                f.count,
                f.iova.get(),
                sid.0
            );
            log!("rogue-nvme: kernel code and read-only data unchanged (checksum {before:#018x})");
            Ok(())
        }
    };
    if nvme.stop(&iommu).is_err() {
        log!("rogue-nvme: stopping the controller failed");
    }
    outcome
}

/// Runs one I/O on an otherwise idle controller and waits (bounded).
fn io(nvme: &mut Nvme, io: DeviceIo) -> Outcome {
    nvme.submit(&[io]).map_err(|e| format!("submit: {e:?}"))?;
    let mut out = alloc::vec::Vec::new();
    for _ in 0..5_000 {
        nvme.completions(&mut out);
        if let Some(&(_, r)) = out.iter().find(|(s, _)| *s == io.slot) {
            return r.map_err(|e| format!("NVMe I/O failed: {e:?}"));
        }
        let _ = userlib::sleep(1_000);
    }
    Err("NVMe I/O timed out".into())
}
