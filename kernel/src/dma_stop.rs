//! Containing the IOMMU server's failure (security contract item 9): when
//! the task holding the SMMU-owner capability ends, for any reason, the
//! kernel stops all DMA *before* anything that task owned is freed. Its
//! pool holds the stream table, the context descriptors, every page table
//! and the queues, and the SMMU keeps walking and writing them for as long
//! as SMMUEN is 1, so freeing them first would hand a later `dma_alloc`
//! the SMMU's own structures.
//!
//! The stop, in this order: bus mastering off on every PCI function (no
//! device behind the SMMU can start a transaction any more, whatever the
//! SMMU does next); GBPA.ABORT with the GBPA.Update handshake (so that a
//! disabled SMMU aborts instead of letting DMA bypass; QEMU 7.2 does not
//! implement GBPA, which reads back 0, and the line says so); then CR0 = 0
//! (SMMUEN and the queues off, with the CR0ACK handshake: the SMMU no
//! longer walks the stream table nor writes the queues). Bus mastering is
//! refused again until a new server instance declares the SMMU enabled.
//! Every wait is bounded (`mmio::poll_until`). Only when CR0ACK confirmed
//! SMMUEN = 0 may the dead server's pool and the frames its pins held be
//! freed ([`after_reclaim`]); if it did not, they are kept for good.
//!
//! Owns only this stop and its record. Never runs while an IOMMU server
//! instance is alive (the SMMU is its, then), never frees a pool or drops
//! a pin unless the SMMU acknowledged the stop, and never panics on what
//! the device answers.

use hermit_sync::InterruptSpinMutex;
use kernel_core::pci::regs::{COMMAND, Command};
use smmuv3::regs::{self, Cr0};

use crate::kprintln;
use crate::mm::user::Reclaimed;
use crate::mmio::Mmio;
use crate::task::{Cap, Kernel, TaskIdx};
use crate::timeout::{Counter, poll_until};

/// Deadline for each SMMU acknowledgement (GBPA.Update, CR0ACK).
const ACK_TIMEOUT_US: u64 = 100_000;

/// The SMMU-owner task whose death stopped the SMMU (acknowledged), whose
/// memory has not been reclaimed yet.
static STOPPED_FOR: InterruptSpinMutex<Option<TaskIdx>> = InterruptSpinMutex::new(None);

/// Why the SMMU could not be shown stopped.
#[derive(Clone, Copy, Debug)]
enum StopError {
    /// GBPA.Update never cleared.
    GbpaUpdate,
    /// CR0ACK never read back 0.
    Cr0Ack,
}

/// Task `t` ends. If it holds the SMMU-owner capability, all DMA is
/// stopped now, before any of its memory is released: called first thing
/// by `lifecycle::end`.
pub fn on_task_end(k: &mut Kernel, t: TaskIdx) {
    if !k.tasks[t].caps.contains(&Cap::SmmuOwner) {
        return;
    }
    // Drivers may not turn bus mastering on again until a new instance
    // has brought the SMMU up and declared it enabled.
    k.smmu_enabled = false;
    let smmu = k
        .boot
        .as_ref()
        .and_then(|(_, platform, _)| platform.smmu.as_ref())
        .map(|s| Mmio::new(s.regs.base, s.regs.size as usize));
    let (functions, were_mastering) = bus_mastering_off(k);
    let stopped = smmu.as_ref().map(stop_smmu);
    match stopped {
        Some(Ok(gbpa_abort)) => {
            kprintln!(
                "kernel: IOMMU server died: SMMU to global abort ({}), SMMUEN=0, bus mastering off on {functions} functions ({were_mastering} had it on); its memory is freed only now",
                if gbpa_abort {
                    "GBPA.ABORT=1"
                } else {
                    "GBPA.ABORT reads 0: not implemented by this SMMU, bus mastering off stops PCI DMA"
                }
            );
            *STOPPED_FOR.lock() = Some(t);
        }
        None => {
            kprintln!(
                "kernel: IOMMU server died: no SMMU in the device tree; bus mastering off on {functions} functions ({were_mastering} had it on)"
            );
            *STOPPED_FOR.lock() = Some(t);
        }
        Some(Err(e)) => kprintln!(
            "kernel: IOMMU server died: the SMMU did not acknowledge the stop ({e:?}); bus mastering off on {functions} functions; its pool and every pinned frame are kept for good"
        ),
    }
}

/// Global abort, then everything off, each step acknowledged in time.
/// Returns whether GBPA.ABORT reads back set.
fn stop_smmu(mmio: &Mmio) -> Result<bool, StopError> {
    let mut clock = Counter;
    let gbpa_idle = || (!regs::gbpa_update_pending(mmio.read(regs::GBPA))).then_some(());
    // An update still in progress must finish before the next request.
    poll_until(&mut clock, ACK_TIMEOUT_US, gbpa_idle).map_err(|_| StopError::GbpaUpdate)?;
    mmio.write(regs::GBPA, regs::gbpa_request(mmio.read(regs::GBPA), true));
    poll_until(&mut clock, ACK_TIMEOUT_US, gbpa_idle).map_err(|_| StopError::GbpaUpdate)?;
    let gbpa_abort = regs::gbpa_aborts(mmio.read(regs::GBPA));
    let off = Cr0::empty().bits();
    mmio.write(regs::CR0, off);
    poll_until(&mut clock, ACK_TIMEOUT_US, || {
        (mmio.read(regs::CR0ACK) == off).then_some(())
    })
    .map_err(|_| StopError::Cr0Ack)?;
    Ok(gbpa_abort)
}

/// Clears bus mastering on every PCI function found at boot. Returns
/// (functions visited, how many had it on).
fn bus_mastering_off(k: &Kernel) -> (usize, usize) {
    let (mut visited, mut were_on) = (0, 0);
    for f in &k.pci {
        let v = crate::pci::config_read(f.bdf, COMMAND);
        if v == u32::MAX {
            continue;
        }
        let cmd = Command(v as u16);
        if cmd.contains(Command::BUS_MASTER) {
            were_on += 1;
        }
        // The status half is written as 0 (its bits are write-1-to-clear).
        crate::pci::config_write(
            f.bdf,
            COMMAND,
            u32::from(cmd.without(Command::BUS_MASTER).0),
        );
        visited += 1;
    }
    (visited, were_on)
}

/// After task `t`'s address space was destroyed (`lifecycle::reclaim`):
/// if its death stopped the SMMU, its pool and every frame held by its
/// pins go back to the allocator now, and the reclaim line says so.
/// Otherwise nothing changes.
pub fn after_reclaim(k: &Kernel, t: TaskIdx, r: &mut Reclaimed) {
    {
        let mut s = STOPPED_FOR.lock();
        if *s != Some(t) {
            return;
        }
        *s = None;
    }
    let out = crate::mm::frames::release_after_dma_stop();
    let freed: u64 = out.freed.iter().map(|&(_, n)| n).sum();
    r.freed += freed;
    r.pool_kept = r.pool_kept.saturating_sub(out.pool_frames);
    kprintln!(
        "task {}: {} frames reclaimed, {} IOMMU pool frames among them (the SMMU was stopped first); {} pinned frames unpinned, {} frames held for DMA freed",
        k.tasks[t].name,
        r.freed,
        out.pool_frames,
        out.pins_dropped,
        out.held_freed
    );
}
