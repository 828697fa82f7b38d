//! The NVMe controller as a [`BlockDevice`]: brings the controller up
//! [NVMe-2.0 §3.5.1], runs one I/O queue pair on namespace 1, builds each
//! command's PRPs from the IOVA the block loop mapped, and reports
//! completions, failures and timeouts by slot. Completions arrive by INTx
//! (MSI-X stays off) or by polling.
//!
//! A command past its deadline is reported `Timeout` but *fenced*: its
//! slot, its PRP list page and its buffer's mapping stay reserved (the
//! block loop keeps the mapping while `is_fenced` says so) and an Abort is
//! sent for it. The fence lifts only when the command's late completion
//! arrives, the Abort completes saying the command was aborted, or the
//! controller is reset (a fatal status, or `stop`); `released` then names
//! the slot.
//!
//! It owns the controller's registers (BAR0) and its own DMA memory (the
//! queues, the identify page, the PRP list pages), mapped once through the
//! IOMMU server. It must never hand the device a physical address (every
//! address in a register, a command or a PRP list is an IOVA the IOMMU
//! server returned), never wait without a deadline, and never trust what
//! the controller wrote (CIDs, SQ heads and identify data are checked).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(feature = "test-late-completion")]
mod late;
mod pci;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{Ordering, fence};

use abi::Iova;
use block_api::{BlockError, Info, IoKind, SECTOR_SIZE};
use block_server::{BlockDevice, DeviceIo};
use iommu_api::Dir;
use iommu_client::{ClientError, DmaMapper, Iommu};
use nvme_core::cmd::{Cns, Cqe, IoOpcode, QueuePriority, Sqe, Status};
use nvme_core::identify::{self, Controller, Namespace};
use nvme_core::layout::{ADMIN_ENTRIES, IO_QUEUE, Layout, PAGE};
use nvme_core::queue::{CidTable, Completed, CqRing, SqRing};
use nvme_core::regs::{self, Aqa, Cap, Cc, Csts, ShutdownNotification, ShutdownStatus};
use nvme_core::{Cid, Nsid, QueueId, prp};
use userlib::{Counter, DeviceRegion, DmaBuffer, Reg, log, poll_until};

pub use nvme_core;

/// `Info::device_kind` of NVMe.
pub const DEVICE_KIND: u16 = 1;
/// The namespace this driver serves.
pub const NAMESPACE: Nsid = Nsid(1);
/// Largest transfer this driver offers, whatever MDTS allows.
pub const MAX_TRANSFER_CAP: u64 = 128 * 1024;
/// How long an admin command may take.
const ADMIN_TIMEOUT_US: u64 = 5_000_000;
/// How long an I/O may take before it is reported as `Timeout`.
const IO_TIMEOUT_US: u64 = 5_000_000;
/// Poll interval while waiting for CSTS.RDY / SHST.
const READY_POLL_US: u64 = 1_000;
/// Poll interval while waiting for an admin completion.
const ADMIN_POLL_US: u64 = 20;
/// Most Abort commands outstanding at once (the controller's ACL may
/// allow fewer).
const MAX_ABORTS: usize = 4;
/// Address bits the controller drives (64-bit PRPs and queue bases).
const DMA_BITS: u8 = 64;
/// The interrupt vector of the I/O completion queue (INTx: vector 0).
const IO_VECTOR: u16 = 0;

/// Why the controller could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// A syscall failed at `step`.
    Sys {
        /// What was being done.
        step: &'static str,
        /// The kernel's answer.
        error: abi::Error,
    },
    /// The IOMMU server refused `step`.
    Iommu {
        /// What was being done.
        step: &'static str,
        /// Its answer.
        error: ClientError,
    },
    /// The registers read all-ones: the function does not answer.
    Absent,
    /// The controller lacks something this driver needs.
    Unsupported(&'static str),
    /// The requested queue depth is beyond what the controller or the
    /// driver supports.
    QueueDepth {
        /// Asked for.
        requested: u16,
        /// Most possible.
        max: u16,
    },
    /// A wait ran past its deadline.
    Timeout(&'static str),
    /// CSTS.CFS (controller fatal status) was set during `step`.
    Fatal(&'static str),
    /// An admin command completed with an error status.
    Command {
        /// The command.
        command: &'static str,
        /// Its status.
        status: Status,
    },
    /// A completion did not match the command waited for.
    BadCompletion(&'static str),
    /// Namespace 1 is absent or has a block format the driver cannot use.
    Namespace(&'static str),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Sys { step, error } => write!(f, "{step}: kernel refused: {error}"),
            OpenError::Iommu { step, error } => write!(f, "{step}: {error}"),
            OpenError::Absent => write!(
                f,
                "the controller does not answer (registers read all-ones)"
            ),
            OpenError::Unsupported(what) => write!(f, "unsupported controller: {what}"),
            OpenError::QueueDepth { requested, max } => {
                write!(f, "queue depth {requested} not supported (1..={max})")
            }
            OpenError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            OpenError::Fatal(step) => write!(f, "controller fatal status (CSTS.CFS) during {step}"),
            OpenError::Command { command, status } => write!(f, "{command} failed: {status}"),
            OpenError::BadCompletion(command) => write!(f, "{command}: unexpected completion"),
            OpenError::Namespace(why) => write!(f, "namespace 1: {why}"),
        }
    }
}

fn sys(step: &'static str) -> impl FnOnce(abi::Error) -> OpenError {
    move |error| OpenError::Sys { step, error }
}

/// An NVMe controller with one I/O queue pair, serving namespace 1.
pub struct Nvme {
    /// The PCI capability of the controller.
    pci_cap: u32,
    bar: DeviceRegion,
    /// All of the driver's DMA memory, laid out by `layout`.
    mem: DmaBuffer,
    /// Where the IOMMU server mapped `mem` for the device.
    iova: Iova,
    layout: Layout,
    cap: Cap,
    clock: Counter,
    admin_sq: SqRing,
    admin_cq: CqRing,
    admin_cid: u16,
    io_sq: SqRing,
    io_cq: CqRing,
    cids: CidTable,
    controller: Controller,
    /// log2 of the namespace's block size.
    block_shift: u32,
    /// Namespace size in blocks.
    blocks: u64,
    max_transfer: u64,
    irq: Option<(u32, u64)>,
    io_timeout: u64,
    /// Set once the controller reported a fatal status: every I/O fails.
    failed: bool,
    /// PRP list entries before they are copied into a list page.
    scratch: Vec<u64>,
    /// Completions that named no command of ours.
    stray: u64,
    /// Fenced commands still to be sent an Abort.
    abort_queue: Vec<Cid>,
    /// Aborts on the admin queue: (the Abort's CID, the fenced CID).
    aborts: Vec<(Cid, Cid)>,
    /// Fenced slots released since the block loop last asked.
    released: Vec<u16>,
    /// Test only: the late-completion hook.
    #[cfg(feature = "test-late-completion")]
    late: late::LateHook,
}

/// What one checked I/O will become.
#[derive(Clone, Copy)]
struct Planned {
    slot: u16,
    /// Opcode, first block, block count and data pointer; `None` for a
    /// flush.
    op: Option<(IoOpcode, u64, u32, prp::Prps)>,
}

impl Nvme {
    /// Brings up the controller behind the PCI capability `pci_cap`:
    /// attaches it to this task's IOMMU domain, maps the driver's DMA
    /// memory once, resets and enables the controller, identifies it and
    /// namespace 1, and creates an I/O queue pair for `queue_depth`
    /// commands, completing by INTx when `irq` (its capability and
    /// notification bit) is given, by polling otherwise.
    ///
    /// `iommu` is the IOMMU server ([`Iommu`]), or, in a task that is the
    /// SMMU owner itself, an in-process mapper.
    pub fn open(
        iommu: &impl DmaMapper,
        pci_cap: u32,
        irq: Option<(u32, u64)>,
        queue_depth: u16,
    ) -> Result<Nvme, OpenError> {
        let (_, hz) = userlib::time().map_err(sys("reading the clock"))?;
        let clock = Counter::new(hz);
        iommu
            .attach_device(pci_cap, DMA_BITS)
            .map_err(|error| OpenError::Iommu {
                step: "attach",
                error,
            })?;
        let bar = DeviceRegion::pci_bar(pci_cap, 0).map_err(sys("mapping BAR0"))?;
        let cap = Cap(read64(&bar, regs::CAP));
        if cap.0 == u64::MAX {
            return Err(OpenError::Absent);
        }
        if !cap.supports_nvm() {
            return Err(OpenError::Unsupported("no NVM command set (CAP.CSS)"));
        }
        if !cap.page_size_ok(PAGE) {
            return Err(OpenError::Unsupported(
                "4 KiB memory pages (CAP.MPSMIN/MPSMAX)",
            ));
        }
        let max_depth = nvme_core::layout::MAX_QUEUE_DEPTH.min(cap.mqes());
        let layout = Layout::new(queue_depth)
            .filter(|_| queue_depth <= max_depth)
            .ok_or(OpenError::QueueDepth {
                requested: queue_depth,
                max: max_depth,
            })?;
        let mem = DmaBuffer::alloc(layout.pages).map_err(sys("allocating queue memory"))?;
        let iova = iommu
            .map_buffer(&mem, Dir::Bidirectional)
            .map_err(|error| OpenError::Iommu {
                step: "mapping queue memory",
                error,
            })?;
        if !iova.is_aligned(PAGE) {
            return Err(OpenError::Unsupported("queue memory IOVA not page aligned"));
        }
        let bad_ring = OpenError::QueueDepth {
            requested: queue_depth,
            max: max_depth,
        };
        let mut nvme = Nvme {
            bar,
            mem,
            iova,
            layout,
            cap,
            clock,
            admin_sq: SqRing::new(ADMIN_ENTRIES).ok_or(bad_ring)?,
            admin_cq: CqRing::new(ADMIN_ENTRIES).ok_or(bad_ring)?,
            admin_cid: 0,
            io_sq: SqRing::new(layout.io_entries).ok_or(bad_ring)?,
            io_cq: CqRing::new(layout.io_entries).ok_or(bad_ring)?,
            cids: CidTable::new(queue_depth).ok_or(bad_ring)?,
            controller: Controller::decode(&[]),
            block_shift: SECTOR_SIZE.trailing_zeros(),
            blocks: 0,
            max_transfer: MAX_TRANSFER_CAP,
            irq,
            io_timeout: clock.ticks(IO_TIMEOUT_US),
            failed: false,
            scratch: vec![0; (PAGE / 8) as usize],
            stray: 0,
            abort_queue: Vec::new(),
            aborts: Vec::new(),
            released: Vec::new(),
            pci_cap,
            #[cfg(feature = "test-late-completion")]
            late: late::LateHook::default(),
        };
        if let Err(e) = nvme.bring_up(pci_cap) {
            // Leave the controller off: it must not keep fetching from
            // memory this task is about to give up.
            nvme.write32(regs::CC, Cc::nvm(PAGE, false).encode());
            return Err(e);
        }
        Ok(nvme)
    }

    /// The controller's identify data.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// Completions seen that named no command of this driver.
    pub fn stray_completions(&self) -> u64 {
        self.stray
    }

    /// Normal shutdown [NVMe-2.0 §3.6.1]: CC.SHN = normal, then wait for
    /// CSTS.SHST = complete within CAP.TO. I/Os still in flight are lost.
    pub fn shutdown(&mut self) -> Result<(), OpenError> {
        let cc = Cc {
            shutdown: ShutdownNotification::Normal,
            ..Cc::nvm(PAGE, true)
        };
        self.write32(regs::CC, cc.encode());
        let csts = regs::CSTS;
        let bar = &self.bar;
        poll_until(
            &mut self.clock.sleeping(READY_POLL_US),
            self.cap.timeout_us(),
            || {
                let s = Csts(read32(bar, csts));
                (s.shutdown() == ShutdownStatus::Complete).then_some(())
            },
        )
        .map_err(|_| OpenError::Timeout("shutdown"))
    }

    /// The initialisation sequence [NVMe-2.0 §3.5.1], after the memory is
    /// mapped.
    fn bring_up(&mut self, pci_cap: u32) -> Result<(), OpenError> {
        // 1. Off: CC.EN = 0, then CSTS.RDY = 0 within CAP.TO.
        self.disable()?;
        // 2. Interrupts: INTx (MSI-X off) or none; vector 0 masked until
        //    the I/O queues exist.
        pci::disable_msix(pci_cap).map_err(sys("disabling MSI-X"))?;
        pci::set_intx(pci_cap, self.irq.is_some()).map_err(sys("configuring INTx"))?;
        self.write32(regs::INTMS, regs::interrupt_vector_mask(0));
        // 3. The device may now master: its stream is attached and every
        //    address it will use is mapped.
        userlib::pci_enable_bus_master(pci_cap).map_err(sys("enabling bus mastering"))?;
        // 4. Admin queues.
        let aqa = Aqa {
            sq_entries: ADMIN_ENTRIES,
            cq_entries: ADMIN_ENTRIES,
        };
        let aqa = aqa
            .encode()
            .ok_or(OpenError::Unsupported("admin queue size"))?;
        let asq = self.device_address(self.layout.admin_sq);
        let acq = self.device_address(self.layout.admin_cq);
        let asq = regs::admin_queue_base(asq).ok_or(OpenError::Unsupported("ASQ alignment"))?;
        let acq = regs::admin_queue_base(acq).ok_or(OpenError::Unsupported("ACQ alignment"))?;
        self.write32(regs::AQA, aqa);
        self.write64(regs::ASQ, asq);
        self.write64(regs::ACQ, acq);
        // 5. On: CC with the NVM set, 4 KiB pages, 64/16-byte entries.
        self.write32(regs::CC, Cc::nvm(PAGE, true).encode());
        let bar = &self.bar;
        let mut fatal = false;
        poll_until(
            &mut self.clock.sleeping(READY_POLL_US),
            self.cap.timeout_us(),
            || {
                let s = Csts(read32(bar, regs::CSTS));
                fatal = s.failed();
                (fatal || s.ready()).then_some(())
            },
        )
        .map_err(|_| OpenError::Timeout("CSTS.RDY = 1"))?;
        if fatal {
            return Err(OpenError::Fatal("enable"));
        }
        // 6. Identify the controller and namespace 1.
        let page = self.device_address(self.layout.identify);
        self.admin("Identify Controller", |cid| {
            Some(Sqe::identify(cid, Cns::Controller, Nsid(0), page))
        })?;
        let data = self.identify_data();
        self.controller = Controller::decode(&data);
        if !self
            .controller
            .entry_sizes_ok(nvme_core::cmd::SQE_SHIFT, nvme_core::cmd::CQE_SHIFT)
        {
            return Err(OpenError::Unsupported(
                "64/16-byte queue entries (SQES/CQES)",
            ));
        }
        if self.controller.nn < NAMESPACE.0 {
            return Err(OpenError::Namespace("the controller has no namespaces"));
        }
        let limit = self
            .controller
            .max_transfer(self.cap.min_page_size())
            .unwrap_or(u64::MAX);
        self.max_transfer = limit.min(MAX_TRANSFER_CAP);
        self.admin("Identify Namespace", |cid| {
            Some(Sqe::identify(cid, Cns::Namespace, NAMESPACE, page))
        })?;
        let ns = Namespace::decode(&self.identify_data());
        if !ns.is_active() {
            return Err(OpenError::Namespace("inactive"));
        }
        let block = ns.block_size().ok_or(OpenError::Namespace(
            "unusable LBA format (size or metadata)",
        ))?;
        self.block_shift = block.trailing_zeros();
        self.blocks = ns.nsze;
        if self.max_transfer < u64::from(block) {
            return Err(OpenError::Unsupported("MDTS below one block"));
        }
        // Whole blocks only.
        self.max_transfer &= !(u64::from(block) - 1);
        // 7. The I/O queue pair: completion queue first.
        let entries = u32::from(self.layout.io_entries);
        let cq = self.device_address(self.layout.io_cq);
        let sq = self.device_address(self.layout.io_sq);
        let vector = self.irq.map(|_| IO_VECTOR);
        self.admin("Create I/O Completion Queue", |cid| {
            Sqe::create_io_cq(cid, IO_QUEUE, entries, cq, vector)
        })?;
        self.admin("Create I/O Submission Queue", |cid| {
            Sqe::create_io_sq(cid, IO_QUEUE, entries, sq, QueuePriority::Medium, IO_QUEUE)
        })?;
        // 8. Interrupts on, if wanted.
        if self.irq.is_some() {
            self.write32(regs::INTMC, regs::interrupt_vector_mask(0));
        }
        log!(
            "nvme: {} (SN {}, FR {}), NVMe {}.{}, MDTS {}, {} blocks of {} bytes",
            self.controller.model.as_str(),
            self.controller.serial.as_str(),
            self.controller.firmware.as_str(),
            regs::Version(read32(&self.bar, regs::VS)).major(),
            regs::Version(read32(&self.bar, regs::VS)).minor(),
            self.controller.mdts,
            self.blocks,
            block
        );
        Ok(())
    }

    /// CC.EN = 0 and wait for CSTS.RDY = 0 within CAP.TO [NVMe-2.0 §3.5.2].
    fn disable(&mut self) -> Result<(), OpenError> {
        let cc = read32(&self.bar, regs::CC);
        if cc == u32::MAX {
            return Err(OpenError::Absent);
        }
        if cc & Cc::EN != 0 {
            // Keep the rest of CC as found; only EN changes.
            self.write32(regs::CC, cc & !Cc::EN);
        }
        let bar = &self.bar;
        poll_until(
            &mut self.clock.sleeping(READY_POLL_US),
            self.cap.timeout_us(),
            || (!Csts(read32(bar, regs::CSTS)).ready()).then_some(()),
        )
        .map_err(|_| OpenError::Timeout("CSTS.RDY = 0"))
    }

    /// The IOVA of byte `offset` of the driver's memory.
    fn device_address(&self, offset: u64) -> Iova {
        // `offset` is inside the mapped buffer (from `layout`), and the
        // server returned `iova` for the whole buffer: no overflow.
        Iova::new(self.iova.get() + offset)
    }

    fn write32(&mut self, r: Reg<u32>, v: u32) {
        let _ = self.bar.write(r, v);
    }

    /// A 64-bit register as two 32-bit writes, low half first (as every
    /// controller accepts).
    fn write64(&mut self, r: Reg<u64>, v: u64) {
        let _ = self.bar.write(r.lo(), v as u32);
        let _ = self.bar.write(r.hi(), (v >> 32) as u32);
    }

    fn ring(&mut self, doorbell: Reg<u32>, value: u16) {
        let _ = self.bar.write(doorbell, u32::from(value));
    }

    /// The identify page as the controller wrote it.
    fn identify_data(&self) -> Vec<u8> {
        let mut data = vec![0u8; identify::IDENTIFY_BYTES];
        // The page is inside the buffer: cannot fail.
        let _ = self.mem.copy_out(self.layout.identify, &mut data);
        data
    }

    /// Runs one admin command and waits for its completion (bounded);
    /// an error status is an error naming the status. `build` gives `None`
    /// for parameters the command cannot encode.
    fn admin(
        &mut self,
        command: &'static str,
        build: impl FnOnce(Cid) -> Option<Sqe>,
    ) -> Result<Cqe, OpenError> {
        let cid = Cid(self.admin_cid);
        let sqe = build(cid).ok_or(OpenError::Unsupported(command))?;
        self.admin_cid = self.admin_cid.wrapping_add(1);
        let index = self
            .admin_sq
            .push()
            .ok_or(OpenError::BadCompletion(command))?;
        write_sqe(
            &mut self.mem,
            Layout::sqe(self.layout.admin_sq, index),
            &sqe,
        );
        userlib::publish_to_device();
        let tail = self.admin_sq.tail();
        self.ring(self.cap.sq_tail_doorbell(QueueId::ADMIN), tail);
        let (mem, bar, ring, base) = (
            &self.mem,
            &self.bar,
            &mut self.admin_cq,
            self.layout.admin_cq,
        );
        let got = poll_until(
            &mut self.clock.sleeping(ADMIN_POLL_US),
            ADMIN_TIMEOUT_US,
            || {
                if let Some(c) = pop_cqe(mem, base, ring) {
                    return Some(Ok(c));
                }
                Csts(read32(bar, regs::CSTS)).failed().then_some(Err(()))
            },
        );
        let cqe = match got {
            Ok(Ok(c)) => c,
            Ok(Err(())) => return Err(OpenError::Fatal(command)),
            Err(_) => return Err(OpenError::Timeout(command)),
        };
        let head = self.admin_cq.head();
        self.ring(self.cap.cq_head_doorbell(QueueId::ADMIN), head);
        if cqe.cid != cid || cqe.sq_id != QueueId::ADMIN || !self.admin_sq.set_head(cqe.sq_head) {
            return Err(OpenError::BadCompletion(command));
        }
        if !cqe.status.is_success() {
            return Err(OpenError::Command {
                command,
                status: cqe.status,
            });
        }
        Ok(cqe)
    }

    /// Checks one I/O against the geometry, the limits and the slots.
    fn plan(&mut self, io: &DeviceIo) -> Result<Planned, BlockError> {
        if io.slot >= self.layout.queue_depth || self.cids.is_busy(io.slot) {
            return Err(BlockError::QueueFull);
        }
        let op = match io.kind {
            IoKind::Flush => {
                return Ok(Planned {
                    slot: io.slot,
                    op: None,
                });
            }
            IoKind::Read => IoOpcode::Read,
            IoKind::Write => IoOpcode::Write,
        };
        if io.sectors == 0 || io.bytes != u64::from(io.sectors) * SECTOR_SIZE {
            return Err(BlockError::Malformed);
        }
        let per_block = 1u64 << (self.block_shift - SECTOR_SIZE.trailing_zeros());
        if !io.lba.is_multiple_of(per_block) || !u64::from(io.sectors).is_multiple_of(per_block) {
            return Err(BlockError::Unaligned);
        }
        let slba = io.lba / per_block;
        let blocks = u64::from(io.sectors) / per_block;
        if slba.checked_add(blocks).is_none_or(|end| end > self.blocks) {
            return Err(BlockError::OutOfRange);
        }
        if io.bytes > self.max_transfer {
            return Err(BlockError::TooLarge);
        }
        let prps = self.prps(io)?;
        Ok(Planned {
            slot: io.slot,
            op: Some((op, slba, blocks as u32, prps)),
        })
    }

    /// The PRPs of `io`, built once at planning; a PRP list (if any) is
    /// written at once into the page `layout` gives the (free) slot.
    fn prps(&mut self, io: &DeviceIo) -> Result<prp::Prps, BlockError> {
        let list_offset = self.layout.prp_list(io.slot).ok_or(BlockError::QueueFull)?;
        let list_page = self.device_address(list_offset);
        let prps = prp::build(
            io.iova,
            io.bytes,
            PAGE,
            self.max_transfer,
            list_page,
            &mut self.scratch,
        )
        .map_err(|e| match e {
            prp::PrpError::Misaligned => BlockError::Unaligned,
            prp::PrpError::TooLarge | prp::PrpError::ListTooLong => BlockError::TooLarge,
            _ => BlockError::Malformed,
        })?;
        for (k, &e) in self.scratch[..prps.list_len].iter().enumerate() {
            // The list page lies inside the driver's memory (`layout`).
            let _ = self.mem.write::<u64>(list_offset + 8 * k as u64, e);
        }
        Ok(prps)
    }

    /// Reads CSTS; on a fatal status (once) resets the controller so that
    /// nothing it was given can move data any more, then fails every I/O
    /// in flight and releases every fenced slot, and refuses all later
    /// I/Os. If the reset does not complete, every I/O in flight is failed
    /// but stays fenced.
    fn check_fatal(&mut self, out: &mut Vec<(u16, Result<(), BlockError>)>) {
        let csts = Csts(read32(&self.bar, regs::CSTS));
        if csts.failed() && !self.failed {
            self.failed = true;
            log!(
                "nvme: controller fatal status (CSTS {:#x}): failing {} I/Os in flight",
                csts.0,
                self.cids.in_flight()
            );
            match self.disable() {
                Ok(()) => self.reset_slots(out),
                Err(e) => {
                    log!(
                        "nvme: the failed controller did not reset ({e}): its {} I/Os stay fenced",
                        self.cids.in_flight() + self.cids.fenced()
                    );
                    self.cids
                        .fence_all(|slot| out.push((slot, Err(BlockError::DeviceError))));
                }
            }
        }
    }

    /// After a completed controller reset: commands in flight fail with
    /// `DeviceError` (their buffers are free to go), fenced slots are
    /// released, outstanding Aborts forgotten.
    fn reset_slots(&mut self, out: &mut Vec<(u16, Result<(), BlockError>)>) {
        let released = &mut self.released;
        self.cids.reset(
            |slot| out.push((slot, Err(BlockError::DeviceError))),
            |slot| {
                log!("nvme: slot {slot}: controller reset: fence lifted");
                released.push(slot);
            },
        );
        self.aborts.clear();
        self.abort_queue.clear();
    }

    /// Sends an Abort [NVMe-2.0 §5.1] for each fenced command waiting for
    /// one, within the controller's Abort Command Limit and the admin
    /// queue's room. One that cannot go now waits for a later call.
    fn issue_aborts(&mut self) {
        let limit = (usize::from(self.controller.acl) + 1).min(MAX_ABORTS);
        let mut rang = false;
        while !self.abort_queue.is_empty() && self.aborts.len() < limit && self.admin_sq.free() > 0
        {
            let target = self.abort_queue.remove(0);
            if self.cids.fenced_cid(self.cids.slot_of(target)) != Some(target) {
                continue;
            }
            let cid = Cid(self.admin_cid);
            self.admin_cid = self.admin_cid.wrapping_add(1);
            let Some(index) = self.admin_sq.push() else {
                break;
            };
            let sqe = Sqe::abort(cid, IO_QUEUE, target);
            write_sqe(
                &mut self.mem,
                Layout::sqe(self.layout.admin_sq, index),
                &sqe,
            );
            self.aborts.push((cid, target));
            rang = true;
        }
        if rang {
            userlib::publish_to_device();
            let tail = self.admin_sq.tail();
            self.ring(self.cap.sq_tail_doorbell(QueueId::ADMIN), tail);
        }
    }

    /// Takes the completions of Aborts: a command the controller says it
    /// aborted (DW0 bit 0 = 0) is over, so its slot is released; one it
    /// did not abort stays fenced.
    fn abort_completions(&mut self) {
        if self.aborts.is_empty() {
            return;
        }
        let mut drained = 0u16;
        while drained < ADMIN_ENTRIES {
            let Some(cqe) = pop_cqe(&self.mem, self.layout.admin_cq, &mut self.admin_cq) else {
                break;
            };
            drained += 1;
            if cqe.sq_id != QueueId::ADMIN || !self.admin_sq.set_head(cqe.sq_head) {
                self.stray += 1;
            }
            let Some(at) = self.aborts.iter().position(|a| a.0 == cqe.cid) else {
                self.stray += 1;
                continue;
            };
            let (_, target) = self.aborts.swap_remove(at);
            if cqe.status.is_success() && cqe.dw0 & 1 == 0 {
                if let Some(slot) = self.cids.aborted(target) {
                    log!(
                        "nvme: slot {slot}: the Abort of CID {:#x} completed (aborted): fence lifted",
                        target.0
                    );
                    self.released.push(slot);
                }
            } else {
                log!(
                    "nvme: the Abort of CID {:#x} completed without aborting it ({}): it stays fenced until its completion or a controller reset",
                    target.0,
                    if cqe.status.is_success() {
                        "DW0 bit 0 = 1: not aborted"
                    } else {
                        "refused"
                    }
                );
            }
        }
        if drained > 0 {
            let head = self.admin_cq.head();
            self.ring(self.cap.cq_head_doorbell(QueueId::ADMIN), head);
        }
    }
}

impl BlockDevice for Nvme {
    fn stop(&mut self, iommu: &Iommu) -> Result<(), BlockError> {
        let off = self.disable().and_then(|()| {
            // The controller is reset: fenced commands are over.
            let mut none = Vec::new();
            self.reset_slots(&mut none);
            iommu
                .unmap(&[iommu_api::Extent::new(self.iova.get(), self.mem.len())])
                .map_err(|error| OpenError::Iommu {
                    step: "unmapping queue memory",
                    error,
                })
        });
        off.map(|_| ()).map_err(|e| {
            log!("nvme: stopping failed: {e}");
            BlockError::DeviceError
        })
    }

    fn restart(mut self, iommu: &Iommu) -> Result<Self, BlockError> {
        let again = (|| {
            iommu
                .attach(self.pci_cap, DMA_BITS)
                .map_err(|error| OpenError::Iommu {
                    step: "attach",
                    error,
                })?;
            self.iova = iommu
                .map_one(self.mem.grant(), Dir::Bidirectional, 0, self.mem.len())
                .map_err(|error| OpenError::Iommu {
                    step: "mapping queue memory",
                    error,
                })?;
            for word in 0..self.mem.len() / 8 {
                self.mem
                    .write::<u64>(word * 8, 0)
                    .ok_or(OpenError::Unsupported("queue memory"))?;
            }
            let depth = self.cids.len();
            let bad = OpenError::QueueDepth {
                requested: depth,
                max: depth,
            };
            self.admin_sq = SqRing::new(ADMIN_ENTRIES).ok_or(bad)?;
            self.admin_cq = CqRing::new(ADMIN_ENTRIES).ok_or(bad)?;
            self.admin_cid = 0;
            self.io_sq = SqRing::new(self.layout.io_entries).ok_or(bad)?;
            self.io_cq = CqRing::new(self.layout.io_entries).ok_or(bad)?;
            self.cids = CidTable::new(depth).ok_or(bad)?;
            self.aborts.clear();
            self.abort_queue.clear();
            self.failed = false;
            self.bring_up(self.pci_cap)
        })();
        match again {
            Ok(()) => Ok(self),
            Err(e) => {
                log!("nvme: restarting failed: {e}");
                Err(BlockError::DeviceError)
            }
        }
    }

    fn info(&self) -> Info {
        Info {
            sectors: self
                .blocks
                .saturating_mul(1 << (self.block_shift - SECTOR_SIZE.trailing_zeros())),
            sector_size: 1 << self.block_shift,
            max_transfer: self.max_transfer as u32,
            queue_depth: self.layout.queue_depth,
            device_kind: DEVICE_KIND,
        }
    }

    fn submit(&mut self, ios: &[DeviceIo]) -> Result<(), BlockError> {
        if self.failed {
            return Err(BlockError::DeviceError);
        }
        if ios.is_empty() {
            return Ok(());
        }
        // Room in the ring, and for every completion the controller may
        // still post (given-up commands included) in the completion queue.
        let room = usize::from(self.layout.io_entries - 1);
        if ios.len() > usize::from(self.io_sq.free()) || self.cids.outstanding() + ios.len() > room
        {
            return Err(BlockError::QueueFull);
        }
        let mut planned = Vec::with_capacity(ios.len());
        for (i, io) in ios.iter().enumerate() {
            if ios[..i].iter().any(|o| o.slot == io.slot) {
                return Err(BlockError::QueueFull);
            }
            planned.push(self.plan(io)?);
        }
        let now = userlib::counter();
        // Test only: the read the hook holds is issued with its deadline
        // already past.
        #[cfg(feature = "test-late-completion")]
        let held = ios.iter().find(|io| self.late.wants(io)).copied();
        let mut cids = Vec::with_capacity(ios.len());
        for p in &planned {
            #[cfg(feature = "test-late-completion")]
            let now = if held.is_some_and(|h| h.slot == p.slot) {
                now.saturating_sub(self.io_timeout + 1)
            } else {
                now
            };
            match self.cids.issue(p.slot, now) {
                Ok(c) => cids.push(c),
                Err(_) => {
                    for q in &planned[..cids.len()] {
                        self.cids.cancel(q.slot);
                    }
                    return Err(BlockError::QueueFull);
                }
            }
        }
        for (p, cid) in planned.iter().zip(cids) {
            let sqe = match p.op {
                None => Sqe::flush(cid, NAMESPACE),
                // `plan` checked the block count: this cannot fail now.
                Some((op, slba, blocks, prps)) => {
                    Sqe::rw(op, cid, NAMESPACE, slba, blocks, prps.prp1, prps.prp2)
                        .unwrap_or(Sqe::flush(cid, NAMESPACE))
                }
            };
            #[cfg(feature = "test-late-completion")]
            if let Some(h) = held
                && h.slot == p.slot
            {
                self.late.hold(&h, sqe);
                continue;
            }
            // Room was checked above.
            let index = self.io_sq.push().unwrap_or(0);
            write_sqe(&mut self.mem, Layout::sqe(self.layout.io_sq, index), &sqe);
        }
        userlib::publish_to_device();
        let tail = self.io_sq.tail();
        self.ring(self.cap.sq_tail_doorbell(IO_QUEUE), tail);
        #[cfg(feature = "test-late-completion")]
        self.late_after_submit(ios);
        Ok(())
    }

    fn completions(&mut self, out: &mut Vec<(u16, Result<(), BlockError>)>) {
        let mut drained = 0u32;
        // At most one ring's worth per call: a controller that keeps
        // posting cannot hold the loop here.
        while drained < u32::from(self.layout.io_entries) {
            let Some(cqe) = pop_cqe(&self.mem, self.layout.io_cq, &mut self.io_cq) else {
                break;
            };
            drained += 1;
            if cqe.sq_id != IO_QUEUE || !self.io_sq.set_head(cqe.sq_head) {
                self.stray += 1;
            }
            match self.cids.complete(cqe.cid) {
                Completed::Slot { slot, .. } => {
                    let status = if cqe.status.is_success() {
                        Ok(())
                    } else {
                        log!("nvme: slot {slot}: {}", cqe.status);
                        Err(BlockError::DeviceError)
                    };
                    out.push((slot, status));
                }
                Completed::Released { slot } => {
                    log!(
                        "nvme: slot {slot}: late completion of its timed-out command (CID {:#x}, {}): fence lifted",
                        cqe.cid.0,
                        cqe.status
                    );
                    self.released.push(slot);
                }
                Completed::Abandoned => {}
                Completed::Unknown => self.stray += 1,
            }
        }
        if drained > 0 {
            let head = self.io_cq.head();
            self.ring(self.cap.cq_head_doorbell(IO_QUEUE), head);
        } else if self.cids.in_flight() > 0 {
            // Nothing came although commands wait: has the controller
            // failed? (One register read, only on this slow path.)
            self.check_fatal(out);
        }
        self.abort_completions();
        let (now, timeout) = (userlib::counter(), self.io_timeout);
        let queue = &mut self.abort_queue;
        self.cids.expire(now, timeout, |slot, cid| {
            log!(
                "nvme: slot {slot} (CID {:#x}) timed out: fenced (its slot, PRP list page and buffer stay reserved); sending an Abort",
                cid.0
            );
            out.push((slot, Err(BlockError::Timeout)));
            queue.push(cid);
        });
        if !self.failed {
            self.issue_aborts();
        }
    }

    fn is_fenced(&self, slot: u16) -> bool {
        self.cids.is_fenced(slot)
    }

    fn released(&mut self, out: &mut Vec<u16>) {
        out.append(&mut self.released);
    }

    fn irq(&self) -> Option<(u32, u64)> {
        self.irq
    }

    fn on_interrupt(&mut self) {
        // INTx deasserts once the completion queue head doorbell shows the
        // queue drained, which `completions` does; nothing to read here.
        // (Writing the head of an empty queue would corrupt QEMU 7.2's
        // pending-queue count, which then never deasserts INTx.)
    }
}

/// Test only (cargo feature `test-late-completion`): the late completion.
#[cfg(feature = "test-late-completion")]
impl Nvme {
    /// After a batch went to the device: if a read is held from an earlier
    /// submit, let this batch complete on the device (nothing is
    /// processed), then give the held read to the controller and wait
    /// until it completed too. All waits bounded.
    fn late_after_submit(&mut self, ios: &[DeviceIo]) {
        let late::LateHook::Held {
            sqe,
            slot,
            iova,
            fresh,
        } = self.late
        else {
            return;
        };
        if fresh {
            self.late = late::LateHook::Held {
                sqe,
                slot,
                iova,
                fresh: false,
            };
            return;
        }
        self.late = late::LateHook::Done;
        late::log_next(iova, slot, ios);
        let n = ios.len() as u16;
        let (mem, base) = (&self.mem, self.layout.io_cq);
        let ring = &self.io_cq;
        let mut clock = self.clock.sleeping(late::POLL_US);
        if poll_until(&mut clock, late::WAIT_US, || {
            (late::posted(mem, base, ring) >= n).then_some(())
        })
        .is_err()
        {
            log!("nvme: TEST HOOK: the next batch did not complete in time");
        }
        let Some(index) = self.io_sq.push() else {
            log!("nvme: TEST HOOK: no room for the held read");
            return;
        };
        write_sqe(&mut self.mem, Layout::sqe(self.layout.io_sq, index), &sqe);
        userlib::publish_to_device();
        let tail = self.io_sq.tail();
        self.ring(self.cap.sq_tail_doorbell(IO_QUEUE), tail);
        let (mem, ring) = (&self.mem, &self.io_cq);
        let done = poll_until(&mut clock, late::WAIT_US, || {
            (late::posted(mem, base, ring) > n).then_some(())
        });
        log!(
            "nvme: TEST HOOK: the held read (slot {slot}, CID {:#x}) reached the device late, after the next {n} I/Os completed, and {} its DMA to IOVA {:#x}",
            sqe.cid().0,
            if done.is_ok() {
                "has completed"
            } else {
                "has not completed in time"
            },
            iova.get()
        );
    }
}

/// Demo only (cargo feature `demo-rogue`): what a compromised NVMe driver
/// could do, for the rogue-DMA isolation demo.
#[cfg(feature = "demo-rogue")]
impl Nvme {
    /// Submits a Read of one logical block at `slba` of namespace 1 whose
    /// PRP1 is `prp1` exactly as given (no IOVA from the IOMMU server, no
    /// check; PRP2 = 0, so the block must fit in `prp1`'s page), on slot 0,
    /// and waits (bounded) for its completion. Returns what the controller
    /// reported: `Ok` even when the SMMU dropped every byte (faults are
    /// silent towards the device).
    pub fn demo_rogue_read(&mut self, slba: u64, prp1: u64) -> Result<(), BlockError> {
        const SLOT: u16 = 0;
        if self.failed {
            return Err(BlockError::DeviceError);
        }
        if self.io_sq.free() == 0 {
            return Err(BlockError::QueueFull);
        }
        let cid = self
            .cids
            .issue(SLOT, userlib::counter())
            .map_err(|_| BlockError::QueueFull)?;
        let Some(sqe) = Sqe::rw(IoOpcode::Read, cid, NAMESPACE, slba, 1, prp1, 0) else {
            self.cids.cancel(SLOT);
            return Err(BlockError::Malformed);
        };
        let index = self.io_sq.push().unwrap_or(0);
        write_sqe(&mut self.mem, Layout::sqe(self.layout.io_sq, index), &sqe);
        userlib::publish_to_device();
        let tail = self.io_sq.tail();
        self.ring(self.cap.sq_tail_doorbell(IO_QUEUE), tail);
        let mut clock = self.clock.sleeping(ADMIN_POLL_US);
        let mut out = Vec::new();
        let got = poll_until(&mut clock, IO_TIMEOUT_US + 1_000_000, || {
            self.completions(&mut out);
            out.iter().find(|(s, _)| *s == SLOT).map(|&(_, r)| r)
        });
        got.unwrap_or(Err(BlockError::Timeout))
    }
}

fn read32(bar: &DeviceRegion, r: Reg<u32>) -> u32 {
    bar.read(r).unwrap_or(u32::MAX)
}

/// A 64-bit register as two 32-bit reads, low half first.
fn read64(bar: &DeviceRegion, r: Reg<u64>) -> u64 {
    let lo = bar.read(r.lo()).unwrap_or(u32::MAX);
    let hi = bar.read(r.hi()).unwrap_or(u32::MAX);
    u64::from(lo) | (u64::from(hi) << 32)
}

/// Writes a submission entry at `offset`, as eight 64-bit stores.
fn write_sqe(mem: &mut DmaBuffer, offset: u64, sqe: &Sqe) {
    let d = sqe.dwords();
    for i in 0..8 {
        let v = u64::from(d[2 * i]) | (u64::from(d[2 * i + 1]) << 32);
        let _ = mem.write::<u64>(offset + 8 * i as u64, v);
    }
}

/// Takes the completion at the head of the queue at `base` if the
/// controller has posted it (phase tag), advancing the ring.
fn pop_cqe(mem: &DmaBuffer, base: u64, ring: &mut CqRing) -> Option<Cqe> {
    let at = Layout::cqe(base, ring.head());
    let dw3 = mem.read::<u32>(at + 4 * Cqe::PHASE_DWORD as u64)?;
    if !ring.is_new(Cqe::dw3_phase(dw3)) {
        return None;
    }
    // The rest of the entry must not be read before the phase tag was
    // seen: a load-load barrier (`dmb ishld`).
    fence(Ordering::Acquire);
    let dw0 = mem.read::<u32>(at)?;
    let dw2 = mem.read::<u32>(at + 8)?;
    ring.advance();
    Some(Cqe::from_dwords([dw0, 0, dw2, dw3]))
}
