//! Demo `map-not-owned`: a driver asks the IOMMU server to map memory it
//! does not own. Roles `map-victim` (holds DMA memory) and `map-attacker`.

use abi::syscall::layout;
use abi::{Error, PAGE_SIZE};
use iommu_api::{ApiError, Dir, Extent, List, Request};
use iommu_client::{ClientError, Iommu};
use userlib::ipc::Grant;
use userlib::{DeviceRegion, DmaBuffer, TaskInfo, log};

use crate::narrate::{Demo, await_peers, raw_request};

const NAME: &str = "map-not-owned";
/// Victim → attacker: its memory is in place. Attacker → victim: done.
const READY: u64 = 1;
/// Pages the victim holds.
const VICTIM_PAGES: u64 = 4;
/// The victim's secret, in every word of its memory.
const SECRET: u64 = 0x5ec2_e75e_c2e7_5ec2;

/// A kernel (TTBR1) address: the kernel image's first page.
const KERNEL_IMAGE: u64 = 0xffff_0000_4020_0000;
/// Another kernel address: the linear map of RAM well past the image, where
/// the kernel takes frames for page tables (its own and every task's).
const KERNEL_LINEAR_RAM: u64 = 0xffff_0000_5000_0000;

/// Holds `VICTIM_PAGES` of DMA memory at `layout::DMA_BASE` in its own
/// space, filled with a secret, until the attacker is done; then checks
/// that the secret is intact.
pub fn victim(info: &TaskInfo<'_>) -> i32 {
    let mut d = Demo::new(NAME);
    let Some([peer]) = d.caps(info, ["peer"]) else {
        return 1;
    };
    let Some(mut buf) = d.step("dma_alloc", DmaBuffer::alloc(VICTIM_PAGES)) else {
        return 1;
    };
    for off in (0..buf.len()).step_by(8) {
        buf.write::<u64>(off, SECRET);
    }
    log!(
        "victim: holds {} bytes of DMA memory at {:#x} in its own space",
        buf.len(),
        buf.va()
    );
    d.check(
        "the victim's memory is at layout::DMA_BASE",
        buf.va() == layout::DMA_BASE,
    );
    d.step("notify the attacker", userlib::notify(peer, READY));
    d.step("wait for the attacker", await_peers(&[READY]));
    let intact = (0..buf.len())
        .step_by(8)
        .all(|off| buf.read::<u64>(off) == Some(SECRET));
    d.check("the victim's memory is unchanged", intact);
    if d.ok() { 0 } else { 1 }
}

/// The attacker: an IOMMU client holding the edu device (attached, so that
/// every refusal below is for the memory, not for a missing domain).
pub fn attacker(info: &TaskInfo<'_>) -> i32 {
    let mut d = Demo::new(NAME);
    let Some([ep, dev, peer]) = d.caps(info, ["iommu", "dev", "peer"]) else {
        return d.finish();
    };
    // The victim's task index, for a forged reply token naming it.
    let victim_task = userlib::arg_u64(info, "victim_task", 1).unwrap_or(1);
    attack(&mut d, ep, dev, victim_task);
    d.nothing_mapped(&Iommu::new(ep));
    d.step("tell the victim we are done", userlib::notify(peer, READY));
    d.finish()
}

fn attack(d: &mut Demo, ep: u32, dev: u32, victim_task: u64) {
    let iommu = &Iommu::new(ep);
    let Some(sid) = d.step("attach edu", iommu.attach(dev, edu::DMA_BITS)) else {
        return;
    };
    log!("attacker: edu attached as StreamID {:#x}", sid.0);
    if d.step("wait for the victim", await_peers(&[READY]))
        .is_none()
    {
        return;
    }
    let map = |g: Grant| iommu.map_one(g, Dir::Bidirectional, 0, PAGE_SIZE);
    let bad_address = ClientError::Sys(Error::BadAddress);
    let denied = ClientError::Sys(Error::Denied);
    let not_granted = ClientError::Api(ApiError::NotGranted);

    // Another task's memory: it has no name in this address space. (Done
    // before this task allocates any DMA memory of its own, which the
    // kernel would place at the same virtual address.)
    d.refused(
        "map the victim's DMA memory: grant of layout::DMA_BASE (the victim's buffer in its space, unmapped in ours)",
        map(Grant::range(layout::DMA_BASE, PAGE_SIZE)),
        bad_address,
        "the kernel: a grant is looked up in the caller's own page table only",
    );
    d.refused(
        "map kernel memory: grant of the kernel image at 0xffff000040200000",
        map(Grant::range(KERNEL_IMAGE, PAGE_SIZE)),
        bad_address,
        "the kernel: kernel addresses are never in a task's page table",
    );
    d.refused(
        "map page tables: grant of the kernel's linear map of RAM at 0xffff000050000000, where page tables live",
        map(Grant::range(KERNEL_LINEAR_RAM, PAGE_SIZE)),
        bad_address,
        "the kernel: page tables are kernel memory, never in a task's page table",
    );
    d.refused(
        "map kernel memory by wrapping: a grant from 0xffff_ffff_ffff_f000 of 2 pages",
        map(Grant::range(0xffff_ffff_ffff_f000, 2 * PAGE_SIZE)),
        bad_address,
        "the kernel: the range overflows",
    );
    let token = (victim_task << 48) | 1;
    d.refused(
        "forward a grant with a forged reply token naming the victim's task",
        map(Grant::forward(token, 0, PAGE_SIZE)),
        ClientError::Sys(Error::BadReplyToken),
        "the kernel: the victim is not waiting on a call to us",
    );

    // Memory that is ours but not DMA memory.
    match DeviceRegion::pci_bar(dev, 0) {
        Ok(bar) => d.refused(
            "map MMIO: grant of the edu device's own BAR0, mapped in our space",
            map(Grant::range(bar.va(), PAGE_SIZE)),
            denied,
            "the kernel: only dma_alloc memory can be granted",
        ),
        Err(e) => d.fail(alloc::format!("map edu BAR0: {e:?}")),
    }
    let f: fn(&TaskInfo<'static>) -> i32 = crate::main;
    let text = (f as usize as u64) & !(PAGE_SIZE - 1);
    d.refused(
        "map our own code: grant of the page holding main()",
        map(Grant::range(text, PAGE_SIZE)),
        denied,
        "the kernel: only dma_alloc memory can be granted",
    );
    let local = [0u8; 64];
    let stack = core::hint::black_box(&local).as_ptr() as u64 & !(PAGE_SIZE - 1);
    d.refused(
        "map our own stack: grant of the page holding a local array",
        map(Grant::range(stack, PAGE_SIZE)),
        denied,
        "the kernel: only dma_alloc memory can be granted",
    );
    d.refused(
        "map our task-info page (read-only, written by the kernel)",
        map(Grant::range(layout::TASK_INFO, PAGE_SIZE)),
        denied,
        "the kernel: only dma_alloc memory can be granted",
    );

    // Our own DMA memory, but ranges the grant does not cover.
    let Some(buf) = d.step("dma_alloc", DmaBuffer::alloc(1)) else {
        return;
    };
    d.refused(
        "grant our one DMA page plus the next page (not ours)",
        map(Grant::range(buf.va(), 2 * PAGE_SIZE)),
        bad_address,
        "the kernel: the page after ours is unmapped in our space",
    );
    let ranges = [
        (
            "one page past the end of a one-page grant",
            Extent::new(PAGE_SIZE, PAGE_SIZE),
        ),
        (
            "two pages from a one-page grant",
            Extent::new(0, 2 * PAGE_SIZE),
        ),
        (
            "a range whose end wraps around",
            Extent::new(u64::MAX - 15, 32),
        ),
    ];
    for (what, r) in ranges {
        d.refused(
            &alloc::format!("Map {what} (offset {:#x}, {:#x} bytes)", r.start, r.len),
            iommu.map_one(buf.grant(), Dir::Bidirectional, r.start, r.len),
            not_granted,
            "the server: every range must lie inside the call's grant",
        );
    }
    let one = [Extent::new(0, PAGE_SIZE)];
    let req = Request::Map {
        dir: Dir::Bidirectional,
        ranges: List::new(&one),
    };
    d.refused(
        "Map with no grant at all",
        raw_request(ep, &req, None, None),
        not_granted,
        "the server: a Map maps only pages the kernel vouched for in this call",
    );
}
