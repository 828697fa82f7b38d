//! Test only (cargo feature `test-late-completion`, scenario
//! `io-timeout-late-dma`): a late completion made to order. The first read
//! of [`LATE_LBA`] is issued with its deadline already past and its
//! submission entry held back from the device, so the driver gives it up
//! at its next look for completions; when the next batch of I/Os is
//! submitted, the hook lets that batch complete on the device (without the
//! driver processing anything), then hands the held command to the
//! controller, which performs its DMA to the IOVA the command was built
//! with, late. It logs the held command's IOVA and the IOVAs the next
//! batch was given, so the scenario can see whether the IOVA was reused.
//!
//! It owns the held entry only; it waits only with bounded polls.

use abi::Iova;
use block_api::IoKind;
use block_server::DeviceIo;
use nvme_core::cmd::{Cqe, Sqe};
use nvme_core::layout::Layout;
use nvme_core::queue::CqRing;
use userlib::{DmaBuffer, log};

/// The sector whose first read the hook holds back (the `late` role of
/// blk-test reads it).
pub const LATE_LBA: u64 = 2048;
/// How long the hook waits for the device at each step.
pub const WAIT_US: u64 = 2_000_000;
/// Poll interval of those waits.
pub const POLL_US: u64 = 50;

/// Where the hook is.
#[derive(Clone, Copy, Debug, Default)]
pub enum LateHook {
    /// Waiting for the read to hold.
    #[default]
    Armed,
    /// The read's entry, kept from the device; set in the submit that
    /// `fresh` says (the next submit releases it).
    Held {
        /// The entry as built.
        sqe: Sqe,
        /// The loop's slot.
        slot: u16,
        /// The buffer's IOVA.
        iova: Iova,
        /// Set by the submit that held it, cleared at its end.
        fresh: bool,
    },
    /// The late command went to the device; nothing more to do.
    Done,
}

impl LateHook {
    /// Whether `io` is the read to hold (the first read of [`LATE_LBA`]).
    pub fn wants(&self, io: &DeviceIo) -> bool {
        matches!(self, LateHook::Armed) && io.kind == IoKind::Read && io.lba == LATE_LBA
    }

    /// Keeps `sqe` (built for `io`) from the device.
    pub fn hold(&mut self, io: &DeviceIo, sqe: Sqe) {
        log!(
            "nvme: TEST HOOK: holding the read of sector {} (slot {}, CID {:#x}, IOVA {:#x}) from the device past its deadline",
            io.lba,
            io.slot,
            sqe.cid().0,
            io.iova.get()
        );
        *self = LateHook::Held {
            sqe,
            slot: io.slot,
            iova: io.iova,
            fresh: true,
        };
    }
}

/// Consecutive completion entries the controller has posted from the
/// head of the queue at `base` (not consumed).
pub fn posted(mem: &DmaBuffer, base: u64, ring: &CqRing) -> u16 {
    let mut probe = ring.clone();
    let mut n = 0;
    while n < ring.entries() {
        let at = Layout::cqe(base, probe.head());
        let Some(dw3) = mem.read::<u32>(at + 4 * Cqe::PHASE_DWORD as u64) else {
            break;
        };
        if !probe.is_new(Cqe::dw3_phase(dw3)) {
            break;
        }
        probe.advance();
        n += 1;
    }
    n
}

/// The log line naming the next batch's IOVAs and whether the held one is
/// among them.
pub fn log_next(held: Iova, slot: u16, ios: &[DeviceIo]) {
    let mut list = alloc::string::String::new();
    for io in ios.iter().filter(|io| io.bytes > 0) {
        if !list.is_empty() {
            list.push_str(", ");
        }
        let _ = core::fmt::Write::write_fmt(&mut list, format_args!("{:#x}", io.iova.get()));
    }
    let reused = ios.iter().any(|io| {
        io.bytes > 0 && io.iova.get() <= held.get() && held.get() < io.iova.get() + io.bytes
    });
    log!(
        "nvme: TEST HOOK: the next {} I/Os were mapped at IOVAs [{}]; the held read's IOVA {:#x} (slot {}) is {}",
        ios.len(),
        list,
        held.get(),
        slot,
        if reused {
            "AMONG THEM: REUSED while the device may still write it"
        } else {
            "not among them"
        }
    );
}
